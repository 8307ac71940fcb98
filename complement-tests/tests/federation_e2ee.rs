//! End-to-end encryption between two servers: Alice on hs1 and Bob on hs2, each a vodozemac
//! device, find each other's keys through their own server (`/keys/query` and `/keys/claim`,
//! which hs1 forwards to hs2 over federation), open an Olm session with to-device messages that
//! cross servers as `m.direct_to_device` EDUs, and share a Megolm session that decrypts Alice's
//! room message on Bob's side and Bob's reply on Alice's. A new device of Bob's reaches Alice's
//! `device_lists.changed` through an `m.device_list_update` EDU.

use std::time::Duration;

use complement_tests::e2ee::{CrossSigning, E2eeDevice, cross_key, key_id, signed, verifies};
use complement_tests::{Federation, Server, User, json, wait_until};

const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";

async fn two_servers(federation: &Federation) -> (Server, Server) {
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    (hs1, hs2)
}

/// An encrypted room of Alice's on hs1 that Bob of hs2 joined.
async fn shared_room(alice: &User, bob: &User) -> String {
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }],
        }))
        .await;
    bob.join_via(&room, "hs1.test").await.ok();
    room
}

#[tokio::test]
async fn users_of_two_servers_exchange_encrypted_messages() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = shared_room(&alice, &bob).await;
    let mut alice = E2eeDevice::new(alice);
    let mut bob = E2eeDevice::new(bob);
    alice.upload_keys(5).await;
    bob.upload_keys(5).await;
    // Both start syncing before anything is sent to them.
    alice.sync(0).await;
    bob.sync(0).await;

    // Alice's Megolm key reaches Bob's device over Olm, through hs1, federation and hs2.
    let (bob_id, bob_device) = (bob.user_id().to_owned(), bob.device_id().to_owned());
    alice
        .share_megolm_session(&room, &[(&bob_id, &bob_device)])
        .await;
    alice.send_encrypted(&room, "the night round is done").await;
    let message = bob.decrypt_room_message(&room).await;
    assert_eq!(message.body(), "the night round is done");
    assert_eq!(message.sender, alice.user_id());

    // And back: Bob claims Alice's keys through hs2, which asks hs1.
    let (alice_id, alice_device) = (alice.user_id().to_owned(), alice.device_id().to_owned());
    bob.share_megolm_session(&room, &[(&alice_id, &alice_device)])
        .await;
    bob.send_encrypted(&room, "thank you").await;
    let reply = alice.decrypt_room_message(&room).await;
    assert_eq!(reply.body(), "thank you");
}

#[tokio::test]
async fn a_new_device_on_one_server_shows_in_device_lists_on_the_other() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let _room = shared_room(&alice, &bob).await;
    let mut bob_phone = E2eeDevice::new(bob.login_new_device().await);
    bob_phone.upload_keys(1).await;
    let first = alice.get("/_matrix/client/v3/sync?timeout=0").await.ok();
    let mut since = first["next_batch"]
        .as_str()
        .expect("a next_batch")
        .to_owned();

    // Bob signs in on a laptop and publishes its keys: hs2 tells hs1.
    let mut bob_laptop = E2eeDevice::new(bob.login_new_device().await);
    bob_laptop.upload_keys(1).await;
    let laptop = bob_laptop.device_id().to_owned();
    let bob_id = bob.user_id.clone();
    wait_until(
        "Bob in Alice's device_lists.changed",
        Duration::from_secs(20),
        async || {
            let path = format!("/_matrix/client/v3/sync?timeout=5000&since={since}");
            let answer = alice.get(&path).await.ok();
            since = answer["next_batch"].as_str().unwrap_or(&since).to_owned();
            answer["device_lists"]["changed"]
                .as_array()
                .is_some_and(|users| users.iter().any(|u| u == bob_id.as_str()))
        },
    )
    .await;

    // Alice's query, answered by hs2 through hs1, lists both of Bob's devices with their keys.
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {&bob.user_id: []}}),
        )
        .await
        .ok();
    let devices = &answer["device_keys"][&bob.user_id];
    assert!(devices[&laptop]["keys"].is_object(), "{answer:#}");
    assert!(
        devices[bob_phone.device_id()]["keys"].is_object(),
        "{answer:#}"
    );
    let failures = answer["failures"].as_object();
    assert!(failures.is_none_or(|f| f.is_empty()), "{answer:#}");
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_named_in_failures() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    // hs2 is never started.
    let alice = hs1.register_user("alice").await;
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {"@bob:hs2.test": []}, "timeout": 2000}),
        )
        .await
        .ok();
    assert!(answer["failures"]["hs2.test"].is_object(), "{answer:#}");
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({"one_time_keys": {"@bob:hs2.test": {"PHONE": "signed_curve25519"}}, "timeout": 2000}),
        )
        .await
        .ok();
    assert!(answer["failures"]["hs2.test"].is_object(), "{answer:#}");
    let keys = answer["one_time_keys"].as_object();
    assert!(keys.is_none_or(|k| k.is_empty()), "{answer:#}");
}

#[tokio::test]
async fn a_user_signs_the_master_key_of_a_user_of_another_server() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let (hs1, hs2) = two_servers(&federation).await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let _room = shared_room(&alice, &bob).await;
    let (alices, bobs) = (CrossSigning::new(), CrossSigning::new());
    alice
        .post(SIGNING_UPLOAD, alices.upload_body(&alice.user_id))
        .await
        .ok();
    bob.post(SIGNING_UPLOAD, bobs.upload_body(&bob.user_id))
        .await
        .ok();

    // Alice's user-signing key signs Bob's master key, which hs1 fetches from hs2 to check.
    let bobs_master = cross_key(&bob.user_id, "master", &bobs.master, None);
    let signature = signed(
        bobs_master,
        &alice.user_id,
        &key_id(&alices.user_signing),
        |m| alices.user_signing.sign(m),
    );
    let public = bobs.master.public_key().to_base64();
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &bob.user_id: { public.as_str(): signature } }),
        )
        .await
        .ok();
    let failures = answer["failures"].as_object();
    assert!(failures.is_none_or(|f| f.is_empty()), "{answer:#}");

    // Alice's query shows Bob's master key (from hs2) with her signature (kept on hs1).
    let query = json!({"device_keys": {&bob.user_id: []}});
    let served = alice
        .post("/_matrix/client/v3/keys/query", query.clone())
        .await
        .ok();
    let master = &served["master_keys"][&bob.user_id];
    let usk_public = alices.user_signing.public_key().to_base64();
    assert!(
        verifies(
            master,
            &alice.user_id,
            &key_id(&alices.user_signing),
            &usk_public
        ),
        "{served:#}"
    );
    // A forged signature is that key's failure.
    let forged = signed(
        cross_key(&bob.user_id, "master", &bobs.master, None),
        &alice.user_id,
        &key_id(&alices.user_signing),
        |m| alices.master.sign(m),
    );
    let answer = alice
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            json!({ &bob.user_id: { public.as_str(): forged } }),
        )
        .await
        .ok();
    assert_eq!(
        answer["failures"][&bob.user_id][&public]["errcode"], "M_INVALID_SIGNATURE",
        "{answer:#}"
    );
}
