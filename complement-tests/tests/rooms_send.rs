//! Sending events: `PUT /rooms/{roomId}/send/{eventType}/{txnId}` for every kind of message a care
//! team sends, reading them back with `GET /rooms/{roomId}/event/{eventId}` and `/messages`;
//! transaction IDs (idempotent per device, also across a crash); and the refusals (non-members,
//! unknown rooms, content that is not an object, events over 65,536 bytes).

use complement_tests::{
    Reply, Server, User, Value, chunk, encode, json, message_bodies, now_ms, room_path, txn_id,
};

/// `PUT /rooms/{roomId}/send/{type}/{txnId}` with `content`, returning the reply unchecked.
async fn send(user: &User, room: &str, event_type: &str, txn: &str, content: Value) -> Reply {
    user.put(
        &room_path(
            room,
            &format!("send/{}/{}", encode(event_type), encode(txn)),
        ),
        content,
    )
    .await
}

fn event_id(reply: &Reply) -> String {
    reply.ok()["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in\n{reply}"))
        .to_owned()
}

/// How often `body` occurs among the message bodies of the whole room.
async fn count_body(user: &User, room: &str, body: &str) -> usize {
    let events = user.all_messages(room, "b", 100).await;
    message_bodies(&events)
        .iter()
        .filter(|b| b.as_str() == body)
        .count()
}

/// The events of a care team's day, as `(label, type, content)`; the reaction points at `target`.
fn catalogue(target: &str, patient: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "m.text with HTML",
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "**Handover** at 14:00 ✅",
                "format": "org.matrix.custom.html",
                "formatted_body": "<strong>Handover</strong> at 14:00 ✅",
            }),
        ),
        (
            "m.notice",
            "m.room.message",
            json!({"msgtype": "m.notice", "body": "Medication round starts in 10 minutes"}),
        ),
        (
            "m.emote",
            "m.room.message",
            json!({"msgtype": "m.emote", "body": "waves to the night shift"}),
        ),
        (
            "m.image",
            "m.room.message",
            json!({
                "msgtype": "m.image",
                "body": "wound-day3.png",
                "url": "mxc://localhost/wound-day3",
                "info": {
                    "mimetype": "image/png", "w": 640, "h": 480, "size": 123_456,
                    "thumbnail_url": "mxc://localhost/wound-day3-thumb",
                    "thumbnail_info": {"mimetype": "image/jpeg", "w": 96, "h": 72, "size": 2048},
                },
            }),
        ),
        (
            "m.file",
            "m.room.message",
            json!({
                "msgtype": "m.file",
                "body": "care-plan.pdf",
                "filename": "care-plan.pdf",
                "url": "mxc://localhost/care-plan",
                "info": {"mimetype": "application/pdf", "size": 54_321},
            }),
        ),
        (
            "m.audio",
            "m.room.message",
            json!({
                "msgtype": "m.audio",
                "body": "handover.ogg",
                "url": "mxc://localhost/handover",
                "info": {"mimetype": "audio/ogg", "duration": 61_000, "size": 98_765},
            }),
        ),
        (
            "voice message",
            "m.room.message",
            json!({
                "msgtype": "m.audio",
                "body": "Voice message",
                "url": "mxc://localhost/voice",
                "info": {"mimetype": "audio/ogg", "duration": 4200, "size": 8000},
                "org.matrix.msc1767.audio": {"duration": 4200, "waveform": [0, 256, 512, 1024, 512]},
                "org.matrix.msc3245.voice": {},
            }),
        ),
        (
            "m.video",
            "m.room.message",
            json!({
                "msgtype": "m.video",
                "body": "mobility-exercise.mp4",
                "url": "mxc://localhost/exercise",
                "info": {
                    "mimetype": "video/mp4", "w": 1280, "h": 720,
                    "duration": 30_000, "size": 1_000_000,
                },
            }),
        ),
        (
            "m.location",
            "m.room.message",
            json!({
                "msgtype": "m.location",
                "body": "Ward B entrance",
                "geo_uri": "geo:51.5008,0.1247;u=35",
            }),
        ),
        (
            "m.reaction",
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}}),
        ),
        (
            "m.call.invite",
            "m.call.invite",
            json!({
                "call_id": "call-ward-b-1",
                "party_id": "alice-phone",
                "version": "1",
                "lifetime": 60_000,
                "offer": {"type": "offer", "sdp": "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\n"},
            }),
        ),
        (
            "care.plexus.consent",
            "care.plexus.consent",
            json!({
                "subject": patient,
                "scope": ["photos", "recordings"],
                "granted": true,
                "recorded_by": "Alice, RN",
                "expires_ts": 1_767_225_600_000_u64,
                "witness": null,
                "notes": {"language": "nl", "text": "Toestemming gegeven — ✍️"},
            }),
        ),
    ]
}

#[tokio::test]
async fn every_kind_of_event_passes_through_unchanged() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let target = bob.send_message(&room, "Patient in bed 4 is awake").await;

    let mut sent = Vec::new();
    for (label, event_type, content) in catalogue(&target, &bob.user_id) {
        let reply = send(&alice, &room, event_type, &txn_id(), content.clone()).await;
        sent.push((label, event_type, content, event_id(&reply.labelled(label))));
    }

    for (label, event_type, content, id) in &sent {
        let event = bob.event(&room, id).await;
        assert_eq!(event["type"], *event_type, "{label}: {event:#}");
        assert_eq!(event["content"], *content, "{label}: content changed");
        assert_eq!(event["sender"], alice.user_id.as_str(), "{label}");
        assert_eq!(event["room_id"], room.as_str(), "{label}");
        assert_eq!(event["event_id"], id.as_str(), "{label}");
        let ts = event["origin_server_ts"].as_u64().unwrap_or(0);
        assert!(
            ts.abs_diff(now_ms()) < 60_000,
            "{label}: origin_server_ts {ts} is not about now: {event:#}"
        );
        assert!(
            event.get("state_key").is_none(),
            "{label}: a message event has no state_key: {event:#}"
        );
    }
    let mut timeline = bob.all_messages(&room, "b", 100).await;
    timeline.reverse();
    let tail: Vec<(String, Value)> = timeline
        .iter()
        .skip_while(|e| e["event_id"] != target.as_str())
        .skip(1)
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_owned(),
                e["content"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value)> = sent
        .iter()
        .map(|(_, _, content, id)| (id.clone(), content.clone()))
        .collect();
    assert_eq!(tail, expected, "/messages shows the same events, in order");
}

#[tokio::test]
async fn retrying_a_transaction_returns_the_same_event_even_after_a_crash() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let content = json!({"msgtype": "m.text", "body": "Bed 4 needs fresh linen"});

    let first = event_id(&send(&alice, &room, "m.room.message", "linen-1", content.clone()).await);
    let retry = event_id(&send(&alice, &room, "m.room.message", "linen-1", content.clone()).await);
    assert_eq!(
        retry, first,
        "a retry with the same txnId is the same event"
    );

    server.kill9().await;
    server.restart().await;

    let after_crash =
        event_id(&send(&alice, &room, "m.room.message", "linen-1", content.clone()).await);
    assert_eq!(
        after_crash, first,
        "the transaction is remembered across a crash"
    );
    assert_eq!(
        count_body(&bob, &room, "Bed 4 needs fresh linen").await,
        1,
        "only one message reached the room"
    );
}

#[tokio::test]
async fn the_same_txn_id_from_another_device_or_user_is_a_new_event() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let alice_phone = alice.login_new_device().await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let content = json!({"msgtype": "m.text", "body": "on my way"});

    let from_laptop = event_id(&send(&alice, &room, "m.room.message", "m1", content.clone()).await);
    let from_phone =
        event_id(&send(&alice_phone, &room, "m.room.message", "m1", content.clone()).await);
    let from_bob = event_id(&send(&bob, &room, "m.room.message", "m1", content.clone()).await);

    assert_ne!(
        from_phone, from_laptop,
        "another device is another transaction"
    );
    assert_ne!(from_bob, from_laptop, "another user is another transaction");
    assert_ne!(from_bob, from_phone);
    assert_eq!(count_body(&bob, &room, "on my way").await, 3);
    let phone_event = bob.event(&room, &from_phone).await;
    assert_eq!(phone_event["sender"], alice.user_id.as_str());
}

#[tokio::test]
async fn the_same_txn_id_in_another_room_is_a_new_event() {
    // "The homeserver should identify a request as a retransmission if the transaction ID is the
    // same as a previous request, and the path of the HTTP request is the same." The room is part
    // of the path.
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let ward_a = alice.create_room(json!({"name": "Ward A"})).await;
    let ward_b = alice.create_room(json!({"name": "Ward B"})).await;
    let content = json!({"msgtype": "m.text", "body": "fire drill at noon"});

    let in_a = event_id(&send(&alice, &ward_a, "m.room.message", "drill", content.clone()).await);
    let in_b = event_id(&send(&alice, &ward_b, "m.room.message", "drill", content.clone()).await);

    assert_ne!(in_a, in_b);
    assert_eq!(
        alice.event(&ward_b, &in_b).await["room_id"],
        ward_b.as_str()
    );
    assert_eq!(count_body(&alice, &ward_a, "fire drill at noon").await, 1);
    assert_eq!(count_body(&alice, &ward_b, "fire drill at noon").await, 1);
}

#[tokio::test]
async fn only_the_sending_device_sees_its_transaction_id() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    let id = event_id(
        &send(
            &alice,
            &room,
            "m.room.message",
            "echo-me",
            json!({"msgtype": "m.text", "body": "echo"}),
        )
        .await,
    );

    let own = alice.event(&room, &id).await;
    assert_eq!(own["unsigned"]["transaction_id"], "echo-me", "{own:#}");
    let others = bob.event(&room, &id).await;
    assert!(
        others["unsigned"].get("transaction_id").is_none(),
        "another user does not see the transaction ID: {others:#}"
    );
}

#[tokio::test]
async fn only_joined_members_can_send() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let invitee = server.register_user("invitee").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    bob.leave(&room).await;
    alice.invite(&room, &invitee.user_id).await;
    let content = json!({"msgtype": "m.text", "body": "let me in"});

    for user in [&outsider, &bob, &invitee] {
        send(user, &room, "m.room.message", &txn_id(), content.clone())
            .await
            .labelled(&user.localpart)
            .assert_error(403, "M_FORBIDDEN");
        user.put(
            &complement_tests::state_path(&room, "m.room.topic", ""),
            json!({"topic": "hijacked"}),
        )
        .await
        .labelled(&user.localpart)
        .assert_error(403, "M_FORBIDDEN");
    }

    assert_eq!(count_body(&alice, &room, "let me in").await, 0);
}

#[tokio::test]
async fn sending_to_an_unknown_room_fails() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = format!("!nosuchroom:{}", server.server_name());

    let reply = send(
        &alice,
        &room,
        "m.room.message",
        &txn_id(),
        json!({"msgtype": "m.text", "body": "hello?"}),
    )
    .await;

    assert!(
        matches!(
            (reply.status, reply.errcode()),
            (403, Some("M_FORBIDDEN")) | (404, Some("M_NOT_FOUND"))
        ),
        "expected 403 M_FORBIDDEN or 404 M_NOT_FOUND, got\n{reply}"
    );
}

#[tokio::test]
async fn content_that_is_not_a_json_object_is_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;

    let cases: [(&str, &[u8]); 5] = [
        ("an array", b"[\"body\", \"hello\"]"),
        ("a string", b"\"hello\""),
        ("a number", b"42"),
        ("null", b"null"),
        ("broken JSON", b"{\"body\": "),
    ];
    for (label, raw) in cases {
        for path in [
            room_path(&room, &format!("send/m.room.message/{}", txn_id())),
            complement_tests::state_path(&room, "care.plexus.note", ""),
        ] {
            let reply = alice
                .client()
                .request(complement_tests::Method::PUT, &path)
                .raw_json(raw.to_vec())
                .send()
                .await
                .labelled(label);
            assert!(
                reply.status == 400 && matches!(reply.errcode(), Some("M_NOT_JSON" | "M_BAD_JSON")),
                "expected 400 M_NOT_JSON or M_BAD_JSON, got\n{reply}"
            );
        }
    }

    let events = alice.all_messages(&room, "b", 100).await;
    assert!(
        events
            .iter()
            .all(|e| e["type"] != "m.room.message" && e["type"] != "care.plexus.note"),
        "nothing was sent: {events:#?}"
    );
}

#[tokio::test]
async fn an_event_over_65536_bytes_is_too_large() {
    let server = Server::builder()
        .config("limits.max_request_bytes", 200_000)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let big = "x".repeat(70_000);

    send(
        &alice,
        &room,
        "m.room.message",
        &txn_id(),
        json!({"msgtype": "m.text", "body": big}),
    )
    .await
    .assert_error(413, "M_TOO_LARGE");
    alice
        .put(
            &complement_tests::state_path(&room, "care.plexus.note", ""),
            json!({"text": big}),
        )
        .await
        .assert_error(413, "M_TOO_LARGE");

    // Just under the limit still goes through, so the refusal above is about the event's size.
    let fits = "y".repeat(60_000);
    let id = alice.send_message(&room, &fits).await;
    assert_eq!(
        bob.event(&room, &id).await["content"]["body"],
        fits.as_str()
    );
}

#[tokio::test]
async fn an_unknown_event_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;

    alice
        .get(&room_path(
            &room,
            &format!("event/{}", encode("$nosuchevent")),
        ))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn an_event_is_only_found_in_its_own_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let ward_a = alice.create_room(json!({})).await;
    let ward_b = alice.create_room(json!({})).await;
    let id = alice.send_message(&ward_a, "only in A").await;

    alice
        .get(&room_path(&ward_b, &format!("event/{}", encode(&id))))
        .await
        .assert_error(404, "M_NOT_FOUND");

    let page = alice.messages(&ward_a, "b", None, 1).await;
    assert_eq!(message_bodies(&chunk(&page)), ["only in A"]);
}
