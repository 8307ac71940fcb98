//! Jumping to a date: `/timestamp_to_event` finds the event nearest to a time, forwards or
//! backwards, among the events the asking user may see.

use std::time::Duration;

use complement_tests::{Reply, Server, User, encode, json, query};

fn jump_path(room_id: &str, pairs: &[(&str, &str)]) -> String {
    format!(
        "/_matrix/client/v1/rooms/{}/timestamp_to_event{}",
        encode(room_id),
        query(pairs)
    )
}

async fn jump(user: &User, room_id: &str, ts: u64, dir: &str) -> Reply {
    let ts = ts.to_string();
    user.get(&jump_path(room_id, &[("ts", &ts), ("dir", dir)]))
        .await
        .labelled(format!("ts={ts} dir={dir}"))
}

/// The event ID a jump found, asserting that its timestamp is reported too.
async fn found(user: &User, room_id: &str, ts: u64, dir: &str) -> String {
    let body = jump(user, room_id, ts, dir).await.ok();
    assert!(body["origin_server_ts"].is_u64(), "{body:#}");
    body["event_id"].as_str().unwrap_or_default().to_owned()
}

/// Sends a message a few milliseconds after the previous one, so no two share a timestamp;
/// returns its event ID and `origin_server_ts`.
async fn message_at(user: &User, room_id: &str, body: &str) -> (String, u64) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = user.send_message(room_id, body).await;
    let ts = user.event(room_id, &id).await["origin_server_ts"]
        .as_u64()
        .unwrap_or_else(|| panic!("{id} has no origin_server_ts"));
    (id, ts)
}

#[tokio::test]
async fn a_jump_finds_the_nearest_event_in_each_direction() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let (breakfast, t1) = message_at(&alice, &room, "breakfast").await;
    let (lunch, t2) = message_at(&alice, &room, "lunch").await;
    let (dinner, t3) = message_at(&alice, &room, "dinner").await;

    // Exactly at an event's time, both directions find that event.
    assert_eq!(found(&alice, &room, t2, "f").await, lunch);
    assert_eq!(found(&alice, &room, t2, "b").await, lunch);
    // Between two events, forwards finds the later one and backwards the earlier one.
    assert_eq!(found(&alice, &room, t1 + 1, "f").await, lunch);
    assert_eq!(found(&alice, &room, t3 - 1, "b").await, lunch);
    assert_eq!(found(&alice, &room, t3 + 60_000, "b").await, dinner);
    assert_eq!(found(&alice, &room, t1, "b").await, breakfast);

    // Before the room existed, forwards finds its creation.
    let first = jump(&alice, &room, 0, "f").await.ok();
    let create = alice.state_event(&room, "m.room.create", "").await;
    assert_eq!(first["event_id"], create["event_id"]);
    assert_eq!(first["origin_server_ts"], create["origin_server_ts"]);

    // Nothing lies beyond either end.
    jump(&alice, &room, t3 + 60_000, "f")
        .await
        .assert_error(404, "M_NOT_FOUND");
    jump(&alice, &room, 0, "b")
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn events_hidden_from_the_user_are_skipped() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                               "content": {"history_visibility": "joined"}}],
        }))
        .await;
    let (secret, t_secret) = message_at(&alice, &room, "before bob came").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    bob.join(&room).await;
    let (welcome, _) = message_at(&alice, &room, "welcome bob").await;

    // Alice sees her message; bob, who joined after it, is taken to his own join instead.
    assert_eq!(found(&alice, &room, t_secret, "f").await, secret);
    let bobs_join = bob.state_event(&room, "m.room.member", &bob.user_id).await;
    assert_eq!(
        found(&bob, &room, t_secret, "f").await,
        bobs_join["event_id"]
    );
    // Backwards he passes over it to the room's set-up, which happened before "joined" took
    // effect and so is shared with every member.
    let earlier = jump(&bob, &room, t_secret, "b").await.ok();
    assert_ne!(earlier["event_id"], secret);
    assert!(
        earlier["origin_server_ts"].as_u64() < Some(t_secret),
        "{earlier:#}"
    );
    let join_ts = bobs_join["origin_server_ts"].as_u64().unwrap_or_default();
    assert_eq!(found(&bob, &room, join_ts + 1, "f").await, welcome);
}

#[tokio::test]
async fn outsiders_may_jump_only_in_world_readable_rooms() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let eve = server.register_user("eve").await;
    let private = alice.create_room(json!({"preset": "private_chat"})).await;
    let (_, ts) = message_at(&alice, &private, "members only").await;
    jump(&eve, &private, ts, "b")
        .await
        .assert_error(403, "M_FORBIDDEN");
    jump(&eve, "!nowhere:localhost", ts, "b")
        .await
        .assert_error(403, "M_FORBIDDEN");

    let open = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                               "content": {"history_visibility": "world_readable"}}],
        }))
        .await;
    let (notice, ts) = message_at(&alice, &open, "read by anyone").await;
    assert_eq!(found(&eve, &open, ts, "b").await, notice);
}

#[tokio::test]
async fn malformed_jumps_are_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let cases = [
        (vec![("dir", "f")], "M_MISSING_PARAM"),
        (vec![("ts", "1")], "M_MISSING_PARAM"),
        (vec![("ts", "1"), ("dir", "sideways")], "M_INVALID_PARAM"),
        (vec![("ts", "yesterday"), ("dir", "f")], "M_INVALID_PARAM"),
        (vec![("ts", "-5"), ("dir", "f")], "M_INVALID_PARAM"),
    ];
    for (pairs, errcode) in cases {
        alice
            .get(&jump_path(&room, &pairs))
            .await
            .labelled(format!("{pairs:?}"))
            .assert_error(400, errcode);
    }
    alice
        .anonymous()
        .get(&jump_path(&room, &[("ts", "1"), ("dir", "f")]))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
