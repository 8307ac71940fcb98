//! History older than a remote join, fetched on demand: alice on hs1 talks alone in her room,
//! bob on hs2 joins afterwards, and bob's backwards `/messages` from his sync's `prev_batch`
//! reaches past his join into alice's messages, which hs2 asks of hs1 with `/backfill`. Once
//! stored, the history is served from hs2 alone: it still pages with hs1 stopped.

use complement_tests::{Federation, User, Value, encode, json, room_path};

/// Every event of `room` in `user`'s backwards `/messages` from `from` to the end, newest first,
/// page by page (`limit` per page).
async fn page_back(user: &User, room: &str, from: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = from.to_owned();
    for _ in 0..50 {
        let reply = user
            .get(&room_path(
                room,
                &format!("messages?dir=b&limit={limit}&from={}", encode(&from)),
            ))
            .await
            .ok();
        events.extend(reply["chunk"].as_array().into_iter().flatten().cloned());
        match reply["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => return events,
        }
    }
    panic!("pagination did not end");
}

/// The bodies of the `m.room.message` events among `events`, oldest first.
fn bodies_oldest_first(events: &[Value]) -> Vec<String> {
    let mut bodies: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    bodies.reverse();
    bodies
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn messages_before_a_remote_join_are_backfilled_once_and_in_order() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let mut hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "shared"}
            }]
        }))
        .await;
    let sent: Vec<String> = (1..=20).map(|i| format!("message {i}")).collect();
    for body in &sent {
        alice.send_message(&room, body).await;
    }

    let path = format!(
        "/_matrix/client/v3/join/{}?server_name=hs1.test",
        encode(&room)
    );
    bob.post(&path, json!({})).await.ok();
    let synced = bob.get("/_matrix/client/v3/sync?timeout=0").await.ok();
    let prev_batch = synced["rooms"]["join"][&room]["timeline"]["prev_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("no prev_batch in bob's sync: {synced}"))
        .to_owned();

    // Small pages: the first one past the join triggers the backfill, the rest page through
    // what it stored.
    let first = page_back(&bob, &room, &prev_batch, 7).await;
    assert_eq!(bodies_oldest_first(&first), sent, "events: {first:?}");
    let ids = event_ids(&first);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "duplicates in {ids:?}");

    // The history is stored on hs2 now: with hs1 gone, the same pages come back.
    hs1.stop().await;
    let second = page_back(&bob, &room, &prev_batch, 7).await;
    assert_eq!(event_ids(&second), ids);
}

#[tokio::test]
async fn backfilled_history_still_obeys_history_visibility() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"}
            }]
        }))
        .await;
    for i in 1..=5 {
        alice.send_message(&room, &format!("before bob {i}")).await;
    }
    let path = format!(
        "/_matrix/client/v3/join/{}?server_name=hs1.test",
        encode(&room)
    );
    bob.post(&path, json!({})).await.ok();
    let synced = bob.get("/_matrix/client/v3/sync?timeout=0").await.ok();
    let prev_batch = synced["rooms"]["join"][&room]["timeline"]["prev_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("no prev_batch in bob's sync: {synced}"))
        .to_owned();

    let events = page_back(&bob, &room, &prev_batch, 10).await;
    assert_eq!(
        bodies_oldest_first(&events),
        Vec::<String>::new(),
        "history from before bob joined is hidden: {events:?}"
    );
}
