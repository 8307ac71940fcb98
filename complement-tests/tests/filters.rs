//! Filters: a user uploads a filter definition (`POST /user/{userId}/filter`), gets an id back and
//! downloads the same definition with it (`GET /user/{userId}/filter/{filterId}`). Filters are
//! private to their user, and invalid definitions are refused.

use complement_tests::{Method, Server, User, encode, json};

fn filters_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/user/{}/filter", encode(user_id))
}

fn filter_path(user_id: &str, filter_id: &str) -> String {
    format!("{}/{}", filters_path(user_id), encode(filter_id))
}

async fn upload(user: &User, filter: complement_tests::Value) -> String {
    let reply = user.post(&filters_path(&user.user_id), filter).await;
    reply.ok()["filter_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no filter_id in\n{reply}"))
        .to_owned()
}

#[tokio::test]
async fn a_filter_is_downloaded_as_it_was_uploaded_even_after_a_restart() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    // Every field differs from its default: the server may leave defaults out when answering.
    let filter = json!({
        "event_fields": ["type", "content", "sender"],
        "event_format": "federation",
        "presence": {"not_senders": ["@spam:localhost"], "types": ["m.presence"]},
        "room": {
            "state": {"types": ["m.room.*"], "lazy_load_members": true},
            "timeline": {"limit": 10, "types": ["m.room.message"], "not_rooms": ["!gone:localhost"]},
            "ephemeral": {"types": ["m.receipt", "m.typing"]},
            "include_leave": true
        }
    });

    let filter_id = upload(&alice, filter.clone()).await;
    assert!(
        !filter_id.starts_with('{'),
        "a filter id must not look like inline JSON: {filter_id}"
    );
    let downloaded = alice
        .get(&filter_path(&alice.user_id, &filter_id))
        .await
        .ok();
    assert_eq!(downloaded, filter);

    server.restart().await;
    let alice = alice.with_access_token(&alice.access_token);
    let downloaded = alice
        .get(&filter_path(&alice.user_id, &filter_id))
        .await
        .ok();
    assert_eq!(downloaded, filter);
}

#[tokio::test]
async fn each_distinct_filter_gets_its_own_id_and_an_identical_one_the_same() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let empty = upload(&alice, json!({})).await;
    let limited = upload(&alice, json!({"room": {"timeline": {"limit": 5}}})).await;
    assert_ne!(empty, limited);
    assert_eq!(upload(&alice, json!({})).await, empty);

    let downloaded = alice.get(&filter_path(&alice.user_id, &limited)).await.ok();
    assert_eq!(downloaded["room"]["timeline"]["limit"], 5);
    assert_eq!(
        alice.get(&filter_path(&alice.user_id, &empty)).await.ok(),
        json!({})
    );
}

#[tokio::test]
async fn filters_are_private_to_their_user() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let filter_id = upload(&alice, json!({"room": {"timeline": {"limit": 3}}})).await;

    bob.get(&filter_path(&alice.user_id, &filter_id))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.post(&filters_path(&alice.user_id), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Bob's own filters are numbered apart from Alice's: her id names nothing of his.
    bob.get(&filter_path(&bob.user_id, &filter_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .anonymous()
        .get(&filter_path(&alice.user_id, &filter_id))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_unknown_filter_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    for filter_id in ["0", "12345", "not-an-id", "-1"] {
        alice
            .get(&filter_path(&alice.user_id, filter_id))
            .await
            .labelled(filter_id)
            .assert_error(404, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn invalid_filters_are_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let path = filters_path(&alice.user_id);

    let invalid = [
        json!([]),
        json!({"room": {"timeline": {"limit": "ten"}}}),
        json!({"room": {"timeline": {"limit": -1}}}),
        json!({"room": {"rooms": ["not a room id"]}}),
        json!({"presence": {"senders": ["not a user id"]}}),
        json!({"event_fields": "type"}),
        json!({"room": 7}),
    ];
    for filter in invalid {
        alice
            .post(&path, filter.clone())
            .await
            .labelled(&filter)
            .assert_error(400, "M_BAD_JSON");
    }
    alice
        .client()
        .request(Method::POST, &path)
        .raw_json("{\"room\": ")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
}
