//! End-to-end encryption as a client does it, with real cryptography from vodozemac. An
//! [`E2eeDevice`] is a logged-in device with an Olm account: it uploads its signed keys, learns
//! other devices' keys through `/keys/query` and `/keys/claim` (checking every signature), opens
//! Olm sessions, sends and receives Olm-encrypted to-device messages, shares Megolm room keys and
//! sends and decrypts `m.room.encrypted` room messages — all through the server's HTTP API, so a
//! story reads the way the clients talk:
//!
//! ```no_run
//! # async fn story(server: complement_tests::Server) {
//! use complement_tests::e2ee::E2eeDevice;
//! use complement_tests::json;
//! let mut alice = E2eeDevice::new(server.register_user("alice").await);
//! let mut bob = E2eeDevice::new(server.register_user("bob").await);
//! alice.upload_keys(5).await;
//! bob.upload_keys(5).await;
//! let room = alice.user.create_room(json!({"invite": [bob.user_id()]})).await;
//! bob.user.join(&room).await;
//! alice.share_megolm_session(&room, &[(bob.user_id(), bob.device_id())]).await;
//! alice.send_encrypted(&room, "hello").await;
//! assert_eq!(bob.decrypt_room_message(&room).await.body(), "hello");
//! # }
//! ```
//!
//! Users of other servers work the same way: queries and claims go to the device's own server,
//! which asks theirs over federation. The helpers assert as they go (a refused request, a bad
//! signature or an undecryptable message fails the test with the whole story); a test that expects
//! a refusal sends the request itself, with [`E2eeDevice::sign`] and friends to build the body.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use vodozemac::megolm::{
    GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig, SessionKey,
};
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig as OlmConfig};
use vodozemac::{Curve25519PublicKey, Ed25519Keypair, Ed25519PublicKey, Ed25519Signature};

use crate::client::encode;
use crate::federation::canonical_json;
use crate::room::txn_id;
use crate::user::User;

pub const OLM_ALGORITHM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";

/// How long the waiting helpers ([`E2eeDevice::receive_to_device`],
/// [`E2eeDevice::decrypt_room_message`]) keep syncing before they fail the test.
const PATIENCE: Duration = Duration::from_secs(30);

/// The canonical JSON a signature covers: the object without `signatures` and `unsigned`.
pub fn signable(value: &Value) -> String {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("signatures");
        object.remove("unsigned");
    }
    canonical_json(&value)
}

/// `value` with `signer`'s signature by `key_id` added (other signatures are kept), the way the
/// specification signs JSON.
pub fn signed(
    mut value: Value,
    signer: &str,
    key_id: &str,
    sign: impl Fn(&[u8]) -> Ed25519Signature,
) -> Value {
    let signature = sign(signable(&value).as_bytes()).to_base64();
    value["signatures"][signer][key_id] = json!(signature);
    value
}

/// Whether `object` carries a valid signature by `signer`'s `key_id` made with `public_key`.
pub fn verifies(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object["signatures"][signer][key_id].as_str() else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (
        Ed25519PublicKey::from_base64(public_key),
        Ed25519Signature::from_base64(signature),
    ) else {
        return false;
    };
    key.verify(signable(object).as_bytes(), &signature).is_ok()
}

/// Another device as this one learnt it from `/keys/query`, its self-signature checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDevice {
    pub user_id: String,
    pub device_id: String,
    pub curve25519: String,
    pub ed25519: String,
}

/// A to-device message as received through `/sync`, decrypted if it came through Olm.
#[derive(Clone, Debug)]
pub struct ToDevice {
    pub sender: String,
    /// The type of the decrypted event (`m.room_key`, …), or of the plain message.
    pub event_type: String,
    /// The content of the decrypted event, or of the plain message.
    pub content: Value,
    /// For an Olm message: the sender's curve25519 identity key.
    pub sender_key: Option<String>,
    /// For an Olm message: the whole decrypted payload (`sender`, `keys`, `recipient`, …).
    pub payload: Option<Value>,
    /// Whether it was an Olm pre-key message (one that can open a session).
    pub pre_key: bool,
}

/// A room message after Megolm decryption.
#[derive(Clone, Debug)]
pub struct RoomMessage {
    pub event_id: String,
    pub sender: String,
    /// The type of the decrypted event, usually `m.room.message`.
    pub event_type: String,
    pub content: Value,
    /// The Megolm session the message was encrypted with.
    pub session_id: String,
}

impl RoomMessage {
    /// The `body` of the decrypted content ("" when it has none).
    pub fn body(&self) -> &str {
        self.content["body"].as_str().unwrap_or_default()
    }
}

/// A logged-in device with its Olm account, its Olm and Megolm sessions and its sync position.
pub struct E2eeDevice {
    pub user: User,
    account: Account,
    /// Olm sessions by the other side's curve25519 key, most recently used first.
    olm_sessions: BTreeMap<String, Vec<Session>>,
    /// The room keys this device sends with, by room.
    outbound: BTreeMap<String, GroupSession>,
    /// The room keys this device received, by (room, session id).
    inbound: BTreeMap<(String, String), InboundGroupSession>,
    /// The `next_batch` of the last sync, if any.
    since: Option<String>,
    /// To-device messages received and not yet taken by [`E2eeDevice::receive_to_device`].
    inbox: VecDeque<ToDevice>,
    /// Others' encrypted room events seen in sync and not yet decrypted, by room.
    encrypted: BTreeMap<String, Vec<Value>>,
}

impl E2eeDevice {
    /// A device with a fresh Olm account for `user`'s session; nothing is uploaded yet.
    pub fn new(user: User) -> E2eeDevice {
        E2eeDevice {
            user,
            account: Account::new(),
            olm_sessions: BTreeMap::new(),
            outbound: BTreeMap::new(),
            inbound: BTreeMap::new(),
            since: None,
            inbox: VecDeque::new(),
            encrypted: BTreeMap::new(),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.user.user_id
    }

    pub fn device_id(&self) -> &str {
        &self.user.device_id
    }

    /// The Olm account, for stories that need a raw signature or key.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// This device's curve25519 identity key (unpadded base64).
    pub fn curve25519(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// This device's ed25519 signing key (unpadded base64).
    pub fn ed25519(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    /// `value` signed by this device's ed25519 key, as `ed25519:{device_id}`.
    pub fn sign(&self, value: Value) -> Value {
        let key_id = format!("ed25519:{}", self.device_id());
        signed(value, self.user_id(), &key_id, |m| self.account.sign(m))
    }

    /// The signed `device_keys` object of `/keys/upload`.
    pub fn device_keys(&self) -> Value {
        let device = self.device_id();
        self.sign(json!({
            "user_id": self.user_id(),
            "device_id": device,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                format!("curve25519:{device}"): self.curve25519(),
                format!("ed25519:{device}"): self.ed25519(),
            },
        }))
    }

    /// `count` new signed one-time keys (the `one_time_keys` object of `/keys/upload`), marked
    /// published.
    pub fn one_time_keys(&mut self, count: usize) -> Value {
        self.account.generate_one_time_keys(count);
        let keys: Map<String, Value> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                let object = self.sign(json!({ "key": key.to_base64() }));
                (format!("signed_curve25519:{}", id.to_base64()), object)
            })
            .collect();
        self.account.mark_keys_as_published();
        Value::Object(keys)
    }

    /// A new signed fallback key (the `fallback_keys` object of `/keys/upload`).
    pub fn fallback_key(&mut self) -> Value {
        self.account.generate_fallback_key();
        let (id, key) = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .expect("vodozemac made a fallback key");
        let object = self.sign(json!({ "key": key.to_base64(), "fallback": true }));
        json!({ format!("signed_curve25519:{}", id.to_base64()): object })
    }

    /// `POST /keys/upload` with `body`, asserting success; returns the answer.
    pub async fn upload(&self, body: Value) -> Value {
        self.user
            .post("/_matrix/client/v3/keys/upload", body)
            .await
            .ok()
    }

    /// Uploads the device keys and `count` one-time keys, as a client does when it starts.
    pub async fn upload_keys(&mut self, count: usize) {
        let one_time_keys = self.one_time_keys(count);
        let answer = self
            .upload(json!({ "device_keys": self.device_keys(), "one_time_keys": one_time_keys }))
            .await;
        assert_eq!(
            answer["one_time_key_counts"]["signed_curve25519"],
            count,
            "{}'s one-time keys are counted: {answer:#}",
            self.user_id()
        );
    }

    /// `POST /keys/query` for one device; asserts that its keys are served with a valid
    /// self-signature by the ed25519 key they name.
    pub async fn query_device(&self, user_id: &str, device_id: &str) -> PeerDevice {
        let answer = self
            .user
            .post(
                "/_matrix/client/v3/keys/query",
                json!({ "device_keys": { user_id: [device_id] } }),
            )
            .await
            .ok();
        let keys = &answer["device_keys"][user_id][device_id];
        let key = |algorithm: &str| {
            keys["keys"][format!("{algorithm}:{device_id}")]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{user_id} {device_id} has no {algorithm} key served: {answer:#}")
                })
                .to_owned()
        };
        let (curve25519, ed25519) = (key("curve25519"), key("ed25519"));
        assert_eq!(keys["user_id"], user_id, "{answer:#}");
        assert_eq!(keys["device_id"], device_id, "{answer:#}");
        assert!(
            verifies(keys, user_id, &format!("ed25519:{device_id}"), &ed25519),
            "{user_id} {device_id}'s keys carry a valid self-signature: {answer:#}"
        );
        PeerDevice {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            curve25519,
            ed25519,
        }
    }

    /// `POST /keys/claim` of one `signed_curve25519` key of `peer`; asserts that one is handed
    /// out, signed by `peer`.
    pub async fn claim_one_time_key(&self, peer: &PeerDevice) -> Curve25519PublicKey {
        let (user, device) = (&peer.user_id, &peer.device_id);
        let answer = self
            .user
            .post(
                "/_matrix/client/v3/keys/claim",
                json!({ "one_time_keys": { user: { device: "signed_curve25519" } } }),
            )
            .await
            .ok();
        let (id, key) = answer["one_time_keys"][user][device]
            .as_object()
            .and_then(|keys| keys.iter().next())
            .unwrap_or_else(|| panic!("a one-time key of {user} {device} is claimed: {answer:#}"));
        assert!(id.starts_with("signed_curve25519:"), "{answer:#}");
        assert!(
            verifies(key, user, &format!("ed25519:{device}"), &peer.ed25519),
            "the claimed key carries {user} {device}'s valid signature: {answer:#}"
        );
        key["key"]
            .as_str()
            .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
            .unwrap_or_else(|| panic!("the claimed key is a curve25519 key: {answer:#}"))
    }

    /// An Olm session with `user_id`'s `device_id`: the one already open, if any (opened by
    /// either side), else a new outbound session to its identity key and a claimed one-time key.
    /// Returns the device as `/keys/query` serves it.
    pub async fn olm_session_with(&mut self, user_id: &str, device_id: &str) -> PeerDevice {
        let peer = self.query_device(user_id, device_id).await;
        if self.olm_sessions.contains_key(&peer.curve25519) {
            return peer;
        }
        let one_time_key = self.claim_one_time_key(&peer).await;
        let identity = Curve25519PublicKey::from_base64(&peer.curve25519)
            .unwrap_or_else(|e| panic!("{peer:?} has a bad curve25519 key: {e}"));
        let session = self
            .account
            .create_outbound_session(OlmConfig::version_1(), identity, one_time_key)
            .unwrap_or_else(|e| panic!("an Olm session with {peer:?}: {e}"));
        self.olm_sessions
            .insert(peer.curve25519.clone(), vec![session]);
        peer
    }

    /// The `m.room.encrypted` to-device content carrying `event_type` and `content` to `peer`
    /// through the Olm session with it (see [`E2eeDevice::olm_session_with`]), with the payload
    /// fields the specification asks for (sender, recipient and their keys).
    pub fn encrypt_olm(&mut self, peer: &PeerDevice, event_type: &str, content: Value) -> Value {
        let payload = json!({
            "type": event_type,
            "content": content,
            "sender": self.user_id(),
            "sender_device": self.device_id(),
            "keys": { "ed25519": self.ed25519() },
            "recipient": peer.user_id,
            "recipient_keys": { "ed25519": peer.ed25519 },
        });
        let session = self
            .olm_sessions
            .get_mut(&peer.curve25519)
            .and_then(|sessions| sessions.first_mut())
            .unwrap_or_else(|| panic!("no Olm session with {peer:?}: open one first"));
        let message = session
            .encrypt(payload.to_string())
            .unwrap_or_else(|e| panic!("Olm encryption for {peer:?}: {e}"));
        json!({
            "algorithm": OLM_ALGORITHM,
            "sender_key": self.curve25519(),
            "ciphertext": {
                &peer.curve25519: serde_json::to_value(&message).expect("Olm messages serialise"),
            },
        })
    }

    /// Sends `event_type` with `content` to `peer`, Olm-encrypted, with `PUT /sendToDevice`.
    pub async fn send_olm(&mut self, peer: &PeerDevice, event_type: &str, content: Value) {
        let encrypted = self.encrypt_olm(peer, event_type, content);
        let messages = json!({ &peer.user_id: { &peer.device_id: encrypted } });
        self.send_to_device("m.room.encrypted", messages).await;
    }

    /// `PUT /sendToDevice/{event_type}/{txnId}` with `messages` as given, asserting success.
    pub async fn send_to_device(&self, event_type: &str, messages: Value) {
        let path = format!(
            "/_matrix/client/v3/sendToDevice/{}/{}",
            encode(event_type),
            encode(&txn_id())
        );
        self.user
            .put(&path, json!({ "messages": messages }))
            .await
            .ok();
    }

    /// One `/sync` from this device's last position (an initial sync the first time), waiting up
    /// to `timeout_ms` for news. Olm to-device messages are decrypted (and room keys stored) on
    /// the way into the inbox; others' encrypted room events are kept for
    /// [`E2eeDevice::decrypt_room_message`]. Returns the whole answer.
    pub async fn sync(&mut self, timeout_ms: u64) -> Value {
        let since = self
            .since
            .as_deref()
            .map_or(String::new(), |s| format!("&since={}", encode(s)));
        let body = self
            .user
            .get(&format!(
                "/_matrix/client/v3/sync?timeout={timeout_ms}{since}"
            ))
            .await
            .ok();
        self.since = Some(
            body["next_batch"]
                .as_str()
                .unwrap_or_else(|| panic!("the sync answer has a next_batch: {body:#}"))
                .to_owned(),
        );
        for event in body["to_device"]["events"].as_array().into_iter().flatten() {
            let received = self.open_to_device(event);
            if received.event_type == "m.room_key" && received.payload.is_some() {
                self.store_room_key(&received);
            }
            self.inbox.push_back(received);
        }
        let me = self.user.user_id.clone();
        let rooms = body["rooms"]["join"].as_object().into_iter().flatten();
        for (room_id, room) in rooms {
            let events = room["timeline"]["events"].as_array().into_iter().flatten();
            let theirs = events
                .filter(|e| e["type"] == "m.room.encrypted" && e["sender"].as_str() != Some(&me));
            self.encrypted
                .entry(room_id.clone())
                .or_default()
                .extend(theirs.cloned());
        }
        body
    }

    /// The next to-device message of `event_type` (after decryption), syncing until it comes.
    /// Messages of other types stay in the inbox.
    pub async fn receive_to_device(&mut self, event_type: &str) -> ToDevice {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.inbox.iter().position(|m| m.event_type == event_type) {
                return self.inbox.remove(at).expect("the position is in the inbox");
            }
            assert!(
                Instant::now() < deadline,
                "{} received no {event_type} to-device message in {PATIENCE:?}; the inbox: {:#?}",
                self.user_id(),
                self.inbox
            );
            self.sync(2_000).await;
        }
    }

    /// Every to-device message received so far and not yet taken, in order.
    pub fn take_inbox(&mut self) -> Vec<ToDevice> {
        self.inbox.drain(..).collect()
    }

    /// Starts a Megolm session for `room_id` (unless this device already has one there) and
    /// sends its key as `m.room_key`, Olm-encrypted, to each `(user_id, device_id)` of
    /// `recipients`, opening Olm sessions as needed. Returns the session id.
    pub async fn share_megolm_session(
        &mut self,
        room_id: &str,
        recipients: &[(&str, &str)],
    ) -> String {
        let session = self
            .outbound
            .entry(room_id.to_owned())
            .or_insert_with(|| GroupSession::new(MegolmConfig::version_1()));
        let room_key = json!({
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": room_id,
            "session_id": session.session_id(),
            "session_key": session.session_key().to_base64(),
        });
        let session_id = session.session_id();
        for (user_id, device_id) in recipients {
            let peer = self.olm_session_with(user_id, device_id).await;
            self.send_olm(&peer, "m.room_key", room_key.clone()).await;
        }
        session_id
    }

    /// The `m.room.encrypted` content of `event_type` with `content` in `room_id`, encrypted with
    /// this device's Megolm session there (see [`E2eeDevice::share_megolm_session`]).
    pub fn encrypt_room_event(&mut self, room_id: &str, event_type: &str, content: Value) -> Value {
        let (sender_key, device_id) = (self.curve25519(), self.device_id().to_owned());
        let session = self.outbound.get_mut(room_id).unwrap_or_else(|| {
            panic!("no Megolm session in {room_id}: share one first with share_megolm_session")
        });
        let plaintext = json!({ "type": event_type, "content": content, "room_id": room_id });
        json!({
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": sender_key,
            "ciphertext": session.encrypt(plaintext.to_string()).to_base64(),
            "session_id": session.session_id(),
            "device_id": device_id,
        })
    }

    /// Sends an encrypted `m.text` message with `body` into `room_id`; returns the event id.
    pub async fn send_encrypted(&mut self, room_id: &str, body: &str) -> String {
        let content = json!({ "msgtype": "m.text", "body": body });
        let encrypted = self.encrypt_room_event(room_id, "m.room.message", content);
        self.user
            .send_event(room_id, "m.room.encrypted", encrypted)
            .await
    }

    /// Decrypts one `m.room.encrypted` event of `room_id` (as `/sync` or `/messages` serve it)
    /// with a room key this device received; an error names what is missing or wrong.
    pub fn decrypt_room_event(
        &mut self,
        room_id: &str,
        event: &Value,
    ) -> Result<RoomMessage, String> {
        let content = &event["content"];
        if content["algorithm"] != MEGOLM_ALGORITHM {
            return Err(format!("not a Megolm event: {event:#}"));
        }
        let session_id = content["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let session = self
            .inbound
            .get_mut(&(room_id.to_owned(), session_id.clone()))
            .ok_or_else(|| format!("no room key for session {session_id} in {room_id}"))?;
        let message = content["ciphertext"]
            .as_str()
            .and_then(|c| MegolmMessage::from_base64(c).ok())
            .ok_or_else(|| format!("the ciphertext is not a Megolm message: {event:#}"))?;
        let decrypted = session
            .decrypt(&message)
            .map_err(|e| format!("Megolm decryption failed: {e}"))?;
        let plaintext: Value = serde_json::from_slice(&decrypted.plaintext)
            .map_err(|e| format!("the plaintext is not JSON: {e}"))?;
        if plaintext["room_id"] != room_id {
            return Err(format!("the plaintext names another room: {plaintext:#}"));
        }
        Ok(RoomMessage {
            event_id: event["event_id"].as_str().unwrap_or_default().to_owned(),
            sender: event["sender"].as_str().unwrap_or_default().to_owned(),
            event_type: plaintext["type"].as_str().unwrap_or_default().to_owned(),
            content: plaintext["content"].clone(),
            session_id,
        })
    }

    /// The next encrypted room message of another device in `room_id` that this device can
    /// decrypt, syncing until one comes (and its room key with it).
    pub async fn decrypt_room_message(&mut self, room_id: &str) -> RoomMessage {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let pending = self.encrypted.remove(room_id).unwrap_or_default();
            let mut failures = Vec::new();
            let mut found = None;
            let mut kept = Vec::new();
            for event in pending {
                if found.is_some() {
                    kept.push(event);
                    continue;
                }
                match self.decrypt_room_event(room_id, &event) {
                    Ok(message) => found = Some(message),
                    Err(e) => {
                        failures.push(e);
                        kept.push(event);
                    }
                }
            }
            self.encrypted.insert(room_id.to_owned(), kept);
            if let Some(message) = found {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "{} decrypted no message in {room_id} in {PATIENCE:?}: {failures:#?}",
                self.user_id()
            );
            self.sync(2_000).await;
        }
    }

    /// A to-device event from `/sync`, Olm-decrypted if it is an `m.room.encrypted` for this
    /// device; the payload's sender and recipient fields are checked.
    fn open_to_device(&mut self, event: &Value) -> ToDevice {
        let sender = event["sender"].as_str().unwrap_or_default().to_owned();
        let event_type = event["type"].as_str().unwrap_or_default();
        let content = &event["content"];
        if event_type != "m.room.encrypted" || content["algorithm"] != OLM_ALGORITHM {
            return ToDevice {
                sender,
                event_type: event_type.to_owned(),
                content: content.clone(),
                sender_key: None,
                payload: None,
                pre_key: false,
            };
        }
        let sender_key = content["sender_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mine = &content["ciphertext"][self.curve25519()];
        let message: OlmMessage = serde_json::from_value(mine.clone()).unwrap_or_else(|e| {
            panic!(
                "an Olm message for {} from {sender}: {e}: {event:#}",
                self.user_id()
            )
        });
        let pre_key = matches!(message, OlmMessage::PreKey(_));
        let plaintext = self
            .olm_decrypt(&sender_key, &message)
            .unwrap_or_else(|e| panic!("{} cannot decrypt {event:#}: {e}", self.user_id()));
        let payload: Value = serde_json::from_slice(&plaintext)
            .unwrap_or_else(|e| panic!("the Olm plaintext is not JSON: {e}"));
        assert_eq!(payload["sender"], sender.as_str(), "{payload:#}");
        assert_eq!(payload["recipient"], self.user_id(), "{payload:#}");
        assert_eq!(
            payload["recipient_keys"]["ed25519"],
            self.ed25519(),
            "{payload:#}"
        );
        ToDevice {
            sender,
            event_type: payload["type"].as_str().unwrap_or_default().to_owned(),
            content: payload["content"].clone(),
            sender_key: Some(sender_key),
            payload: Some(payload),
            pre_key,
        }
    }

    /// Decrypts with a session already open with `sender_key`, or opens an inbound session from a
    /// pre-key message. The session that worked moves to the front: it is the one to answer on.
    fn olm_decrypt(&mut self, sender_key: &str, message: &OlmMessage) -> Result<Vec<u8>, String> {
        let sessions = self.olm_sessions.entry(sender_key.to_owned()).or_default();
        for at in 0..sessions.len() {
            let fits = match message {
                OlmMessage::PreKey(pre_key) => sessions[at].session_id() == pre_key.session_id(),
                OlmMessage::Normal(_) => true,
            };
            if fits && let Ok(plaintext) = sessions[at].decrypt(message) {
                let session = sessions.remove(at);
                sessions.insert(0, session);
                return Ok(plaintext);
            }
        }
        let OlmMessage::PreKey(pre_key) = message else {
            return Err(format!("no Olm session with {sender_key} decrypts it"));
        };
        let identity = Curve25519PublicKey::from_base64(sender_key)
            .map_err(|e| format!("a bad sender key {sender_key}: {e}"))?;
        let inbound = self
            .account
            .create_inbound_session(OlmConfig::version_1(), identity, pre_key)
            .map_err(|e| format!("no inbound Olm session: {e}"))?;
        let sessions = self.olm_sessions.entry(sender_key.to_owned()).or_default();
        sessions.insert(0, inbound.session);
        Ok(inbound.plaintext)
    }

    /// Keeps the Megolm session of a received `m.room_key`.
    fn store_room_key(&mut self, received: &ToDevice) {
        let content = &received.content;
        assert_eq!(content["algorithm"], MEGOLM_ALGORITHM, "{content:#}");
        let room_id = content["room_id"].as_str().unwrap_or_default().to_owned();
        let session_key = content["session_key"]
            .as_str()
            .and_then(|k| SessionKey::from_base64(k).ok())
            .unwrap_or_else(|| panic!("the room key has a Megolm session key: {content:#}"));
        let session = InboundGroupSession::new(&session_key, MegolmConfig::version_1());
        assert_eq!(
            content["session_id"].as_str(),
            Some(session.session_id().as_str()),
            "{content:#}"
        );
        self.inbound
            .insert((room_id, session.session_id()), session);
    }
}

/// A cross-signing key object of `user` for `usage`, signed by `signer` (the master key) if any.
pub fn cross_key(
    user: &str,
    usage: &str,
    key: &Ed25519Keypair,
    signer: Option<&Ed25519Keypair>,
) -> Value {
    let public = key.public_key().to_base64();
    let value = json!({
        "user_id": user,
        "usage": [usage],
        "keys": { format!("ed25519:{public}"): public },
    });
    match signer {
        Some(master) => {
            let id = format!("ed25519:{}", master.public_key().to_base64());
            signed(value, user, &id, |m| master.sign(m))
        }
        None => value,
    }
}

/// A user's three cross-signing keys.
pub struct CrossSigning {
    pub master: Ed25519Keypair,
    pub self_signing: Ed25519Keypair,
    pub user_signing: Ed25519Keypair,
}

impl Default for CrossSigning {
    fn default() -> CrossSigning {
        CrossSigning::new()
    }
}

impl CrossSigning {
    pub fn new() -> CrossSigning {
        CrossSigning {
            master: Ed25519Keypair::new(),
            self_signing: Ed25519Keypair::new(),
            user_signing: Ed25519Keypair::new(),
        }
    }

    /// The body of `POST /keys/device_signing/upload` publishing the three keys.
    pub fn upload_body(&self, user: &str) -> Value {
        json!({
            "master_key": cross_key(user, "master", &self.master, None),
            "self_signing_key": cross_key(user, "self_signing", &self.self_signing, Some(&self.master)),
            "user_signing_key": cross_key(user, "user_signing", &self.user_signing, Some(&self.master)),
        })
    }
}

/// The key id (`ed25519:<public key>`) of a cross-signing key.
pub fn key_id(key: &Ed25519Keypair) -> String {
    format!("ed25519:{}", key.public_key().to_base64())
}
