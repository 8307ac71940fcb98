//! Event context: `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}` answers the event with
//! the events just before (newest first) and just after it (oldest first), `start` and `end`
//! tokens from which `/messages` carries on without gaps, the room state, and only what the reader
//! may see; the events carry their bundled edits and thread summaries.

use complement_tests::{
    Reply, Server, User, Value, chunk, encode, json, message_bodies, room_path,
};

async fn context(user: &User, room_id: &str, event_id: &str, limit: Option<u32>) -> Reply {
    let limit = limit.map_or(String::new(), |l| format!("?limit={l}"));
    user.get(&room_path(
        room_id,
        &format!("context/{}{limit}", encode(event_id)),
    ))
    .await
    .labelled(format!("as {}", user.localpart))
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One of the event lists of a context answer. None of its fields is required, so a server may
/// leave out an empty list; anything else than a list is wrong.
fn array(body: &Value, field: &str) -> Vec<Value> {
    match &body[field] {
        Value::Null => Vec::new(),
        Value::Array(events) => events.clone(),
        other => panic!("{field} is not a list of events but {other}: {body:#}"),
    }
}

fn token(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("the answer has no {field} token: {body:#}"))
        .to_owned()
}

/// A public room of alice's that bob joined, with alice's messages `m1`..`m{count}`; returns the
/// message event IDs in order.
async fn room_with_messages(server: &Server, count: u32) -> (User, User, String, Vec<String>) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let mut messages = Vec::new();
    for n in 1..=count {
        messages.push(alice.send_message(&room, &format!("m{n}")).await);
    }
    (alice, bob, room, messages)
}

/// The event IDs of the whole timeline of `room` as `reader` reads it forwards.
async fn timeline(reader: &User, room: &str) -> Vec<String> {
    event_ids(&reader.all_messages(room, "f", 100).await)
}

#[tokio::test]
async fn the_event_comes_with_its_neighbours_in_timeline_order() {
    let server = Server::start().await;
    let (_alice, bob, room, messages) = room_with_messages(&server, 9).await;
    let m5 = &messages[4];

    let reply = context(&bob, &room, m5, Some(4)).await;
    let body = reply.ok();

    assert_eq!(body["event"]["event_id"], m5.as_str(), "{reply}");
    assert_eq!(body["event"]["content"]["body"], "m5", "{reply}");
    let before = array(&body, "events_before");
    let after = array(&body, "events_after");
    assert_eq!(
        before.len() + after.len(),
        4,
        "the limit counts both sides together, and there is plenty on both:\n{reply}"
    );
    let expected_before: Vec<String> = messages[..4]
        .iter()
        .rev()
        .take(before.len())
        .cloned()
        .collect();
    let expected_after: Vec<String> = messages[5..].iter().take(after.len()).cloned().collect();
    assert_eq!(
        event_ids(&before),
        expected_before,
        "events_before goes back from m4, newest first:\n{reply}"
    );
    assert_eq!(
        event_ids(&after),
        expected_after,
        "events_after goes on from m6, oldest first:\n{reply}"
    );
}

#[tokio::test]
async fn limit_defaults_to_ten_and_zero_gives_just_the_event() {
    let server = Server::start().await;
    let (_alice, bob, room, messages) = room_with_messages(&server, 20).await;
    let m10 = &messages[9];

    let default = context(&bob, &room, m10, None).await.ok();
    let zero = context(&bob, &room, m10, Some(0)).await.ok();

    assert_eq!(
        array(&default, "events_before").len() + array(&default, "events_after").len(),
        10,
        "{default:#}"
    );
    assert_eq!(
        zero["event"]["event_id"],
        m10.as_str(),
        "the event comes even with limit=0: {zero:#}"
    );
    assert_eq!(
        array(&zero, "events_before"),
        Vec::<Value>::new(),
        "{zero:#}"
    );
    assert_eq!(
        array(&zero, "events_after"),
        Vec::<Value>::new(),
        "{zero:#}"
    );
}

#[tokio::test]
async fn start_and_end_continue_in_messages_without_gaps_or_overlap() {
    let server = Server::start().await;
    let (_alice, bob, room, messages) = room_with_messages(&server, 12).await;
    let all = timeline(&bob, &room).await;
    let m6 = &messages[5];
    let at = all
        .iter()
        .position(|id| id == m6)
        .expect("m6 is in the timeline");

    let body = context(&bob, &room, m6, Some(4)).await.ok();
    let before = array(&body, "events_before").len();
    let after = array(&body, "events_after").len();
    let start = token(&body, "start");
    let end = token(&body, "end");
    let earlier = bob.messages(&room, "b", Some(&start), 3).await;
    let later = bob.messages(&room, "f", Some(&end), 3).await;

    let mut expected_earlier: Vec<String> = all[at - before - 3..at - before].to_vec();
    expected_earlier.reverse();
    assert_eq!(
        event_ids(&chunk(&earlier)),
        expected_earlier,
        "backwards from start goes on just before events_before: {body:#}\n{earlier:#}"
    );
    assert_eq!(
        event_ids(&chunk(&later)),
        all[at + after + 1..at + after + 4].to_vec(),
        "forwards from end goes on just after events_after: {body:#}\n{later:#}"
    );
}

#[tokio::test]
async fn the_tokens_of_a_context_at_the_latest_event_lead_nowhere_new() {
    let server = Server::start().await;
    let (_alice, bob, room, messages) = room_with_messages(&server, 3).await;
    let latest = &messages[2];

    let body = context(&bob, &room, latest, Some(10)).await.ok();
    assert_eq!(
        array(&body, "events_after"),
        Vec::<Value>::new(),
        "{body:#}"
    );
    let later = bob
        .messages(&room, "f", Some(&token(&body, "end")), 10)
        .await;

    assert_eq!(
        chunk(&later),
        Vec::<Value>::new(),
        "nothing follows the latest event: {later:#}"
    );
    assert_eq!(
        message_bodies(&array(&body, "events_before"))[..2],
        ["m2", "m1"],
        "{body:#}"
    );
}

#[tokio::test]
async fn the_state_holds_the_create_event_and_the_members() {
    let server = Server::start().await;
    let (alice, bob, room, messages) = room_with_messages(&server, 3).await;

    let body = context(&bob, &room, &messages[1], Some(2)).await.ok();
    let state = array(&body, "state");

    let has = |event_type: &str, state_key: &str| {
        state
            .iter()
            .any(|e| e["type"] == event_type && e["state_key"] == state_key)
    };
    assert!(has("m.room.create", ""), "{state:#?}");
    assert!(has("m.room.member", &alice.user_id), "{state:#?}");
    assert!(has("m.room.member", &bob.user_id), "{state:#?}");
    let create = state
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .cloned()
        .unwrap_or_default();
    assert_eq!(create["room_id"], room.as_str(), "{create:#}");
}

#[tokio::test]
async fn events_hidden_from_a_later_joiner_are_left_out() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            }],
        }))
        .await;
    let hidden = alice.send_message(&room, "before bob joined 1").await;
    alice.send_message(&room, "before bob joined 2").await;
    bob.join(&room).await;
    let first_seen = alice.send_message(&room, "after bob joined 1").await;
    alice.send_message(&room, "after bob joined 2").await;

    let for_bob = context(&bob, &room, &first_seen, Some(20)).await.ok();
    let for_alice = context(&alice, &room, &first_seen, Some(20)).await.ok();

    assert_eq!(
        message_bodies(&array(&for_bob, "events_before")),
        Vec::<String>::new(),
        "bob cannot see what was said before he joined: {for_bob:#}"
    );
    let bob_before = array(&for_bob, "events_before");
    assert_eq!(
        (
            bob_before[0]["type"].as_str(),
            bob_before[0]["state_key"].as_str()
        ),
        (Some("m.room.member"), Some(bob.user_id.as_str())),
        "his own join is just before: {for_bob:#}"
    );
    assert_eq!(
        message_bodies(&array(&for_bob, "events_after")),
        ["after bob joined 2"]
    );
    assert_eq!(
        message_bodies(&array(&for_alice, "events_before")),
        ["before bob joined 2", "before bob joined 1"],
        "alice sees her own history: {for_alice:#}"
    );
    context(&bob, &room, &hidden, Some(20))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn an_unknown_event_has_no_context() {
    let server = Server::start().await;
    let (alice, bob, room, _messages) = room_with_messages(&server, 1).await;
    let elsewhere = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&elsewhere).await;
    let other_rooms = alice.send_message(&elsewhere, "in another room").await;

    context(&bob, &room, "$doesnotexist:localhost", None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    context(&bob, &room, &other_rooms, None)
        .await
        .labelled("an event of another room")
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn an_outsider_cannot_see_the_context_of_a_private_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    let message = alice.send_message(&room, "staff only").await;

    let reply = context(&outsider, &room, &message, None).await;

    assert!(
        (reply.status == 404 && reply.errcode() == Some("M_NOT_FOUND"))
            || (reply.status == 403 && reply.errcode() == Some("M_FORBIDDEN")),
        "expected 404 M_NOT_FOUND or 403 M_FORBIDDEN, got\n{reply}"
    );
}

#[tokio::test]
async fn events_in_the_context_carry_their_edits_and_thread_summaries() {
    let server = Server::start().await;
    let (alice, bob, room, _messages) = room_with_messages(&server, 1).await;
    let original = alice.send_message(&room, "Lunch on Fridya?").await;
    let edit = alice.edit(&room, &original, "Lunch on Friday?").await;
    let reply = bob.reply_in_thread(&room, &original, "Yes!").await;
    let next = bob.send_message(&room, "next").await;

    let around_original = context(&bob, &room, &original, Some(0)).await.ok();
    let around_next = context(&bob, &room, &next, Some(10)).await.ok();

    let bundle = &around_original["event"]["unsigned"]["m.relations"];
    assert_eq!(
        bundle["m.replace"]["event_id"],
        edit.as_str(),
        "{around_original:#}"
    );
    assert_eq!(
        bundle["m.thread"]["latest_event"]["event_id"],
        reply.as_str(),
        "{around_original:#}"
    );
    assert_eq!(bundle["m.thread"]["count"], 1, "{around_original:#}");
    assert_eq!(
        bundle["m.thread"]["current_user_participated"], true,
        "{around_original:#}"
    );
    let before = array(&around_next, "events_before");
    let neighbour = before
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .unwrap_or_else(|| panic!("the original is before `next`: {around_next:#}"));
    assert_eq!(
        neighbour["unsigned"]["m.relations"]["m.replace"]["event_id"],
        edit.as_str(),
        "{around_next:#}"
    );
    assert_eq!(
        neighbour["unsigned"]["m.relations"]["m.thread"]["count"], 1,
        "{around_next:#}"
    );
}
