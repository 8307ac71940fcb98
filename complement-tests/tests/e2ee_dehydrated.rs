//! Dehydrated devices (MSC3814, `/_matrix/client/unstable/org.matrix.msc3814.v1`): a user stores
//! a device whose Olm account is encrypted by the client (vodozemac's dehydrated-device format),
//! publishes its keys in the same request, and other users open Olm sessions with it like with any
//! device; a later client fetches the device, reads its to-device messages in batches and decrypts
//! them. Reading consumes nothing; replacing or deleting the device takes its keys and messages
//! with it; nobody else reaches it, nobody logs in as it, and bad uploads store nothing.

use complement_tests::e2ee::{E2eeDevice, MEGOLM_ALGORITHM, OLM_ALGORITHM, signed};
use complement_tests::{Method, Reply, Server, User, Value, encode, json, txn_id};
use serde_json::Map;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

const PREFIX: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1";
const DEHYDRATION_ALGORITHM: &str = "org.matrix.msc3814.v2";

fn device_path() -> String {
    format!("{PREFIX}/dehydrated_device")
}

fn events_path(device_id: &str) -> String {
    format!("{PREFIX}/dehydrated_device/{}/events", encode(device_id))
}

/// A dehydrated device as a client builds one: a fresh Olm account whose curve25519 key is the
/// device id, its signed keys, and the account encrypted with `pickle_key` as `device_data`.
struct Dehydrated {
    user_id: String,
    /// The account's curve25519 key, unless a story chooses another id.
    device_id: String,
    account: Account,
    pickle_key: [u8; 32],
}

impl Dehydrated {
    fn new(user: &User) -> Dehydrated {
        let account = Account::new();
        Dehydrated {
            user_id: user.user_id.clone(),
            device_id: account.curve25519_key().to_base64(),
            account,
            pickle_key: [7; 32],
        }
    }

    fn device_id(&self) -> String {
        self.device_id.clone()
    }

    fn sign(&self, value: Value) -> Value {
        let key_id = format!("ed25519:{}", self.device_id());
        signed(value, &self.user_id, &key_id, |m| self.account.sign(m))
    }

    /// The signed `device_keys`, marked `dehydrated` as MSC3814 asks of clients.
    fn device_keys(&self) -> Value {
        let device = self.device_id();
        self.sign(json!({
            "user_id": self.user_id,
            "device_id": device,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                format!("curve25519:{device}"): self.account.curve25519_key().to_base64(),
                format!("ed25519:{device}"): self.account.ed25519_key().to_base64(),
            },
            "dehydrated": true,
        }))
    }

    /// The whole `PUT /dehydrated_device` body: the account (with `count` new one-time keys and a
    /// fallback key) encrypted into `device_data`, and the public keys.
    fn upload_body(&mut self, count: usize) -> Value {
        self.account.generate_one_time_keys(count);
        self.account.generate_fallback_key();
        let signed_keys = |keys: Vec<(String, Curve25519PublicKey)>, fallback: bool| {
            let keys: Map<String, Value> = keys
                .into_iter()
                .map(|(id, key)| {
                    let mut object = json!({ "key": key.to_base64() });
                    if fallback {
                        object["fallback"] = json!(true);
                    }
                    (format!("signed_curve25519:{id}"), self.sign(object))
                })
                .collect();
            Value::Object(keys)
        };
        let one_time_keys = signed_keys(
            self.account
                .one_time_keys()
                .into_iter()
                .map(|(id, key)| (id.to_base64(), key))
                .collect(),
            false,
        );
        let fallback_keys = signed_keys(
            self.account
                .fallback_key()
                .into_iter()
                .map(|(id, key)| (id.to_base64(), key))
                .collect(),
            true,
        );
        let pickle = self
            .account
            .to_dehydrated_device(&self.pickle_key)
            .expect("a fresh account dehydrates");
        self.account.mark_keys_as_published();
        json!({
            "device_id": self.device_id(),
            "initial_device_display_name": "Dehydrated device",
            "device_data": {
                "algorithm": DEHYDRATION_ALGORITHM,
                "device_pickle": pickle.ciphertext,
                "nonce": pickle.nonce,
            },
            "device_keys": self.device_keys(),
            "one_time_keys": one_time_keys,
            "fallback_keys": fallback_keys,
        })
    }

    /// Uploads this device for `user` with `count` one-time keys; asserts the answer.
    async fn put(&mut self, user: &User, count: usize) {
        let body = self.upload_body(count);
        let answer = user.put(&device_path(), body).await.ok();
        assert_eq!(answer, json!({ "device_id": self.device_id() }));
    }
}

/// `POST …/events` for `device_id`, from `next_batch` when given.
async fn events(user: &User, device_id: &str, next_batch: Option<&str>) -> Reply {
    let body = next_batch.map_or(json!({}), |token| json!({ "next_batch": token }));
    user.post(&events_path(device_id), body).await
}

/// One batch: its events and its `next_batch` (which every answer carries).
async fn batch(user: &User, device_id: &str, next_batch: Option<&str>) -> (Vec<Value>, String) {
    let body = events(user, device_id, next_batch).await.ok();
    let token = body["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("every batch has a next_batch: {body:#}"))
        .to_owned();
    let events = body["events"].as_array().cloned().unwrap_or_default();
    (events, token)
}

/// The `n` of each event's content.
fn numbers(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["content"]["n"].as_i64().expect("a numbered message"))
        .collect()
}

async fn send_to(sender: &User, user_id: &str, device: &str, content: Value) {
    let path = format!(
        "/_matrix/client/v3/sendToDevice/m.test/{}",
        encode(&txn_id())
    );
    sender
        .put(
            &path,
            json!({ "messages": { user_id: { device: content } } }),
        )
        .await
        .ok();
}

async fn device_keys_served(asker: &User, user_id: &str) -> Value {
    asker
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { user_id: [] } }),
        )
        .await
        .ok()["device_keys"][user_id]
        .clone()
}

#[tokio::test]
async fn a_dehydrated_device_receives_olm_messages_and_a_new_client_rehydrates_it() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut bob = E2eeDevice::new(server.register_user("bob").await);
    bob.upload_keys(2).await;
    let mut dehydrated = Dehydrated::new(&alice);
    dehydrated.put(&alice, 3).await;
    let device_id = dehydrated.device_id();

    // Others see it as a device of Alice's, with the keys it signed (`dehydrated` included).
    let peer = bob.query_device(&alice.user_id, &device_id).await;
    let served = device_keys_served(&bob.user, &alice.user_id).await;
    assert_eq!(served[&device_id]["dehydrated"], true, "{served:#}");
    assert!(alice.device_ids().await.contains(&device_id));

    bob.olm_session_with(&alice.user_id, &device_id).await;
    bob.send_olm(&peer, "m.room_key", json!({"secret": "the room key"}))
        .await;

    // Later, a new client of Alice's fetches the device and decrypts it with the pickle key.
    let phone = alice.login_new_device().await;
    let stored = phone.get(&device_path()).await.ok();
    assert_eq!(stored["device_id"], device_id);
    assert_eq!(stored["device_data"]["algorithm"], DEHYDRATION_ALGORITHM);
    let mut rehydrated = Account::from_dehydrated_device(
        stored["device_data"]["device_pickle"].as_str().unwrap(),
        stored["device_data"]["nonce"].as_str().unwrap(),
        &dehydrated.pickle_key,
    )
    .expect("the stored device_data is the pickle uploaded");
    assert_eq!(rehydrated.curve25519_key().to_base64(), device_id);

    let (first, token) = batch(&phone, &device_id, None).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    let event = &first[0];
    assert_eq!(event["sender"], bob.user_id());
    assert_eq!(event["type"], "m.room.encrypted");
    let sender_key =
        Curve25519PublicKey::from_base64(event["content"]["sender_key"].as_str().unwrap()).unwrap();
    let message: OlmMessage =
        serde_json::from_value(event["content"]["ciphertext"][&device_id].clone()).unwrap();
    let OlmMessage::PreKey(message) = message else {
        panic!("the first message opens a session: {event:#}");
    };
    let opened = rehydrated
        .create_inbound_session(SessionConfig::version_1(), sender_key, &message)
        .expect("the rehydrated account holds the claimed one-time key");
    let payload: Value = serde_json::from_slice(&opened.plaintext).unwrap();
    assert_eq!(payload["type"], "m.room_key");
    assert_eq!(payload["content"]["secret"], "the room key");
    assert_eq!(payload["recipient"], alice.user_id);

    // The batch after the last message is empty, and reading consumed nothing.
    let (rest, _) = batch(&phone, &device_id, Some(&token)).await;
    assert!(rest.is_empty(), "{rest:#?}");
    let (again, _) = batch(&phone, &device_id, None).await;
    assert_eq!(again, first);

    // Done with it: deleting takes the device, its keys and its messages.
    let deleted = phone.delete(&device_path(), json!({})).await.ok();
    assert_eq!(deleted, json!({ "device_id": device_id }));
    phone
        .get(&device_path())
        .await
        .assert_error(404, "M_NOT_FOUND");
    phone
        .delete(&device_path(), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    events(&phone, &device_id, None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let served = device_keys_served(&bob.user, &alice.user_id).await;
    assert!(served.get(&device_id).is_none(), "{served:#}");
    assert!(!alice.device_ids().await.contains(&device_id));
}

#[tokio::test]
async fn messages_come_in_batches_with_next_batch_and_stay_until_the_device_goes() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let mut dehydrated = Dehydrated::new(&alice);
    dehydrated.put(&alice, 1).await;
    let device_id = dehydrated.device_id();

    for n in 1..=100 {
        send_to(&bob, &alice.user_id, &device_id, json!({ "n": n })).await;
    }
    // `*` reaches the dehydrated device too.
    send_to(&bob, &alice.user_id, "*", json!({ "n": 101 })).await;

    let (first, token) = batch(&alice, &device_id, None).await;
    assert_eq!(numbers(&first), (1..=100).collect::<Vec<_>>());
    let (second, token) = batch(&alice, &device_id, Some(&token)).await;
    assert_eq!(numbers(&second), [101]);
    let (third, end) = batch(&alice, &device_id, Some(&token)).await;
    assert!(third.is_empty(), "{third:#?}");
    // A message arriving later comes after the end of the previous reading.
    send_to(&bob, &alice.user_id, &device_id, json!({ "n": 102 })).await;
    assert_eq!(
        numbers(&batch(&alice, &device_id, Some(&end)).await.0),
        [102]
    );
    // Tokens consume nothing: reading again from the second batch's token sees the same.
    let (again, _) = batch(&alice, &device_id, Some(&token)).await;
    assert_eq!(numbers(&again), [102]);
    let (from_start, _) = batch(&alice, &device_id, None).await;
    assert_eq!(from_start.len(), 100);

    events(&alice, &device_id, Some("not-a-token"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_new_dehydrated_device_replaces_the_old_one_with_its_keys_and_messages() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let mut old = Dehydrated::new(&alice);
    old.put(&alice, 1).await;
    send_to(&bob, &alice.user_id, &old.device_id(), json!({ "n": 1 })).await;

    let mut new = Dehydrated::new(&alice);
    new.put(&alice, 1).await;
    let stored = alice.get(&device_path()).await.ok();
    assert_eq!(stored["device_id"], new.device_id());
    let served = device_keys_served(&bob, &alice.user_id).await;
    assert!(served.get(old.device_id()).is_none(), "{served:#}");
    assert!(served.get(new.device_id()).is_some(), "{served:#}");
    let devices = alice.device_ids().await;
    assert!(!devices.contains(&old.device_id()), "{devices:?}");
    events(&alice, &old.device_id(), None)
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert!(batch(&alice, &new.device_id(), None).await.0.is_empty());

    // Uploading the same device again replaces it too: its messages go.
    send_to(&bob, &alice.user_id, &new.device_id(), json!({ "n": 2 })).await;
    assert_eq!(numbers(&batch(&alice, &new.device_id(), None).await.0), [2]);
    new.put(&alice, 1).await;
    assert!(batch(&alice, &new.device_id(), None).await.0.is_empty());

    // An id of one of the user's sessions is refused, and nothing changes.
    let mut clash = Dehydrated::new(&alice);
    clash.device_id = alice.device_id.clone();
    let body = clash.upload_body(1);
    alice
        .put(&device_path(), body)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let stored = alice.get(&device_path()).await.ok();
    assert_eq!(stored["device_id"], new.device_id());
    alice.whoami().await.ok();
}

#[tokio::test]
async fn only_its_owner_reaches_a_dehydrated_device_and_nobody_logs_in_as_it() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let mut alices = Dehydrated::new(&alice);
    alices.put(&alice, 1).await;
    send_to(&bob, &alice.user_id, &alices.device_id(), json!({ "n": 1 })).await;

    bob.get(&device_path())
        .await
        .assert_error(404, "M_NOT_FOUND");
    events(&bob, &alices.device_id(), None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let mut bobs = Dehydrated::new(&bob);
    bobs.put(&bob, 1).await;
    events(&bob, &alices.device_id(), None)
        .await
        .assert_error(403, "M_FORBIDDEN");
    let deleted = bob.delete(&device_path(), json!({})).await.ok();
    assert_eq!(deleted["device_id"], bobs.device_id());
    let stored = alice.get(&device_path()).await.ok();
    assert_eq!(stored["device_id"], alices.device_id());
    assert_eq!(
        numbers(&batch(&alice, &alices.device_id(), None).await.0),
        [1]
    );

    // Logging in with the dehydrated device's id is refused, and issues no token for it.
    let mut login = alice.login_body();
    login["device_id"] = json!(alices.device_id());
    alice
        .anonymous()
        .post("/_matrix/client/v3/login", login)
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        numbers(&batch(&alice, &alices.device_id(), None).await.0),
        [1]
    );
    let stored = alice.get(&device_path()).await.ok();
    assert_eq!(stored["device_id"], alices.device_id());
}

#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mut dehydrated = Dehydrated::new(&alice);
    let good = dehydrated.upload_body(1);
    let other = Dehydrated::new(&alice);
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let mut forged = good["device_keys"].clone();
    forged["keys"][format!("curve25519:{}", dehydrated.device_id())] = json!("another key");
    let cases = [
        ("no device_id", without("device_id"), 400, "M_BAD_JSON"),
        ("no device_data", without("device_data"), 400, "M_BAD_JSON"),
        ("no device_keys", without("device_keys"), 400, "M_BAD_JSON"),
        (
            "device_data not an object",
            with("device_data", json!("pickle")),
            400,
            "M_BAD_JSON",
        ),
        (
            "device_data without algorithm",
            with("device_data", json!({"device_pickle": "p"})),
            400,
            "M_MISSING_PARAM",
        ),
        (
            "keys of another device",
            with("device_keys", other.device_keys()),
            400,
            "M_INVALID_PARAM",
        ),
        (
            "a forged self-signature",
            with("device_keys", forged),
            400,
            "M_INVALID_SIGNATURE",
        ),
        (
            "one-time keys signed by another device",
            with(
                "one_time_keys",
                json!({ "signed_curve25519:AAAA": other.sign(json!({"key": "k"})) }),
            ),
            400,
            "M_INVALID_SIGNATURE",
        ),
    ];
    for (label, body, status, errcode) in cases {
        alice
            .put(&device_path(), body)
            .await
            .labelled(label)
            .assert_error(status, errcode);
        alice
            .get(&device_path())
            .await
            .labelled(label)
            .assert_error(404, "M_NOT_FOUND");
    }
    alice
        .client()
        .request(Method::PUT, &device_path())
        .raw_json("{not json")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
    let served = device_keys_served(&alice, &alice.user_id).await;
    assert!(served.get(dehydrated.device_id()).is_none(), "{served:#}");

    // The good body still works.
    alice.put(&device_path(), good).await.ok();
}
