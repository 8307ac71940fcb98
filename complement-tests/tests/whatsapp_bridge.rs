//! The WhatsApp bridge (`appservices/whatsapp`, run in-process as a library) between a real
//! Plexus and the WhatsApp Cloud API simulator: a contact writes and the staff see it in a portal
//! from the contact's ghost; the staff answer and exactly one correct Graph call reaches the
//! simulator; a forged webhook is refused and bridges nothing; a message outside the 24-hour
//! window is explained to the room and not retried.

#[path = "whatsapp_bridge/support.rs"]
mod support;

use std::time::Duration;

use complement_tests::{Value, json, wait_until};
use support::*;

/// A contact writes; the staff see it from the contact's ghost, with the contact's name and the
/// WhatsApp time; the staff answer and exactly one correct Cloud API call is made; the contact
/// reading it shows as the ghost's read receipt.
#[tokio::test]
async fn a_contact_and_the_staff_talk_through_the_bridge() {
    let setup = Setup::start().await;

    // Meta's verification handshake.
    let handshake = setup.sim.verify_webhook().await;
    assert!(handshake.is_ok(), "the handshake: {handshake:?}");

    let wamid = setup
        .contact_writes(MARIA, "Maria Lopez", "Hello, is the clinic open today?")
        .await;
    let room = setup.portal(MARIA).await;
    let ghost = ghost_of(MARIA);
    wait_until("Maria's message", Duration::from_secs(20), async || {
        setup
            .messages(&room)
            .await
            .iter()
            .any(|e| e["sender"] == ghost)
    })
    .await;
    let events = setup.messages(&room).await;
    let inbound: Vec<&Value> = events.iter().filter(|e| e["sender"] == ghost).collect();
    assert_eq!(inbound.len(), 1, "{events:#?}");
    assert_eq!(
        inbound[0]["content"]["body"],
        "Hello, is the clinic open today?"
    );
    // The WhatsApp timestamp (seconds) became the event's time.
    let webhooks = setup.http.get(&setup.sim("/webhooks")).await;
    let sent = webhooks
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["body"]["entry"][0]["changes"][0]["value"]["messages"].as_array())
        .flatten()
        .find(|m| m["id"] == wamid.as_str())
        .cloned()
        .expect("the message's webhook");
    let secs: u64 = sent["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    assert_eq!(inbound[0]["origin_server_ts"], json!(secs * 1000));
    // The ghost carries the contact's WhatsApp name.
    let profile = setup
        .alice
        .get(&format!("/_matrix/client/v3/profile/{ghost}/displayname"))
        .await
        .ok();
    assert_eq!(profile["displayname"], "Maria Lopez (WhatsApp)");

    // Alice answers: one Graph call, with exactly the documented body and the bearer token.
    let reply = setup.alice.send_message(&room, "Yes, until 6pm.").await;
    wait_until(
        "the send reaches WhatsApp",
        Duration::from_secs(20),
        async || !setup.message_calls().await.is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        calls[0]["body"],
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": MARIA,
            "type": "text",
            "text": {"body": "Yes, until 6pm."},
            // Echoed in the message's statuses: how a bridge restarted mid-send reconciles.
            "biz_opaque_callback_data": reply,
        })
    );
    assert_eq!(calls[0]["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(calls[0]["status"], 200);
    let reply_wamid = calls[0]["response"]["messages"][0]["id"]
        .as_str()
        .expect("the wamid")
        .to_owned();

    // Delivered to Maria's phone: the bot's read receipt marks Alice's message delivered.
    setup
        .http
        .post(
            &setup.sim(&format!("/messages/{reply_wamid}/statuses")),
            json!({"status": "delivered"}),
        )
        .await;
    let bot = "@whatsappbot:localhost";
    wait_until(
        "the bot's delivery receipt",
        Duration::from_secs(20),
        async || {
            let sync = setup
                .alice
                .get("/_matrix/client/v3/sync?timeout=0")
                .await
                .ok();
            sync["rooms"]["join"][&room]["ephemeral"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == "m.receipt")
                .any(|e| e["content"][&reply]["m.read"][bot].is_object())
        },
    )
    .await;

    // Maria reads it: her ghost's read receipt lands on Alice's message.
    setup
        .http
        .post(
            &setup.sim(&format!("/messages/{reply_wamid}/statuses")),
            json!({"status": "read"}),
        )
        .await;
    wait_until(
        "the ghost's read receipt",
        Duration::from_secs(20),
        async || {
            let sync = setup
                .alice
                .get("/_matrix/client/v3/sync?timeout=0")
                .await
                .ok();
            sync["rooms"]["join"][&room]["ephemeral"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["type"] == "m.receipt")
                .any(|e| e["content"][&reply]["m.read"][&ghost].is_object())
        },
    )
    .await;

    // Meta retrying the first webhook bridges nothing twice.
    let again = webhooks
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| {
            w["body"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"] == wamid.as_str()
        })
        .cloned()
        .expect("the first webhook");
    let raw = serde_json::to_vec(&again["body"]).expect("serialisable");
    let (status, _) = setup
        .http
        .send(
            setup
                .http
                .0
                .post(&setup.webhook_url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sign(&raw))
                .body(raw),
        )
        .await;
    assert_eq!(status, 200);
    let from_ghost = setup
        .messages(&room)
        .await
        .iter()
        .filter(|e| e["sender"] == ghost)
        .count();
    assert_eq!(from_ghost, 1);
}

/// A webhook without a valid signature is refused before it is read, and nothing is bridged;
/// the handshake with a wrong verify token is refused too.
#[tokio::test]
async fn a_forged_webhook_is_refused_and_bridges_nothing() {
    let setup = Setup::start().await;
    let forged = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Mallory"}, "wa_id": "15550001111"}],
            "messages": [{"from": "15550001111", "id": "wamid.forged", "timestamp": "1700000000",
                          "type": "text", "text": {"body": "send me the records"}}],
        }}]}],
    });
    let raw = serde_json::to_vec(&forged).expect("serialisable");
    let post = || {
        setup
            .http
            .0
            .post(&setup.webhook_url)
            .header("content-type", "application/json")
            .body(raw.clone())
    };
    // Signed with another key, unsigned, and malformed.
    let wrong = plexus_whatsapp::signature::sign("not-the-secret", &raw);
    for request in [
        post().header("x-hub-signature-256", wrong),
        post(),
        post().header("x-hub-signature-256", "sha256=nothex"),
    ] {
        let (status, _) = setup.http.send(request).await;
        assert_eq!(status, 401);
    }
    let (status, _) = setup
        .http
        .send(setup.http.0.get(format!(
            "{}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=123",
            setup.webhook_url
        )))
        .await;
    assert_eq!(status, 403);
    let challenge = setup
        .http
        .0
        .get(format!(
            "{}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444",
            setup.webhook_url
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(challenge.status().as_u16(), 200);
    assert_eq!(challenge.text().await.expect("a body"), "1158201444");

    // A genuine message from someone else arrives afterwards; the forged one never did.
    setup.contact_writes(MARIA, "Maria Lopez", "hi").await;
    setup.portal(MARIA).await;
    assert_eq!(setup.find_portal("15550001111").await, None);
    for room in setup.alice.joined_rooms().await {
        let bodies: Vec<Value> = setup
            .messages(&room)
            .await
            .into_iter()
            .map(|e| e["content"]["body"].clone())
            .collect();
        assert!(
            !bodies.contains(&json!("send me the records")),
            "{bodies:?}"
        );
    }
}

/// Outside the 24-hour window WhatsApp refuses free-form messages (131047): the room is told
/// why, nothing is retried, and no message reached the contact.
#[tokio::test]
async fn a_message_outside_the_window_is_explained_not_retried() {
    let setup = Setup::start().await;
    setup.contact_writes(MARIA, "Maria Lopez", "thanks!").await;
    let room = setup.portal(MARIA).await;
    // A day passes.
    setup
        .http
        .put(
            &setup.sim(&format!("/contacts/{MARIA}/window")),
            json!({"open": false}),
        )
        .await;
    let event = setup.alice.send_message(&room, "Any news?").await;
    let bot = "@whatsappbot:localhost";
    wait_until("the failure notice", Duration::from_secs(20), async || {
        setup
            .messages(&room)
            .await
            .iter()
            .any(|e| e["sender"] == bot)
    })
    .await;
    let events = setup.messages(&room).await;
    let notice = events
        .iter()
        .find(|e| e["sender"] == bot)
        .expect("the notice");
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    assert_eq!(
        notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        event.as_str()
    );
    let body = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(body.starts_with("⚠ Not delivered:"), "{body}");
    assert!(
        body.contains("24 hours") && body.contains("131047"),
        "{body}"
    );

    // One refused attempt, not retried; no message reached Maria.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["status"], 400);
    assert_eq!(calls[0]["response"]["error"]["code"], 131047);
    let messages = setup.http.get(&setup.sim("/messages")).await;
    let outbound = messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m.to_string().contains("Any news?"))
        .count();
    assert_eq!(outbound, 0, "{messages:#}");

    // A template is what WhatsApp allows instead: `!wa template hello_world` sends one.
    setup
        .alice
        .send_message(&room, "!wa template hello_world")
        .await;
    wait_until("the template answer", Duration::from_secs(20), async || {
        setup.messages(&room).await.iter().any(|e| {
            e["sender"] == bot
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("Template hello_world sent"))
        })
    })
    .await;
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        calls[1]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "template",
               "template": {"name": "hello_world", "language": {"code": "en_US"}}})
    );
    assert_eq!(calls[1]["status"], 200);
}

/// A contact's photo reaches the room as an `m.image` re-uploaded to the media repository; her
/// reply quotes the photo; the staff's reaction and quoted reply reach WhatsApp as a reaction and
/// a message with `context`.
#[tokio::test]
async fn media_replies_and_reactions_cross_the_bridge() {
    let setup = Setup::start().await;
    // ASCII bytes, so the harness's text view of the download compares exactly.
    let png: Vec<u8> = b"PNG: not really a picture".to_vec();
    let (status, media) = setup
        .http
        .send(
            setup
                .http
                .0
                .post(setup.sim("/media?filename=rash.png"))
                .header("content-type", "image/png")
                .body(png.clone()),
        )
        .await;
    assert_eq!(status, 200, "{media}");
    let media_id = media["id"].as_str().expect("a media id").to_owned();
    let photo = setup
        .http
        .post(
            &setup.sim(&format!("/contacts/{MARIA}/messages")),
            json!({"type": "image", "image": {"id": media_id, "caption": "my rash"}, "name": "Maria Lopez"}),
        )
        .await["id"]
        .as_str()
        .expect("a wamid")
        .to_owned();
    let room = setup.portal(MARIA).await;
    let ghost = ghost_of(MARIA);
    wait_until("the photo", Duration::from_secs(20), async || {
        setup
            .messages(&room)
            .await
            .iter()
            .any(|e| e["content"]["msgtype"] == "m.image")
    })
    .await;
    let image = setup
        .messages(&room)
        .await
        .into_iter()
        .find(|e| e["content"]["msgtype"] == "m.image")
        .expect("the image");
    assert_eq!(image["sender"], ghost.as_str());
    assert_eq!(image["content"]["body"], "my rash");
    assert_eq!(image["content"]["info"]["mimetype"], "image/png");
    let mxc = image["content"]["url"].as_str().expect("an mxc URI");
    let download = setup
        .alice
        .get(&format!(
            "/_matrix/client/v1/media/download/{}",
            mxc.trim_start_matches("mxc://")
        ))
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(download.text.as_bytes(), &png[..]);
    let image_event = image["event_id"].as_str().expect("an event id").to_owned();

    // Maria quotes her photo.
    setup
        .http
        .post(
            &setup.sim(&format!("/contacts/{MARIA}/messages")),
            json!({"type": "text", "text": {"body": "it itches"}, "context": {"id": photo}}),
        )
        .await;
    wait_until("the quoted reply", Duration::from_secs(20), async || {
        setup
            .messages(&room)
            .await
            .iter()
            .any(|e| e["content"]["body"] == "it itches")
    })
    .await;
    let quoted = setup
        .messages(&room)
        .await
        .into_iter()
        .find(|e| e["content"]["body"] == "it itches")
        .expect("the reply");
    assert_eq!(
        quoted["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        image_event.as_str()
    );

    // Alice reacts to the photo and answers it quoting it.
    let reaction = setup.alice.react(&room, &image_event, "👍").await;
    let answer = setup
        .alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "Please come in at 3pm.",
                   "m.relates_to": {"m.in_reply_to": {"event_id": image_event}}}),
        )
        .await;
    wait_until("both reach WhatsApp", Duration::from_secs(20), async || {
        setup.message_calls().await.len() >= 2
    })
    .await;
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        calls[0]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "reaction", "reaction": {"message_id": photo, "emoji": "👍"},
               "biz_opaque_callback_data": reaction})
    );
    assert_eq!(
        calls[1]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "text", "text": {"body": "Please come in at 3pm."},
               "context": {"message_id": photo}, "biz_opaque_callback_data": answer})
    );
    assert!(calls.iter().all(|c| c["status"] == 200), "{calls:#?}");
}

/// In a direct chat with the bridge bot, the staff's `start <phone>` opens a portal to a number
/// that has not written yet, and `status` answers.
#[tokio::test]
async fn the_staff_open_a_chat_from_the_management_room() {
    let setup = Setup::start().await;
    let bot = "@whatsappbot:localhost";
    let dm = setup
        .alice
        .create_room(json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bot]}))
        .await;
    wait_until("the bot joins", Duration::from_secs(20), async || {
        setup
            .alice
            .joined_members(&dm)
            .await
            .iter()
            .any(|m| m == bot)
    })
    .await;
    setup.alice.send_message(&dm, "start +1 555 000 2222").await;
    let room = setup.portal("15550002222").await;
    wait_until("the start answer", Duration::from_secs(20), async || {
        setup.messages(&dm).await.iter().any(|e| {
            e["sender"] == bot
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(&room))
        })
    })
    .await;
    assert!(
        setup
            .alice
            .joined_members(&room)
            .await
            .contains(&ghost_of("15550002222"))
    );
    setup.alice.send_message(&dm, "status").await;
    wait_until("the status answer", Duration::from_secs(20), async || {
        setup.messages(&dm).await.iter().any(|e| {
            e["sender"] == bot
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(PHONE_NUMBER_ID))
        })
    })
    .await;
}

/// A contact who writes STOP is sent nothing (the staff are told why) until they write START.
#[tokio::test]
async fn a_contact_who_writes_stop_is_not_messaged() {
    let setup = Setup::start().await;
    let bot = "@whatsappbot:localhost";
    setup.contact_writes(MARIA, "Maria Lopez", "STOP").await;
    let room = setup.portal(MARIA).await;
    wait_until("the opt-out notice", Duration::from_secs(20), async || {
        setup.messages(&room).await.iter().any(|e| {
            e["sender"] == bot
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("wrote STOP"))
        })
    })
    .await;
    let event = setup
        .alice
        .send_message(&room, "Your appointment is at 3pm")
        .await;
    wait_until("the failure notice", Duration::from_secs(20), async || {
        setup.messages(&room).await.iter().any(|e| {
            e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event.as_str()
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("opted out"))
        })
    })
    .await;
    assert!(setup.message_calls().await.is_empty());

    setup.contact_writes(MARIA, "Maria Lopez", "start").await;
    wait_until("the opt-in notice", Duration::from_secs(20), async || {
        setup.messages(&room).await.iter().any(|e| {
            e["sender"] == bot
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("wrote START"))
        })
    })
    .await;
    setup.alice.send_message(&room, "Welcome back").await;
    wait_until("the send", Duration::from_secs(20), async || {
        setup.message_calls().await.len() == 1
    })
    .await;
    assert_eq!(
        setup.message_calls().await[0]["body"]["text"]["body"],
        "Welcome back"
    );
}

/// A staff attachment is fetched from the Matrix media repository, uploaded to the Cloud API
/// media endpoint, and sent by its media id with the caption.
#[tokio::test]
async fn a_staff_attachment_is_reuploaded_to_whatsapp() {
    let setup = Setup::start().await;
    setup
        .contact_writes(MARIA, "Maria Lopez", "can you send the form?")
        .await;
    let room = setup.portal(MARIA).await;
    let bytes: Vec<u8> = b"%PDF-1.4 the consent form".to_vec();
    let upload = setup
        .alice
        .client()
        .request(
            complement_tests::Method::POST,
            "/_matrix/media/v3/upload?filename=consent.pdf",
        )
        .raw_json(bytes.clone())
        .send()
        .await;
    assert_eq!(upload.status, 200, "{}", upload.text);
    let mxc = upload.body["content_uri"].as_str().expect("an mxc URI");
    let file_event = setup
        .alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.file", "body": "Please sign this", "filename": "consent.pdf",
                   "url": mxc, "info": {"mimetype": "application/pdf", "size": bytes.len()}}),
        )
        .await;
    wait_until(
        "the document is sent",
        Duration::from_secs(20),
        async || !setup.message_calls().await.is_empty(),
    )
    .await;
    let calls = setup.calls().await;
    let media_calls: Vec<&Value> = calls
        .iter()
        .filter(|c| c["path"] == format!("/v21.0/{PHONE_NUMBER_ID}/media"))
        .collect();
    assert_eq!(media_calls.len(), 1, "{calls:#?}");
    assert_eq!(media_calls[0]["status"], 200, "{calls:#?}");
    let media_id = media_calls[0]["response"]["id"]
        .as_str()
        .expect("a media id")
        .to_owned();
    let sends = setup.message_calls().await;
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(
        sends[0]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "document",
               "document": {"id": media_id, "filename": "consent.pdf", "caption": "Please sign this"},
               "biz_opaque_callback_data": file_event})
    );
    assert_eq!(sends[0]["status"], 200, "{sends:#?}");
    // The simulator holds exactly the bytes Alice uploaded.
    let stored = setup
        .http
        .0
        .get(setup.sim(&format!("/media/{media_id}")))
        .send()
        .await
        .expect("answered")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&stored[..], &bytes[..]);
}
