//! Room aliases: created with a room or later by members, resolved by anyone, listed per room,
//! kept in step with `m.room.canonical_alias`, and deleted by their creator or a moderator.

use complement_tests::{Server, json, room_path};

fn alias_path(alias: &str) -> String {
    format!(
        "/_matrix/client/v3/directory/room/{}",
        complement_tests::encode(alias)
    )
}

#[tokio::test]
async fn an_alias_lives_from_creation_to_deletion() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    bob.put(&alias_path("#tea-room:localhost"), json!({"room_id": room}))
        .await
        .ok();
    assert_eq!(
        server
            .client()
            .get(&alias_path("#tea-room:localhost"))
            .await
            .ok()["room_id"],
        room.as_str()
    );
    bob.put(&alias_path("#tea-room:localhost"), json!({"room_id": room}))
        .await
        .assert_error(409, "M_UNKNOWN");
    let listed = alice.get(&room_path(&room, "aliases")).await.ok();
    assert_eq!(listed["aliases"], json!(["#tea-room:localhost"]));

    alice
        .set_state(
            &room,
            "m.room.canonical_alias",
            "",
            json!({"alias": "#tea-room:localhost"}),
        )
        .await;
    alice
        .put(
            &complement_tests::state_path(&room, "m.room.canonical_alias", ""),
            json!({"alias": "#nowhere:localhost"}),
        )
        .await
        .assert_error(400, "M_BAD_ALIAS");

    bob.delete(&alias_path("#tea-room:localhost"), json!({}))
        .await
        .ok();
    server
        .client()
        .get(&alias_path("#tea-room:localhost"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn only_members_create_aliases_and_only_owners_or_moderators_delete_them() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_alias_name": "lobby"}))
        .await;

    carol
        .put(&alias_path("#carols:localhost"), json!({"room_id": room}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.join(&room).await;
    bob.delete(&alias_path("#lobby:localhost"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .put(
            &alias_path("#lobby:elsewhere.example"),
            json!({"room_id": room}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"room_alias_name": "lobby"}),
        )
        .await
        .assert_error(400, "M_ROOM_IN_USE");
    alice
        .delete(&alias_path("#lobby:localhost"), json!({}))
        .await
        .ok();
    alice
        .delete(&alias_path("#lobby:localhost"), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
}
