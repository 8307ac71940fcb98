//! What the server acknowledged survives a crash (SIGKILL) and a clean shutdown (SIGTERM, which
//! must exit 0).

use complement_tests::{Method, Server, json};

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    alice.set_displayname("Alice Liddell").await;
    let phone = alice.login_new_device().await;
    let device = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    alice
        .put(&device, json!({"display_name": "Alice's phone"}))
        .await
        .ok();

    server.kill9().await;
    server.restart().await;

    assert_eq!(
        alice.whoami().await.ok()["user_id"],
        "@alice:localhost",
        "the old token still works"
    );
    assert_eq!(alice.displayname().await.as_deref(), Some("Alice Liddell"));
    assert_eq!(
        alice.get(&device).await.ok()["display_name"],
        "Alice's phone"
    );
    alice.login_new_device().await;
    let again = server
        .client()
        .register_dummy(json!({"username": "alice", "password": "other-password"}))
        .await;
    again.assert_error(400, "M_USER_IN_USE");
}

#[tokio::test]
async fn password_change_and_logout_survive_sigkill() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let body = json!({"new_password": "brand-new-password", "logout_devices": false});
    alice
        .with_password_uia(Method::POST, "/_matrix/client/v3/account/password", body)
        .await
        .ok();
    phone
        .post("/_matrix/client/v3/logout", json!({}))
        .await
        .ok();

    server.kill9().await;
    server.restart().await;

    server
        .client()
        .post("/_matrix/client/v3/login", alice.login_body())
        .await
        .assert_error(403, "M_FORBIDDEN");
    let mut with_new = alice.clone();
    with_new.password = "brand-new-password".to_owned();
    with_new.login_new_device().await;
    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_keeps_data() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    alice.set_displayname("Alice").await;

    let status = server.stop().await;

    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\n{}",
        server.stderr_tail()
    );
    server.restart().await;
    assert_eq!(alice.displayname().await.as_deref(), Some("Alice"));
}

#[tokio::test]
async fn several_servers_run_side_by_side() {
    let hs1 = Server::builder().server_name("hs1.localhost").start().await;
    let hs2 = Server::builder().server_name("hs2.localhost").start().await;

    let alice = hs1.register_user("alice").await;
    let also_alice = hs2.register_user("alice").await;

    assert_ne!(hs1.base_url(), hs2.base_url());
    assert_eq!(alice.user_id, "@alice:hs1.localhost");
    assert_eq!(also_alice.user_id, "@alice:hs2.localhost");
    hs1.client()
        .with_token(&also_alice.access_token)
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}
