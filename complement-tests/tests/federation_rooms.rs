//! Users of one Plexus server in rooms of another: bob on hs2 joins alice's room on hs1 (by room
//! id with `server_name`, and by alias), sees it with its name in `/sync`, messages flow both
//! ways, both servers agree on the members, and bob's leave reaches hs1. Joining through a
//! server that is down, or a room nobody has, is a clear error and leaves nothing behind.

use std::time::Duration;

use complement_tests::{Federation, Server, User, Value, encode, json, room_path, wait_until};

const WAIT: Duration = Duration::from_secs(20);

async fn two_servers(federation: &Federation) -> (Server, Server) {
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    (hs1, hs2)
}

/// A full `/sync` of `user`.
async fn sync(user: &User) -> Value {
    user.get("/_matrix/client/v3/sync?timeout=0").await.ok()
}

/// The state events of `room` in a full `/sync`'s join section (state and timeline).
fn synced_room_events(sync: &Value, room: &str) -> Vec<Value> {
    let joined = &sync["rooms"]["join"][room];
    joined["state"]["events"]
        .as_array()
        .into_iter()
        .chain(joined["timeline"]["events"].as_array())
        .flatten()
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_user_joins_a_room_of_another_server_and_messages_flow_both_ways() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(
            json!({"preset": "public_chat", "name": "Garden", "room_alias_name": "garden"}),
        )
        .await;

    let joined = bob.join_via(&room, "hs1.test").await.ok();
    assert_eq!(joined["room_id"], room.as_str());

    // hs2 now has the room, with its name, in bob's /sync.
    let synced = sync(&bob).await;
    let events = synced_room_events(&synced, &room);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Garden"),
        "no room name in bob's sync: {synced}"
    );

    // Alice speaks on hs1; bob hears it on hs2.
    alice.send_message(&room, "hello from hs1").await;
    wait_until("bob sees alice's message", WAIT, async || {
        bob.latest_bodies(&room)
            .await
            .contains(&"hello from hs1".to_owned())
    })
    .await;

    // Bob answers on hs2; alice hears it on hs1.
    bob.send_message(&room, "hello from hs2").await;
    wait_until("alice sees bob's message", WAIT, async || {
        alice
            .latest_bodies(&room)
            .await
            .contains(&"hello from hs2".to_owned())
    })
    .await;

    // Both servers agree on who is in the room.
    let expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(alice.joined_members(&room).await, sorted);
    assert_eq!(bob.joined_members(&room).await, sorted);

    // Bob leaves; hs1 learns of it.
    bob.leave(&room).await;
    wait_until("alice sees bob leave", WAIT, async || {
        alice.joined_members(&room).await == vec![alice.user_id.clone()]
    })
    .await;
}

#[tokio::test]
async fn a_user_joins_a_room_of_another_server_by_its_alias() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "Porch", "room_alias_name": "porch"}))
        .await;

    assert_eq!(bob.join("#porch:hs1.test").await, room);
    assert_eq!(bob.joined_rooms().await, vec![room.clone()]);
    bob.send_message(&room, "found it by alias").await;
    wait_until("alice sees bob's message", WAIT, async || {
        alice
            .latest_bodies(&room)
            .await
            .contains(&"found it by alias".to_owned())
    })
    .await;
}

#[tokio::test]
async fn joining_through_a_server_that_is_down_or_lacks_the_room_fails_cleanly() {
    let federation = Federation::new(["hs1.test", "hs2.test", "hs3.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    // hs3 is never started.
    let reply = bob.join_via("!lost:hs3.test", "hs3.test").await;
    assert!(
        reply.status == 502 || reply.status == 404,
        "a server that is down: {reply}"
    );
    assert!(
        matches!(reply.errcode(), Some("M_UNKNOWN" | "M_NOT_FOUND")),
        "a server that is down: {reply}"
    );

    // hs1 does not have this room.
    let unknown = "!nowhere:hs1.test";
    bob.join_via(unknown, "hs1.test")
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Nothing was stored: bob is in no room.
    let synced = sync(&bob).await;
    assert!(
        synced["rooms"]["join"]
            .as_object()
            .is_none_or(|rooms| rooms.is_empty()),
        "bob's sync shows a room: {synced}"
    );
    assert!(bob.joined_rooms().await.is_empty());

    // Inviting a user of a server that is down fails the same way, and invites nobody.
    let reply = alice
        .post(
            &room_path(&room, "invite"),
            json!({"user_id": "@carol:hs3.test"}),
        )
        .await;
    assert_eq!(
        reply.status, 502,
        "inviting through a server that is down: {reply}"
    );
    assert_eq!(reply.errcode(), Some("M_UNKNOWN"), "{reply}");
    assert!(alice.members(&room, "?membership=invite").await.is_empty());

    // A server that is down is skipped for the next one: here the room id's own server.
    assert_eq!(
        bob.join_via(&room, "hs3.test").await.ok()["room_id"],
        room.as_str()
    );
    assert_eq!(bob.joined_rooms().await, vec![room]);
}

#[tokio::test]
async fn a_user_invited_from_another_server_sees_the_invite_and_joins() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Secret"}))
        .await;

    alice.invite(&room, &bob.user_id).await;
    assert_eq!(
        alice.members(&room, "?membership=invite").await,
        vec![(bob.user_id.clone(), "invite".to_owned())]
    );

    // Bob's /sync on hs2 shows the invite, with the room's name in its stripped state.
    let synced = sync(&bob).await;
    let invite = synced["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no invite for {room} in {synced}"));
    assert!(
        invite
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"),
        "no room name in the invite: {synced}"
    );
    assert!(
        invite.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "invite"
            && e["sender"] == alice.user_id.as_str()),
        "no invite event in the invite state: {synced}"
    );

    // Bob accepts by joining the room by its id: hs2 joins through the inviting server.
    let path = room_path(&room, "join");
    assert_eq!(
        bob.post(&path, json!({})).await.ok()["room_id"],
        room.as_str()
    );
    assert_eq!(bob.joined_rooms().await, vec![room.clone()]);

    alice.send_message(&room, "welcome").await;
    wait_until("bob sees alice's welcome", WAIT, async || {
        bob.latest_bodies(&room)
            .await
            .contains(&"welcome".to_owned())
    })
    .await;
    bob.send_message(&room, "thanks").await;
    wait_until("alice sees bob's thanks", WAIT, async || {
        alice
            .latest_bodies(&room)
            .await
            .contains(&"thanks".to_owned())
    })
    .await;
}

#[tokio::test]
async fn a_user_rejects_an_invite_from_another_server() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Not for bob"}))
        .await;
    alice.invite(&room, &bob.user_id).await;
    let synced = sync(&bob).await;
    assert!(
        synced["rooms"]["invite"].get(&room).is_some(),
        "no invite in {synced}"
    );

    let since = synced["next_batch"].as_str().unwrap_or_default().to_owned();

    bob.leave(&room).await;
    // Bob's next sync shows the room as left.
    let path = format!("/_matrix/client/v3/sync?timeout=0&since={}", encode(&since));
    let incremental = bob.get(&path).await.ok();
    assert!(
        incremental["rooms"]["leave"].get(&room).is_some(),
        "the rejection is not in bob's next sync: {incremental}"
    );
    // hs1 learns of the rejection; bob's sync no longer shows the invite.
    assert_eq!(
        alice.members(&room, "?membership=leave").await,
        vec![(bob.user_id.clone(), "leave".to_owned())]
    );
    let synced = sync(&bob).await;
    assert!(
        synced["rooms"]["invite"].get(&room).is_none(),
        "the rejected invite is still shown: {synced}"
    );
    assert!(bob.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn a_user_browses_the_public_rooms_of_another_server() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let garden = alice
        .create_room(json!({"preset": "public_chat", "name": "Garden", "visibility": "public"}))
        .await;
    alice
        .create_room(json!({"preset": "public_chat", "name": "Kitchen", "visibility": "public"}))
        .await;

    // GET and POST (with a filter) to hs2, which asks hs1.
    let page = bob
        .get("/_matrix/client/v3/publicRooms?server=hs1.test")
        .await
        .ok();
    let names: Vec<&str> = page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Garden") && names.contains(&"Kitchen"),
        "{page}"
    );
    let page = bob
        .post(
            "/_matrix/client/v3/publicRooms?server=hs1.test",
            json!({"filter": {"generic_search_term": "gard"}, "limit": 5}),
        )
        .await
        .ok();
    let rooms = page["chunk"].as_array().cloned().unwrap_or_default();
    assert_eq!(rooms.len(), 1, "{page}");
    assert_eq!(rooms[0]["room_id"], garden.as_str());

    // A server that cannot be reached is a clear error, not an empty directory.
    let reply = bob
        .get("/_matrix/client/v3/publicRooms?server=hs3.test")
        .await;
    assert!(reply.status >= 400, "{reply}");
}
