//! Read receipts (`POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`) and read markers
//! (`POST /rooms/{roomId}/read_markers`): a joined member marks how far they have read, publicly
//! (`m.read`) or only for themselves (`m.read.private`), unthreaded, in the main timeline or in a
//! thread; the `m.fully_read` marker is kept as room account data and only moves forward. How
//! receipts reach other members through `/sync` is told in the sync stories.

use complement_tests::{Method, Server, User, Value, encode, json, room_path};

fn receipt_path(room_id: &str, receipt_type: &str, event_id: &str) -> String {
    room_path(
        room_id,
        &format!("receipt/{}/{}", encode(receipt_type), encode(event_id)),
    )
}

fn markers_path(room_id: &str) -> String {
    room_path(room_id, "read_markers")
}

/// The `m.fully_read` room account data of `user`, as they read it back.
async fn fully_read(user: &User, room_id: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read",
        encode(&user.user_id),
        encode(room_id)
    );
    user.get(&path).await.ok()
}

async fn room_with_bob(server: &Server) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    (alice, bob, room)
}

#[tokio::test]
async fn a_member_sends_public_private_and_threaded_receipts() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let first = alice.send_message(&room, "handover at 7").await;
    let root = alice.send_message(&room, "bed 4 needs a check").await;
    let reply = alice.reply_in_thread(&room, &root, "done at 7:30").await;

    let sent = bob
        .post(&receipt_path(&room, "m.read", &first), json!({}))
        .await;
    assert_eq!(sent.ok(), json!({}));
    for (kind, event, body) in [
        ("m.read.private", &first, json!({})),
        ("m.read", &root, json!({"thread_id": "main"})),
        ("m.read", &reply, json!({"thread_id": root})),
        ("m.read", &root, json!({"thread_id": root})),
        ("m.read.private", &reply, json!({"thread_id": root})),
        // A receipt for an earlier event than the last one is accepted and ignored.
        ("m.read", &first, json!({})),
    ] {
        bob.post(&receipt_path(&room, kind, event), body.clone())
            .await
            .labelled(format!("{kind} {body}"))
            .ok();
    }
    // The body is optional.
    bob.client()
        .request(Method::POST, &receipt_path(&room, "m.read", &reply))
        .send()
        .await
        .ok();
}

#[tokio::test]
async fn the_read_marker_is_room_account_data_that_only_moves_forward() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let first = alice.send_message(&room, "one").await;
    let second = alice.send_message(&room, "two").await;
    let third = alice.send_message(&room, "three").await;

    let set = bob
        .post(
            &markers_path(&room),
            json!({"m.fully_read": second, "m.read": second, "m.read.private": second}),
        )
        .await;
    assert_eq!(set.ok(), json!({}));
    assert_eq!(fully_read(&bob, &room).await, json!({"event_id": second}));

    bob.post(&markers_path(&room), json!({"m.fully_read": first}))
        .await
        .ok();
    assert_eq!(
        fully_read(&bob, &room).await,
        json!({"event_id": second}),
        "the marker does not move back"
    );
    bob.post(&receipt_path(&room, "m.fully_read", &third), json!({}))
        .await
        .ok();
    assert_eq!(fully_read(&bob, &room).await, json!({"event_id": third}));
    bob.post(&markers_path(&room), json!({})).await.ok();
    assert_eq!(fully_read(&bob, &room).await, json!({"event_id": third}));
}

#[tokio::test]
async fn only_joined_members_send_receipts_and_markers() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let carol = server.register_user("carol").await;
    let event = alice.send_message(&room, "members only").await;

    for user in [&carol, &bob] {
        if user.user_id == bob.user_id {
            bob.leave(&room).await;
        }
        user.post(&receipt_path(&room, "m.read", &event), json!({}))
            .await
            .labelled(&user.user_id)
            .assert_error(403, "M_FORBIDDEN");
        user.post(&markers_path(&room), json!({"m.fully_read": event}))
            .await
            .labelled(&user.user_id)
            .assert_error(403, "M_FORBIDDEN");
    }
    carol
        .post(
            &receipt_path("!nowhere:localhost", "m.read", &event),
            json!({}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn receipts_for_unknown_events_are_not_found() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let elsewhere = bob.create_room(json!({})).await;
    let foreign = bob.send_message(&elsewhere, "another room").await;
    alice.send_message(&room, "here").await;

    for event in ["$unknown", foreign.as_str()] {
        for kind in ["m.read", "m.read.private", "m.fully_read"] {
            bob.post(&receipt_path(&room, kind, event), json!({}))
                .await
                .labelled(format!("{kind} {event}"))
                .assert_error(404, "M_NOT_FOUND");
        }
        for field in ["m.fully_read", "m.read", "m.read.private"] {
            bob.post(&markers_path(&room), json!({ field: event }))
                .await
                .labelled(format!("{field} {event}"))
                .assert_error(404, "M_NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn bad_receipts_get_clear_errors() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let root = alice.send_message(&room, "thread root").await;
    let outside = alice.send_message(&room, "not in the thread").await;

    let invalid = [
        ("m.unread", &root, json!({})),
        ("m.read", &root, json!({"thread_id": ""})),
        ("m.read", &root, json!({"thread_id": "sideways"})),
        ("m.read", &outside, json!({"thread_id": root})),
        ("m.fully_read", &root, json!({"thread_id": "main"})),
    ];
    for (kind, event, body) in invalid {
        bob.post(&receipt_path(&room, kind, event), body.clone())
            .await
            .labelled(format!("{kind} {body}"))
            .assert_error(400, "M_INVALID_PARAM");
    }
    for body in [json!({"thread_id": 5}), json!({"thread_id": ["main"]})] {
        bob.post(&receipt_path(&room, "m.read", &root), body.clone())
            .await
            .labelled(&body)
            .assert_error(400, "M_BAD_JSON");
    }
    for body in [json!({"m.fully_read": 5}), json!({"m.read": ["$a"]})] {
        bob.post(&markers_path(&room), body.clone())
            .await
            .labelled(&body)
            .assert_error(400, "M_BAD_JSON");
    }
    bob.client()
        .request(Method::POST, &markers_path(&room))
        .raw_json("{\"m.read\": ")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
    bob.post(&receipt_path(&room, "m.read", "not-an-event-id"), json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    bob.anonymous()
        .post(&receipt_path(&room, "m.read", &root), json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
