//! Device management: `GET /devices`, `GET`/`PUT`/`DELETE /devices/{deviceId}` and
//! `POST /delete_devices`, with user-interactive auth for deletion.

use complement_tests::{Method, Server, encode, json};

fn device_path(device_id: &str) -> String {
    format!("/_matrix/client/v3/devices/{}", encode(device_id))
}

#[tokio::test]
async fn devices_lists_every_login_with_its_display_name() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut body = alice.login_body();
    body["initial_device_display_name"] = json!("Alice's phone");
    let phone = server
        .client()
        .post("/_matrix/client/v3/login", body)
        .await
        .ok();

    let reply = alice.get("/_matrix/client/v3/devices").await;

    let listed = reply.ok();
    let devices = listed["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices:\n{reply}"));
    assert_eq!(devices.len(), 2, "{reply}");
    let phone_entry = devices
        .iter()
        .find(|d| d["device_id"] == phone["device_id"])
        .unwrap_or_else(|| panic!("the phone is not listed:\n{reply}"));
    assert_eq!(phone_entry["display_name"], "Alice's phone");
    assert!(
        devices
            .iter()
            .any(|d| d["device_id"] == alice.device_id.as_str()),
        "{reply}"
    );
}

#[tokio::test]
async fn a_device_can_be_fetched_and_renamed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice
        .put(
            &device_path(&alice.device_id),
            json!({"display_name": "Kitchen tablet"}),
        )
        .await
        .ok();

    let device = alice.get(&device_path(&alice.device_id)).await.ok();
    assert_eq!(device["device_id"], alice.device_id.as_str());
    assert_eq!(device["display_name"], "Kitchen tablet");
}

#[tokio::test]
async fn an_unknown_device_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice
        .get(&device_path("NOSUCHDEVICE"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .put(&device_path("NOSUCHDEVICE"), json!({"display_name": "x"}))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn other_users_devices_are_invisible() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    bob.get(&device_path(&alice.device_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    bob.put(
        &device_path(&alice.device_id),
        json!({"display_name": "pwned"}),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");
    assert_eq!(bob.device_ids().await, vec![bob.device_id.clone()]);
}

#[tokio::test]
async fn deleting_a_device_requires_the_password() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let path = device_path(&phone.device_id);

    let challenge = alice.delete(&path, json!({})).await;
    let session = challenge.assert_uia_challenge("m.login.password");

    let wrong = alice
        .delete(
            &path,
            json!({"auth": alice.password_auth_with(&session, "not-the-password")}),
        )
        .await;
    wrong.assert_error(401, "M_FORBIDDEN");
    assert!(
        !wrong.flows().is_empty(),
        "a failed stage repeats the flows:\n{wrong}"
    );
    phone.whoami().await.ok();

    alice
        .delete(&path, json!({"auth": alice.password_auth(&session)}))
        .await
        .ok();

    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(alice.device_ids().await, vec![alice.device_id.clone()]);
}

#[tokio::test]
async fn delete_devices_removes_several_devices_at_once() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let laptop = alice.login_new_device().await;
    let body = json!({"devices": [phone.device_id, laptop.device_id]});

    alice
        .with_password_uia(Method::POST, "/_matrix/client/v3/delete_devices", body)
        .await
        .ok();

    phone.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    laptop.whoami().await.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(alice.device_ids().await, vec![alice.device_id.clone()]);
}

#[tokio::test]
async fn delete_devices_cannot_touch_another_users_devices() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let body = json!({"devices": [alice.device_id]});
    let reply = bob
        .with_password_uia(Method::POST, "/_matrix/client/v3/delete_devices", body)
        .await;

    assert_eq!(
        reply.status, 200,
        "deleting devices one does not have is a no-op:\n{reply}"
    );
    alice.whoami().await.ok();
}

#[tokio::test]
async fn a_completed_uia_session_cannot_authorise_another_deletion() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let laptop = alice.login_new_device().await;
    let challenge = alice
        .delete(&device_path(&phone.device_id), json!({}))
        .await;
    let session = challenge.assert_uia_challenge("m.login.password");
    alice
        .delete(
            &device_path(&phone.device_id),
            json!({"auth": alice.password_auth(&session)}),
        )
        .await
        .ok();

    let replay = json!({"auth": {"session": session}});
    let reply = alice.delete(&device_path(&laptop.device_id), replay).await;

    assert!(
        matches!(reply.status, 400 | 401 | 403),
        "a used session must not delete more devices:\n{reply}"
    );
    laptop.whoami().await.ok();
}
