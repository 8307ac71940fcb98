//! Rate limiting: off by default in the harness; when enabled, each bucket (`login`,
//! `failed_login`, `registration`) answers 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` once its
//! burst is spent.

use complement_tests::{Reply, Server, json};

/// A bucket too large to matter, for the buckets a test is not about.
const GENEROUS: (f64, u32) = (1000.0, 1000);

fn assert_rate_limited(reply: &Reply) {
    reply.assert_error(429, "M_LIMIT_EXCEEDED");
    assert!(
        reply.body["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "a limited client needs to know when to retry:\n{reply}"
    );
}

#[tokio::test]
async fn rate_limits_are_off_when_disabled() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut wrong = alice.login_body();
    wrong["password"] = json!("not-alices-password");

    for _ in 0..15 {
        server
            .client()
            .post("/_matrix/client/v3/login", wrong.clone())
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    alice.login_new_device().await;
}

#[tokio::test]
async fn repeated_logins_hit_the_login_limit() {
    let server = Server::builder()
        .rate_limit("login", 0.01, 2)
        .rate_limit("failed_login", GENEROUS.0, GENEROUS.1)
        .rate_limit("registration", GENEROUS.0, GENEROUS.1)
        .start()
        .await;
    let alice = server.register_user("alice").await;

    alice.login_new_device().await;
    alice.login_new_device().await;
    let third = server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await;

    assert_rate_limited(&third);
    alice.whoami().await.ok();
}

#[tokio::test]
async fn repeated_failed_logins_hit_the_failed_login_limit() {
    let server = Server::builder()
        .rate_limit("failed_login", 0.01, 2)
        .rate_limit("login", GENEROUS.0, GENEROUS.1)
        .rate_limit("registration", GENEROUS.0, GENEROUS.1)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    let mut wrong = alice.login_body();
    wrong["password"] = json!("not-alices-password");

    for _ in 0..2 {
        server
            .client()
            .post("/_matrix/client/v3/login", wrong.clone())
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    let third = server
        .client()
        .post("/_matrix/client/v3/login", wrong)
        .await;

    assert_rate_limited(&third);
    // The bucket belongs to the attacked account: others still log in.
    let bob = server.register_user("bob").await;
    bob.login_new_device().await;
}

#[tokio::test]
async fn repeated_registrations_hit_the_registration_limit() {
    let server = Server::builder()
        .rate_limit("registration", 0.01, 2)
        .rate_limit("login", GENEROUS.0, GENEROUS.1)
        .rate_limit("failed_login", GENEROUS.0, GENEROUS.1)
        .start()
        .await;

    // Whether the bucket counts requests or completed registrations, a burst of two is spent
    // within the first three registrations.
    let mut replies = Vec::new();
    for i in 0..3 {
        let body = json!({"username": format!("user{i}"), "password": "good-password"});
        replies.push(server.client().register_dummy(body).await);
    }

    replies[0].ok();
    let limited = replies
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("no registration was limited:\n{replies:#?}"));
    assert_rate_limited(limited);
}

#[tokio::test]
async fn a_limited_client_succeeds_after_the_advised_delay() {
    // One login every two seconds: slow enough that the bucket cannot refill while a password
    // is hashed on a loaded machine, fast enough that the test waits at most two seconds.
    let server = Server::builder()
        .rate_limit("login", 0.5, 1)
        .rate_limit("failed_login", GENEROUS.0, GENEROUS.1)
        .rate_limit("registration", GENEROUS.0, GENEROUS.1)
        .start()
        .await;
    let alice = server.register_user("alice").await;
    alice.login_new_device().await;

    let limited = server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await;
    assert_rate_limited(&limited);
    let retry_after = limited.body["retry_after_ms"].as_u64().unwrap_or_default();
    assert!(
        retry_after <= 2100,
        "one token refills in two seconds, yet the advice is {retry_after} ms"
    );
    tokio::time::sleep(std::time::Duration::from_millis(retry_after)).await;

    alice.login_new_device().await;
}
