//! The Synapse-compatible admin API: registration tokens (`/_synapse/admin/v1/registration_tokens`)
//! and shared-secret registration (`/_synapse/admin/v1/register`).

use complement_tests::{
    DEFAULT_SHARED_SECRET, Server, Value, encode, json, now_ms, registration_mac,
};

const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";
const SHARED_SECRET_REGISTER: &str = "/_synapse/admin/v1/register";

fn tokens_in(list: &Value) -> Vec<String> {
    let tokens = list["registration_tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("no registration_tokens array: {list:#}"));
    tokens
        .iter()
        .filter_map(|t| t["token"].as_str().map(str::to_owned))
        .collect()
}

async fn is_available(server: &Server, username: &str) -> bool {
    let path = format!(
        "/_matrix/client/v3/register/available?username={}",
        encode(username)
    );
    server.client().get(&path).await.body["available"] == true
}

#[tokio::test]
async fn admin_creates_lists_updates_and_deletes_registration_tokens() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;

    let generated = admin.post(&format!("{TOKENS}/new"), json!({})).await.ok();
    assert!(
        generated["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{generated:#}"
    );
    assert_eq!(
        generated["uses_allowed"],
        Value::Null,
        "unlimited by default: {generated:#}"
    );
    assert_eq!(
        generated["expiry_time"],
        Value::Null,
        "never expires by default: {generated:#}"
    );
    assert_eq!(
        (&generated["pending"], &generated["completed"]),
        (&json!(0), &json!(0))
    );

    let chosen = admin
        .post(
            &format!("{TOKENS}/new"),
            json!({"token": "abcd1234", "uses_allowed": 3}),
        )
        .await
        .ok();
    assert_eq!(chosen["token"], "abcd1234");
    assert_eq!(chosen["uses_allowed"], 3);

    let sized = admin
        .post(&format!("{TOKENS}/new"), json!({"length": 10}))
        .await
        .ok();
    assert_eq!(sized["token"].as_str().map(str::len), Some(10), "{sized:#}");

    let list = admin.get(TOKENS).await.ok();
    let listed = tokens_in(&list);
    for token in [&generated["token"], &chosen["token"], &sized["token"]] {
        assert!(
            listed.iter().any(|t| token == t),
            "{token} missing from {list:#}"
        );
    }

    let expiry = now_ms() + 3_600_000;
    let updated = admin
        .put(
            &format!("{TOKENS}/abcd1234"),
            json!({"uses_allowed": 5, "expiry_time": expiry}),
        )
        .await
        .ok();
    assert_eq!(updated["uses_allowed"], 5);
    assert_eq!(updated["expiry_time"], expiry);
    assert_eq!(
        admin.get(&format!("{TOKENS}/abcd1234")).await.ok()["uses_allowed"],
        5
    );

    admin
        .delete(&format!("{TOKENS}/abcd1234"), json!({}))
        .await
        .ok();
    admin
        .get(&format!("{TOKENS}/abcd1234"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert!(!tokens_in(&admin.get(TOKENS).await.ok()).contains(&"abcd1234".to_owned()));
}

#[tokio::test]
async fn unknown_registration_token_is_not_found() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;

    admin
        .get(&format!("{TOKENS}/nope"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .put(&format!("{TOKENS}/nope"), json!({"uses_allowed": 1}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    admin
        .delete(&format!("{TOKENS}/nope"), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn duplicate_registration_token_is_refused() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;
    admin
        .post(&format!("{TOKENS}/new"), json!({"token": "only-once"}))
        .await
        .ok();

    let reply = admin
        .post(&format!("{TOKENS}/new"), json!({"token": "only-once"}))
        .await;

    reply.assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn invalid_registration_token_parameters_are_refused() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;

    let cases = [
        json!({"token": "has space"}),
        json!({"token": "x".repeat(65)}),
        json!({"uses_allowed": -1}),
        json!({"expiry_time": now_ms() - 60_000}),
        json!({"length": 0}),
        json!({"length": 65}),
    ];
    for body in cases {
        let label = body.to_string();
        admin
            .post(&format!("{TOKENS}/new"), body)
            .await
            .labelled(label)
            .assert_error(400, "M_INVALID_PARAM");
    }
    assert!(
        tokens_in(&admin.get(TOKENS).await.ok()).is_empty(),
        "no token may have been created"
    );
}

#[tokio::test]
async fn registration_token_api_requires_a_server_admin() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice.get(TOKENS).await.assert_error(403, "M_FORBIDDEN");
    alice
        .post(&format!("{TOKENS}/new"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    server
        .client()
        .get(TOKENS)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn shared_secret_registration_with_a_good_mac_creates_a_normal_user() {
    let server = Server::start().await;

    let reply = server
        .register_with_shared_secret("bob", "bob-password", false)
        .await;

    let body = reply.ok();
    assert_eq!(body["user_id"], "@bob:localhost");
    assert_eq!(body["home_server"], "localhost");
    let token = body["access_token"].as_str().expect("an access token");
    let bob = server.client().with_token(token);
    assert_eq!(
        bob.get("/_matrix/client/v3/account/whoami").await.ok()["device_id"],
        body["device_id"]
    );
    bob.get(TOKENS).await.assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn shared_secret_registration_can_create_an_admin() {
    let server = Server::start().await;

    let admin = server.register_admin("root").await;

    assert_eq!(
        admin.get(TOKENS).await.ok()["registration_tokens"],
        json!([])
    );
}

#[tokio::test]
async fn shared_secret_registration_with_a_bad_mac_is_refused() {
    let server = Server::start().await;
    let nonce = server.registration_nonce().await;
    let mut body = server.shared_secret_body(&nonce, "bob", "bob-password", false);
    body["mac"] = json!(registration_mac(
        "wrong-secret",
        &nonce,
        "bob",
        "bob-password",
        false
    ));

    server
        .client()
        .post(SHARED_SECRET_REGISTER, body)
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert!(
        is_available(&server, "bob").await,
        "no account may be created"
    );
}

#[tokio::test]
async fn shared_secret_mac_covers_the_admin_flag() {
    let server = Server::start().await;
    let nonce = server.registration_nonce().await;
    let mut body = server.shared_secret_body(&nonce, "bob", "bob-password", false);
    body["admin"] = json!(true);

    server
        .client()
        .post(SHARED_SECRET_REGISTER, body)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn shared_secret_nonce_cannot_be_reused() {
    let server = Server::start().await;
    let nonce = server.registration_nonce().await;
    let first = server.shared_secret_body(&nonce, "bob", "bob-password", false);
    server
        .client()
        .post(SHARED_SECRET_REGISTER, first)
        .await
        .ok();

    let replay = server.shared_secret_body(&nonce, "carol", "carol-password", false);
    let reply = server.client().post(SHARED_SECRET_REGISTER, replay).await;

    reply.assert_status(400);
    assert!(
        is_available(&server, "carol").await,
        "a replayed nonce must not create an account"
    );
}

#[tokio::test]
async fn shared_secret_registration_is_off_without_a_configured_secret() {
    let server = Server::builder()
        .without_config("registration.shared_secret")
        .start()
        .await;
    // A real nonce if the server still hands them out, so only the missing secret can refuse.
    let nonce_reply = server.client().get(SHARED_SECRET_REGISTER).await;
    let nonce = nonce_reply.body["nonce"].as_str().unwrap_or("made-up");
    let body = json!({
        "nonce": nonce,
        "username": "bob",
        "password": "bob-password",
        "admin": true,
        "mac": registration_mac(DEFAULT_SHARED_SECRET, nonce, "bob", "bob-password", true),
    });

    let reply = server.client().post(SHARED_SECRET_REGISTER, body).await;

    assert!(
        (400..500).contains(&reply.status),
        "expected a refusal, got\n{reply}"
    );
    assert!(is_available(&server, "bob").await);
}

#[tokio::test]
async fn shared_secret_registration_checks_the_username() {
    let server = Server::start().await;
    server.register_user("alice").await;

    let taken = server
        .register_with_shared_secret("alice", "another-password", false)
        .await;
    taken.assert_error(400, "M_USER_IN_USE");
    let invalid = server
        .register_with_shared_secret("not valid!", "a-good-password", false)
        .await;
    invalid.assert_error(400, "M_INVALID_USERNAME");
}
