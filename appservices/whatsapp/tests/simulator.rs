//! The simulator driven over HTTP as the bridge will drive it: documented request shapes
//! accepted, malformed ones refused with the documented error objects, the token, the 24-hour
//! window and the rate limits enforced, media round trips byte-identical, and webhooks delivered
//! signed (checked here with the app secret) and retried after a refusal.

mod support;

use serde_json::{Value, json};
use support::{CONTACT, Fixture, base, error_code};

#[tokio::test]
async fn every_documented_send_shape_is_accepted() {
    let f = Fixture::new().await;
    let inbound = f.contact_writes("hello").await;
    let (status, media) = f.upload(b"\x89PNG fake", "image/png", "a.png").await;
    assert_eq!(status, 200, "{media}");
    let media_id = media["id"].as_str().unwrap();
    let bodies = [
        json!({"type": "text", "text": {"preview_url": false, "body": "*Hi* there"}}),
        json!({"type": "text", "text": {"body": "a reply"}, "context": {"message_id": inbound}}),
        json!({"type": "image", "image": {"id": media_id, "caption": "pic"}}),
        json!({"type": "image", "image": {"link": "https://example.org/a.png"}}),
        json!({"type": "document", "document": {"id": media_id, "filename": "a.png", "caption": "doc"}}),
        json!({"type": "audio", "audio": {"id": media_id}}),
        json!({"type": "video", "video": {"link": "https://example.org/v.mp4", "caption": "v"}}),
        json!({"type": "sticker", "sticker": {"id": media_id}}),
        json!({"type": "location", "location": {"latitude": 51.5, "longitude": -0.12, "name": "Office", "address": "1 Road"}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Ada L", "first_name": "Ada"}, "phones": [{"phone": "+441234", "type": "WORK"}]}]}),
        json!({"type": "reaction", "reaction": {"message_id": inbound, "emoji": "👍"}}),
        json!({"type": "reaction", "reaction": {"message_id": inbound, "emoji": ""}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}}, {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Pick"}, "action": {"button": "Options", "sections": [
            {"title": "S", "rows": [{"id": "r1", "title": "One", "description": "first"}]}]}}}),
        json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
    ];
    for extra in bodies {
        let (status, answer) = f.send(base(extra.clone())).await;
        assert_eq!(status, 200, "{extra} → {answer}");
        assert_eq!(answer["messaging_product"], "whatsapp");
        assert_eq!(
            answer["contacts"],
            json!([{"input": format!("+{CONTACT}"), "wa_id": CONTACT}])
        );
        assert!(
            answer["messages"][0]["id"]
                .as_str()
                .unwrap()
                .starts_with("wamid.HBgL"),
            "{answer}"
        );
    }
    let (status, answer) = f
        .send(json!({"messaging_product": "whatsapp", "status": "read", "message_id": inbound, "typing_indicator": {"type": "text"}}))
        .await;
    assert_eq!((status, answer), (200, json!({"success": true})));

    // The control API lists every call with its exact body.
    let calls = f.control(reqwest::Method::GET, "calls", json!(null)).await;
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 17, "upload, 15 sends and the read mark");
    assert_eq!(
        calls[1]["body"],
        base(json!({"type": "text", "text": {"preview_url": false, "body": "*Hi* there"}}))
    );
    assert_eq!(calls[1]["authorization"], "Bearer good-token");
    let messages = f
        .control(reqwest::Method::GET, "messages", json!(null))
        .await;
    assert!(
        messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == inbound.as_str() && m["read"] == true)
    );
}

#[tokio::test]
async fn malformed_requests_get_the_documented_errors() {
    let f = Fixture::new().await;
    let inbound = f.contact_writes("hello").await;
    let cases = [
        (
            json!({"to": CONTACT, "type": "text", "text": {"body": "x"}}),
            100,
        ),
        (
            json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
            100,
        ),
        (base(json!({"type": "image"})), 131008),
        (
            base(json!({"type": "image", "image": {"caption": "no media"}})),
            131008,
        ),
        (
            base(json!({"type": "image", "image": {"id": "1", "link": "https://a/b"}})),
            131009,
        ),
        (
            base(json!({"type": "image", "image": {"id": "999999999999999"}})),
            131009,
        ),
        (
            base(
                json!({"type": "text", "text": {"body": "x"}, "context": {"message_id": "wamid.nope"}}),
            ),
            131009,
        ),
        (
            base(
                json!({"type": "reaction", "reaction": {"message_id": "wamid.nope", "emoji": "👍"}}),
            ),
            131009,
        ),
        (base(json!({"type": "fax", "fax": {}})), 100),
        (base(json!({"type": "text", "text": {"body": ""}})), 131009),
        (
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.unknown"}),
            131009,
        ),
        (
            base(
                json!({"type": "template", "template": {"name": "no_such_template", "language": {"code": "en_US"}}}),
            ),
            132001,
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = f.send(body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body} → {answer}");
        if code > 130000 {
            assert_eq!(
                answer["error"]["error_data"]["messaging_product"], "whatsapp",
                "{answer}"
            );
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("(#{code}) "))
            );
        }
    }
    // A message must not reply to another contact's message.
    let (status, _) = f.send(json!({"messaging_product": "whatsapp", "to": "447700900123", "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}, "context": {"message_id": inbound}})).await;
    assert_eq!(status, 400);

    let raw = f
        .http
        .post(f.messages_url())
        .bearer_auth("good-token")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(error_code(&raw.json().await.unwrap()), 100);

    let other = f
        .http
        .post(f.graph("999/messages"))
        .bearer_auth("good-token")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let answer: Value = other.json().await.unwrap();
    assert_eq!(
        (
            error_code(&answer),
            answer["error"]["error_subcode"].as_u64()
        ),
        (100, Some(33))
    );

    let bad_version = f
        .http
        .post(format!(
            "{}/latest/{}/messages",
            f.sim.url(),
            f.sim.config().phone_number_id
        ))
        .bearer_auth("good-token")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_version.status(), 400);
    assert_eq!(error_code(&bad_version.json().await.unwrap()), 2500);
}

#[tokio::test]
async fn a_bad_token_is_refused_with_190() {
    let f = Fixture::new().await;
    f.contact_writes("hello").await;
    let wrong = f
        .http
        .post(f.messages_url())
        .bearer_auth("stolen")
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_code(&wrong.json().await.unwrap()), 190);
    let none = f
        .http
        .post(f.messages_url())
        .json(&base(json!({"text": {"body": "x"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 400);
    assert_eq!(error_code(&none.json().await.unwrap()), 2500);
    let media = f
        .http
        .get(f.graph("123456789012345"))
        .bearer_auth("stolen")
        .send()
        .await
        .unwrap();
    assert_eq!(media.status(), 401);
    // Nothing was sent.
    let messages = f
        .control(reqwest::Method::GET, "messages", json!(null))
        .await;
    assert_eq!(
        messages.as_array().unwrap().len(),
        1,
        "only the inbound message"
    );
}

#[tokio::test]
async fn the_24_hour_window_is_enforced_and_templates_pass_outside_it() {
    let f = Fixture::new().await;
    f.control(
        reqwest::Method::POST,
        "contacts",
        json!({"wa_id": CONTACT, "name": "Sheena"}),
    )
    .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "hello?"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 131047), "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "(#131047) Re-engagement message"
    );
    let template = json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let (status, answer) = f.send(base(template.clone())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["messages"][0]["message_status"], "accepted");

    f.contact_writes("hi").await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "welcome"}}))).await.0,
        200
    );
    f.control(
        reqwest::Method::POST,
        "clock",
        json!({"advance": 23 * 3600}),
    )
    .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "still open"}})))
            .await
            .0,
        200
    );
    f.control(reqwest::Method::POST, "clock", json!({"advance": 3600}))
        .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "too late"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 131047));
    assert_eq!(f.send(base(template)).await.0, 200);

    let window = f
        .control(
            reqwest::Method::PUT,
            &format!("contacts/{CONTACT}/window"),
            json!({"open": true}),
        )
        .await;
    assert_eq!(window["window_open"], true);
    assert_eq!(
        f.send(base(json!({"text": {"body": "open again"}})))
            .await
            .0,
        200
    );
    f.control(
        reqwest::Method::PUT,
        &format!("contacts/{CONTACT}/window"),
        json!({"open": false}),
    )
    .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "closed"}}))).await.0,
        400
    );
}

#[tokio::test]
async fn rate_limits_answer_like_the_cloud_api() {
    let f = Fixture::new().await;
    f.contact_writes("hello").await;
    f.control(reqwest::Method::POST, "rate-limit", json!({"code": 130429}))
        .await;
    let (status, answer) = f.send(base(json!({"text": {"body": "x"}}))).await;
    assert_eq!((status, error_code(&answer)), (400, 130429));
    assert_eq!(answer["error"]["message"], "(#130429) Rate limit hit");
    f.control(
        reqwest::Method::POST,
        "rate-limit",
        json!({"code": 131056, "count": 2}),
    )
    .await;
    for _ in 0..2 {
        let (status, answer) = f.send(base(json!({"text": {"body": "x"}}))).await;
        assert_eq!((status, error_code(&answer)), (400, 131056));
    }
    // Forced errors are used up; then the real pair rate applies: a burst of 45, then one per 6 s.
    for i in 0..45 {
        let (status, answer) = f
            .send(base(json!({"text": {"body": format!("burst {i}")}})))
            .await;
        assert_eq!(status, 200, "message {i}: {answer}");
    }
    let (status, answer) = f
        .send(base(json!({"text": {"body": "one too many"}})))
        .await;
    assert_eq!((status, error_code(&answer)), (400, 131056), "{answer}");
    f.control(reqwest::Method::POST, "clock", json!({"advance": 6}))
        .await;
    assert_eq!(
        f.send(base(json!({"text": {"body": "after waiting"}})))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn media_round_trips_byte_identical() {
    let f = Fixture::new().await;
    let bytes: Vec<u8> = (0..=255u8)
        .cycle()
        .take(70_000)
        .chain(*b"\r\n--b0und\r\n")
        .collect();
    let (status, upload) = f.upload(&bytes, "application/pdf", "report.pdf").await;
    assert_eq!(status, 200, "{upload}");
    let id = upload["id"].as_str().unwrap();
    assert!(id.bytes().all(|b| b.is_ascii_digit()));

    let info: Value = f
        .http
        .get(f.graph(id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["messaging_product"], "whatsapp");
    assert_eq!(info["id"], id);
    assert_eq!(info["mime_type"], "application/pdf");
    assert_eq!(info["file_size"], bytes.len().to_string());
    use sha2::Digest;
    assert_eq!(info["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let url = info["url"].as_str().unwrap();

    let anonymous = f.http.get(url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let download = f
        .http
        .get(url)
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let stored = f
        .http
        .get(format!("{}/_sim/media/{id}", f.sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // The URL lasts five minutes; a fresh lookup gives a new one.
    f.control(reqwest::Method::POST, "clock", json!({"advance": 301}))
        .await;
    assert_eq!(
        f.http
            .get(url)
            .bearer_auth("good-token")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let (status, refused) = f.upload(b"GIF89a", "image/gif", "a.gif").await;
    assert_eq!((status, error_code(&refused)), (400, 131053));

    let deleted: Value = f
        .http
        .delete(f.graph(id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"success": true}));
    let gone = f
        .http
        .get(f.graph(id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 400);
    let gone: Value = gone.json().await.unwrap();
    assert_eq!(
        (error_code(&gone), gone["error"]["error_subcode"].as_u64()),
        (100, Some(33))
    );
}

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
    let info: Value = f
        .http
        .get(f.graph(&media_id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let node: Value = f
        .http
        .get(f.graph(&id))
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
