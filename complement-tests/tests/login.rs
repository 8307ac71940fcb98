//! Logging in and out: `GET`/`POST /login`, `/logout`, `/logout/all` and `/account/whoami`.

use complement_tests::{Server, json};

const LOGIN: &str = "/_matrix/client/v3/login";

#[tokio::test]
async fn login_advertises_the_password_flow() {
    let server = Server::start().await;

    let reply = server.client().get(LOGIN).await;

    let body = reply.ok();
    let flows = body["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows:\n{reply}"));
    assert!(
        flows.iter().any(|f| f["type"] == "m.login.password"),
        "{reply}"
    );
}

#[tokio::test]
async fn password_login_works_with_the_localpart_and_the_full_user_id() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    for user in ["alice", "@alice:localhost"] {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": alice.password,
        });
        let session = server.client().post(LOGIN, body).await.ok();

        assert_eq!(session["user_id"], "@alice:localhost");
        assert!(
            session.get("refresh_token").is_none(),
            "no refresh token unless asked: {session:#}"
        );
        assert!(
            session.get("expires_in_ms").is_none(),
            "tokens without refresh do not expire: {session:#}"
        );
        let token = session["access_token"].as_str().expect("an access token");
        let whoami = server
            .client()
            .with_token(token)
            .get("/_matrix/client/v3/account/whoami")
            .await
            .ok();
        assert_eq!(whoami["device_id"], session["device_id"]);
    }
}

#[tokio::test]
async fn each_login_gets_its_own_device() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let phone = alice.login_new_device().await;

    assert_ne!(phone.device_id, alice.device_id);
    assert_ne!(phone.access_token, alice.access_token);
    alice.whoami().await.ok();
    phone.whoami().await.ok();
}

#[tokio::test]
async fn login_with_a_wrong_password_is_forbidden() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut body = alice.login_body();
    body["password"] = json!("not-alices-password");

    server
        .client()
        .post(LOGIN, body)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_of_an_unknown_user_is_forbidden() {
    let server = Server::start().await;
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "nobody"},
        "password": "whatever-password",
    });

    server
        .client()
        .post(LOGIN, body)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_with_an_unsupported_type_is_rejected() {
    let server = Server::start().await;
    server.register_user("alice").await;
    let body =
        json!({"type": "org.example.magic", "identifier": {"type": "m.id.user", "user": "alice"}});

    let reply = server.client().post(LOGIN, body).await;

    reply.assert_status(400);
    assert!(
        reply.errcode().is_some(),
        "a Matrix error is expected:\n{reply}"
    );
}

#[tokio::test]
async fn login_with_a_chosen_device_id_replaces_that_devices_old_token() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut body = alice.login_body();
    body["device_id"] = json!("PHONE");

    let first = server.client().post(LOGIN, body.clone()).await.ok();
    let second = server.client().post(LOGIN, body).await.ok();

    assert_eq!(
        (&first["device_id"], &second["device_id"]),
        (&json!("PHONE"), &json!("PHONE"))
    );
    let old = server
        .client()
        .with_token(first["access_token"].as_str().unwrap());
    let new = server
        .client()
        .with_token(second["access_token"].as_str().unwrap());
    old.get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(
        new.get("/_matrix/client/v3/account/whoami").await.ok()["device_id"],
        "PHONE"
    );
    let devices = alice.device_ids().await;
    assert_eq!(
        devices.iter().filter(|d| *d == "PHONE").count(),
        1,
        "{devices:?}"
    );
}

#[tokio::test]
async fn whoami_names_the_user_and_device_of_the_token() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let whoami = alice.whoami().await.ok();

    assert_eq!(whoami["user_id"], alice.user_id.as_str());
    assert_eq!(whoami["device_id"], alice.device_id.as_str());
}

#[tokio::test]
async fn logout_invalidates_the_token_and_removes_the_device() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;

    phone
        .post("/_matrix/client/v3/logout", json!({}))
        .await
        .ok();

    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    assert!(
        !alice.device_ids().await.contains(&phone.device_id),
        "the logged-out device must be gone"
    );
    alice.whoami().await.ok();
}

#[tokio::test]
async fn logout_all_invalidates_every_session() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let bob = server.register_user("bob").await;

    alice
        .post("/_matrix/client/v3/logout/all", json!({}))
        .await
        .ok();

    alice.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    bob.whoami().await.ok();
    let fresh = alice.login_new_device().await;
    assert_eq!(
        fresh.device_ids().await,
        vec![fresh.device_id.clone()],
        "only the new login remains"
    );
}

#[tokio::test]
async fn login_as_a_user_of_another_server_fails() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@alice:elsewhere.test"},
        "password": alice.password,
    });

    let reply = server.client().post(LOGIN, body).await;

    assert!(
        (reply.status == 400 || reply.status == 403) && reply.errcode().is_some(),
        "a remote user ID must not log in as the local alice:\n{reply}"
    );
}
