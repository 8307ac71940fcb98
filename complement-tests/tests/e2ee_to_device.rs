//! Send-to-device messaging: `PUT /sendToDevice/{eventType}/{txnId}` delivered through `/sync`'s
//! `to_device` to one device or to all of a user's devices, again with the same token until the
//! device syncs past it (then never again), once per transaction id, in order across several
//! syncs, waking a long-poll, surviving a crash, leaving for other servers as one
//! `m.direct_to_device` EDU per send; and a real Olm and Megolm exchange made with
//! vodozemac through Plexus, with keys uploaded, queried and claimed through `/keys`.

use std::time::{Duration, Instant};

use complement_tests::e2ee::E2eeDevice;
use complement_tests::{
    FederationPeer, Method, Server, User, Value, encode, json, txn_id, wait_until,
};

fn send_path(event_type: &str, txn: &str) -> String {
    format!(
        "/_matrix/client/v3/sendToDevice/{}/{}",
        encode(event_type),
        encode(txn)
    )
}

async fn send(user: &User, event_type: &str, txn: &str, messages: Value) {
    user.put(&send_path(event_type, txn), json!({ "messages": messages }))
        .await
        .ok();
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

fn to_device(body: &Value) -> Vec<Value> {
    body["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `n` field of each to-device message's content, in order.
fn numbers(body: &Value) -> Vec<i64> {
    to_device(body)
        .iter()
        .map(|e| e["content"]["n"].as_i64().expect("a numbered message"))
        .collect()
}

/// A device's position after an initial sync.
async fn start(user: &User) -> String {
    next_batch(&sync(user, None, 0).await)
}

#[tokio::test]
async fn a_message_reaches_the_named_device_and_star_reaches_every_device() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = server.register_user("bob").await;
    let laptop = phone.login_new_device().await;
    let (phone_since, laptop_since) = (start(&phone).await, start(&laptop).await);

    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &phone.user_id: { &phone.device_id: {"n": 1} } }),
    )
    .await;
    let body = sync(&phone, Some(&phone_since), 0).await;
    assert_eq!(
        to_device(&body),
        [json!({"sender": alice.user_id, "type": "m.test", "content": {"n": 1}})]
    );
    assert!(
        to_device(&sync(&laptop, Some(&laptop_since), 0).await).is_empty(),
        "the other device gets nothing"
    );

    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &phone.user_id: { "*": {"n": 2} } }),
    )
    .await;
    let phone_body = sync(&phone, Some(&next_batch(&body)), 0).await;
    assert_eq!(numbers(&phone_body), [2]);
    assert_eq!(numbers(&sync(&laptop, Some(&laptop_since), 0).await), [2]);
}

#[tokio::test]
async fn a_message_comes_again_until_the_device_syncs_past_it_and_then_never() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let first = start(&bob).await;
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &bob.user_id: { &bob.device_id: {"n": 7} } }),
    )
    .await;

    let body = sync(&bob, Some(&first), 0).await;
    assert_eq!(numbers(&body), [7]);
    let second = next_batch(&body);
    assert_eq!(
        numbers(&sync(&bob, Some(&first), 0).await),
        [7],
        "not acknowledged yet: the old token brings it again"
    );

    let after = sync(&bob, Some(&second), 0).await;
    assert!(
        to_device(&after).is_empty(),
        "the new token does not repeat it"
    );
    // Syncing with the new token acknowledged the message: it is deleted.
    wait_until(
        "the acknowledged message is deleted",
        Duration::from_secs(5),
        async || to_device(&sync(&bob, Some(&first), 0).await).is_empty(),
    )
    .await;
}

#[tokio::test]
async fn a_repeated_transaction_id_delivers_nothing_twice() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let alice_laptop = alice.login_new_device().await;
    let bob = server.register_user("bob").await;
    let since = start(&bob).await;
    let to_bob = |n: i64| json!({ &bob.user_id: { &bob.device_id: {"n": n} } });

    send(&alice, "m.test", "txn-1", to_bob(1)).await;
    send(&alice, "m.test", "txn-1", to_bob(1)).await;
    // Transaction ids are per device: the same id from another device is another send.
    send(&alice_laptop, "m.test", "txn-1", to_bob(2)).await;
    send(&alice, "m.test", "txn-2", to_bob(3)).await;

    assert_eq!(numbers(&sync(&bob, Some(&since), 0).await), [1, 2, 3]);
}

#[tokio::test]
async fn a_long_poll_wakes_when_a_message_arrives() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let since = start(&bob).await;

    let started = Instant::now();
    let poll = tokio::spawn({
        let bob = bob.clone();
        async move { sync(&bob, Some(&since), 20_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &bob.user_id: { &bob.device_id: {"n": 1} } }),
    )
    .await;
    let body = poll.await.unwrap();
    assert_eq!(numbers(&body), [1]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken at once, not at the timeout"
    );
}

#[tokio::test]
async fn more_than_a_hundred_messages_arrive_in_order_over_several_syncs() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let mut since = start(&bob).await;
    for n in 0..230 {
        send(
            &alice,
            "m.test",
            &format!("t{n}"),
            json!({ &bob.user_id: { &bob.device_id: {"n": n} } }),
        )
        .await;
    }

    let mut received = Vec::new();
    let mut answers = 0;
    loop {
        // A long timeout: an answer with messages left over must come back at once.
        let body = sync(&bob, Some(&since), 10_000).await;
        let got = numbers(&body);
        assert!(got.len() <= 100, "at most 100 messages per answer");
        since = next_batch(&body);
        answers += 1;
        received.extend(got);
        if received.len() >= 230 {
            break;
        }
    }
    assert_eq!(answers, 3);
    assert_eq!(received, (0..230).collect::<Vec<_>>());
    assert!(to_device(&sync(&bob, Some(&since), 0).await).is_empty());
}

#[tokio::test]
async fn unacknowledged_messages_survive_a_crash() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let since = start(&bob).await;
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &bob.user_id: { &bob.device_id: {"n": 1} } }),
    )
    .await;
    // Delivered once, not yet acknowledged.
    assert_eq!(numbers(&sync(&bob, Some(&since), 0).await), [1]);

    server.kill9().await;
    server.restart().await;

    let body = sync(&bob, Some(&since), 0).await;
    assert_eq!(numbers(&body), [1]);
    assert!(to_device(&sync(&bob, Some(&next_batch(&body)), 0).await).is_empty());
    // Positions keep growing after the restart.
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &bob.user_id: { &bob.device_id: {"n": 2} } }),
    )
    .await;
    assert_eq!(numbers(&sync(&bob, Some(&next_batch(&body)), 0).await), [2]);
}

#[tokio::test]
async fn a_deleted_device_takes_its_pending_messages_with_it() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let client = server.client();
    let login = |device: &str| {
        let mut body = bob.login_body();
        body["device_id"] = json!(device);
        client.post("/_matrix/client/v3/login", body)
    };
    let tablet = login("TABLET").await.ok();
    assert_eq!(tablet["device_id"], "TABLET");
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({ &bob.user_id: { "TABLET": {"n": 1} } }),
    )
    .await;
    bob.with_password_uia(
        Method::DELETE,
        "/_matrix/client/v3/devices/TABLET",
        json!({}),
    )
    .await
    .ok();

    // A new device of the same id starts with an empty inbox.
    let again = login("TABLET").await.ok();
    let tablet = bob.with_access_token(again["access_token"].as_str().unwrap());
    assert!(to_device(&sync(&tablet, None, 0).await).is_empty());
}

#[tokio::test]
async fn a_sync_loop_gets_every_message_once_among_room_events() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "invite": [bob.user_id]}))
        .await;
    bob.join(&room).await;

    // Bob long-polls in a loop, as a client does, while Alice interleaves room messages and
    // to-device messages: the fast path that answers room events must not swallow any.
    let since = start(&bob).await;
    let sync_loop = tokio::spawn({
        let bob = bob.clone();
        async move {
            let (mut since, mut received) = (since, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while received.len() < 20 && Instant::now() < deadline {
                let body = sync(&bob, Some(&since), 5_000).await;
                received.extend(numbers(&body));
                since = next_batch(&body);
            }
            received
        }
    });
    for n in 0..20 {
        alice.send_message(&room, &format!("message {n}")).await;
        send(
            &alice,
            "m.test",
            &txn_id(),
            json!({ &bob.user_id: { &bob.device_id: {"n": n} } }),
        )
        .await;
    }
    assert_eq!(sync_loop.await.unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn unknown_users_and_devices_are_skipped() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let since = start(&bob).await;
    send(
        &alice,
        "m.test",
        &txn_id(),
        json!({
            "@nobody:localhost": { "*": {"n": 0} },
            &bob.user_id: { "NOSUCHDEVICE": {"n": 1}, &bob.device_id: {"n": 2} },
        }),
    )
    .await;
    assert_eq!(numbers(&sync(&bob, Some(&since), 0).await), [2]);
}

#[tokio::test]
async fn malformed_sends_are_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let path = send_path("m.test", &txn_id());
    let raw = |body: &'static str| {
        alice
            .client()
            .request(Method::PUT, &path)
            .raw_json(body)
            .send()
    };
    raw("{not json").await.assert_error(400, "M_NOT_JSON");
    alice
        .put(&path, json!({}))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .put(&path, json!({"messages": []}))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .put(
            &path,
            json!({"messages": {"@bob:localhost": {"DEV": "text"}}}),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .put(&path, json!({"messages": {"not a user": {"DEV": {}}}}))
        .await
        .assert_error(400, "M_BAD_JSON");
    server
        .client()
        .put(&path, json!({"messages": {}}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn messages_for_another_server_leave_as_one_direct_to_device_edu() {
    let peer = FederationPeer::start().await;
    peer.handle("PUT", "/_matrix/federation/v1/send/{txnId}", |_| {
        (200, json!({"pdus": {}}))
    });
    let server = peer.server("hs1.test").start().await;
    let alice = server.register_user("alice").await;
    let (bob, carol) = (peer.user_id("bob"), peer.user_id("carol"));
    let messages = json!({ &bob: {"PHONE": {"n": 1}}, &carol: {"*": {"n": 2}} });
    let txn = txn_id();
    send(&alice, "m.room_key_request", &txn, messages.clone()).await;
    send(&alice, "m.room_key_request", &txn, messages.clone()).await;

    let direct_to_device = || {
        peer.received()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.starts_with("/_matrix/federation/v1/send/"))
            .flat_map(|r| r.body["edus"].as_array().cloned().unwrap_or_default())
            .filter(|edu| edu["edu_type"] == "m.direct_to_device")
            .collect::<Vec<_>>()
    };
    wait_until(
        "the peer received an m.direct_to_device EDU",
        Duration::from_secs(30),
        async || !direct_to_device().is_empty(),
    )
    .await;
    // The retried send queued nothing: give a second EDU time to show up if it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edus = direct_to_device();
    assert_eq!(edus.len(), 1, "one EDU for one send: {edus:#?}");
    let content = &edus[0]["content"];
    assert_eq!(content["sender"], alice.user_id.as_str());
    assert_eq!(content["type"], "m.room_key_request");
    assert_eq!(content["messages"], messages);
    assert!(
        content["message_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test]
async fn an_olm_message_through_plexus_carries_a_megolm_key_that_decrypts_a_room_message() {
    let server = Server::start().await;
    let mut alice = E2eeDevice::new(server.register_user("alice").await);
    let mut bob = E2eeDevice::new(server.register_user("bob").await);
    alice.upload_keys(1).await;
    bob.upload_keys(2).await;
    let room = alice
        .user
        .create_room(json!({"preset": "private_chat", "invite": [bob.user_id()]}))
        .await;
    bob.user.join(&room).await;
    bob.sync(0).await;
    alice.sync(0).await;

    // Alice opens an Olm session to Bob's identity key and one of his one-time keys, both
    // fetched from Plexus with their signatures checked.
    let bobs_device = alice.olm_session_with(bob.user_id(), bob.device_id()).await;
    assert_eq!(
        (bobs_device.curve25519, bobs_device.ed25519),
        (bob.curve25519(), bob.ed25519())
    );
    // A Megolm session for the room: its key travels to Bob in an `m.room_key` inside Olm.
    let session_id = alice
        .share_megolm_session(&room, &[(bob.user_id(), bob.device_id())])
        .await;
    alice.send_encrypted(&room, "the handover is at 7").await;

    // Bob reads both from one /sync: the Olm message, whose pre-key message opens his inbound
    // session and yields the Megolm key, and Alice's encrypted message in the timeline.
    let body = bob.sync(0).await;
    assert_eq!(to_device(&body).len(), 1, "one to-device message: {body:#}");
    assert_eq!(to_device(&body)[0]["type"], "m.room.encrypted");
    let room_key = bob.receive_to_device("m.room_key").await;
    assert!(
        room_key.pre_key,
        "the first message of a session is a pre-key message"
    );
    assert_eq!(room_key.sender, alice.user_id());
    assert_eq!(room_key.sender_key, Some(alice.curve25519()));
    assert_eq!(
        room_key.payload.as_ref().map(|p| &p["keys"]["ed25519"]),
        Some(&json!(alice.ed25519()))
    );
    assert_eq!(room_key.content["session_id"], session_id);
    let timeline = &body["rooms"]["join"][&room]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == "m.room.encrypted")),
        "Alice's encrypted message is in Bob's timeline: {body:#}"
    );
    let message = bob.decrypt_room_message(&room).await;
    assert_eq!(message.body(), "the handover is at 7");
    assert_eq!(message.sender, alice.user_id());
    assert_eq!(message.session_id, session_id);

    // Bob answers over the same Olm session (Alice's only one-time key is gone), so Alice
    // decrypts a normal, not a pre-key, message.
    let alices_device = bob
        .olm_session_with(alice.user_id(), alice.device_id())
        .await;
    bob.send_olm(&alices_device, "m.test", json!({"body": "thanks"}))
        .await;
    let reply = alice.receive_to_device("m.test").await;
    assert!(!reply.pre_key);
    assert_eq!(reply.content["body"], "thanks");
}
