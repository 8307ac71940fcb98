//! Server keys over federation: `/_matrix/key/v2/server` (a server's own key, self-signed), the
//! notary endpoints `/_matrix/key/v2/query` (another server's key, signed by it and by the
//! notary), and `/_matrix/federation/v1/version`, all on the TLS federation listener.

use complement_tests::{Federation, Server, Value, json, now_ms, verify_signature};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The single current key of a key response: its id and public key.
fn only_key(keys: &Value) -> (String, String) {
    let verify_keys = keys["verify_keys"]
        .as_object()
        .unwrap_or_else(|| panic!("no verify_keys in {keys}"));
    assert_eq!(verify_keys.len(), 1, "one current key expected: {keys}");
    let (key_id, key) = verify_keys.iter().next().unwrap();
    (key_id.clone(), key["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_server_publishes_its_key_self_signed_for_a_week() {
    let federation = Federation::new(["hs1.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;

    let keys = hs1
        .federation_client()
        .get("/_matrix/key/v2/server")
        .await
        .ok();
    assert_eq!(keys["server_name"], "hs1.test");
    assert_eq!(keys["old_verify_keys"], json!({}));
    let (key_id, public_key) = only_key(&keys);
    assert!(key_id.starts_with("ed25519:"), "{key_id}");
    verify_signature(&keys, "hs1.test", &key_id, &public_key).unwrap();
    let valid_until = keys["valid_until_ts"].as_u64().unwrap();
    let now = now_ms();
    assert!(
        valid_until > now + 6 * DAY_MS && valid_until < now + 8 * DAY_MS,
        "valid_until_ts {valid_until} is not about a week after {now}"
    );

    // The deprecated form with a key id answers the same key.
    let legacy = hs1
        .federation_client()
        .get(&format!("/_matrix/key/v2/server/{key_id}"))
        .await
        .ok();
    assert_eq!(only_key(&legacy), (key_id, public_key));
}

#[tokio::test]
async fn the_federation_listener_serves_only_the_federation_api() {
    let federation = Federation::new(["hs1.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;

    let version = hs1
        .federation_client()
        .get("/_matrix/federation/v1/version")
        .await
        .ok();
    assert_eq!(version["server"]["name"], "Plexus");
    assert!(version["server"]["version"].is_string(), "{version}");

    hs1.federation_client()
        .get("/_matrix/client/versions")
        .await
        .assert_error(404, "M_UNRECOGNIZED");
    hs1.client()
        .get("/_matrix/key/v2/server")
        .await
        .assert_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn federation_is_off_by_default() {
    let server = Server::start().await;
    assert!(
        !server.stdout_tail().contains("federation listening"),
        "{}",
        server.stdout_tail()
    );
    server
        .client()
        .get("/_matrix/federation/v1/version")
        .await
        .assert_error(404, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn a_notary_serves_another_servers_key_signed_by_both() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;

    let own1 = hs1
        .federation_client()
        .get("/_matrix/key/v2/server")
        .await
        .ok();
    let (hs1_key_id, hs1_key) = only_key(&own1);
    let own2 = hs2
        .federation_client()
        .get("/_matrix/key/v2/server")
        .await
        .ok();
    let (hs2_key_id, hs2_key) = only_key(&own2);

    let batch = hs1
        .federation_client()
        .post(
            "/_matrix/key/v2/query",
            json!({"server_keys": {"hs2.test": {}}}),
        )
        .await
        .ok();
    let single = hs1
        .federation_client()
        .get("/_matrix/key/v2/query/hs2.test")
        .await
        .ok();
    for answer in [batch, single] {
        let server_keys = answer["server_keys"].as_array().unwrap();
        assert_eq!(server_keys.len(), 1, "{answer}");
        let keys = &server_keys[0];
        assert_eq!(keys["server_name"], "hs2.test");
        assert_eq!(only_key(keys), (hs2_key_id.clone(), hs2_key.clone()));
        verify_signature(keys, "hs2.test", &hs2_key_id, &hs2_key).unwrap();
        verify_signature(keys, "hs1.test", &hs1_key_id, &hs1_key).unwrap();
    }

    // Asked about itself, the notary answers its own key.
    let itself = hs1
        .federation_client()
        .get("/_matrix/key/v2/query/hs1.test")
        .await
        .ok();
    assert_eq!(only_key(&itself["server_keys"][0]), (hs1_key_id, hs1_key));
}

#[tokio::test]
async fn a_notary_keeps_serving_keys_it_fetched_when_the_server_is_gone() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let mut hs2 = federation.server("hs2.test").start().await;
    let own2 = hs2
        .federation_client()
        .get("/_matrix/key/v2/server")
        .await
        .ok();
    let (hs2_key_id, hs2_key) = only_key(&own2);

    let first = hs1
        .federation_client()
        .get("/_matrix/key/v2/query/hs2.test")
        .await
        .ok();
    assert_eq!(first["server_keys"].as_array().unwrap().len(), 1, "{first}");
    hs2.stop().await;

    // Asked for a validity the cached response does not have, the notary tries hs2, fails, and
    // serves what it has.
    let far_future = now_ms() + 30 * DAY_MS;
    let cached = hs1
        .federation_client()
        .post(
            "/_matrix/key/v2/query",
            json!({"server_keys": {"hs2.test": {
                hs2_key_id.clone(): {"minimum_valid_until_ts": far_future}
            }}}),
        )
        .await
        .ok();
    let keys = &cached["server_keys"][0];
    assert_eq!(only_key(keys), (hs2_key_id.clone(), hs2_key.clone()));
    verify_signature(keys, "hs2.test", &hs2_key_id, &hs2_key).unwrap();
}

#[tokio::test]
async fn a_restarted_server_keeps_its_key_and_certificate() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let mut hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let before = only_key(
        &hs1.federation_client()
            .get("/_matrix/key/v2/server")
            .await
            .ok(),
    );
    let certificate = hs1.data_dir().join("federation-tls.crt");
    let generated = std::fs::read(&certificate).expect("a generated certificate");

    let status = hs1.stop().await;
    assert!(status.success(), "plexus exited with {status}");
    hs1.restart().await;

    let after = only_key(
        &hs1.federation_client()
            .get("/_matrix/key/v2/server")
            .await
            .ok(),
    );
    assert_eq!(before, after);
    assert_eq!(std::fs::read(&certificate).unwrap(), generated);
    // Other servers reach it at its new port.
    let through_hs2 = hs2
        .federation_client()
        .get("/_matrix/key/v2/query/hs1.test")
        .await
        .ok();
    assert_eq!(only_key(&through_hs2["server_keys"][0]), before);
}
