//! Reading history: `GET /rooms/{roomId}/messages` backwards from the latest event and forwards
//! from the first, with `from`/`to` tokens taken from earlier pages, `limit`, and a `filter`; and
//! long walks over 1,000 and 10,000 messages that must show every message once, in order.

use std::collections::HashSet;
use std::time::Instant;

use complement_tests::{Server, User, Value, chunk, json, message_bodies};
use tokio::task::JoinSet;

/// Sends `first..=last` as messages `"{prefix}{n}"`, one after the other.
async fn send_numbered(user: &User, room: &str, prefix: &str, first: u32, last: u32) {
    for n in first..=last {
        user.send_message(room, &format!("{prefix}{n}")).await;
    }
}

fn bodies(page: &Value) -> Vec<String> {
    message_bodies(&chunk(page))
}

fn numbered(prefix: &str, numbers: impl IntoIterator<Item = u32>) -> Vec<String> {
    numbers
        .into_iter()
        .map(|n| format!("{prefix}{n}"))
        .collect()
}

/// A room alice made and bob joined, with messages `m1`..`m{count}` from alice.
async fn room_with_messages(server: &Server, count: u32) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    send_numbered(&alice, &room, "m", 1, count).await;
    (alice, bob, room)
}

#[tokio::test]
async fn backwards_without_from_starts_at_the_latest_message() {
    let server = Server::start().await;
    let (_alice, bob, room) = room_with_messages(&server, 5).await;

    let first = bob.messages(&room, "b", None, 3).await;

    assert_eq!(bodies(&first), numbered("m", [5, 4, 3]), "{first:#}");
    assert!(
        first["start"].is_string(),
        "a page has a start token: {first:#}"
    );
    let end = first["end"]
        .as_str()
        .unwrap_or_else(|| panic!("more history remains, so there is an end token: {first:#}"));
    let second = bob.messages(&room, "b", Some(end), 3).await;
    let events = chunk(&second);
    assert_eq!(bodies(&second), numbered("m", [2, 1]), "{second:#}");
    assert_eq!(
        (events[2]["type"].as_str(), events[2]["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id.as_str())),
        "before the messages comes bob's join: {second:#}"
    );
}

#[tokio::test]
async fn forwards_without_from_starts_at_the_create_event() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_messages(&server, 5).await;

    let first = bob.messages(&room, "f", None, 2).await;

    let events = chunk(&first);
    assert_eq!(events[0]["type"], "m.room.create", "{first:#}");
    assert_eq!(events[1]["type"], "m.room.member", "{first:#}");
    assert_eq!(events[1]["state_key"], alice.user_id.as_str(), "{first:#}");
    let everything = bob.all_messages(&room, "f", 4).await;
    assert_eq!(message_bodies(&everything), numbered("m", 1..=5));
    assert_eq!(
        everything.last().map(|e| e["content"]["body"].clone()),
        Some(json!("m5")),
        "the walk forwards ends at the latest message"
    );
    let backwards = bob.all_messages(&room, "b", 4).await;
    assert_eq!(
        backwards.last().map(|e| e["type"].clone()),
        Some(json!("m.room.create")),
        "the walk backwards ends at the create event"
    );
}

#[tokio::test]
async fn paging_forwards_past_the_latest_event_ends_without_an_end_token() {
    // "If no further events are available (either because we have reached the start of the
    // timeline, or because the user does not have permission to see any more events), this
    // property is omitted from the response." Clients page until `end` is missing.
    let server = Server::start().await;
    let (_alice, bob, room) = room_with_messages(&server, 3).await;
    let latest = bob.messages(&room, "b", None, 1).await;
    let before_m3 = latest["end"].as_str().unwrap_or_default().to_owned();

    let last_page = bob.messages(&room, "f", Some(&before_m3), 10).await;
    assert_eq!(bodies(&last_page), ["m3"], "{last_page:#}");
    // A server may already leave `end` out of the page holding the latest event; if it gives
    // one, the page after it must be empty and the last.
    if let Some(end) = last_page["end"].as_str() {
        let beyond = bob.messages(&room, "f", Some(end), 10).await;
        assert_eq!(chunk(&beyond), Vec::<Value>::new(), "{beyond:#}");
        assert!(
            beyond.get("end").is_none(),
            "nothing follows the latest event, so there is no end token: {beyond:#}"
        );
    }
}

#[tokio::test]
async fn paging_forwards_from_a_backwards_page_returns_the_same_events() {
    let server = Server::start().await;
    let (_alice, bob, room) = room_with_messages(&server, 10).await;

    let back = bob.messages(&room, "b", None, 4).await;
    let end = back["end"].as_str().unwrap_or_default().to_owned();
    let forth = bob.messages(&room, "f", Some(&end), 4).await;

    assert_eq!(bodies(&back), numbered("m", [10, 9, 8, 7]));
    assert_eq!(
        bodies(&forth),
        numbered("m", [7, 8, 9, 10]),
        "a token lies between two events, so both directions meet at m7: {forth:#}"
    );
    let rest = bob.messages(&room, "b", Some(&end), 3).await;
    assert_eq!(
        bodies(&rest),
        numbered("m", [6, 5, 4]),
        "no gap going on backwards"
    );
}

#[tokio::test]
async fn a_to_token_stops_the_page() {
    let server = Server::start().await;
    let (_alice, bob, room) = room_with_messages(&server, 6).await;
    let latest = bob.messages(&room, "b", None, 3).await;
    let between_m3_and_m4 = latest["end"].as_str().unwrap_or_default().to_owned();

    let back = bob
        .messages_with(
            &room,
            &[("dir", "b"), ("limit", "50"), ("to", &between_m3_and_m4)],
        )
        .await
        .ok();
    let forth = bob
        .messages_with(
            &room,
            &[("dir", "f"), ("limit", "50"), ("to", &between_m3_and_m4)],
        )
        .await
        .ok();

    assert_eq!(bodies(&back), numbered("m", [6, 5, 4]), "{back:#}");
    assert_eq!(bodies(&forth), numbered("m", [1, 2, 3]), "{forth:#}");
}

#[tokio::test]
async fn limit_caps_the_page_and_defaults_to_ten() {
    let server = Server::start().await;
    let (_alice, bob, room) = room_with_messages(&server, 15).await;

    let default = bob.messages_with(&room, &[("dir", "b")]).await.ok();
    let one = bob.messages(&room, "b", None, 1).await;

    assert_eq!(
        bodies(&default),
        numbered("m", (6..=15).rev()),
        "{default:#}"
    );
    assert_eq!(chunk(&one).len(), 1, "{one:#}");
    assert_eq!(bodies(&one), ["m15"]);
}

#[tokio::test]
async fn a_filter_selects_event_types_and_senders() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let first = alice.send_message(&room, "a1").await;
    alice
        .send_event(&room, "care.plexus.ping", json!({"n": 1}))
        .await;
    bob.send_message(&room, "b1").await;
    bob.send_event(
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "👍"}}),
    )
    .await;
    alice
        .send_event(&room, "care.plexus.ping", json!({"n": 2}))
        .await;
    alice.send_message(&room, "a2").await;

    let page = async |filter: Value| -> Vec<Value> {
        let filter = filter.to_string();
        let reply = bob
            .messages_with(&room, &[("dir", "b"), ("limit", "50"), ("filter", &filter)])
            .await;
        chunk(&reply.ok())
    };
    let types = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    };

    let messages = page(json!({"types": ["m.room.message"]})).await;
    assert_eq!(message_bodies(&messages), ["a2", "b1", "a1"]);
    assert!(types(&messages).iter().all(|t| t == "m.room.message"));

    let not_chat = page(json!({"not_types": ["m.room.message", "m.room.member"]})).await;
    let not_chat_types = types(&not_chat);
    assert!(
        !not_chat_types.contains(&"m.room.message".to_owned())
            && !not_chat_types.contains(&"m.room.member".to_owned()),
        "{not_chat_types:?}"
    );
    assert!(
        not_chat_types.contains(&"m.reaction".to_owned()),
        "{not_chat_types:?}"
    );
    assert!(
        not_chat_types.contains(&"care.plexus.ping".to_owned()),
        "{not_chat_types:?}"
    );

    let from_bob =
        page(json!({"senders": [bob.user_id], "types": ["m.room.message", "m.reaction"]})).await;
    assert_eq!(types(&from_bob), ["m.reaction", "m.room.message"]);
    assert!(from_bob.iter().all(|e| e["sender"] == bob.user_id.as_str()));

    // "A '*' can be used as a wildcard to match any sequence of characters."
    let pings = page(json!({"types": ["care.plexus.*"]})).await;
    assert_eq!(types(&pings), ["care.plexus.ping", "care.plexus.ping"]);
    assert_eq!(pings[0]["content"], json!({"n": 2}));
}

#[tokio::test]
async fn a_filtered_walk_pages_through_matching_events_only() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    for n in 1..=6 {
        alice.send_message(&room, &format!("m{n}")).await;
        alice
            .send_event(&room, "care.plexus.ping", json!({"n": n}))
            .await;
    }
    let filter = json!({"types": ["m.room.message"]}).to_string();

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let mut pairs = vec![("dir", "b"), ("limit", "2"), ("filter", filter.as_str())];
        if let Some(from) = &from {
            pairs.push(("from", from.as_str()));
        }
        let page = alice.messages_with(&room, &pairs).await.ok();
        seen.extend(bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }

    assert_eq!(seen, numbered("m", (1..=6).rev()));
}

#[tokio::test]
async fn outsiders_cannot_read_the_history_of_a_private_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    alice.send_message(&room, "staff only").await;

    outsider
        .messages_with(&room, &[("dir", "b")])
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn an_unknown_direction_is_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;

    alice
        .messages_with(&room, &[("dir", "sideways")])
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

/// Sends `lanes * per_lane` messages: each lane sends its own numbered messages one after the
/// other, and the lanes run at the same time, alternating between `senders`. Within a lane the
/// order of sending is known, so the timeline must keep it.
async fn fill_concurrently(senders: &[User], room: &str, lanes: usize, per_lane: usize) {
    let mut tasks = JoinSet::new();
    for lane in 0..lanes {
        let sender = senders[lane % senders.len()].clone();
        let room = room.to_owned();
        tasks.spawn(async move {
            for n in 0..per_lane {
                sender
                    .send_message(&room, &format!("lane {lane:03} #{n:05}"))
                    .await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// `(event_id, body)` of the lane messages in `events`, in the given order.
fn lane_messages(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| {
            let body = e["content"]["body"].as_str()?;
            body.starts_with("lane ").then(|| {
                (
                    e["event_id"].as_str().unwrap_or_default().to_owned(),
                    body.to_owned(),
                )
            })
        })
        .collect()
}

/// Asserts that `timeline` (oldest first) holds every lane message exactly once, each lane in the
/// order it was sent.
fn assert_complete_and_ordered(timeline: &[(String, String)], lanes: usize, per_lane: usize) {
    let ids: HashSet<&str> = timeline.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), timeline.len(), "an event came back twice");
    let bodies: HashSet<&str> = timeline.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), timeline.len(), "a message came back twice");
    assert_eq!(
        timeline.len(),
        lanes * per_lane,
        "every message comes back exactly once"
    );
    let mut next = vec![0usize; lanes];
    for (_, body) in timeline {
        let (lane, n) = body
            .strip_prefix("lane ")
            .and_then(|rest| rest.split_once(" #"))
            .and_then(|(lane, n)| Some((lane.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("unexpected body {body:?}"));
        assert_eq!(
            n, next[lane],
            "lane {lane} is out of order: expected #{} next, got {body:?}",
            next[lane]
        );
        next[lane] += 1;
    }
}

/// Fills a room with `lanes * per_lane` messages, then walks it forwards and backwards with page
/// sizes that do not divide the total, and checks both walks.
async fn long_walk(server: &Server, lanes: usize, per_lane: usize, pages: (u32, u32)) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    let started = Instant::now();
    fill_concurrently(&[alice.clone(), bob.clone()], &room, lanes, per_lane).await;
    eprintln!(
        "sent {} messages in {:?}",
        lanes * per_lane,
        started.elapsed()
    );

    let walking = Instant::now();
    let mut backwards = lane_messages(&alice.all_messages(&room, "b", pages.1).await);
    backwards.reverse();
    assert_complete_and_ordered(&backwards, lanes, per_lane);
    let forwards = lane_messages(&bob.all_messages(&room, "f", pages.0).await);
    assert_complete_and_ordered(&forwards, lanes, per_lane);
    eprintln!("walked both ways in {:?}", walking.elapsed());

    assert!(
        forwards == backwards,
        "walking backwards shows the same events as walking forwards, in reverse"
    );
}

#[tokio::test]
async fn a_thousand_messages_page_without_gaps_or_duplicates() {
    let server = Server::start().await;
    long_walk(&server, 10, 100, (45, 37)).await;
}

#[tokio::test]
async fn ten_thousand_messages_page_without_gaps_or_duplicates() {
    // Sent 50 at a time; "normal" sync keeps the many commits cheap without changing what is
    // observable while the process lives.
    let server = Server::builder()
        .config("database.synchronous", "normal")
        .start()
        .await;
    long_walk(&server, 50, 200, (100, 73)).await;
}
