//! Presence (`PUT` and `GET /presence/{userId}/status`): a user says whether they are online,
//! unavailable or offline, with a status message; only they can set it, and only users who share
//! a room with them can read it. What they last set survives a restart. How presence reaches room
//! mates through `/sync` is told in the sync stories.

use complement_tests::{Method, Server, User, encode, json};

fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", encode(user_id))
}

async fn room_mates(server: &Server) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    (alice, bob, room)
}

#[tokio::test]
async fn a_user_sets_their_presence_and_room_mates_read_it() {
    let server = Server::start().await;
    let (alice, bob, _room) = room_mates(&server).await;
    let path = status_path(&alice.user_id);

    let set = alice
        .put(
            &path,
            json!({"presence": "online", "status_msg": "on ward 3"}),
        )
        .await;
    assert_eq!(set.ok(), json!({}));
    for reader in [&bob, &alice] {
        let seen = reader.get(&path).await.ok();
        assert_eq!(seen["presence"], "online", "{seen:#}");
        assert_eq!(seen["status_msg"], "on ward 3");
        assert_eq!(seen["currently_active"], true);
        assert!(
            seen["last_active_ago"].as_u64().unwrap() < 60_000,
            "{seen:#}"
        );
    }

    alice
        .put(&path, json!({"presence": "unavailable"}))
        .await
        .ok();
    let away = bob.get(&path).await.ok();
    assert_eq!(away["presence"], "unavailable");
    assert_eq!(away["currently_active"], false);
    assert!(
        away.get("status_msg").is_none_or(|m| m.is_null()),
        "a status message not sent again is cleared: {away:#}"
    );

    alice.put(&path, json!({"presence": "offline"})).await.ok();
    assert_eq!(bob.get(&path).await.ok()["presence"], "offline");
}

#[tokio::test]
async fn a_room_mate_who_never_set_presence_is_offline() {
    let server = Server::start().await;
    let (alice, bob, _room) = room_mates(&server).await;
    let seen = alice.get(&status_path(&bob.user_id)).await.ok();
    assert_eq!(seen["presence"], "offline");
}

#[tokio::test]
async fn presence_is_for_room_mates_only() {
    let server = Server::start().await;
    let (alice, bob, room) = room_mates(&server).await;
    let carol = server.register_user("carol").await;
    alice
        .put(
            &status_path(&alice.user_id),
            json!({"presence": "online", "status_msg": "in theatre"}),
        )
        .await
        .ok();

    carol
        .get(&status_path(&alice.user_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol
        .get(&status_path("@nobody:localhost"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol.get(&status_path(&carol.user_id)).await.ok();

    bob.leave(&room).await;
    bob.get(&status_path(&alice.user_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn nobody_sets_presence_for_someone_else() {
    let server = Server::start().await;
    let (alice, bob, _room) = room_mates(&server).await;
    bob.put(&status_path(&alice.user_id), json!({"presence": "offline"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        bob.get(&status_path(&alice.user_id)).await.ok()["presence"],
        "offline",
        "Alice never set anything"
    );
}

#[tokio::test]
async fn bad_presence_requests_get_clear_errors() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let path = status_path(&alice.user_id);

    alice
        .put(&path, json!({"presence": "busy"}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    for body in [
        json!({}),
        json!({"presence": 5}),
        json!({"presence": "online", "status_msg": 7}),
        json!(["online"]),
    ] {
        alice
            .put(&path, body.clone())
            .await
            .labelled(&body)
            .assert_error(400, "M_BAD_JSON");
    }
    alice
        .client()
        .request(Method::PUT, &path)
        .raw_json("{\"presence\": ")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
    alice
        .get(&status_path("not-a-user-id"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .anonymous()
        .get(&path)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn the_last_presence_set_survives_a_restart() {
    let mut server = Server::start().await;
    let (alice, bob, _room) = room_mates(&server).await;
    alice
        .put(
            &status_path(&alice.user_id),
            json!({"presence": "online", "status_msg": "back at 9"}),
        )
        .await
        .ok();

    server.restart().await;

    let seen = bob.get(&status_path(&alice.user_id)).await.ok();
    assert_eq!(seen["presence"], "online", "{seen:#}");
    assert_eq!(seen["status_msg"], "back at 9");
}
