//! Profiles: `GET /profile/{userId}` and `GET`/`PUT /profile/{userId}/{displayname,avatar_url}`.

use complement_tests::{Server, encode, json};

#[tokio::test]
async fn displayname_can_be_set_and_is_visible_to_others() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    alice.set_displayname("Alice Liddell").await;

    let field = bob.get(&alice.profile_path("displayname")).await.ok();
    assert_eq!(field["displayname"], "Alice Liddell");
    let profile = bob
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            encode(&alice.user_id)
        ))
        .await
        .ok();
    assert_eq!(profile["displayname"], "Alice Liddell");
}

#[tokio::test]
async fn avatar_url_accepts_an_mxc_uri() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice
        .put(
            &alice.profile_path("avatar_url"),
            json!({"avatar_url": "mxc://localhost/abc123"}),
        )
        .await
        .ok();

    let field = alice.get(&alice.profile_path("avatar_url")).await.ok();
    assert_eq!(field["avatar_url"], "mxc://localhost/abc123");
    let profile = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            encode(&alice.user_id)
        ))
        .await
        .ok();
    assert_eq!(profile["avatar_url"], "mxc://localhost/abc123");
}

#[tokio::test]
async fn avatar_url_must_be_an_mxc_uri() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    alice
        .put(
            &alice.profile_path("avatar_url"),
            json!({"avatar_url": "mxc://localhost/abc123"}),
        )
        .await
        .ok();

    for bad in ["https://example.com/avatar.png", "mxc://", "not a uri"] {
        let reply = alice
            .put(
                &alice.profile_path("avatar_url"),
                json!({"avatar_url": bad}),
            )
            .await
            .labelled(bad);
        reply.assert_status(400);
        assert!(
            reply.errcode().is_some(),
            "a Matrix error is expected:\n{reply}"
        );
    }

    let field = alice.get(&alice.profile_path("avatar_url")).await.ok();
    assert_eq!(
        field["avatar_url"], "mxc://localhost/abc123",
        "a refused value must not be stored"
    );
}

#[tokio::test]
async fn users_cannot_change_someone_elses_profile() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    alice.set_displayname("Alice").await;

    bob.put(
        &alice.profile_path("displayname"),
        json!({"displayname": "Mallory"}),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    bob.put(
        &alice.profile_path("avatar_url"),
        json!({"avatar_url": "mxc://localhost/evil"}),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");

    assert_eq!(alice.displayname().await.as_deref(), Some("Alice"));
}

#[tokio::test]
async fn changing_a_profile_needs_an_access_token() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    server
        .client()
        .put(
            &alice.profile_path("displayname"),
            json!({"displayname": "Anonymous"}),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn profile_of_an_unknown_user_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let nobody = encode("@nobody:localhost");

    alice
        .get(&format!("/_matrix/client/v3/profile/{nobody}"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("/_matrix/client/v3/profile/{nobody}/displayname"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}
