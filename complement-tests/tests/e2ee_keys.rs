//! End-to-end encryption keys, with vodozemac acting as the clients: device keys, one-time and
//! fallback keys uploaded, queried and claimed (never the same key twice, even when claimed
//! concurrently), bad uploads refused with nothing stored, device-list changes in `/sync` and
//! `/keys/changes` (a new device, a deleted device, a user who left, a user who joined), and
//! cross-signing keys and signatures that verify.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use complement_tests::e2ee::{CrossSigning, E2eeDevice, cross_key, key_id, signed, verifies};
use complement_tests::{Method, Server, User, Value, encode, json};
use vodozemac::Ed25519Keypair;

const UPLOAD: &str = "/_matrix/client/v3/keys/upload";
const QUERY: &str = "/_matrix/client/v3/keys/query";
const CLAIM: &str = "/_matrix/client/v3/keys/claim";
const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
const SIGNATURES_UPLOAD: &str = "/_matrix/client/v3/keys/signatures/upload";

async fn query(user: &User, users: Value) -> Value {
    user.post(QUERY, json!({ "device_keys": users })).await.ok()
}

/// Claims one `signed_curve25519` key of each of `devices` of `owner`.
async fn claim(user: &User, owner: &str, devices: &[&str]) -> Value {
    let devices: serde_json::Map<String, Value> = devices
        .iter()
        .map(|d| (d.to_string(), json!("signed_curve25519")))
        .collect();
    user.post(CLAIM, json!({ "one_time_keys": { owner: devices } }))
        .await
        .ok()
}

/// The one key a claim answered for `owner`'s `device`: (key id, key object).
fn claimed_key(answer: &Value, owner: &str, device: &str) -> (String, Value) {
    let keys = answer["one_time_keys"][owner][device]
        .as_object()
        .unwrap_or_else(|| panic!("no key of {device} claimed: {answer:#}"));
    assert_eq!(keys.len(), 1, "{answer:#}");
    let (id, key) = keys.iter().next().expect("one key");
    (id.clone(), key.clone())
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

fn user_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn changed(body: &Value) -> Vec<String> {
    user_list(&body["device_lists"]["changed"])
}

fn left(body: &Value) -> Vec<String> {
    user_list(&body["device_lists"]["left"])
}

async fn key_changes(user: &User, from: &str, to: &str) -> Value {
    user.get(&format!(
        "/_matrix/client/v3/keys/changes?from={}&to={}",
        encode(from),
        encode(to)
    ))
    .await
    .ok()
}

#[tokio::test]
async fn uploaded_device_keys_are_served_to_others_with_a_self_signature_that_verifies() {
    let server = Server::start().await;
    let mut alice = E2eeDevice::new(server.register_user("alice").await);
    let bob = server.register_user("bob").await;

    let one_time_keys = alice.one_time_keys(5);
    let answer = alice
        .upload(json!({ "device_keys": alice.device_keys(), "one_time_keys": one_time_keys }))
        .await;
    assert_eq!(
        answer["one_time_key_counts"]["signed_curve25519"], 5,
        "{answer:#}"
    );

    let answer = query(&bob, json!({ alice.user_id(): [] })).await;
    let keys = &answer["device_keys"][alice.user_id()][alice.device_id()];
    assert_eq!(keys["user_id"], alice.user_id(), "{answer:#}");
    assert_eq!(
        keys["keys"][format!("ed25519:{}", alice.device_id())],
        alice.ed25519()
    );
    let key_id = format!("ed25519:{}", alice.device_id());
    assert!(
        verifies(keys, alice.user_id(), &key_id, &alice.ed25519()),
        "the served keys carry alice's valid self-signature: {keys:#}"
    );
    assert!(answer["failures"].as_object().is_none_or(|f| f.is_empty()));

    // Asking for a device by id, an unknown device, an unknown user.
    let answer = query(
        &bob,
        json!({ alice.user_id(): [alice.device_id(), "NOSUCHDEVICE"], "@nobody:localhost": [] }),
    )
    .await;
    let devices = answer["device_keys"][alice.user_id()].as_object().unwrap();
    assert_eq!(devices.len(), 1, "{answer:#}");
    assert!(answer["device_keys"].get("@nobody:localhost").is_none());
    // A server that cannot be reached is named under `failures`.
    let answer = query(&bob, json!({ "@carol:elsewhere.test": [] })).await;
    assert!(
        answer["failures"].get("elsewhere.test").is_some(),
        "{answer:#}"
    );
}

#[tokio::test]
async fn claimed_keys_verify_are_never_handed_out_twice_and_the_fallback_key_comes_last() {
    let server = Server::start().await;
    let mut alice = E2eeDevice::new(server.register_user("alice").await);
    let bob = server.register_user("bob").await;
    let one_time_keys = alice.one_time_keys(12);
    let fallback = alice.fallback_key();
    alice
        .upload(json!({
            "device_keys": alice.device_keys(),
            "one_time_keys": one_time_keys,
            "fallback_keys": fallback,
        }))
        .await;
    let initial = sync(&alice.user, None, 0).await;
    assert_eq!(
        initial["device_one_time_keys_count"]["signed_curve25519"],
        12
    );
    assert_eq!(
        initial["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    // Ten claims at once get ten different keys.
    let (owner, device) = (alice.user_id().to_owned(), alice.device_id().to_owned());
    let claims = (0..10).map(|_| {
        let (bob, owner, device) = (bob.clone(), owner.clone(), device.clone());
        tokio::spawn(
            async move { claimed_key(&claim(&bob, &owner, &[&device]).await, &owner, &device) },
        )
    });
    let mut ids = BTreeSet::new();
    for claim in claims {
        let (id, key) = claim.await.expect("the claim task");
        assert!(
            verifies(&key, &owner, &format!("ed25519:{device}"), &alice.ed25519()),
            "a claimed key carries alice's valid signature: {key:#}"
        );
        assert!(ids.insert(id.clone()), "{id} was handed out twice");
    }
    // Two more, one after the other, are different again; then only the fallback key is left.
    for _ in 0..2 {
        let (id, _) = claimed_key(&claim(&bob, &owner, &[&device]).await, &owner, &device);
        assert!(ids.insert(id.clone()), "{id} was handed out twice");
    }
    let fallback_id = fallback.as_object().unwrap().keys().next().unwrap().clone();
    for _ in 0..2 {
        let (id, key) = claimed_key(&claim(&bob, &owner, &[&device]).await, &owner, &device);
        assert_eq!(id, fallback_id);
        assert_eq!(key["fallback"], true);
        assert!(verifies(
            &key,
            &owner,
            &format!("ed25519:{device}"),
            &alice.ed25519()
        ));
    }
    let after = sync(&alice.user, Some(&next_batch(&initial)), 0).await;
    assert_eq!(
        after["device_one_time_keys_count"]["signed_curve25519"], 0,
        "{after:#}"
    );
    assert_eq!(after["device_unused_fallback_key_types"], json!([]));

    // A retried upload of a claimed key does not put it back.
    let answer = alice
        .upload(json!({ "one_time_keys": one_time_keys }))
        .await;
    assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], 0);

    // Unknown users and devices are simply absent.
    let answer = bob
        .post(
            CLAIM,
            json!({ "one_time_keys": {
                "@nobody:localhost": { "X": "signed_curve25519" },
                owner.as_str(): { "NOSUCHDEVICE": "signed_curve25519" },
            }}),
        )
        .await
        .ok();
    assert!(
        answer["one_time_keys"]
            .as_object()
            .is_some_and(|k| k.is_empty()),
        "{answer:#}"
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    let server = Server::start().await;
    let mut alice = E2eeDevice::new(server.register_user("alice").await);
    let bob = server.register_user("bob").await;
    let alice_id = alice.user_id().to_owned();
    let stored = |answer: &Value| answer["device_keys"].get(&alice_id).is_some();

    // Keys of another device, or of another user.
    let mut other_device = alice.device_keys();
    other_device["device_id"] = json!("SOMEOTHERDEVICE");
    let other_device = alice.sign(other_device);
    alice
        .user
        .post(UPLOAD, json!({ "device_keys": other_device }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let mut other_user = alice.device_keys();
    other_user["user_id"] = json!(bob.user_id);
    alice
        .user
        .post(UPLOAD, json!({ "device_keys": alice.sign(other_user) }))
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // A signature that does not verify, even with good one-time keys in the same upload.
    let mut forged = alice.device_keys();
    forged["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let one_time_keys = alice.one_time_keys(3);
    alice
        .user
        .post(
            UPLOAD,
            json!({ "device_keys": forged, "one_time_keys": one_time_keys }),
        )
        .await
        .assert_error(400, "M_INVALID_SIGNATURE");
    assert!(!stored(
        &query(&bob, json!({ alice_id.as_str(): [] })).await
    ));
    let counts = alice.upload(json!({})).await;
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 0);

    // A good upload; then new identity keys for the same device are refused.
    let answer = alice
        .upload(json!({ "device_keys": alice.device_keys(), "one_time_keys": one_time_keys }))
        .await;
    assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], 3);
    let impostor = E2eeDevice::new(alice.user.clone());
    alice
        .user
        .post(UPLOAD, json!({ "device_keys": impostor.device_keys() }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let served = query(&bob, json!({ alice.user_id(): [] })).await;
    assert_eq!(
        served["device_keys"][alice.user_id()][alice.device_id()]["keys"]
            [format!("ed25519:{}", alice.device_id())],
        alice.ed25519()
    );

    // The same one-time key id with another key is refused; the same key again is a no-op.
    let (id, _) = one_time_keys.as_object().unwrap().iter().next().unwrap();
    let other_key = alice.sign(json!({ "key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }));
    alice
        .user
        .post(
            UPLOAD,
            json!({ "one_time_keys": { id.as_str(): other_key } }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let answer = alice
        .upload(json!({ "one_time_keys": one_time_keys }))
        .await;
    assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], 3);

    // A one-time key signed by someone else.
    let mut stranger = E2eeDevice::new(bob.clone());
    let foreign = stranger.one_time_keys(1);
    let (foreign_id, foreign_key) = foreign.as_object().unwrap().iter().next().unwrap();
    let resigned = signed(
        json!({ "key": foreign_key["key"] }),
        alice.user_id(),
        &format!("ed25519:{}", alice.device_id()),
        |m| stranger.account().sign(m),
    );
    alice
        .user
        .post(
            UPLOAD,
            json!({ "one_time_keys": { foreign_id.as_str(): resigned } }),
        )
        .await
        .assert_error(400, "M_INVALID_SIGNATURE");
    let answer = alice.upload(json!({})).await;
    assert_eq!(answer["one_time_key_counts"]["signed_curve25519"], 3);
}

#[tokio::test]
async fn a_new_device_of_bob_wakes_alices_long_poll_with_bob_in_device_lists_changed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let since = next_batch(&sync(&alice, None, 0).await);

    let polling = {
        let (alice, since) = (alice.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let body = sync(&alice, Some(&since), 20_000).await;
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let phone = E2eeDevice::new(bob.login_new_device().await);
    phone
        .upload(json!({ "device_keys": phone.device_keys() }))
        .await;
    let (body, waited) = polling.await.expect("the long-poll");
    assert!(waited < Duration::from_secs(15), "woken after {waited:?}");
    assert_eq!(changed(&body), vec![bob.user_id.clone()], "{body:#}");

    // `/keys/changes` between the same tokens says the same; carol, who shares no room with bob,
    // hears nothing of him.
    let changes = key_changes(&alice, &since, &next_batch(&body)).await;
    assert_eq!(user_list(&changes["changed"]), vec![bob.user_id.clone()]);
    let carol_since = next_batch(&sync(&carol, None, 0).await);
    let laptop = E2eeDevice::new(bob.login_new_device().await);
    laptop
        .upload(json!({ "device_keys": laptop.device_keys() }))
        .await;
    assert!(changed(&sync(&carol, Some(&carol_since), 0).await).is_empty());

    // Bob's own first device hears of his new devices.
    let bob_since = next_batch(&sync(&bob, None, 0).await);
    let tablet = E2eeDevice::new(bob.login_new_device().await);
    tablet
        .upload(json!({ "device_keys": tablet.device_keys() }))
        .await;
    let body = sync(&bob, Some(&bob_since), 0).await;
    assert_eq!(changed(&body), vec![bob.user_id.clone()], "{body:#}");

    // Deleting a device with keys is a change too.
    let since = next_batch(&sync(&alice, None, 0).await);
    bob.with_password_uia(
        Method::POST,
        "/_matrix/client/v3/delete_devices",
        json!({ "devices": [tablet.device_id()] }),
    )
    .await
    .ok();
    let body = sync(&alice, Some(&since), 5_000).await;
    assert_eq!(changed(&body), vec![bob.user_id.clone()], "{body:#}");
    let served = query(&alice, json!({ bob.user_id.as_str(): [] })).await;
    assert!(
        served["device_keys"][&bob.user_id]
            .get(tablet.device_id())
            .is_none()
    );
}

#[tokio::test]
async fn users_who_leave_the_only_shared_room_are_left_and_newcomers_changed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let since = next_batch(&sync(&alice, None, 0).await);

    bob.leave(&room).await;
    carol.join(&room).await;
    let body = sync(&alice, Some(&since), 0).await;
    assert_eq!(left(&body), vec![bob.user_id.clone()], "{body:#}");
    assert_eq!(changed(&body), vec![carol.user_id.clone()], "{body:#}");
    let changes = key_changes(&alice, &since, &next_batch(&body)).await;
    assert_eq!(user_list(&changes["left"]), vec![bob.user_id.clone()]);
    assert_eq!(user_list(&changes["changed"]), vec![carol.user_id.clone()]);

    // Someone who still shares another room is not left.
    let other = alice.create_room(json!({ "preset": "public_chat" })).await;
    carol.join(&other).await;
    let since = next_batch(&sync(&alice, None, 0).await);
    carol.leave(&room).await;
    let body = sync(&alice, Some(&since), 0).await;
    assert!(left(&body).is_empty(), "{body:#}");

    // Alice leaving is the same as everyone else leaving, from her side.
    let since = next_batch(&body);
    alice.leave(&other).await;
    let body = sync(&alice, Some(&since), 0).await;
    assert_eq!(left(&body), vec![carol.user_id.clone()], "{body:#}");
}

#[tokio::test]
async fn cross_signing_keys_and_signatures_are_served_and_verify() {
    let server = Server::start().await;
    let alice = E2eeDevice::new(server.register_user("alice").await);
    let bob = E2eeDevice::new(server.register_user("bob").await);
    alice
        .upload(json!({ "device_keys": alice.device_keys() }))
        .await;
    let (a, b) = (alice.user_id().to_owned(), bob.user_id().to_owned());

    // The first upload needs no password; the same keys again neither; other keys do.
    let first = CrossSigning::new();
    alice
        .user
        .post(SIGNING_UPLOAD, first.upload_body(&a))
        .await
        .ok();
    alice
        .user
        .post(SIGNING_UPLOAD, first.upload_body(&a))
        .await
        .ok();
    let keys = CrossSigning::new();
    let challenge = alice.user.post(SIGNING_UPLOAD, keys.upload_body(&a)).await;
    challenge.assert_uia_challenge("m.login.password");
    alice
        .user
        .with_password_uia(Method::POST, SIGNING_UPLOAD, keys.upload_body(&a))
        .await
        .ok();
    // A self-signing key the master key did not sign.
    let stray = Ed25519Keypair::new();
    alice
        .user
        .post(
            SIGNING_UPLOAD,
            json!({ "self_signing_key": cross_key(&a, "self_signing", &stray, Some(&stray)) }),
        )
        .await
        .assert_error(400, "M_INVALID_SIGNATURE");
    let bobs = CrossSigning::new();
    bob.user
        .post(SIGNING_UPLOAD, bobs.upload_body(&b))
        .await
        .ok();

    // Alice's self-signing key signs her device; her user-signing key signs bob's master key.
    let device_keys = alice.device_keys();
    let device_signed = signed(device_keys.clone(), &a, &key_id(&keys.self_signing), |m| {
        keys.self_signing.sign(m)
    });
    let bobs_master = cross_key(&b, "master", &bobs.master, None);
    let master_signed = signed(bobs_master, &a, &key_id(&keys.user_signing), |m| {
        keys.user_signing.sign(m)
    });
    let bobs_master_public = bobs.master.public_key().to_base64();
    let answer = alice
        .user
        .post(
            SIGNATURES_UPLOAD,
            json!({
                a.as_str(): { alice.device_id(): device_signed },
                b.as_str(): { bobs_master_public.as_str(): master_signed },
            }),
        )
        .await
        .ok();
    assert!(
        answer["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{answer:#}"
    );

    // Bob sees alice's device signed by her self-signing key, which her master key signed.
    let served = query(&bob.user, json!({ a.as_str(): [] })).await;
    let device = &served["device_keys"][&a][alice.device_id()];
    let ssk_public = keys.self_signing.public_key().to_base64();
    assert!(
        verifies(device, &a, &key_id(&keys.self_signing), &ssk_public),
        "{served:#}"
    );
    let ssk = &served["self_signing_keys"][&a];
    let master_public = keys.master.public_key().to_base64();
    assert!(
        verifies(ssk, &a, &key_id(&keys.master), &master_public),
        "{served:#}"
    );
    assert_eq!(
        served["master_keys"][&a]["keys"][key_id(&keys.master)],
        master_public
    );
    assert!(
        served["user_signing_keys"].get(&a).is_none(),
        "only alice sees her user-signing key"
    );

    // Alice sees her user-signing key and her signature on bob's master key; bob does not.
    let served = query(&alice.user, json!({ a.as_str(): [], b.as_str(): [] })).await;
    let usk = &served["user_signing_keys"][&a];
    assert!(
        verifies(usk, &a, &key_id(&keys.master), &master_public),
        "{served:#}"
    );
    let master = &served["master_keys"][&b];
    let usk_public = keys.user_signing.public_key().to_base64();
    assert!(
        verifies(master, &a, &key_id(&keys.user_signing), &usk_public),
        "{served:#}"
    );
    let served = query(&bob.user, json!({ b.as_str(): [] })).await;
    assert!(
        served["master_keys"][&b]["signatures"].get(&a).is_none(),
        "{served:#}"
    );

    // A bad signature is a failure of that key alone, and nothing is stored.
    let forged = signed(device_keys, &a, &key_id(&keys.self_signing), |m| {
        stray.sign(m)
    });
    let answer = alice
        .user
        .post(
            SIGNATURES_UPLOAD,
            json!({ a.as_str(): { alice.device_id(): forged } }),
        )
        .await
        .ok();
    assert_eq!(
        answer["failures"][&a][alice.device_id()]["errcode"],
        "M_INVALID_SIGNATURE",
        "{answer:#}"
    );
    let served = query(&bob.user, json!({ a.as_str(): [] })).await;
    let device = &served["device_keys"][&a][alice.device_id()];
    assert!(verifies(
        device,
        &a,
        &key_id(&keys.self_signing),
        &ssk_public
    ));
}
