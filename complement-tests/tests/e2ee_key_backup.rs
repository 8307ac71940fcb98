//! Server-side key backup (`/room_keys`): versions created, read, updated and deleted with the
//! specification's errors; keys stored per session, per room and in bulk, replaced only by better
//! keys, with an `etag` that changes whenever the keys do and a `count`; and a Megolm session key
//! (vodozemac) that round-trips through the backup and still decrypts.

use complement_tests::{Method, Server, User, Value, encode, json};
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, InboundGroupSession, MegolmMessage, SessionConfig,
};

const ALGORITHM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!ward:localhost";
const OTHER_ROOM: &str = "!pharmacy:localhost";

fn auth_data(public_key: &str) -> Value {
    json!({"public_key": public_key, "signatures": {}})
}

async fn create_version(user: &User, public_key: &str) -> String {
    let body = user
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({"algorithm": ALGORITHM, "auth_data": auth_data(public_key)}),
        )
        .await
        .ok();
    body["version"].as_str().expect("a version").to_owned()
}

fn keys_path(rest: &str, version: &str) -> String {
    format!(
        "/_matrix/client/v3/room_keys/keys{rest}?version={}",
        encode(version)
    )
}

fn room_path(room: &str, version: &str) -> String {
    keys_path(&format!("/{}", encode(room)), version)
}

fn session_path(room: &str, session: &str, version: &str) -> String {
    keys_path(&format!("/{}/{}", encode(room), encode(session)), version)
}

fn key(first_message_index: u64, forwarded_count: u64, is_verified: bool, data: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ciphertext": data, "ephemeral": "e", "mac": "m"},
    })
}

async fn version_info(user: &User, version: &str) -> Value {
    user.get(&format!(
        "/_matrix/client/v3/room_keys/version/{}",
        encode(version)
    ))
    .await
    .ok()
}

#[tokio::test]
async fn a_backup_version_is_created_read_updated_and_deleted() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let latest = "/_matrix/client/v3/room_keys/version";
    alice.get(latest).await.assert_error(404, "M_NOT_FOUND");

    let first = create_version(&alice, "key-1").await;
    let info = alice.get(latest).await.ok();
    assert_eq!(info["version"], first.as_str());
    assert_eq!(info["algorithm"], ALGORITHM);
    assert_eq!(info["auth_data"], auth_data("key-1"));
    assert_eq!(info["count"], 0);
    assert!(info["etag"].is_string());
    assert_eq!(version_info(&alice, &first).await, info);

    // Only auth_data may change; a version in the body must be the one in the path.
    let path = format!("{latest}/{}", encode(&first));
    alice
        .put(
            &path,
            json!({"algorithm": ALGORITHM, "auth_data": auth_data("key-1b"), "version": first}),
        )
        .await
        .ok();
    assert_eq!(
        version_info(&alice, &first).await["auth_data"],
        auth_data("key-1b")
    );
    alice
        .put(
            &path,
            json!({"algorithm": "org.example.other", "auth_data": auth_data("x")}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(
            &path,
            json!({"algorithm": ALGORITHM, "auth_data": auth_data("x"), "version": "999"}),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .put(
            &format!("{latest}/999"),
            json!({"algorithm": ALGORITHM, "auth_data": auth_data("x")}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("{latest}/999"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&format!("{latest}/not-a-version"))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // A new version becomes the current one; uploads to the old one are refused with it.
    let second = create_version(&alice, "key-2").await;
    assert_ne!(first, second);
    assert_eq!(alice.get(latest).await.ok()["version"], second.as_str());
    let wrong = alice
        .put(&session_path(ROOM, "s1", &first), key(0, 0, false, "data"))
        .await;
    wrong.assert_error(403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(wrong.body["current_version"], second.as_str());
    alice
        .put(&session_path(ROOM, "s1", "999"), key(0, 0, false, "data"))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Deleting is idempotent; a deleted version is gone, and the one before is current again.
    let second_path = format!("{latest}/{}", encode(&second));
    alice.delete(&second_path, json!({})).await.ok();
    alice.delete(&second_path, json!({})).await.ok();
    alice
        .get(&second_path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&keys_path("", &second))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.get(latest).await.ok()["version"], first.as_str());
    alice
        .delete(&format!("{latest}/999"), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Another user sees none of it.
    let bob = server.register_user("bob").await;
    bob.get(latest).await.assert_error(404, "M_NOT_FOUND");
    bob.get(&path).await.assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn keys_are_stored_read_and_deleted_with_etag_and_count() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let version = create_version(&alice, "k").await;
    let initial_etag = version_info(&alice, &version).await["etag"].clone();

    let one = alice
        .put(&session_path(ROOM, "s1", &version), key(3, 0, false, "a"))
        .await
        .ok();
    assert_eq!(one["count"], 1);
    assert_ne!(one["etag"], initial_etag);

    let bulk = alice
        .put(
            &keys_path("", &version),
            json!({"rooms": {
                ROOM: {"sessions": {"s2": key(0, 0, true, "b")}},
                OTHER_ROOM: {"sessions": {"s1": key(0, 1, false, "c")}},
            }}),
        )
        .await
        .ok();
    assert_eq!(bulk["count"], 3);
    assert_ne!(bulk["etag"], one["etag"]);
    let room = alice
        .put(
            &room_path(OTHER_ROOM, &version),
            json!({"sessions": {"s2": key(5, 0, false, "d")}}),
        )
        .await
        .ok();
    assert_eq!(room["count"], 4);
    let info = version_info(&alice, &version).await;
    assert_eq!(info["count"], 4);
    assert_eq!(info["etag"], room["etag"]);

    let all = alice.get(&keys_path("", &version)).await.ok();
    assert_eq!(all["rooms"][ROOM]["sessions"]["s1"], key(3, 0, false, "a"));
    assert_eq!(all["rooms"][ROOM]["sessions"]["s2"], key(0, 0, true, "b"));
    assert_eq!(
        all["rooms"][OTHER_ROOM]["sessions"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    let in_room = alice.get(&room_path(ROOM, &version)).await.ok();
    assert_eq!(in_room["sessions"].as_object().unwrap().len(), 2);
    assert_eq!(
        alice.get(&session_path(ROOM, "s2", &version)).await.ok(),
        key(0, 0, true, "b")
    );
    alice
        .get(&session_path(ROOM, "nope", &version))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        alice
            .get(&room_path("!empty:localhost", &version))
            .await
            .ok(),
        json!({"sessions": {}})
    );

    let deleted = alice
        .delete(&session_path(ROOM, "s1", &version), json!({}))
        .await
        .ok();
    assert_eq!(deleted["count"], 3);
    assert_ne!(deleted["etag"], room["etag"]);
    let deleted = alice
        .delete(&room_path(OTHER_ROOM, &version), json!({}))
        .await
        .ok();
    assert_eq!(deleted["count"], 1);
    let deleted = alice.delete(&keys_path("", &version), json!({})).await.ok();
    assert_eq!(deleted["count"], 0);
    assert_eq!(
        alice.get(&keys_path("", &version)).await.ok(),
        json!({"rooms": {}})
    );
}

#[tokio::test]
async fn a_key_replaces_the_stored_one_only_when_it_is_better() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let version = create_version(&alice, "k").await;
    let path = session_path(ROOM, "s", &version);
    let stored = || async { alice.get(&path).await.ok() };

    let first = alice.put(&path, key(5, 2, false, "first")).await.ok();
    // Worse or equal keys change nothing, not even the etag.
    for worse in [
        key(6, 0, false, "later index"),
        key(5, 3, false, "forwarded more"),
        key(5, 2, false, "same"),
    ] {
        let answer = alice.put(&path, worse).await.ok();
        assert_eq!(answer["etag"], first["etag"]);
        assert_eq!(answer["count"], 1);
    }
    assert_eq!(stored().await, key(5, 2, false, "first"));

    // Better: a lower forward count, then a lower first index, then verified over anything.
    let answer = alice
        .put(&path, key(5, 1, false, "fewer forwards"))
        .await
        .ok();
    assert_ne!(answer["etag"], first["etag"]);
    assert_eq!(stored().await, key(5, 1, false, "fewer forwards"));
    alice
        .put(&path, key(4, 9, false, "earlier index"))
        .await
        .ok();
    assert_eq!(stored().await, key(4, 9, false, "earlier index"));
    alice.put(&path, key(9, 9, true, "verified")).await.ok();
    assert_eq!(stored().await, key(9, 9, true, "verified"));
    alice.put(&path, key(0, 0, false, "unverified")).await.ok();
    assert_eq!(stored().await, key(9, 9, true, "verified"));
    assert_eq!(
        alice.put(&path, key(1, 0, true, "both")).await.ok()["count"],
        1
    );
    assert_eq!(stored().await, key(1, 0, true, "both"));
}

#[tokio::test]
async fn a_deleted_versions_keys_are_gone() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let old = create_version(&alice, "old").await;
    alice
        .put(&session_path(ROOM, "s", &old), key(0, 0, true, "x"))
        .await
        .ok();
    alice
        .delete(
            &format!("/_matrix/client/v3/room_keys/version/{}", encode(&old)),
            json!({}),
        )
        .await
        .ok();
    let new = create_version(&alice, "new").await;
    assert_eq!(version_info(&alice, &new).await["count"], 0);
    assert_eq!(
        alice.get(&keys_path("", &new)).await.ok(),
        json!({"rooms": {}})
    );
    alice
        .get(&session_path(ROOM, "s", &old))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn malformed_backup_requests_are_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let create = "/_matrix/client/v3/room_keys/version";
    alice
        .post(create, json!({"auth_data": {}}))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .post(create, json!({"algorithm": ALGORITHM, "auth_data": "text"}))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .client()
        .request(Method::POST, create)
        .raw_json("{nope")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");

    let version = create_version(&alice, "k").await;
    let path = session_path(ROOM, "s", &version);
    let mut incomplete = key(0, 0, false, "x");
    incomplete.as_object_mut().unwrap().remove("is_verified");
    alice
        .put(&path, incomplete)
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .put(
            &path,
            json!({"first_message_index": -1, "forwarded_count": 0,
                           "is_verified": false, "session_data": {}}),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    // A bulk upload with one bad key stores none of them.
    alice
        .put(
            &keys_path("", &version),
            json!({"rooms": {ROOM: {"sessions": {
                "good": key(0, 0, false, "x"),
                "bad": {"first_message_index": 0},
            }}}}),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    assert_eq!(version_info(&alice, &version).await["count"], 0);
    server
        .client()
        .get(create)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_megolm_session_key_round_trips_through_the_backup_and_still_decrypts() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let version = create_version(&alice, "k").await;

    let mut outbound = GroupSession::new(SessionConfig::version_1());
    let inbound = InboundGroupSession::new(&outbound.session_key(), SessionConfig::version_1());
    let ciphertext = outbound.encrypt("the backup works").to_base64();
    let exported = inbound.export_at_first_known_index().to_base64();
    // Real clients encrypt `session_data` to the backup's public key; the server never looks
    // inside, so the exported key stands in for the ciphertext here.
    alice
        .put(
            &session_path(ROOM, &outbound.session_id(), &version),
            json!({"first_message_index": 0, "forwarded_count": 0, "is_verified": true,
                   "session_data": {"ciphertext": exported, "ephemeral": "e", "mac": "m"}}),
        )
        .await
        .ok();

    // A new device restores the key from the backup and reads the old message.
    let restoring = alice.login_new_device().await;
    let backup = restoring.get(&keys_path("", &version)).await.ok();
    let data = &backup["rooms"][ROOM]["sessions"][outbound.session_id()]["session_data"];
    let key = ExportedSessionKey::from_base64(data["ciphertext"].as_str().unwrap()).unwrap();
    let mut restored = InboundGroupSession::import(&key, SessionConfig::version_1());
    let message = MegolmMessage::from_base64(&ciphertext).unwrap();
    assert_eq!(
        restored.decrypt(&message).unwrap().plaintext,
        b"the backup works"
    );
}
