//! Request authentication on the federation listener: an endpoint that needs a server's
//! signature (`GET /_matrix/federation/v1/query/profile`) answers only requests signed with a
//! key the origin publishes, addressed to this server, from a server the `[federation]` allow and
//! deny lists let in. The test signs as hs1 with hs1's own key, read from its data directory.

use std::time::Duration;

use complement_tests::{Federation, Method, Reply, Server, ServerKey, encode, wait_until};

/// `GET` on hs2's federation listener with `authorization` (if any).
async fn get(hs2: &Server, uri: &str, authorization: Option<String>) -> Reply {
    let mut request = hs2.federation_client().request(Method::GET, uri);
    if let Some(value) = authorization {
        request = request.header("Authorization", &value);
    }
    request.send().await
}

fn profile_uri(user_id: &str) -> String {
    format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(user_id)
    )
}

#[tokio::test]
async fn only_requests_signed_by_the_origin_for_this_server_are_answered() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let bob = hs2.register_user("bob").await;
    bob.set_displayname("Bob").await;
    let uri = profile_uri(&bob.user_id);
    let hs1_key = ServerKey::of(&hs1);

    // Signed by hs1 for hs2: answered.
    let signed = hs1_key.authorization("GET", &uri, "hs2.test", None);
    let profile = get(&hs2, &uri, Some(signed.clone())).await.ok();
    assert_eq!(profile["displayname"], "Bob");

    // What each refusal must say, so that a failing signature is not mistaken for a missing one.
    let no_signature = "needs an X-Matrix signature";
    let mismatch = "the signature does not match the request";
    let forged = ServerKey::made_up("hs1.test", "forged", 7);
    let same_id_other_key =
        ServerKey::made_up("hs1.test", hs1_key.key_id.trim_start_matches("ed25519:"), 7);
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization header", None, no_signature),
        ("a bearer token", Some("Bearer abc".into()), no_signature),
        (
            "a malformed X-Matrix header",
            Some("X-Matrix origin=\"hs1.test\"".into()),
            "missing parameter 'key'",
        ),
        (
            "a key hs1 never published",
            Some(forged.authorization("GET", &uri, "hs2.test", None)),
            "hs1.test has no key ed25519:forged",
        ),
        (
            "hs1's key id with another key",
            Some(same_id_other_key.authorization("GET", &uri, "hs2.test", None)),
            mismatch,
        ),
        (
            "a signature for another destination",
            Some(hs1_key.authorization("GET", &uri, "hs3.test", None)),
            "addressed to hs3.test",
        ),
        (
            "a signature over another request",
            Some(hs1_key.authorization("GET", &profile_uri("@alice:hs2.test"), "hs2.test", None)),
            mismatch,
        ),
        (
            "a signature over another method",
            Some(hs1_key.authorization("PUT", &uri, "hs2.test", None)),
            mismatch,
        ),
    ];
    for (label, authorization, reason) in refused {
        let reply = get(&hs2, &uri, authorization).await.labelled(label);
        reply.assert_error(401, "M_UNAUTHORIZED");
        assert!(
            reply.text.contains(reason),
            "{label}: expected {reason:?} in\n{reply}"
        );
    }

    // The well-signed request still works after the refusals (no key was cached wrongly).
    get(&hs2, &uri, Some(signed)).await.ok();
}

#[tokio::test]
async fn a_denied_server_is_refused_even_when_its_signature_is_good() {
    let federation = Federation::new(["hs1.test", "hs2.test", "hs3.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs3 = federation.server("hs3.test").start().await;
    let hs2 = federation
        .server("hs2.test")
        .config("federation.deny", vec!["hs1.*"])
        .start()
        .await;
    let bob = hs2.register_user("bob").await;
    let uri = profile_uri(&bob.user_id);

    let reply = get(
        &hs2,
        &uri,
        Some(ServerKey::of(&hs1).authorization("GET", &uri, "hs2.test", None)),
    )
    .await;
    reply.assert_error(403, "M_FORBIDDEN");
    assert!(reply.text.contains("hs1.test"), "{reply}");

    // Servers the lists do not name are still answered.
    let signed = ServerKey::of(&hs3).authorization("GET", &uri, "hs2.test", None);
    get(&hs2, &uri, Some(signed)).await.ok();
}

#[tokio::test]
async fn an_allow_list_admits_only_the_servers_it_names() {
    let federation = Federation::new(["hs1.test", "hs2.test", "other.example"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let other = federation.server("other.example").start().await;
    let hs2 = federation
        .server("hs2.test")
        .config("federation.allow", vec!["*.test"])
        .start()
        .await;
    let bob = hs2.register_user("bob").await;
    let uri = profile_uri(&bob.user_id);

    let from_hs1 = ServerKey::of(&hs1).authorization("GET", &uri, "hs2.test", None);
    get(&hs2, &uri, Some(from_hs1)).await.ok();
    let from_other = ServerKey::of(&other).authorization("GET", &uri, "hs2.test", None);
    get(&hs2, &uri, Some(from_other))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn concurrent_requests_from_a_new_origin_fetch_its_key_once() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let bob = hs2.register_user("bob").await;
    let uri = profile_uri(&bob.user_id);
    let signed = ServerKey::of(&hs1).authorization("GET", &uri, "hs2.test", None);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = hs2
            .federation_client()
            .request(Method::GET, &uri)
            .header("Authorization", &signed);
        requests.spawn(request.send());
    }
    while let Some(reply) = requests.join_next().await {
        reply.expect("the request task ran").ok();
    }

    // hs1 logs each request it answers: hs2 asked it for its key once.
    let key_requests = || {
        hs1.stderr_tail()
            .lines()
            .filter(|l| l.contains("route=/_matrix/key/v2/server "))
            .count()
    };
    wait_until(
        "hs1 logged the key request",
        Duration::from_secs(5),
        async || key_requests() >= 1,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(key_requests(), 1, "{}", hs1.stderr_tail());
}
