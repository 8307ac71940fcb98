//! `/sync`: initial and incremental syncs, long-polling, invites and leaves in their sections,
//! limited timelines whose `prev_batch` joins `/messages` without a gap, and a sync loop that
//! neither misses nor repeats an event.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use complement_tests::{Server, User, Value, chunk, encode, json, message_bodies, wait_until};

async fn sync(user: &User, query: &str) -> Value {
    user.get(&format!("/_matrix/client/v3/sync{query}"))
        .await
        .ok()
}

fn joined<'a>(body: &'a Value, room: &str) -> &'a Value {
    &body["rooms"]["join"][room]
}

fn timeline_bodies(body: &Value, room: &str) -> Vec<String> {
    message_bodies(
        joined(body, room)["timeline"]["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    )
}

fn filter(limit: u32) -> String {
    encode(&json!({"room": {"timeline": {"limit": limit}}}).to_string())
}

#[tokio::test]
async fn an_initial_sync_shows_the_rooms_with_their_state_and_latest_events() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Ward 3"}))
        .await;
    alice.send_message(&room, "handover at 7").await;

    let body = sync(&alice, "").await;
    assert!(body["next_batch"].is_string());
    let room_sync = joined(&body, &room);
    assert_eq!(timeline_bodies(&body, &room), ["handover at 7"]);
    let events = room_sync["timeline"]["events"].as_array().unwrap();
    assert!(
        events.iter().all(|e| e.get("room_id").is_none()),
        "sync events carry no room_id"
    );
    let state = room_sync["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let everything: Vec<&Value> = state.iter().chain(events).collect();
    for kind in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(
            everything.iter().any(|e| e["type"] == kind),
            "{kind} is in the state or timeline: {room_sync:#}"
        );
    }
    assert_eq!(room_sync["summary"]["m.joined_member_count"], 1);
}

#[tokio::test]
async fn an_incremental_sync_brings_only_what_is_new() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let busy = alice.create_room(json!({})).await;
    let quiet = alice.create_room(json!({})).await;
    let since = sync(&alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    alice.send_message(&busy, "one").await;
    alice.send_message(&busy, "two").await;
    let body = sync(&alice, &format!("?since={since}")).await;

    assert_eq!(timeline_bodies(&body, &busy), ["one", "two"]);
    assert!(
        body["rooms"]["join"].get(&quiet).is_none(),
        "a room with nothing new is left out: {body:#}"
    );
    let next = body["next_batch"].as_str().unwrap();
    let again = sync(&alice, &format!("?since={next}&timeout=0")).await;
    assert!(
        again["rooms"]["join"]
            .as_object()
            .is_none_or(|j| j.is_empty()),
        "{again:#}"
    );
}

#[tokio::test]
async fn a_long_poll_wakes_as_soon_as_a_message_arrives() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let poll = tokio::spawn({
        let bob = bob.clone();
        async move { sync(&bob, &format!("?since={since}&timeout=20000")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send_message(&room, "are you there?").await;
    let body = poll.await.unwrap();

    assert_eq!(timeline_bodies(&body, &room), ["are you there?"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken at once, not at the timeout"
    );
}

#[tokio::test]
async fn an_idle_long_poll_returns_at_its_timeout_with_nothing() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    alice.create_room(json!({})).await;
    let since = sync(&alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let body = sync(&alice, &format!("?since={since}&timeout=700")).await;

    assert!(started.elapsed() >= Duration::from_millis(650), "it waited");
    assert!(
        body["rooms"]["join"]
            .as_object()
            .is_none_or(|j| j.is_empty())
    );
    // The event position is where it was: nothing happened in the room.
    let events_position = |token: &str| token.split('_').nth(1).map(str::to_owned);
    assert_eq!(
        events_position(body["next_batch"].as_str().unwrap()),
        events_position(&since)
    );
}

#[tokio::test]
async fn the_invitee_sees_the_invitation_and_a_long_poll_wakes_for_it() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = tokio::spawn({
        let bob = bob.clone();
        async move { sync(&bob, &format!("?since={since}&timeout=20000")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Rota", "invite": [bob.user_id]}))
        .await;

    let body = poll.await.unwrap();
    let stripped = body["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no invite_state for {room} in {body:#}"))
        .clone();
    assert!(stripped.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "invite"
        && e["sender"] == alice.user_id.as_str()));
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Rota")
    );

    bob.join(&room).await;
    let next = body["next_batch"].as_str().unwrap();
    let after_join = sync(&bob, &format!("?since={next}")).await;
    assert!(
        after_join["rooms"]["join"].get(&room).is_some(),
        "the joined room moves to join: {after_join:#}"
    );
    assert!(after_join["rooms"]["invite"].get(&room).is_none());
}

#[tokio::test]
async fn a_room_left_since_the_token_is_in_the_leave_section() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    alice.send_message(&room, "before you go").await;
    bob.leave(&room).await;
    alice.send_message(&room, "after you left").await;
    let body = sync(&bob, &format!("?since={since}")).await;

    let left = &body["rooms"]["leave"][&room];
    let events = left["timeline"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(message_bodies(events), ["before you go"]);
    assert_eq!(events.last().unwrap()["content"]["membership"], "leave");
    assert!(body["rooms"]["join"].get(&room).is_none());
}

#[tokio::test]
async fn a_limited_timeline_joins_messages_without_a_gap() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let since = sync(&alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..25 {
        alice.send_message(&room, &format!("m{i}")).await;
    }

    let body = sync(&alice, &format!("?since={since}&filter={}", filter(10))).await;
    let room_sync = joined(&body, &room);
    assert_eq!(room_sync["timeline"]["limited"], true);
    let mut bodies = timeline_bodies(&body, &room);
    assert_eq!(bodies.len(), 10);
    let prev_batch = room_sync["timeline"]["prev_batch"].as_str().unwrap();
    let older = alice
        .messages_with(
            &room,
            &[
                ("dir", "b"),
                ("from", prev_batch),
                ("to", &since),
                ("limit", "100"),
            ],
        )
        .await
        .ok();
    let mut earlier = message_bodies(&chunk(&older));
    earlier.reverse();
    earlier.append(&mut bodies);
    let expected: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(earlier, expected);
}

#[tokio::test]
async fn a_sync_loop_sees_every_message_exactly_once() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let mut since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let senders: Vec<_> = (0..4)
        .map(|lane| {
            let alice = alice.clone();
            let room = room.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    alice.send_message(&room, &format!("{lane}-{i}")).await;
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 400 && Instant::now() < deadline {
        let body = sync(
            &bob,
            &format!("?since={since}&timeout=5000&filter={}", filter(100)),
        )
        .await;
        let room_sync = joined(&body, &room);
        assert_ne!(
            room_sync["timeline"]["limited"], true,
            "a loop keeping up never loses events"
        );
        seen.extend(timeline_bodies(&body, &room));
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 400, "every message once");
    assert_eq!(unique.len(), 400, "no message twice");
    let history = bob.all_messages(&room, "f", 100).await;
    let in_history: Vec<String> = message_bodies(&history);
    assert_eq!(seen, in_history, "sync and /messages agree on the order");
    // Some of those answers came from the long-poll's in-memory fast path, so both paths agree.
    let metrics = server.client().get("/metrics").await.text;
    let from_memory = metrics
        .lines()
        .find(|l| l.starts_with("plexus_sync_answers_total{path=\"memory\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        from_memory > 0,
        "the fast path answered some syncs:\n{metrics}"
    );
}

#[tokio::test]
async fn bad_tokens_and_filters_get_clear_errors() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice
        .get("/_matrix/client/v3/sync?since=garbage")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .get("/_matrix/client/v3/sync?filter=12345")
        .await
        .assert_error(404, "M_NOT_FOUND");
    server
        .client()
        .get("/_matrix/client/v3/sync")
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_initial_sync_of_a_long_room_sends_its_state_and_a_limited_timeline() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"name": "Ward 3"})).await;
    for i in 0..15 {
        alice.send_message(&room, &format!("m{i}")).await;
    }

    let body = sync(&alice, &format!("?filter={}", filter(5))).await;
    let room_sync = joined(&body, &room);
    assert_eq!(
        timeline_bodies(&body, &room),
        ["m10", "m11", "m12", "m13", "m14"]
    );
    assert_eq!(room_sync["timeline"]["limited"], true);
    let state = room_sync["state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{room_sync:#}"));
    for kind in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(
            state.iter().any(|e| e["type"] == kind),
            "{kind} is in the state: {room_sync:#}"
        );
    }
}

#[tokio::test]
async fn account_data_reaches_sync_globally_and_per_room_and_wakes_a_long_poll() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let since = sync(&alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let poll = tokio::spawn({
        let alice = alice.clone();
        let since = since.clone();
        async move { sync(&alice, &format!("?since={since}&timeout=20000")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let user = encode(&alice.user_id);
    alice
        .put(
            &format!("/_matrix/client/v3/user/{user}/account_data/care.plexus.rota"),
            json!({"shift": "night"}),
        )
        .await
        .ok();
    let body = poll.await.unwrap();
    let global = body["account_data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{body:#}"));
    assert!(
        global
            .iter()
            .any(|e| e["type"] == "care.plexus.rota" && e["content"]["shift"] == "night")
    );

    let next = body["next_batch"].as_str().unwrap().to_owned();
    alice
        .put(
            &format!(
                "/_matrix/client/v3/user/{user}/rooms/{}/tags/u.handover",
                encode(&room)
            ),
            json!({"order": 0.5}),
        )
        .await
        .ok();
    let body = sync(&alice, &format!("?since={next}")).await;
    let room_data = joined(&body, &room)["account_data"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{body:#}"))
        .clone();
    assert!(
        room_data
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.handover"]["order"] == 0.5)
    );
    let quiet = sync(
        &alice,
        &format!("?since={}&timeout=0", body["next_batch"].as_str().unwrap()),
    )
    .await;
    assert!(
        quiet["account_data"]["events"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "nothing repeats: {quiet:#}"
    );
}

#[tokio::test]
async fn messages_and_invites_from_ignored_users_are_not_synced() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let mallory = server.register_user("mallory").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    mallory.join(&room).await;
    let user = encode(&bob.user_id);
    bob.put(
        &format!("/_matrix/client/v3/user/{user}/account_data/m.ignored_user_list"),
        json!({"ignored_users": {mallory.user_id.clone(): {}}}),
    )
    .await
    .ok();
    let since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    mallory.send_message(&room, "spam").await;
    alice.send_message(&room, "real news").await;
    let dm = mallory.create_room(json!({"invite": [bob.user_id]})).await;
    let body = sync(&bob, &format!("?since={since}")).await;

    assert_eq!(timeline_bodies(&body, &room), ["real news"]);
    assert!(
        body["rooms"]["invite"].get(&dm).is_none(),
        "no invite from an ignored user: {body:#}"
    );
}

fn ephemeral_of<'a>(body: &'a Value, room: &str, kind: &str) -> Option<&'a Value> {
    joined(body, room)["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
}

#[tokio::test]
async fn typing_and_receipts_reach_the_other_members_and_wake_their_long_polls() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let message = alice.send_message(&room, "lunch?").await;
    // A token taken once Bob's unread count includes the message, so the long-poll below is woken
    // by the typing and not by the count catching up.
    let mut since = String::new();
    wait_until(
        "Bob's unread count includes the message",
        Duration::from_secs(10),
        async || {
            let body = sync(&bob, "").await;
            since = body["next_batch"].as_str().unwrap().to_owned();
            joined(&body, &room)["unread_notifications"]["notification_count"] == 1
        },
    )
    .await;

    let poll = tokio::spawn({
        let bob = bob.clone();
        let since = since.clone();
        async move { sync(&bob, &format!("?since={since}&timeout=20000")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let typing_path = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode(&room),
        encode(&alice.user_id)
    );
    alice
        .put(&typing_path, json!({"typing": true, "timeout": 10000}))
        .await
        .ok();
    let body = poll.await.unwrap();
    let typing = ephemeral_of(&body, &room, "m.typing").unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));

    let next = body["next_batch"].as_str().unwrap().to_owned();
    alice
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                encode(&room),
                encode(&message)
            ),
            json!({}),
        )
        .await
        .ok();
    let body = sync(&bob, &format!("?since={next}&timeout=10000")).await;
    let receipt = ephemeral_of(&body, &room, "m.receipt").unwrap_or_else(|| panic!("{body:#}"));
    assert!(
        receipt["content"][&message]["m.read"][&alice.user_id]["ts"].is_number(),
        "{receipt:#}"
    );
}

#[tokio::test]
async fn presence_of_room_mates_reaches_sync() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    alice
        .put(
            &format!(
                "/_matrix/client/v3/presence/{}/status",
                encode(&alice.user_id)
            ),
            json!({"presence": "unavailable", "status_msg": "on a break"}),
        )
        .await
        .ok();
    let body = sync(&bob, &format!("?since={since}&timeout=10000")).await;
    let events = body["presence"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{body:#}"));
    let alices = events
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(alices["content"]["presence"], "unavailable");
    assert_eq!(alices["content"]["status_msg"], "on a break");
}

fn lazy_filter(limit: u32, redundant: bool) -> String {
    encode(
        &json!({"room": {
            "timeline": {"limit": limit},
            "state": {"lazy_load_members": true, "include_redundant_members": redundant},
        }})
        .to_string(),
    )
}

fn state_members(body: &Value, room: &str) -> Vec<String> {
    let mut members: Vec<String> = joined(body, room)["state"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.member")
                .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    members
}

#[tokio::test]
async fn lazy_loaded_members_are_sent_exactly_when_needed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;
    for i in 0..5 {
        alice.send_message(&room, &format!("a{i}")).await;
    }

    let body = sync(&bob, &format!("?filter={}", lazy_filter(3, false))).await;
    assert_eq!(
        state_members(&body, &room),
        vec![alice.user_id.clone(), bob.user_id.clone()],
        "{body:#}"
    );
    assert_eq!(joined(&body, &room)["summary"]["m.joined_member_count"], 3);

    let since = body["next_batch"].as_str().unwrap().to_owned();
    carol.send_message(&room, "hello from carol").await;
    alice.send_message(&room, "hi carol").await;
    let body = sync(
        &bob,
        &format!("?since={since}&filter={}", lazy_filter(3, false)),
    )
    .await;
    assert_eq!(
        state_members(&body, &room),
        vec![carol.user_id.clone()],
        "only carol is new to bob's device; alice was sent already: {body:#}"
    );

    let since = body["next_batch"].as_str().unwrap().to_owned();
    alice.send_message(&room, "again").await;
    let redundant = sync(
        &bob,
        &format!("?since={since}&filter={}", lazy_filter(3, true)),
    )
    .await;
    assert!(
        state_members(&redundant, &room).contains(&alice.user_id),
        "redundant members are resent when asked: {redundant:#}"
    );
}

#[tokio::test]
async fn an_initial_sync_of_many_rooms_has_every_room_whole() {
    // Enough rooms that the server reads them in several chunks at once.
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut rooms = Vec::new();
    for i in 0..60 {
        let room = alice
            .create_room(json!({"name": format!("ward {i}")}))
            .await;
        alice.send_message(&room, &format!("round {i}")).await;
        rooms.push(room);
    }
    let body = sync(&alice, "").await;
    let joined_rooms = body["rooms"]["join"].as_object().unwrap();
    assert_eq!(joined_rooms.len(), 60);
    for (i, room) in rooms.iter().enumerate() {
        let timeline = joined(&body, room)["timeline"]["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{room}: {:#}", joined(&body, room)))
            .clone();
        let bodies = message_bodies(&timeline);
        assert_eq!(bodies, vec![format!("round {i}")], "{room}");
        let state = joined(&body, room)["state"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let name = state
            .iter()
            .chain(&timeline)
            .find(|e| e["type"] == "m.room.name")
            .unwrap_or_else(|| panic!("{room} has its name"));
        assert_eq!(name["content"]["name"], format!("ward {i}"));
    }
}
