//! Account management: `POST /account/password` and `POST /account/deactivate`, both behind
//! user-interactive auth with the current password.

use complement_tests::{Method, Server, encode, json};

const PASSWORD: &str = "/_matrix/client/v3/account/password";
const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";

#[tokio::test]
async fn password_change_requires_the_current_password() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let body = json!({"new_password": "brand-new-password"});

    let challenge = alice.post(PASSWORD, body.clone()).await;
    let session = challenge.assert_uia_challenge("m.login.password");
    let mut wrong = body;
    wrong["auth"] = alice.password_auth_with(&session, "a-guess-at-it");
    alice
        .post(PASSWORD, wrong)
        .await
        .assert_error(401, "M_FORBIDDEN");

    alice.login_new_device().await;
}

#[tokio::test]
async fn changed_password_replaces_the_old_one_and_logs_out_other_devices() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;

    alice
        .with_password_uia(
            Method::POST,
            PASSWORD,
            json!({"new_password": "brand-new-password"}),
        )
        .await
        .ok();

    server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await
        .assert_error(403, "M_FORBIDDEN");
    let mut with_new = alice.clone();
    with_new.password = "brand-new-password".to_owned();
    with_new.login_new_device().await;
    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    alice.whoami().await.ok();
    assert!(
        !alice.device_ids().await.contains(&phone.device_id),
        "the phone is logged out"
    );
}

#[tokio::test]
async fn password_change_can_keep_other_devices_logged_in() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;

    let body = json!({"new_password": "brand-new-password", "logout_devices": false});
    alice
        .with_password_uia(Method::POST, PASSWORD, body)
        .await
        .ok();

    phone.whoami().await.ok();
}

#[tokio::test]
async fn a_weak_new_password_is_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let body = json!({"new_password": "short"});

    // The strength check may come before or after the password stage; either way it must refuse.
    let first = alice.post(PASSWORD, body.clone()).await;
    let reply = if first.status == 401 {
        let mut authed = body;
        authed["auth"] = alice.password_auth(&first.assert_uia_challenge("m.login.password"));
        alice.post(PASSWORD, authed).await
    } else {
        first
    };

    reply.assert_error(400, "M_WEAK_PASSWORD");
    alice.login_new_device().await;
}

#[tokio::test]
async fn deactivated_account_cannot_log_in_and_keeps_its_name() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;

    let reply = alice
        .with_password_uia(Method::POST, DEACTIVATE, json!({}))
        .await;

    let body = reply.ok();
    assert!(
        body["id_server_unbind_result"] == "success"
            || body["id_server_unbind_result"] == "no-support",
        "id_server_unbind_result is required:\n{reply}"
    );
    alice.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await
        .assert_error(403, "M_USER_DEACTIVATED");
    let again = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "alice-again-pw"}))
        .await;
    again.assert_error(400, "M_USER_IN_USE");
    let available = format!(
        "/_matrix/client/v3/register/available?username={}",
        encode("alice")
    );
    server
        .client()
        .get(&available)
        .await
        .assert_error(400, "M_USER_IN_USE");
}

#[tokio::test]
async fn deactivation_requires_the_password() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let challenge = alice.post(DEACTIVATE, json!({})).await;
    let session = challenge.assert_uia_challenge("m.login.password");
    let wrong = json!({"auth": alice.password_auth_with(&session, "a-guess-at-it")});
    alice
        .post(DEACTIVATE, wrong)
        .await
        .assert_error(401, "M_FORBIDDEN");

    alice.whoami().await.ok();
    alice.login_new_device().await;
}

#[tokio::test]
async fn uia_refuses_another_users_password() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    // Bob's own, correct credentials must not complete a stage of Alice's session.
    let challenge = alice.post(DEACTIVATE, json!({})).await;
    let session = challenge.assert_uia_challenge("m.login.password");
    let reply = alice
        .post(DEACTIVATE, json!({"auth": bob.password_auth(&session)}))
        .await;

    assert!(
        reply.status == 401 || reply.status == 403,
        "expected a refusal, got\n{reply}"
    );
    alice.whoami().await.ok();
}
