//! History visibility: what a member who joins later can read through `/messages` and
//! `GET /rooms/{roomId}/event/{eventId}`, for each `m.room.history_visibility` setting, and what a
//! member who left keeps.

use complement_tests::{Server, User, chunk, encode, json, message_bodies, room_path};

const BEFORE_INVITE: &str = "before bob was invited";
const WHILE_INVITED: &str = "while bob was invited";
const AFTER_JOIN: &str = "after bob joined";

/// Alice's invite-only room with `visibility`: she writes one message before inviting bob, one
/// while he is invited, and one after he joined. Returns bob and the room with the three events.
async fn later_joiner(
    server: &Server,
    visibility: &str,
) -> (User, String, [(String, &'static str); 3]) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": visibility},
            }],
        }))
        .await;
    assert_eq!(
        alice.state(&room, "m.room.history_visibility", "").await["history_visibility"],
        visibility
    );
    let before = alice.send_message(&room, BEFORE_INVITE).await;
    alice.invite(&room, &bob.user_id).await;
    let invited = alice.send_message(&room, WHILE_INVITED).await;
    bob.join(&room).await;
    let joined = alice.send_message(&room, AFTER_JOIN).await;
    (
        bob,
        room,
        [
            (before, BEFORE_INVITE),
            (invited, WHILE_INVITED),
            (joined, AFTER_JOIN),
        ],
    )
}

/// Asserts that `reader` sees exactly `visible` of `events` (oldest first) in `/messages` in both
/// directions, and that `/event` serves those and answers 404 for the rest. (Forwards is one page
/// from the start, so that these stories do not depend on how a forward walk ends.)
async fn assert_sees(reader: &User, room: &str, events: &[(String, &str)], visible: &[&str]) {
    let forwards = message_bodies(&chunk(&reader.messages(room, "f", None, 100).await));
    assert_eq!(forwards, visible, "{} reads forwards", reader.localpart);
    let mut backwards = message_bodies(&reader.all_messages(room, "b", 10).await);
    backwards.reverse();
    assert_eq!(backwards, visible, "{} reads backwards", reader.localpart);
    for (id, body) in events {
        let reply = reader
            .get(&room_path(room, &format!("event/{}", encode(id))))
            .await
            .labelled(body);
        if visible.contains(body) {
            assert_eq!(reply.ok()["content"]["body"], *body);
        } else {
            reply.assert_error(404, "M_NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn world_readable_history_is_all_there_for_a_later_joiner() {
    let server = Server::start().await;
    let (bob, room, events) = later_joiner(&server, "world_readable").await;

    assert_sees(
        &bob,
        &room,
        &events,
        &[BEFORE_INVITE, WHILE_INVITED, AFTER_JOIN],
    )
    .await;
}

#[tokio::test]
async fn shared_history_is_all_there_for_a_later_joiner() {
    let server = Server::start().await;
    let (bob, room, events) = later_joiner(&server, "shared").await;

    assert_sees(
        &bob,
        &room,
        &events,
        &[BEFORE_INVITE, WHILE_INVITED, AFTER_JOIN],
    )
    .await;
}

#[tokio::test]
async fn invited_history_starts_at_the_invitation() {
    let server = Server::start().await;
    let (bob, room, events) = later_joiner(&server, "invited").await;

    assert_sees(&bob, &room, &events, &[WHILE_INVITED, AFTER_JOIN]).await;
}

#[tokio::test]
async fn joined_history_starts_at_the_join() {
    let server = Server::start().await;
    let (bob, room, events) = later_joiner(&server, "joined").await;

    assert_sees(&bob, &room, &events, &[AFTER_JOIN]).await;
}

#[tokio::test]
async fn each_event_keeps_the_visibility_it_was_sent_under() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "content": {"history_visibility": "joined"},
            }],
        }))
        .await;
    let secret = alice.send_message(&room, "said under joined").await;
    alice
        .set_state(
            &room,
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "shared"}),
        )
        .await;
    let open = alice.send_message(&room, "said under shared").await;

    bob.join(&room).await;

    assert_sees(
        &bob,
        &room,
        &[(secret, "said under joined"), (open, "said under shared")],
        &["said under shared"],
    )
    .await;
}

#[tokio::test]
async fn a_member_who_left_keeps_what_they_saw_but_nothing_after() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let seen = alice.send_message(&room, "while bob was here").await;
    bob.leave(&room).await;

    let unseen = alice.send_message(&room, "after bob left").await;

    assert_sees(
        &bob,
        &room,
        &[(seen, "while bob was here"), (unseen, "after bob left")],
        &["while bob was here"],
    )
    .await;
}

#[tokio::test]
async fn anyone_may_read_the_state_and_history_of_a_world_readable_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let visitor = server.register_user("visitor").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Open notices",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}],
        }))
        .await;
    alice.send_message(&room, "visiting hours are 2 to 4").await;
    let private = alice.create_room(json!({"preset": "private_chat"})).await;

    assert_eq!(
        visitor.state(&room, "m.room.name", "").await["name"],
        "Open notices"
    );
    let history = visitor.messages_with(&room, &[("dir", "b")]).await.ok();
    assert!(
        message_bodies(&chunk(&history)).contains(&"visiting hours are 2 to 4".to_owned()),
        "{history:#}"
    );
    visitor
        .get(&complement_tests::state_path(&private, "m.room.name", ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
}
