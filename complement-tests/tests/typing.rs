//! Typing notifications (`PUT /rooms/{roomId}/typing/{userId}`): a joined member says they are
//! typing for a while, or have stopped; only for themselves, and only in rooms they are joined to.
//! How typing reaches other members through `/sync` is told in the sync stories.

use complement_tests::{Method, Server, User, encode, json, room_path};

fn typing_path(room_id: &str, user_id: &str) -> String {
    room_path(room_id, &format!("typing/{}", encode(user_id)))
}

async fn room_with_bob(server: &Server) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    (alice, bob, room)
}

#[tokio::test]
async fn a_member_starts_and_stops_typing() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;

    let started = alice
        .put(
            &typing_path(&room, &alice.user_id),
            json!({"typing": true, "timeout": 10000}),
        )
        .await;
    assert_eq!(started.ok(), json!({}));
    alice
        .put(
            &typing_path(&room, &alice.user_id),
            json!({"typing": true, "timeout": 10000}),
        )
        .await
        .ok();
    alice
        .put(
            &typing_path(&room, &alice.user_id),
            json!({"typing": false}),
        )
        .await
        .ok();
    // A timeout longer than the server keeps typing for is accepted (and cut short).
    bob.put(
        &typing_path(&room, &bob.user_id),
        json!({"typing": true, "timeout": 3_600_000}),
    )
    .await
    .ok();
    // Stopping without having started is fine too.
    bob.put(&typing_path(&room, &bob.user_id), json!({"typing": false}))
        .await
        .ok();
}

#[tokio::test]
async fn nobody_types_for_someone_else_or_in_a_room_they_are_not_in() {
    let server = Server::start().await;
    let (alice, bob, room) = room_with_bob(&server).await;
    let carol = server.register_user("carol").await;
    let typing = json!({"typing": true, "timeout": 5000});

    alice
        .put(&typing_path(&room, &bob.user_id), typing.clone())
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol
        .put(&typing_path(&room, &carol.user_id), typing.clone())
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol
        .put(
            &typing_path("!nowhere:localhost", &carol.user_id),
            typing.clone(),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");

    bob.leave(&room).await;
    bob.put(&typing_path(&room, &bob.user_id), typing.clone())
        .await
        .assert_error(403, "M_FORBIDDEN");
    let invited = alice.create_room(json!({"invite": [carol.user_id]})).await;
    carol
        .put(&typing_path(&invited, &carol.user_id), typing)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn bad_typing_requests_get_clear_errors() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let path = typing_path(&room, &alice.user_id);

    for body in [
        json!({}),
        json!({"typing": "yes"}),
        json!({"typing": true}),
        json!({"typing": true, "timeout": "soon"}),
        json!({"typing": true, "timeout": -5}),
        json!([true]),
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
        .raw_json("{\"typing\": ")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
    alice
        .put(
            &typing_path(&room, "not-a-user-id"),
            json!({"typing": false}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .anonymous()
        .put(&path, json!({"typing": false}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
