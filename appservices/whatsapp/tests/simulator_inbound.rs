//! The simulator's inbound side, driven over HTTP as the bridge will meet it: webhooks for every
//! inbound message type and status delivered signed (checked here with the app secret) and
//! retried after a refusal, the verification handshake, delivery failures, read marks, and
//! groups. `simulator.rs` covers the requests the bridge sends.

mod support;

use serde_json::{Value, json};
use support::{CONTACT, Fixture, base, error_code};

#[tokio::test]
async fn inbound_messages_arrive_signed_and_are_retried_after_a_refusal() {
    let f = Fixture::new().await;
    f.receiver.script.lock().unwrap().extend([500, 503]);
    let id = f.contact_writes("hello bridge").await;
    let first = f.webhook(1).await;
    let third = f.webhook(3).await;
    assert_eq!(first, third, "the same webhook is sent again");
    assert_eq!(first["object"], "whatsapp_business_account");
    let entry = &first["entry"][0];
    assert_eq!(entry["id"], f.sim.config().waba_id);
    assert_eq!(entry["changes"][0]["field"], "messages");
    let value = &entry["changes"][0]["value"];
    assert_eq!(value["messaging_product"], "whatsapp");
    assert_eq!(
        value["metadata"]["phone_number_id"],
        f.sim.config().phone_number_id
    );
    assert_eq!(
        value["contacts"][0],
        json!({"profile": {"name": "Sheena"}, "wa_id": CONTACT})
    );
    let message = &value["messages"][0];
    assert_eq!(message["from"], CONTACT);
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "hello bridge");
    assert!(
        message["timestamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok(),
        "timestamp is a string of seconds"
    );

    let log = f
        .control(reqwest::Method::GET, "webhooks", json!(null))
        .await;
    assert_eq!(log[0]["attempts"], json!([500, 503, 200]));
    assert_eq!(log[0]["delivered"], true);
    assert_eq!(f.receiver.received.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn every_inbound_type_and_status_reaches_the_bridge() {
    let f = Fixture::new().await;
    let photo = b"\xff\xd8\xff\xe0 jpeg bytes \x00\r\n";
    let media = f
        .http
        .post(format!("{}/_sim/media?filename=photo.jpg", f.sim.url()))
        .header("content-type", "image/jpeg")
        .body(photo.to_vec())
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let media_id = media["id"].as_str().unwrap().to_owned();
    let first = f.contact_writes("first").await;
    let inbound = [
        json!({"type": "image", "image": {"id": media_id, "caption": "look"}}),
        json!({"type": "document", "document": {"id": media_id}}),
        json!({"type": "audio", "audio": {"id": media_id, "voice": true}}),
        json!({"type": "video", "video": {"id": media_id}}),
        json!({"type": "location", "location": {"latitude": 1.0, "longitude": 2.0}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Bo"}}]}),
        json!({"type": "reaction", "reaction": {"message_id": first, "emoji": "❤"}}),
        json!({"type": "text", "text": {"body": "replying"}, "context": {"id": first}}),
        json!({"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}}),
    ];
    for (i, body) in inbound.iter().enumerate() {
        f.control(
            reqwest::Method::POST,
            &format!("contacts/{CONTACT}/messages"),
            body.clone(),
        )
        .await;
        let hook = f.webhook(i + 2).await;
        let message = &hook["entry"][0]["changes"][0]["value"]["messages"][0];
        assert_eq!(message["type"], body["type"], "{hook}");
        assert!(message["id"].as_str().unwrap().starts_with("wamid."));
    }
    let image = &f.webhook(2).await["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(image["image"]["mime_type"], "image/jpeg");
    assert_eq!(image["image"]["caption"], "look");
    let document = &f.webhook(3).await["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(document["document"]["filename"], "photo.jpg");
    let reply = &f.webhook(9).await["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(reply["context"], json!({"id": first, "from": CONTACT}));

    // The bridge fetches the inbound media as it would from Meta.
    let (_, info) = f.node(&media_id).await;
    let bytes = f
        .http
        .get(info["url"].as_str().unwrap())
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), photo);

    // Statuses for a business message.
    let (_, sent) = f.send(base(json!({"text": {"body": "thanks"}}))).await;
    let wamid = sent["messages"][0]["id"].as_str().unwrap();
    for status in ["sent", "delivered", "read"] {
        f.control(
            reqwest::Method::POST,
            &format!("messages/{wamid}/statuses"),
            json!({"status": status}),
        )
        .await;
    }
    f.control(
        reqwest::Method::POST,
        &format!("messages/{wamid}/statuses"),
        json!({"status": "failed", "errors": [131047]}),
    )
    .await;
    let n = inbound.len() + 2;
    let sent_hook = &f.webhook(n).await["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(sent_hook["id"], wamid);
    assert_eq!(sent_hook["status"], "sent");
    assert_eq!(sent_hook["recipient_id"], CONTACT);
    assert_eq!(sent_hook["conversation"]["origin"]["type"], "service");
    assert_eq!(sent_hook["pricing"]["pricing_model"], "PMP");
    assert_eq!(
        f.webhook(n + 2).await["entry"][0]["changes"][0]["value"]["statuses"][0]["status"],
        "read"
    );
    let failed = &f.webhook(n + 3).await["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"][0]["code"], 131047);
    assert_eq!(failed["errors"][0]["title"], "Re-engagement message");
}

#[tokio::test]
async fn unknown_and_blocking_recipients_fail_on_delivery() {
    let f = Fixture::new().await;
    let template = json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let (status, sent) = f
        .send(
            json!({"messaging_product": "whatsapp", "to": "447700900123", "type": "template",
        "template": template["template"]}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let hook = f.webhook(1).await;
    let failed = &hook["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(failed["id"], sent["messages"][0]["id"]);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"][0]["code"], 131026);

    f.contact_writes("STOP").await;
    f.control(
        reqwest::Method::PUT,
        &format!("contacts/{CONTACT}/opt-out"),
        json!({"opted_out": true}),
    )
    .await;
    assert_eq!(f.send(base(json!({"text": {"body": "x"}}))).await.0, 200);
    let hook = f.webhook(3).await;
    assert_eq!(
        hook["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"],
        131026
    );
}

#[tokio::test]
async fn the_verification_handshake_runs_against_the_bridge() {
    let f = Fixture::new().await;
    let outcome = f.sim.verify_webhook().await.unwrap();
    assert!(outcome.verified, "{outcome:?}");
    assert_eq!(outcome.body, outcome.challenge);
    let wrong = f
        .control(
            reqwest::Method::POST,
            "verify",
            json!({"verify_token": "guess"}),
        )
        .await;
    assert_eq!(wrong["status"], 403);
    assert_eq!(wrong["verified"], false);
}

#[tokio::test]
async fn auto_statuses_and_out_of_band_errors() {
    let f = Fixture::with(|config| config.auto_statuses = true).await;
    let inbound = f.contact_writes("hello").await;
    let (_, sent) = f.send(base(json!({"text": {"body": "hi"}}))).await;
    let wamid = sent["messages"][0]["id"].as_str().unwrap().to_owned();
    let status = |hook: Value| hook["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
    assert_eq!(status(f.webhook(2).await)["status"], "sent");
    assert_eq!(status(f.webhook(3).await)["status"], "delivered");
    assert_eq!(status(f.webhook(3).await)["id"], wamid.as_str());
    // Reactions only ever get `sent`.
    let (_, reaction) = f
        .send(base(
            json!({"type": "reaction", "reaction": {"message_id": inbound, "emoji": "👍"}}),
        ))
        .await;
    assert_eq!(
        status(f.webhook(4).await)["id"],
        reaction["messages"][0]["id"]
    );
    f.control(reqwest::Method::POST, "errors", json!({"code": 131031}))
        .await;
    let hook = f.webhook(5).await;
    let error = &hook["entry"][0]["changes"][0]["value"]["errors"][0];
    assert_eq!(error["code"], 131031);
    assert_eq!(error["title"], "Account has been locked");
    assert!(error["error_data"]["details"].is_string());
}

/// Mark as read: only a message the contact sent (not the business's own, not one over 30 days
/// old), marking it and the earlier ones read but not later ones; malformed requests and
/// locations refused with the documented codes; a removed reaction's webhook leaves the emoji
/// out.
#[tokio::test]
async fn read_marks_locations_and_removed_reactions_follow_the_documentation() {
    let f = Fixture::new().await;
    let first = f.contact_writes("one").await;
    f.control(reqwest::Method::POST, "clock", json!({"advance": 5}))
        .await;
    let second = f.contact_writes("two").await;
    f.control(reqwest::Method::POST, "clock", json!({"advance": 5}))
        .await;
    let third = f.contact_writes("three").await;
    let (status, sent) = f.send(base(json!({"text": {"body": "hi"}}))).await;
    assert_eq!(status, 200, "{sent}");
    let business = sent["messages"][0]["id"].as_str().unwrap().to_owned();

    let read =
        |id: &str| json!({"messaging_product": "whatsapp", "status": "read", "message_id": id});
    let (status, answer) = f.send(read(&second)).await;
    assert_eq!((status, answer), (200, json!({"success": true})));
    let messages = f
        .control(reqwest::Method::GET, "messages", json!(null))
        .await;
    let read_flag = |id: &str| {
        messages
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["read"].clone())
    };
    assert_eq!(read_flag(&first), Some(json!(true)));
    assert_eq!(read_flag(&second), Some(json!(true)));
    assert_eq!(read_flag(&third), Some(json!(false)));

    let cases = [
        (read(&business), 131009),
        (
            json!({"messaging_product": "whatsapp", "status": "delivered", "message_id": third}),
            131009,
        ),
        (
            json!({"messaging_product": "whatsapp", "status": "read"}),
            100,
        ),
        (json!({"status": "read", "message_id": third}), 100),
        (
            base(json!({"type": "location", "location": {"longitude": -0.12}})),
            100,
        ),
        (
            base(json!({"type": "location", "location": {"latitude": 95, "longitude": 0}})),
            131009,
        ),
        (
            base(json!({"type": "location", "location": {"latitude": "north", "longitude": 0}})),
            131009,
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = f.send(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body} → {answer}");
    }

    // A month later the third message can no longer be marked read.
    f.control(
        reqwest::Method::POST,
        "clock",
        json!({"advance": 31 * 24 * 3600}),
    )
    .await;
    let (status, answer) = f.send(read(&third)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_code(&answer), 131009);

    // The contact reacts, then takes the reaction back: the emoji is left out of the webhook.
    for emoji in ["👍", ""] {
        f.control(
            reqwest::Method::POST,
            &format!("contacts/{CONTACT}/messages"),
            json!({"type": "reaction", "reaction": {"message_id": business, "emoji": emoji}}),
        )
        .await;
    }
    let webhook = f.webhook(5).await;
    assert_eq!(
        webhook["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"],
        json!({"message_id": business})
    );
    let webhook = f.webhook(4).await;
    assert_eq!(
        webhook["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"],
        json!({"message_id": business, "emoji": "👍"})
    );
}

/// Groups: made with a subject and participants (id in Meta's documented shape), read with
/// `GET /{group_id}`; a participant's message webhook carries `group_id` next to `from`; a send
/// with `recipient_type: "group"` is accepted for a known group, its statuses name the group
/// (`recipient_id`, `recipient_type: "group"`), and an unknown group is refused.
#[tokio::test]
async fn groups_are_created_written_in_and_sent_to() {
    let f = Fixture::with(|config| config.auto_statuses = true).await;
    let group = f
        .control(
            reqwest::Method::POST,
            "groups",
            json!({"subject": "  Knee clinic  ", "participants": [CONTACT, "+44 7700 900123"]}),
        )
        .await;
    let id = group["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("Y2FwaV9ncm91cDo"), "{id}");
    assert_eq!(group["subject"], "Knee clinic");

    let (_, node) = f.node(&id).await;
    assert_eq!(node["id"], id.as_str());
    assert_eq!(node["subject"], "Knee clinic");
    assert_eq!(
        node["participants"],
        json!([{"wa_id": CONTACT}, {"wa_id": "447700900123"}])
    );
    assert_eq!(node["total_participant_count"], 2);

    let written = f
        .control(
            reqwest::Method::POST,
            &format!("groups/{id}/messages"),
            json!({"from": CONTACT, "type": "text", "text": {"body": "hello all"}}),
        )
        .await;
    let hook = f.webhook(1).await;
    let value = &hook["entry"][0]["changes"][0]["value"];
    assert_eq!(value["messages"][0]["from"], CONTACT);
    assert_eq!(value["messages"][0]["group_id"], id.as_str());
    assert_eq!(value["messages"][0]["id"], written["id"]);
    assert_eq!(value["contacts"][0]["wa_id"], CONTACT);

    let to_group = |body: Value| {
        let mut message =
            json!({"messaging_product": "whatsapp", "recipient_type": "group", "to": id});
        message
            .as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        message
    };
    // No window is kept for a group: the business may write at once.
    let (status, sent) = f
        .send(to_group(
            json!({"type": "text", "text": {"body": "Welcome"},
            "context": {"message_id": written["id"]}}),
        ))
        .await;
    assert_eq!(status, 200, "{sent}");
    let status = |hook: Value| hook["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
    let sent_status = status(f.webhook(2).await);
    assert_eq!(sent_status["id"], sent["messages"][0]["id"]);
    assert_eq!(sent_status["status"], "sent");
    assert_eq!(sent_status["recipient_id"], id.as_str());
    assert_eq!(sent_status["recipient_type"], "group");

    let (status, refused) = f
        .send(
            json!({"messaging_product": "whatsapp", "recipient_type": "group",
            "to": "Y2FwaV9ncm91cDpub3RoaW5n", "type": "text", "text": {"body": "x"}}),
        )
        .await;
    assert_eq!((status, error_code(&refused)), (400, 131009), "{refused}");
    // A group message is not the contact's one-to-one window.
    let (status, refused) = f.send(base(json!({"text": {"body": "x"}}))).await;
    assert_eq!((status, error_code(&refused)), (400, 131047), "{refused}");
}
