//! Account data and room tags: a user stores JSON objects for themself, globally
//! (`/user/{userId}/account_data/{type}`) or per room (`/user/{userId}/rooms/{roomId}/account_data/
//! {type}`), and tags rooms (`/user/{userId}/rooms/{roomId}/tags/{tag}`, kept as the room's `m.tag`
//! account data). Nobody else reads or writes them, and the types the server manages are refused.

use complement_tests::{Method, Server, User, encode, json};

fn global_path(user_id: &str, data_type: &str) -> String {
    format!(
        "/_matrix/client/v3/user/{}/account_data/{}",
        encode(user_id),
        encode(data_type)
    )
}

fn room_path(user_id: &str, room_id: &str, rest: &str) -> String {
    format!(
        "/_matrix/client/v3/user/{}/rooms/{}/{rest}",
        encode(user_id),
        encode(room_id)
    )
}

fn room_data_path(user_id: &str, room_id: &str, data_type: &str) -> String {
    room_path(
        user_id,
        room_id,
        &format!("account_data/{}", encode(data_type)),
    )
}

fn tag_path(user: &User, room_id: &str, tag: &str) -> String {
    room_path(&user.user_id, room_id, &format!("tags/{}", encode(tag)))
}

#[tokio::test]
async fn global_account_data_is_stored_replaced_and_read_back() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let path = global_path(&alice.user_id, "org.example.settings");

    alice.get(&path).await.assert_error(404, "M_NOT_FOUND");
    alice.put(&path, json!({"theme": "dark"})).await.ok();
    assert_eq!(alice.get(&path).await.ok(), json!({"theme": "dark"}));
    alice
        .put(&path, json!({"theme": "light", "font": 12}))
        .await
        .ok();
    assert_eq!(
        alice.get(&path).await.ok(),
        json!({"theme": "light", "font": 12})
    );

    // Direct chats and ignored users are ordinary account data, stored as given.
    let direct = json!({"@bob:localhost": ["!dm:localhost"]});
    alice
        .put(&global_path(&alice.user_id, "m.direct"), direct.clone())
        .await
        .ok();
    assert_eq!(
        alice
            .get(&global_path(&alice.user_id, "m.direct"))
            .await
            .ok(),
        direct
    );
    let ignored = json!({"ignored_users": {"@spam:localhost": {}}});
    let ignored_path = global_path(&alice.user_id, "m.ignored_user_list");
    alice.put(&ignored_path, ignored.clone()).await.ok();
    assert_eq!(alice.get(&ignored_path).await.ok(), ignored);
}

#[tokio::test]
async fn room_account_data_is_kept_per_room_and_apart_from_global_data() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let kitchen = alice.create_room(json!({})).await;
    let garden = alice.create_room(json!({})).await;
    let data_type = "org.example.notes";

    alice
        .put(
            &room_data_path(&alice.user_id, &kitchen, data_type),
            json!({"note": "buy tea"}),
        )
        .await
        .ok();
    assert_eq!(
        alice
            .get(&room_data_path(&alice.user_id, &kitchen, data_type))
            .await
            .ok(),
        json!({"note": "buy tea"})
    );
    alice
        .get(&room_data_path(&alice.user_id, &garden, data_type))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&global_path(&alice.user_id, data_type))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn account_data_is_private_to_its_user() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let global = global_path(&alice.user_id, "org.example.secret");
    let in_room = room_data_path(&alice.user_id, &room, "org.example.secret");
    alice.put(&global, json!({"pin": 1234})).await.ok();
    alice.put(&in_room, json!({"pin": 1234})).await.ok();

    for path in [&global, &in_room] {
        bob.get(path).await.assert_error(403, "M_FORBIDDEN");
        bob.put(path, json!({"pin": 0}))
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    assert_eq!(alice.get(&global).await.ok(), json!({"pin": 1234}));
    bob.get(&room_path(&alice.user_id, &room, "tags"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.put(&tag_path(&alice, &room, "u.work"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn account_data_must_be_a_json_object() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let paths = [
        global_path(&alice.user_id, "org.example.x"),
        room_data_path(&alice.user_id, &room, "org.example.x"),
    ];
    for path in &paths {
        for body in [json!([1, 2]), json!("text"), json!(3), json!(null)] {
            alice
                .put(path, body.clone())
                .await
                .labelled(&body)
                .assert_error(400, "M_BAD_JSON");
        }
        alice
            .client()
            .request(Method::PUT, path)
            .raw_json("{\"unfinished\": ")
            .send()
            .await
            .assert_error(400, "M_NOT_JSON");
        alice.get(path).await.assert_error(404, "M_NOT_FOUND");
    }
    alice
        .put(
            &room_data_path(&alice.user_id, "not-a-room-id", "org.example.x"),
            json!({}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn the_types_the_server_manages_cannot_be_set_by_clients() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let event_id = alice.send_message(&room, "hello").await;

    // The specification answers these with 405 and M_BAD_JSON: m.fully_read moves through read
    // markers, m.push_rules through /pushrules.
    for data_type in ["m.fully_read", "m.push_rules"] {
        alice
            .put(
                &global_path(&alice.user_id, data_type),
                json!({"event_id": event_id}),
            )
            .await
            .labelled(data_type)
            .assert_error(405, "M_BAD_JSON");
        alice
            .put(
                &room_data_path(&alice.user_id, &room, data_type),
                json!({"event_id": event_id}),
            )
            .await
            .labelled(data_type)
            .assert_error(405, "M_BAD_JSON");
    }
    alice
        .get(&room_data_path(&alice.user_id, &room, "m.fully_read"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn rooms_are_tagged_retagged_and_untagged() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    let tags_path = room_path(&alice.user_id, &room, "tags");

    assert_eq!(alice.get(&tags_path).await.ok(), json!({"tags": {}}));
    alice
        .put(&tag_path(&alice, &room, "u.work"), json!({"order": 0.5}))
        .await
        .ok();
    alice
        .put(&tag_path(&alice, &room, "m.favourite"), json!({}))
        .await
        .ok();
    assert_eq!(
        alice.get(&tags_path).await.ok(),
        json!({"tags": {"u.work": {"order": 0.5}, "m.favourite": {}}})
    );

    alice
        .put(&tag_path(&alice, &room, "u.work"), json!({"order": 1}))
        .await
        .ok();
    alice
        .delete(&tag_path(&alice, &room, "m.favourite"), json!({}))
        .await
        .ok();
    // Removing a tag the room does not have is not an error.
    alice
        .delete(&tag_path(&alice, &room, "m.lowpriority"), json!({}))
        .await
        .ok();
    assert_eq!(
        alice.get(&tags_path).await.ok(),
        json!({"tags": {"u.work": {"order": 1.0}}})
    );

    // Tags are the room's m.tag account data, which is how /sync delivers them.
    assert_eq!(
        alice
            .get(&room_data_path(&alice.user_id, &room, "m.tag"))
            .await
            .ok(),
        json!({"tags": {"u.work": {"order": 1.0}}})
    );
}

#[tokio::test]
async fn bad_tags_are_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;

    for order in [json!(1.5), json!(-0.1)] {
        alice
            .put(&tag_path(&alice, &room, "u.work"), json!({"order": order}))
            .await
            .labelled(&order)
            .assert_error(400, "M_INVALID_PARAM");
    }
    for body in [json!({"order": [0.5]}), json!({"order": {}}), json!([])] {
        alice
            .put(&tag_path(&alice, &room, "u.work"), body.clone())
            .await
            .labelled(&body)
            .assert_error(400, "M_BAD_JSON");
    }
    let long_tag = format!("u.{}", "x".repeat(254));
    alice
        .put(&tag_path(&alice, &room, &long_tag), json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(&tag_path(&alice, &room, &long_tag[..255]), json!({}))
        .await
        .ok();
    assert_eq!(
        alice
            .get(&room_path(&alice.user_id, &room, "tags"))
            .await
            .ok()["tags"]
            .as_object()
            .map(|tags| tags.keys().cloned().collect::<Vec<_>>()),
        Some(vec![long_tag[..255].to_owned()])
    );
}
