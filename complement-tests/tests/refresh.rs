//! Refresh tokens: `"refresh_token": true` at login, `POST /refresh` rotation, and soft logout of
//! expired access tokens.

use std::time::Duration;

use complement_tests::{Server, User, json, wait_until};

const REFRESH: &str = "/_matrix/client/v3/refresh";

/// Logs `user` in on a new device asking for a refresh token.
async fn login_with_refresh(server: &Server, user: &User) -> complement_tests::Value {
    let mut body = user.login_body();
    body["refresh_token"] = json!(true);
    server
        .client()
        .post("/_matrix/client/v3/login", body)
        .await
        .ok()
}

async fn refresh(server: &Server, refresh_token: &str) -> complement_tests::Reply {
    server
        .client()
        .post(REFRESH, json!({"refresh_token": refresh_token}))
        .await
}

fn field<'a>(body: &'a complement_tests::Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body:#}"))
}

#[tokio::test]
async fn refresh_rotates_both_tokens_on_the_same_device() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let session = login_with_refresh(&server, &alice).await;
    assert!(
        session["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{session:#}"
    );

    let rotated = refresh(&server, field(&session, "refresh_token"))
        .await
        .ok();

    assert_ne!(
        field(&rotated, "access_token"),
        field(&session, "access_token")
    );
    assert_ne!(
        field(&rotated, "refresh_token"),
        field(&session, "refresh_token")
    );
    let whoami = alice
        .with_access_token(field(&rotated, "access_token"))
        .whoami()
        .await
        .ok();
    assert_eq!(
        whoami["device_id"], session["device_id"],
        "refreshing keeps the device"
    );
}

#[tokio::test]
async fn old_refresh_token_survives_until_the_new_tokens_are_used() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let session = login_with_refresh(&server, &alice).await;
    let original = field(&session, "refresh_token");

    // A client whose first /refresh answer got lost retries with the same token.
    refresh(&server, original).await.ok();
    let retried = refresh(&server, original).await.ok();

    alice
        .with_access_token(field(&retried, "access_token"))
        .whoami()
        .await
        .ok();
    refresh(&server, original)
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn old_refresh_token_is_revoked_once_the_new_refresh_token_is_used() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let session = login_with_refresh(&server, &alice).await;
    let first = refresh(&server, field(&session, "refresh_token"))
        .await
        .ok();

    refresh(&server, field(&first, "refresh_token")).await.ok();

    refresh(&server, field(&session, "refresh_token"))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn refresh_with_an_unknown_token_is_refused() {
    let server = Server::start().await;

    refresh(&server, "not-a-refresh-token")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let session = login_with_refresh(&server, &alice).await;

    let phone = alice.with_access_token(field(&session, "access_token"));
    phone
        .post("/_matrix/client/v3/logout", json!({}))
        .await
        .ok();

    refresh(&server, field(&session, "refresh_token"))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn expired_access_token_is_soft_logged_out_and_refresh_recovers() {
    let server = Server::builder()
        .config("auth.access_token_lifetime_secs", 1)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let session = login_with_refresh(&server, &alice).await;
    let lifetime = session["expires_in_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_in_ms: {session:#}"));
    assert!(
        lifetime > 0 && lifetime <= 1000,
        "the configured lifetime is one second: {session:#}"
    );
    let phone = alice.with_access_token(field(&session, "access_token"));

    wait_until(
        "the access token expires",
        Duration::from_secs(10),
        async || phone.whoami().await.status == 401,
    )
    .await;

    let expired = phone.whoami().await;
    expired.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(
        expired.body["soft_logout"], true,
        "expiry is a soft logout:\n{expired}"
    );
    let renewed = refresh(&server, field(&session, "refresh_token"))
        .await
        .ok();
    let whoami = alice
        .with_access_token(field(&renewed, "access_token"))
        .whoami()
        .await
        .ok();
    assert_eq!(whoami["device_id"], session["device_id"]);
    // The lifetime applies only to tokens issued with a refresh token; Alice's registration
    // token was not, and keeps working.
    alice.whoami().await.ok();
}
