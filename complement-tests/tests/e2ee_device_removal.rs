//! A device with published keys that goes away — logged out, logged out with all the others,
//! logged out by a password change, or taken along by a deactivation — changes its user's device
//! list: the long-poll of a user sharing a room wakes at once with the owner in
//! `device_lists.changed`, and `/keys/query` stops serving the device.

use std::time::{Duration, Instant};

use complement_tests::e2ee::E2eeDevice;
use complement_tests::{Method, Server, User, Value, encode, json};

/// Long enough that a long-poll that is not woken cannot pass for one that is, and shorter than
/// the test client's limit on one request.
const LONG_POLL_MS: u64 = 20_000;
/// How soon after the removal the long-poll must have named the owner.
const WAKE_WITHIN: Duration = Duration::from_secs(10);

/// The ways a device stops being one.
#[derive(Clone, Copy, Debug)]
enum Removal {
    /// The device logs itself out (`POST /logout`).
    Logout,
    /// The device logs out every device of its user (`POST /logout/all`).
    LogoutAll,
    /// Another device of the user changes the password, logging out the others.
    PasswordChange,
    /// Another device of the user deactivates the account.
    Deactivation,
}

impl Removal {
    /// A localpart for the owner of the device this removal removes.
    fn owner_localpart(self) -> &'static str {
        match self {
            Removal::Logout => "bob_logout",
            Removal::LogoutAll => "bob_logout_all",
            Removal::PasswordChange => "bob_password_change",
            Removal::Deactivation => "bob_deactivation",
        }
    }

    /// Removes `device`, whose user is also logged in on `other`.
    async fn remove(self, other: &User, device: &User) {
        match self {
            Removal::Logout => device.post("/_matrix/client/v3/logout", json!({})).await,
            Removal::LogoutAll => {
                device
                    .post("/_matrix/client/v3/logout/all", json!({}))
                    .await
            }
            Removal::PasswordChange => {
                let body = json!({
                    "new_password": "a-brand-new-password",
                    "logout_devices": true,
                });
                other
                    .with_password_uia(Method::POST, "/_matrix/client/v3/account/password", body)
                    .await
            }
            Removal::Deactivation => {
                other
                    .with_password_uia(
                        Method::POST,
                        "/_matrix/client/v3/account/deactivate",
                        json!({}),
                    )
                    .await
            }
        }
        .ok();
    }
}

async fn sync(user: &User, since: Option<&str>, timeout_ms: u64) -> Value {
    let since = since.map_or(String::new(), |s| format!("&since={}", encode(s)));
    user.get(&format!(
        "/_matrix/client/v3/sync?timeout={timeout_ms}{since}"
    ))
    .await
    .ok()
}

fn next_batch(body: &Value) -> String {
    body["next_batch"]
        .as_str()
        .expect("a next_batch")
        .to_owned()
}

fn names_in_changed(body: &Value, user_id: &str) -> bool {
    body["device_lists"]["changed"]
        .as_array()
        .is_some_and(|users| users.iter().any(|u| u == user_id))
}

/// Whether Alice's `/keys/query` serves `device` of `owner`.
async fn served(alice: &User, owner: &str, device: &str) -> bool {
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { owner: [] } }),
        )
        .await
        .ok();
    answer["device_keys"][owner].get(device).is_some()
}

/// Long-polls `/sync` as `alice` from `since` until `owner` is in `device_lists.changed`;
/// answers how long that took.
async fn wait_for_changed(alice: &User, since: String, owner: &str) -> Duration {
    let started = Instant::now();
    let mut since = since;
    loop {
        let body = sync(alice, Some(&since), LONG_POLL_MS).await;
        if names_in_changed(&body, owner) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{owner} never appeared in device_lists.changed: {body:#}"
        );
        since = next_batch(&body);
    }
}

#[tokio::test]
async fn a_removed_device_wakes_the_long_polls_of_those_sharing_a_room_and_is_no_longer_served() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;

    for removal in [
        Removal::Logout,
        Removal::LogoutAll,
        Removal::PasswordChange,
        Removal::Deactivation,
    ] {
        let bob = server.register_user(removal.owner_localpart()).await;
        bob.join(&room).await;
        let mut phone = E2eeDevice::new(bob.login_new_device().await);
        phone.upload_keys(2).await;
        assert!(
            served(&alice, &bob.user_id, phone.device_id()).await,
            "{removal:?}: the phone's keys are served before"
        );

        let since = next_batch(&sync(&alice, None, 0).await);
        let polling = {
            let (alice, owner) = (alice.clone(), bob.user_id.clone());
            tokio::spawn(async move { wait_for_changed(&alice, since, &owner).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        removal.remove(&bob, &phone.user).await;

        let waited = polling.await.expect("the long-poll");
        assert!(
            waited < WAKE_WITHIN,
            "{removal:?}: alice's long-poll named {} only after {waited:?}",
            bob.user_id
        );
        assert!(
            !served(&alice, &bob.user_id, phone.device_id()).await,
            "{removal:?}: the removed phone's keys are no longer served"
        );
    }
}
