//! Account registration: `POST /register` with its user-interactive flows (`m.login.dummy`,
//! `m.login.registration_token`), username checks, password strength, guests, and
//! `GET /register/available`.

use std::time::Duration;

use complement_tests::{Server, Value, encode, json, now_ms, wait_until};

const REGISTER: &str = "/_matrix/client/v3/register";
const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";

async fn availability(server: &Server, username: &str) -> complement_tests::Reply {
    let path = format!(
        "/_matrix/client/v3/register/available?username={}",
        encode(username)
    );
    server.client().get(&path).await
}

async fn token_validity(server: &Server, token: &str) -> Value {
    let path = format!(
        "/_matrix/client/v1/register/m.login.registration_token/validity?token={}",
        encode(token)
    );
    server.client().get(&path).await.ok()["valid"].clone()
}

#[tokio::test]
async fn open_registration_offers_dummy_and_token_flows() {
    let server = Server::start().await;

    let reply = server
        .client()
        .post(
            REGISTER,
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;

    reply.assert_uia_challenge("m.login.dummy");
    reply.assert_uia_challenge("m.login.registration_token");
}

#[tokio::test]
async fn dummy_registration_creates_an_account_that_can_be_used() {
    let server = Server::start().await;

    let alice = server.register_user("alice").await;

    assert_eq!(alice.user_id, "@alice:localhost");
    let whoami = alice.whoami().await.ok();
    assert_eq!(whoami["user_id"], "@alice:localhost");
    assert_eq!(whoami["device_id"], alice.device_id.as_str());
}

#[tokio::test]
async fn registered_user_ids_use_the_configured_server_name() {
    let server = Server::builder().server_name("hs1.localhost").start().await;

    let alice = server.register_user("alice").await;

    assert_eq!(alice.user_id, "@alice:hs1.localhost");
}

#[tokio::test]
async fn registration_with_inhibit_login_creates_the_account_without_a_session() {
    let server = Server::start().await;
    let body = json!({"username": "alice", "password": "alice-password", "inhibit_login": true});

    let reply = server.client().register_dummy(body).await;

    let body = reply.ok();
    assert_eq!(body["user_id"], "@alice:localhost");
    assert!(
        body.get("access_token").is_none(),
        "inhibit_login must not log in:\n{reply}"
    );
    availability(&server, "alice")
        .await
        .assert_error(400, "M_USER_IN_USE");
}

#[tokio::test]
async fn registration_can_issue_a_refresh_token() {
    let server = Server::start().await;
    let body = json!({"username": "alice", "password": "alice-password", "refresh_token": true});

    let reply = server.client().register_dummy(body).await;

    let body = reply.ok();
    assert!(
        body["refresh_token"].is_string(),
        "refresh_token was requested:\n{reply}"
    );
    assert!(
        body["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{reply}"
    );
}

#[tokio::test]
async fn registering_a_taken_username_is_refused() {
    let server = Server::start().await;
    server.register_user("alice").await;

    let reply = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "another-password"}))
        .await;

    reply.assert_error(400, "M_USER_IN_USE");
}

#[tokio::test]
async fn registering_an_invalid_username_is_refused() {
    let server = Server::start().await;

    let too_long = "a".repeat(300);
    // A full user ID on another server must not quietly register the same localpart here.
    let cases = [
        "has space",
        "bang!",
        "colon:name",
        "ünïcode",
        "Alice",
        &too_long,
        "@alice:elsewhere.test",
    ];
    for username in cases {
        let reply = server
            .client()
            .register_dummy(json!({"username": username, "password": "good-password"}))
            .await
            .labelled(format!("username {username:?}"));
        reply.assert_error(400, "M_INVALID_USERNAME");
    }
}

#[tokio::test]
async fn registering_with_a_short_password_is_refused() {
    let server = Server::start().await;

    let reply = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "short"}))
        .await;

    reply.assert_error(400, "M_WEAK_PASSWORD");
    assert_eq!(
        availability(&server, "alice").await.ok()["available"],
        true,
        "no account may be created"
    );
}

#[tokio::test]
async fn password_min_length_is_configurable() {
    let server = Server::builder()
        .config("registration.password_min_length", 12)
        .start()
        .await;

    let weak = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "elevenchars"}))
        .await;
    weak.assert_error(400, "M_WEAK_PASSWORD");

    let strong = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "twelve-chars"}))
        .await;
    assert_eq!(strong.ok()["user_id"], "@alice:localhost");
}

#[tokio::test]
async fn guest_registration_is_forbidden() {
    let server = Server::start().await;

    let reply = server
        .client()
        .post(&format!("{REGISTER}?kind=guest"), json!({}))
        .await;

    reply.assert_error(403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn closed_registration_offers_only_registration_tokens() {
    let server = Server::builder()
        .config("registration.open", false)
        .start()
        .await;

    let challenge = server
        .client()
        .post(
            REGISTER,
            json!({"username": "alice", "password": "alice-password"}),
        )
        .await;
    challenge.assert_uia_challenge("m.login.registration_token");
    assert_eq!(
        challenge.flows(),
        vec![vec!["m.login.registration_token".to_owned()]],
        "{challenge}"
    );

    let dummy = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "alice-password"}))
        .await;
    assert!(
        dummy.status == 401 || dummy.status == 403,
        "dummy auth must not register anyone:\n{dummy}"
    );
    assert_eq!(availability(&server, "alice").await.ok()["available"], true);
}

#[tokio::test]
async fn username_availability_reflects_registered_accounts() {
    let server = Server::start().await;

    assert_eq!(availability(&server, "alice").await.ok()["available"], true);
    server.register_user("alice").await;
    availability(&server, "alice")
        .await
        .assert_error(400, "M_USER_IN_USE");
    availability(&server, "not valid!")
        .await
        .assert_error(400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn registration_token_admits_exactly_as_many_accounts_as_allowed() {
    let server = Server::builder()
        .config("registration.open", false)
        .start()
        .await;
    let admin = server.register_admin("admin").await;
    let created = admin
        .post(&format!("{TOKENS}/new"), json!({"uses_allowed": 1}))
        .await
        .ok();
    let token = created["token"]
        .as_str()
        .expect("the new token is returned")
        .to_owned();
    assert_eq!(token_validity(&server, &token).await, true);

    let dave = server
        .client()
        .register_with_token(
            json!({"username": "dave", "password": "dave-password"}),
            &token,
        )
        .await;
    assert_eq!(dave.ok()["user_id"], "@dave:localhost");
    assert_eq!(
        token_validity(&server, &token).await,
        false,
        "the only use is spent"
    );

    let erin = server
        .client()
        .register_with_token(
            json!({"username": "erin", "password": "erin-password"}),
            &token,
        )
        .await;
    erin.assert_error(401, "M_FORBIDDEN");
    assert_eq!(availability(&server, "erin").await.ok()["available"], true);

    let used = admin
        .get(&format!("{TOKENS}/{}", encode(&token)))
        .await
        .ok();
    assert_eq!(used["completed"], 1, "{used:#}");
    assert_eq!(used["pending"], 0, "{used:#}");
}

#[tokio::test]
async fn expired_registration_token_is_refused() {
    let server = Server::builder()
        .config("registration.open", false)
        .start()
        .await;
    let admin = server.register_admin("admin").await;
    let body = json!({"token": "soon-gone", "expiry_time": now_ms() + 1000});
    admin.post(&format!("{TOKENS}/new"), body).await.ok();

    wait_until("the token expires", Duration::from_secs(10), async || {
        token_validity(&server, "soon-gone").await == false
    })
    .await;
    let reply = server
        .client()
        .register_with_token(
            json!({"username": "late", "password": "late-password"}),
            "soon-gone",
        )
        .await;

    reply.assert_error(401, "M_FORBIDDEN");
    assert_eq!(availability(&server, "late").await.ok()["available"], true);
}

#[tokio::test]
async fn unknown_registration_token_is_invalid_and_refused() {
    let server = Server::start().await;

    assert_eq!(token_validity(&server, "never-issued").await, false);
    let reply = server
        .client()
        .register_with_token(
            json!({"username": "mallory", "password": "mallory-password"}),
            "never-issued",
        )
        .await;

    reply.assert_error(401, "M_FORBIDDEN");
}

#[tokio::test]
async fn registration_without_a_username_generates_one() {
    let server = Server::start().await;

    let reply = server
        .client()
        .register_dummy(json!({"password": "good-password"}))
        .await;

    let user_id = reply.ok()["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        user_id.starts_with('@')
            && user_id.ends_with(":localhost")
            && user_id.len() > "@:localhost".len(),
        "expected a generated local user ID:\n{reply}"
    );
}

#[tokio::test]
async fn registration_honours_the_requested_device() {
    let server = Server::start().await;
    let body = json!({
        "username": "alice",
        "password": "alice-password",
        "device_id": "ALICEPHONE",
        "initial_device_display_name": "Alice's phone",
    });

    let reply = server.client().register_dummy(body).await;

    let session = reply.ok();
    assert_eq!(session["device_id"], "ALICEPHONE");
    let alice = server
        .client()
        .with_token(session["access_token"].as_str().unwrap());
    let device = alice
        .get("/_matrix/client/v3/devices/ALICEPHONE")
        .await
        .ok();
    assert_eq!(device["display_name"], "Alice's phone");
}
