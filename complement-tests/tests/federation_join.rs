//! Users of another server joining rooms of this one, and what this server sends them after:
//! a test federation peer (a fake homeserver) asks `make_join` for a template, signs it and
//! hands it back through `send_join`; from then on the local users' events and typing reach the
//! peer in `/send` transactions, retried while the peer is down and kept across a restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use complement_tests::{
    FederationPeer, PeerRequest, Server, User, Value, encode, json, pdu_event_id, room_path,
    verify_pdu, verify_signature, wait_until,
};

const SEND_PATH: &str = "/_matrix/federation/v1/send/{txnId}";

fn make_join_uri(room_id: &str, user_id: &str) -> String {
    format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
        encode(room_id),
        encode(user_id)
    )
}

fn send_join_uri(room_id: &str, event_id: &str) -> String {
    format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        encode(room_id),
        encode(event_id)
    )
}

/// The peer's `make_join` for its user `localpart`: the template and the room version.
async fn make_join(
    peer: &FederationPeer,
    server: &Server,
    room_id: &str,
    localpart: &str,
) -> (Value, String) {
    let uri = make_join_uri(room_id, &peer.user_id(localpart));
    let answer = peer.client(server).get(&uri).await.ok();
    let version = answer["room_version"]
        .as_str()
        .unwrap_or_else(|| panic!("make_join names no room version: {answer}"))
        .to_owned();
    (answer["event"].clone(), version)
}

/// The whole handshake for the peer's user `localpart`; returns the `send_join` answer.
async fn join(peer: &FederationPeer, server: &Server, room_id: &str, localpart: &str) -> Value {
    let (template, version) = make_join(peer, server, room_id, localpart).await;
    let pdu = peer.sign_pdu(&version, template);
    peer.client(server)
        .put(&send_join_uri(room_id, &pdu.event_id), pdu.json)
        .await
        .ok()
}

/// Every PDU the peer received in `/send` transactions, with the transaction's id.
fn received_pdus(requests: &[PeerRequest]) -> Vec<(String, Value)> {
    requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/federation/v1/send/"))
        .flat_map(|r| {
            let txn = r.path.rsplit('/').next().unwrap_or_default().to_owned();
            let pdus = r.body["pdus"].as_array().cloned().unwrap_or_default();
            pdus.into_iter().map(move |pdu| (txn.clone(), pdu))
        })
        .collect()
}

/// The EDUs the peer received, in arrival order.
fn received_edus(requests: &[PeerRequest]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/federation/v1/send/"))
        .flat_map(|r| r.body["edus"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn with_body<'a>(pdus: &'a [(String, Value)], body: &str) -> Vec<&'a (String, Value)> {
    pdus.iter()
        .filter(|(_, pdu)| pdu["content"]["body"] == body)
        .collect()
}

/// Alice's public room on a server that federates with the peer (which accepts transactions).
async fn public_room(peer: &FederationPeer) -> (Server, User, String) {
    peer.handle("PUT", SEND_PATH, |_| (200, json!({"pdus": {}})));
    let server = peer.server("hs1.test").start().await;
    let alice = server.register_user("alice").await;
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    (server, alice, room_id)
}

#[tokio::test]
async fn a_peer_user_joins_a_public_room_and_receives_what_is_said_there() {
    let peer = FederationPeer::start().await;
    let (server, alice, room_id) = public_room(&peer).await;
    let (key_id, public_key) = peer.client(&server).server_key().await;
    let bob = peer.user_id("bob");

    let (template, version) = make_join(&peer, &server, &room_id, "bob").await;
    assert_eq!(template["type"], "m.room.member");
    assert_eq!(template["state_key"], bob.as_str());
    assert_eq!(template["sender"], bob.as_str());
    assert_eq!(template["content"]["membership"], "join");
    assert!(
        template["prev_events"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{template}"
    );
    assert!(
        template["auth_events"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{template}"
    );
    assert!(
        template["depth"].as_u64().is_some_and(|d| d > 1),
        "{template}"
    );

    let pdu = peer.sign_pdu(&version, template);
    let joined = peer
        .client(&server)
        .put(&send_join_uri(&room_id, &pdu.event_id), pdu.json.clone())
        .await
        .ok();
    assert_eq!(joined["origin"], "hs1.test");
    assert_eq!(joined["members_omitted"], false);
    let servers: HashSet<&str> = joined["servers_in_room"]
        .as_array()
        .expect("servers_in_room")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        servers.contains("hs1.test") && servers.contains(peer.server_name()),
        "{servers:?}"
    );
    // The state before the join: the room's creation, Alice's membership, no Bob yet.
    let state = joined["state"].as_array().expect("state");
    let types: HashSet<&str> = state.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
    ] {
        assert!(types.contains(kind), "no {kind} in the state: {types:?}");
    }
    assert!(!state.iter().any(|e| e["state_key"] == bob.as_str()));
    // The auth chain holds the events authorising the join, as full, signed PDUs.
    let auth_chain = joined["auth_chain"].as_array().expect("auth_chain");
    let chain_ids: HashSet<String> = auth_chain
        .iter()
        .map(|e| pdu_event_id(e, &version))
        .collect();
    for auth_event in pdu.json["auth_events"].as_array().expect("auth_events") {
        let id = auth_event.as_str().unwrap_or_default().to_owned();
        assert!(chain_ids.contains(&id), "{id} is not in the auth chain");
    }
    for event in state.iter().chain(auth_chain) {
        verify_pdu(event, &version, "hs1.test", &key_id, &public_key).unwrap();
    }
    // The event comes back with the resident server's signature next to the peer's.
    let event = &joined["event"];
    assert_eq!(pdu_event_id(event, &version), pdu.event_id);
    verify_pdu(
        event,
        &version,
        peer.server_name(),
        &peer.key_id(),
        &peer.public_key(),
    )
    .unwrap();
    // A bare join survives redaction whole, so the resident's signature covers it as it is.
    verify_signature(event, "hs1.test", &key_id, &public_key).unwrap();

    // Bob is a member as far as Alice can tell.
    let members = alice.members(&room_id, "").await;
    assert!(
        members.contains(&(bob.clone(), "join".into())),
        "{members:?}"
    );

    // What Alice says reaches the peer once, as the signed PDU with its event id.
    let event_id = alice.send_message(&room_id, "Hello, Bob").await;
    let what = "the peer received Alice's message";
    wait_until(what, Duration::from_secs(30), async || {
        !with_body(&received_pdus(&peer.received()), "Hello, Bob").is_empty()
    })
    .await;
    let sent = peer
        .wait_for_request("PUT", "/_matrix/federation/v1/send/")
        .await;
    sent.verify(peer.server_name(), &public_key).unwrap();
    assert_eq!(sent.origin().as_deref(), Some("hs1.test"));
    assert_eq!(sent.body["origin"], "hs1.test");
    // A later message is sent after it; by then a duplicate would have been sent too.
    alice.send_message(&room_id, "Still there?").await;
    wait_until(
        "the second message arrived",
        Duration::from_secs(30),
        async || !with_body(&received_pdus(&peer.received()), "Still there?").is_empty(),
    )
    .await;
    let pdus = received_pdus(&peer.received());
    let hello = with_body(&pdus, "Hello, Bob");
    assert_eq!(hello.len(), 1, "sent more than once: {hello:?}");
    let (_, message) = hello[0];
    assert_eq!(pdu_event_id(message, &version), event_id);
    assert_eq!(message["room_id"], room_id.as_str());
    assert_eq!(message["sender"], alice.user_id.as_str());
    assert!(
        message.get("event_id").is_none(),
        "a v10+ PDU carries no event_id: {message}"
    );
    verify_pdu(message, &version, "hs1.test", &key_id, &public_key).unwrap();
    // Bob's own join is not echoed back to his server.
    assert!(!pdus.iter().any(|(_, p)| p["state_key"] == bob.as_str()));

    // Alice's typing reaches the peer as an EDU.
    alice
        .put(
            &room_path(&room_id, &format!("typing/{}", encode(&alice.user_id))),
            json!({"typing": true, "timeout": 10000}),
        )
        .await
        .ok();
    wait_until(
        "the peer saw Alice typing",
        Duration::from_secs(30),
        async || {
            received_edus(&peer.received()).iter().any(|edu| {
                edu["edu_type"] == "m.typing"
                    && edu["content"]["room_id"] == room_id.as_str()
                    && edu["content"]["user_id"] == alice.user_id.as_str()
                    && edu["content"]["typing"] == true
            })
        },
    )
    .await;

    // And her read receipt, as an `m.receipt` EDU.
    alice
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", encode(&event_id))),
            json!({}),
        )
        .await
        .ok();
    wait_until(
        "the peer got Alice's receipt",
        Duration::from_secs(30),
        async || {
            received_edus(&peer.received()).iter().any(|edu| {
            edu["edu_type"] == "m.receipt"
                && edu["content"][room_id.as_str()]["m.read"][alice.user_id.as_str()]["event_ids"]
                    == json!([event_id])
        })
        },
    )
    .await;
}

#[tokio::test]
async fn joins_the_room_does_not_allow_are_refused() {
    let peer = FederationPeer::start().await;
    let (server, alice, public_room_id) = public_room(&peer).await;
    let private = alice.create_room(json!({"preset": "private_chat"})).await;
    let client = peer.client(&server);

    // An invite-only room, without an invite.
    client
        .get(&make_join_uri(&private, &peer.user_id("bob")))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A user of another server than the one asking.
    client
        .get(&make_join_uri(&public_room_id, "@carol:elsewhere.test"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A room this server does not know.
    client
        .get(&make_join_uri("!nowhere:hs1.test", &peer.user_id("bob")))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // A server that supports none of the room's versions.
    let only_v1 = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=1",
        encode(&public_room_id),
        encode(&peer.user_id("bob"))
    );
    let refused = client.get(&only_v1).await;
    refused.assert_error(400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert!(refused.body["room_version"].is_string(), "{}", refused);
}

#[tokio::test]
async fn join_events_that_do_not_check_out_are_refused() {
    let peer = FederationPeer::start().await;
    let (server, alice, room_id) = public_room(&peer).await;
    let client = peer.client(&server);
    let (template, version) = make_join(&peer, &server, &room_id, "bob").await;
    let pdu = peer.sign_pdu(&version, template.clone());

    // Changed after signing: the content hash, and so the event id, no longer match.
    let mut altered = pdu.json.clone();
    altered["content"]["displayname"] = json!("Mallory");
    client
        .put(&send_join_uri(&room_id, &pdu.event_id), altered)
        .await
        .assert_error(400, "M_BAD_JSON");

    // Signed with a key the peer never published (signatures leave the event id unchanged).
    let mut forged = pdu.json.clone();
    let signature = forged["signatures"][peer.server_name()][peer.key_id()]
        .as_str()
        .expect("the peer signed the event")
        .to_owned();
    let mut chars: Vec<char> = signature.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    forged["signatures"][peer.server_name()][peer.key_id()] =
        json!(chars.into_iter().collect::<String>());
    client
        .put(&send_join_uri(&room_id, &pdu.event_id), forged)
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A join for a user of another server.
    let mut other = template.clone();
    other["sender"] = json!("@carol:elsewhere.test");
    other["state_key"] = json!("@carol:elsewhere.test");
    let foreign = peer.sign_pdu(&version, other);
    client
        .put(&send_join_uri(&room_id, &foreign.event_id), foreign.json)
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A leave sent as a join.
    let mut leave = template;
    leave["content"]["membership"] = json!("leave");
    let leave = peer.sign_pdu(&version, leave);
    client
        .put(&send_join_uri(&room_id, &leave.event_id), leave.json)
        .await
        .assert_error(400, "M_BAD_JSON");

    // None of them made Bob a member; the genuine event still does.
    let bob = peer.user_id("bob");
    assert!(
        !alice
            .members(&room_id, "")
            .await
            .iter()
            .any(|(user, _)| *user == bob)
    );
    client
        .put(&send_join_uri(&room_id, &pdu.event_id), pdu.json)
        .await
        .ok();
    assert!(
        alice
            .members(&room_id, "")
            .await
            .contains(&(bob, "join".into()))
    );
}

#[tokio::test]
async fn a_peer_that_was_down_gets_the_transaction_again_even_after_a_restart() {
    let peer = FederationPeer::start().await;
    let down = Arc::new(AtomicBool::new(false));
    // The transaction ids the peer accepted, in order.
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (down, accepted) = (down.clone(), accepted.clone());
        peer.handle("PUT", SEND_PATH, move |request| {
            if down.load(Ordering::SeqCst) {
                return (500, json!({"errcode": "M_UNKNOWN", "error": "down"}));
            }
            let txn = request
                .path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            accepted.lock().unwrap().push(txn);
            (200, json!({"pdus": {}}))
        });
    }
    let mut server = peer.server("hs1.test").start().await;
    let alice = server.register_user("alice").await;
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    join(&peer, &server, &room_id, "bob").await;

    down.store(true, Ordering::SeqCst);
    let event_id = alice.send_message(&room_id, "Are you there?").await;
    let attempts = || with_body(&received_pdus(&peer.received()), "Are you there?").len();
    wait_until("the first attempt", Duration::from_secs(30), async || {
        attempts() >= 1
    })
    .await;
    let first_txn = with_body(&received_pdus(&peer.received()), "Are you there?")[0]
        .0
        .clone();
    // Retried with back-off while the peer fails.
    wait_until("a retry", Duration::from_secs(30), async || attempts() >= 2).await;

    // A crash loses nothing: the queue is in the database.
    server.kill9().await;
    down.store(false, Ordering::SeqCst);
    server.restart().await;
    wait_until(
        "the transaction was accepted",
        Duration::from_secs(60),
        async || accepted.lock().unwrap().contains(&first_txn),
    )
    .await;
    let pdus = received_pdus(&peer.received());
    let sent = with_body(&pdus, "Are you there?");
    assert!(
        sent.iter().all(|(txn, _)| *txn == first_txn),
        "the message went out in more than one transaction: {sent:?}"
    );
    assert_eq!(sent[0].1["content"]["body"], "Are you there?");
    let version = alice.state_event(&room_id, "m.room.create", "").await["content"]["room_version"]
        .as_str()
        .unwrap_or("1")
        .to_owned();
    assert_eq!(pdu_event_id(&sent[0].1, &version), event_id);

    // Later messages keep flowing, in new transactions.
    alice.send_message(&room_id, "Welcome back").await;
    wait_until("the next message", Duration::from_secs(30), async || {
        let pdus = received_pdus(&peer.received());
        with_body(&pdus, "Welcome back")
            .iter()
            .any(|(txn, _)| accepted.lock().unwrap().contains(txn) && *txn != first_txn)
    })
    .await;
}

#[tokio::test]
async fn a_peer_user_leaves_through_make_leave_and_send_leave() {
    let peer = FederationPeer::start().await;
    let (server, alice, room_id) = public_room(&peer).await;
    let client = peer.client(&server);
    let make_leave_uri = |localpart: &str| {
        format!(
            "/_matrix/federation/v1/make_leave/{}/{}",
            encode(&room_id),
            encode(&peer.user_id(localpart))
        )
    };

    // Nobody can leave a room they are not in.
    client
        .get(&make_leave_uri("bob"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    join(&peer, &server, &room_id, "bob").await;
    let answer = client.get(&make_leave_uri("bob")).await.ok();
    let version = answer["room_version"].as_str().expect("room_version");
    assert_eq!(answer["event"]["content"]["membership"], "leave");
    let leave = peer.sign_pdu(version, answer["event"].clone());
    let uri = format!(
        "/_matrix/federation/v2/send_leave/{}/{}",
        encode(&room_id),
        encode(&leave.event_id)
    );
    assert_eq!(client.put(&uri, leave.json).await.ok(), json!({}));

    let bob = peer.user_id("bob");
    let members = alice.members(&room_id, "").await;
    assert!(members.contains(&(bob, "leave".into())), "{members:?}");
}

#[tokio::test]
async fn a_member_of_an_allowed_room_joins_a_restricted_room() {
    let peer = FederationPeer::start().await;
    let (server, alice, lobby) = public_room(&peer).await;
    join(&peer, &server, &lobby, "bob").await;
    let restricted = alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": lobby}],
                },
            }],
        }))
        .await;

    // Carol is in no allowed room.
    peer.client(&server)
        .get(&make_join_uri(&restricted, &peer.user_id("carol")))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Bob is in the lobby: Alice, who may invite, vouches for his join.
    let (template, _) = make_join(&peer, &server, &restricted, "bob").await;
    assert_eq!(
        template["content"]["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );
    let joined = join(&peer, &server, &restricted, "bob").await;
    assert_eq!(
        joined["event"]["content"]["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );
    let bob = peer.user_id("bob");
    assert!(
        alice
            .members(&restricted, "")
            .await
            .contains(&(bob, "join".into()))
    );
}

#[tokio::test]
async fn joins_and_transactions_work_in_every_supported_room_version() {
    let peer = FederationPeer::start().await;
    let (server, alice, _) = public_room(&peer).await;
    let (key_id, public_key) = peer.client(&server).server_key().await;
    for version in ["10", "11", "12"] {
        let room_id = alice
            .create_room(json!({"preset": "public_chat", "room_version": version}))
            .await;
        let joined = join(&peer, &server, &room_id, "bob").await;
        let event = &joined["event"];
        verify_pdu(
            event,
            version,
            peer.server_name(),
            &peer.key_id(),
            &peer.public_key(),
        )
        .unwrap();
        let body = format!("Hello in a version {version} room");
        let event_id = alice.send_message(&room_id, &body).await;
        let what = format!("the message of the version {version} room arrived");
        wait_until(&what, Duration::from_secs(30), async || {
            !with_body(&received_pdus(&peer.received()), &body).is_empty()
        })
        .await;
        let pdus = received_pdus(&peer.received());
        let (_, pdu) = with_body(&pdus, &body)[0];
        assert_eq!(pdu_event_id(pdu, version), event_id, "version {version}");
        verify_pdu(pdu, version, "hs1.test", &key_id, &public_key).unwrap();
    }
}

#[tokio::test]
async fn a_join_built_before_newer_events_still_joins_and_the_next_event_merges_both() {
    let peer = FederationPeer::start().await;
    let (server, alice, room_id) = public_room(&peer).await;
    let (template, version) = make_join(&peer, &server, &room_id, "bob").await;
    // The room moves on between make_join and send_join.
    let meanwhile = alice.send_message(&room_id, "Meanwhile").await;
    let pdu = peer.sign_pdu(&version, template);
    peer.client(&server)
        .put(&send_join_uri(&room_id, &pdu.event_id), pdu.json)
        .await
        .ok();
    let bob = peer.user_id("bob");
    assert!(
        alice
            .members(&room_id, "")
            .await
            .contains(&(bob, "join".into()))
    );

    // Alice's next message is built on both branches: her message and Bob's join.
    alice.send_message(&room_id, "Welcome").await;
    wait_until(
        "the peer got the welcome",
        Duration::from_secs(30),
        async || !with_body(&received_pdus(&peer.received()), "Welcome").is_empty(),
    )
    .await;
    let pdus = received_pdus(&peer.received());
    let (_, welcome) = with_body(&pdus, "Welcome")[0];
    let mut prev: Vec<String> = welcome["prev_events"]
        .as_array()
        .expect("prev_events")
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    prev.sort();
    let mut expected = vec![meanwhile, pdu.event_id];
    expected.sort();
    assert_eq!(prev, expected);
}
