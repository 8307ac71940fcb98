//! Upgrading a room: a new room of the new version takes over the old room's state and aliases,
//! the old room gets a tombstone pointing at it, and ordinary members can no longer talk there.

use complement_tests::{Server, json, room_path, state_path};

#[tokio::test]
async fn an_upgrade_moves_the_room_to_a_new_version_and_tombstones_the_old_one() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let old = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Ward 7",
            "topic": "Night shift",
            "room_alias_name": "ward7",
            "room_version": "10",
        }))
        .await;
    bob.join(&old).await;

    let reply = alice
        .post(&room_path(&old, "upgrade"), json!({"new_version": "11"}))
        .await
        .ok();
    let new = reply["replacement_room"]
        .as_str()
        .expect("a replacement room")
        .to_owned();
    assert_ne!(new, old);

    let create = alice.state_event(&new, "m.room.create", "").await;
    assert_eq!(create["content"]["room_version"], "11");
    assert_eq!(create["content"]["predecessor"]["room_id"], old.as_str());
    assert_eq!(alice.state(&new, "m.room.name", "").await["name"], "Ward 7");
    assert_eq!(
        alice.state(&new, "m.room.topic", "").await["topic"],
        "Night shift"
    );
    assert_eq!(
        alice.state(&new, "m.room.join_rules", "").await["join_rule"],
        "public"
    );
    assert_eq!(
        server
            .client()
            .get("/_matrix/client/v3/directory/room/%23ward7:localhost")
            .await
            .ok()["room_id"],
        new.as_str(),
        "the alias now points at the new room"
    );

    let tombstone = alice.state(&old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new.as_str());
    bob.put(
        &room_path(
            &old,
            &format!("send/m.room.message/{}", complement_tests::txn_id()),
        ),
        json!({"msgtype": "m.text", "body": "still here?"}),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");

    bob.join(&new).await;
    bob.send_message(&new, "moved over").await;
}

#[tokio::test]
async fn only_someone_with_power_can_upgrade_and_only_to_a_known_version() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    bob.post(&room_path(&room, "upgrade"), json!({"new_version": "11"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .post(&room_path(&room, "upgrade"), json!({"new_version": "9999"}))
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    let reply = alice.get(&state_path(&room, "m.room.tombstone", "")).await;
    reply.assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn upgrading_to_version_12_makes_the_upgrader_a_creator() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice
        .create_room(json!({"room_version": "11", "name": "Rota"}))
        .await;

    let new = alice
        .post(&room_path(&room, "upgrade"), json!({"new_version": "12"}))
        .await
        .ok()["replacement_room"]
        .as_str()
        .expect("a replacement room")
        .to_owned();

    let levels = alice.state(&new, "m.room.power_levels", "").await;
    assert!(
        levels["users"].get(alice.user_id.as_str()).is_none(),
        "v12 creators are not listed: {levels}"
    );
    alice
        .set_state(&new, "m.room.name", "", json!({"name": "Rota v12"}))
        .await;
    assert_eq!(
        alice.state(&new, "m.room.name", "").await["name"],
        "Rota v12"
    );
}
