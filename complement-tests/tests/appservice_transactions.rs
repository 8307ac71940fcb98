//! Transactions to appservices (`PUT /_matrix/app/v1/transactions/{txnId}`): an appservice gets
//! the events of the rooms its users are in, and of rooms its alias namespace names, and nothing
//! else; in stream order, in transactions of at most 100 events with increasing integer ids,
//! authenticated with its `hs_token`; nothing is lost while it is down or when the server is
//! killed; typing and receipts only when it asked for ephemeral data.

use std::collections::HashSet;
use std::time::Duration;

use complement_tests::{
    Server, TestAppservice, User, Value, json, message_bodies, room_path, wait_until,
};

/// A non-exclusive user namespace, so the test's users register as ordinary users.
fn bridge(id: &str, users: &str) -> complement_tests::AppserviceBuilder {
    let mut builder = TestAppservice::builder(id).only_users(users, false);
    builder.aliases = vec![(format!("#{id}_.*"), false)];
    builder
}

async fn create_room(user: &User, extra: Value) -> String {
    let mut body = json!({"preset": "public_chat"});
    for (key, value) in extra.as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    user.create_room(body).await
}

/// Accepted transaction ids as numbers, asserting they are integers that increase.
fn increasing_txn_ids(appservice: &TestAppservice) -> Vec<u64> {
    let ids: Vec<u64> = appservice
        .transactions()
        .iter()
        .map(|t| {
            t.txn_id
                .parse()
                .unwrap_or_else(|_| panic!("txn id {:?} is not an integer", t.txn_id))
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "transaction ids increase: {ids:?}"
    );
    ids
}

/// The bodies of `m.room.message` events the appservice got in a room, each event once (by
/// event id: a transaction repeated after a crash may carry an event again).
fn bodies_in(appservice: &TestAppservice, room_id: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let events: Vec<Value> = appservice
        .events()
        .into_iter()
        .filter(|e| e["room_id"] == room_id && e["type"] == "m.room.message")
        .filter(|e| seen.insert(e["event_id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    message_bodies(&events)
}

async fn wait_for_bodies(appservice: &TestAppservice, room_id: &str, n: usize, within: u64) {
    let what = format!("{} has {n} messages of {room_id}", appservice.id());
    wait_until(&what, Duration::from_secs(within), async || {
        bodies_in(appservice, room_id).len() >= n
    })
    .await;
}

#[tokio::test]
async fn an_appservice_gets_the_rooms_of_its_users_and_aliases_and_nothing_else() {
    let irc = bridge("irc", "@irc_.*").start().await;
    let slack = bridge("slack", "@slack_.*").start().await;
    let server = TestAppservice::configure(Server::builder(), &[&irc, &slack])
        .start()
        .await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let ghost = server.register_user("irc_alice").await;

    // A room no appservice has anything to do with, written first: by the time later events
    // arrive, it has been looked at.
    let private = create_room(&carol, json!({})).await;
    carol.send_message(&private, "not for bridges").await;

    let shared = create_room(&bob, json!({})).await;
    bob.invite(&shared, &ghost.user_id).await;
    ghost.join(&shared).await;
    bob.send_message(&shared, "hello bridge").await;
    let aliased = create_room(&carol, json!({"room_alias_name": "irc_general"})).await;
    carol.send_message(&aliased, "in an aliased room").await;

    irc.wait_for_event(|e| e["content"]["body"] == "in an aliased room")
        .await;
    assert_eq!(bodies_in(&irc, &shared), ["hello bridge"]);
    assert!(
        bodies_in(&irc, &private).is_empty(),
        "carol's room is none of its business"
    );
    let events = irc.events();
    let invite = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")
        .expect("the invite of its user");
    assert_eq!(invite["state_key"], ghost.user_id.as_str());
    // Client-format events: no federation fields.
    let message = events
        .iter()
        .find(|e| e["content"]["body"] == "hello bridge")
        .expect("the message");
    assert_eq!(message["sender"], bob.user_id.as_str());
    assert!(message["event_id"].is_string() && message["origin_server_ts"].is_number());
    assert!(message.get("hashes").is_none() && message.get("signatures").is_none());

    // Every request carried the hs_token (the test appservice refuses any other).
    assert!(irc.unauthorised_requests().is_empty());
    assert!(
        irc.requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hs-token-irc"))
    );
    increasing_txn_ids(&irc);

    // The other appservice saw none of it, but does see its own user's room.
    let other = server.register_user("slack_dan").await;
    let own = create_room(&other, json!({})).await;
    other.send_message(&own, "slack only").await;
    slack
        .wait_for_event(|e| e["content"]["body"] == "slack only")
        .await;
    assert!(slack.events().iter().all(|e| e["room_id"] == own));
    assert!(bodies_in(&irc, &own).is_empty());
}

#[tokio::test]
async fn with_the_appservice_down_a_thousand_events_arrive_in_order_once_it_is_back() {
    let addr = TestAppservice::reserve_address().await;
    let down = TestAppservice::start_down(bridge("irc", "@irc_.*"), addr).await;
    let server = TestAppservice::configure(Server::builder(), &[&down])
        .start()
        .await;
    let bob = server.register_user("bob").await;
    let ghost = server.register_user("irc_alice").await;
    let room = create_room(&bob, json!({})).await;
    bob.invite(&room, &ghost.user_id).await;
    ghost.join(&room).await;

    for n in 0..1000 {
        bob.send_message(&room, &n.to_string()).await;
    }
    // Back on the same address; the retry after the back-off (2 s, then 4 s, ...) delivers.
    let back = bridge("irc", "@irc_.*").addr(addr).start().await;
    wait_for_bodies(&back, &room, 1000, 60).await;

    let expected: Vec<String> = (0..1000).map(|n| n.to_string()).collect();
    assert_eq!(bodies_in(&back, &room), expected, "all of them, in order");
    let all_ids: Vec<String> = back
        .events()
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    let unique: HashSet<&String> = all_ids.iter().collect();
    assert_eq!(unique.len(), all_ids.len(), "no event twice");
    assert!(back.transactions().iter().all(|t| t.events().len() <= 100));
    increasing_txn_ids(&back);
}

#[tokio::test]
async fn a_failing_transaction_is_repeated_with_the_same_id_until_accepted() {
    let irc = bridge("irc", "@irc_.*").start().await;
    let server = irc.start_server().await;
    let ghost = server.register_user("irc_alice").await;
    irc.fail_next(2);
    let room = create_room(&ghost, json!({})).await;
    ghost.send_message(&room, "persistent").await;

    irc.wait_for_event(|e| e["content"]["body"] == "persistent")
        .await;
    let attempts = irc.transaction_attempts();
    assert!(
        attempts.len() >= 3,
        "two failures, then accepted: {attempts:?}"
    );
    assert_eq!(attempts[0], attempts[1]);
    assert_eq!(attempts[1], attempts[2]);
    assert_eq!(irc.transactions()[0].txn_id, attempts[0]);
    assert_eq!(increasing_txn_ids(&irc)[0], 1, "ids start at 1");
}

#[tokio::test]
async fn events_queued_when_the_server_is_killed_arrive_after_the_restart() {
    let irc = bridge("irc", "@irc_.*").start().await;
    let mut server = irc.start_server().await;
    let bob = server.register_user("bob").await;
    let ghost = server.register_user("irc_alice").await;
    let room = create_room(&bob, json!({})).await;
    bob.invite(&room, &ghost.user_id).await;
    ghost.join(&room).await;
    irc.set_failing(true);
    for n in 0..300 {
        bob.send_message(&room, &n.to_string()).await;
    }
    wait_until(
        "a transaction was attempted",
        Duration::from_secs(10),
        async || !irc.transaction_attempts().is_empty(),
    )
    .await;
    let first_attempt = irc.transaction_attempts()[0].clone();

    server.kill9().await;
    irc.set_failing(false);
    server.restart().await;
    bob.send_message(&room, "after").await;

    wait_for_bodies(&irc, &room, 301, 60).await;
    let mut expected: Vec<String> = (0..300).map(|n| n.to_string()).collect();
    expected.push("after".into());
    assert_eq!(bodies_in(&irc, &room), expected, "all of them, in order");
    assert_eq!(
        irc.transactions()[0].txn_id,
        first_attempt,
        "the open transaction is sent again with its id after the restart"
    );
    increasing_txn_ids(&irc);
}

#[tokio::test]
async fn typing_and_receipts_go_only_to_appservices_that_asked_for_them() {
    let eager = bridge("eager", "@irc_.*")
        .receive_ephemeral(true)
        .start()
        .await;
    let quiet = bridge("quiet", "@irc_.*").start().await;
    let server = TestAppservice::configure(Server::builder(), &[&eager, &quiet])
        .start()
        .await;
    let bob = server.register_user("bob").await;
    let ghost = server.register_user("irc_alice").await;
    let room = create_room(&bob, json!({})).await;
    bob.invite(&room, &ghost.user_id).await;
    ghost.join(&room).await;
    let message = bob.send_message(&room, "read me").await;

    let typing = room_path(
        &room,
        &format!("typing/{}", complement_tests::encode(&bob.user_id)),
    );
    bob.put(&typing, json!({"typing": true, "timeout": 10000}))
        .await
        .ok();
    let receipt = room_path(
        &room,
        &format!("receipt/m.read/{}", complement_tests::encode(&message)),
    );
    ghost.post(&receipt, json!({})).await.ok();

    wait_until(
        "typing and a receipt reach eager",
        Duration::from_secs(20),
        async || {
            let ephemeral = eager.ephemeral();
            let typing = ephemeral.iter().any(|e| {
                e["type"] == "m.typing"
                    && e["room_id"] == room
                    && e["content"]["user_ids"] == json!([bob.user_id])
            });
            let receipt = ephemeral.iter().any(|e| {
                e["type"] == "m.receipt"
                    && e["room_id"] == room
                    && e["content"][&message]["m.read"][&ghost.user_id]["ts"].is_number()
            });
            typing && receipt
        },
    )
    .await;
    let with_ephemeral = eager
        .transactions()
        .into_iter()
        .find(|t| !t.ephemeral().is_empty())
        .expect("a transaction with ephemeral data");
    assert_eq!(
        with_ephemeral.body["ephemeral"], with_ephemeral.body["de.sorunome.msc2409.ephemeral"],
        "under the stable and the unstable name"
    );

    // A later event reaches both; by then the quiet one would have had the ephemeral data.
    bob.send_message(&room, "later").await;
    quiet
        .wait_for_event(|e| e["content"]["body"] == "later")
        .await;
    assert!(quiet.ephemeral().is_empty(), "{:?}", quiet.ephemeral());
    assert_eq!(bodies_in(&quiet, &room), ["read me", "later"]);
}

#[tokio::test]
async fn to_device_messages_and_presence_reach_an_appservice_that_asked_for_them() {
    let eager = bridge("eager", "@irc_.*")
        .receive_ephemeral(true)
        .start()
        .await;
    let server = eager.start_server().await;
    let bob = server.register_user("bob").await;
    let ghost = server.register_user("irc_alice").await;
    let room = create_room(&bob, json!({})).await;
    ghost.join(&room).await;

    let messages = json!({ &ghost.user_id: { &ghost.device_id: {"secret": "for the bridge"} } });
    let path = format!(
        "/_matrix/client/v3/sendToDevice/m.test/{}",
        complement_tests::txn_id()
    );
    bob.put(&path, json!({ "messages": messages })).await.ok();
    let status = format!(
        "/_matrix/client/v3/presence/{}/status",
        complement_tests::encode(&bob.user_id)
    );
    bob.put(&status, json!({"presence": "online", "status_msg": "here"}))
        .await
        .ok();

    let to_device = || -> Vec<Value> {
        eager
            .transactions()
            .iter()
            .flat_map(|t| {
                t.body["de.sorunome.msc2409.to_device"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    wait_until(
        "the to-device message and presence arrive",
        Duration::from_secs(20),
        async || {
            let presence = eager.ephemeral().iter().any(|e| {
                e["type"] == "m.presence"
                    && e["sender"] == bob.user_id.as_str()
                    && e["content"]["presence"] == "online"
            });
            presence && !to_device().is_empty()
        },
    )
    .await;
    assert_eq!(
        to_device(),
        [json!({
            "type": "m.test",
            "sender": bob.user_id,
            "content": {"secret": "for the bridge"},
            "to_user_id": ghost.user_id,
            "to_device_id": ghost.device_id,
        })]
    );
}

#[tokio::test]
async fn a_successful_ping_ends_the_back_off() {
    let irc = bridge("irc", "@irc_.*").start().await;
    let server = irc.start_server().await;
    let ghost = server.register_user("irc_alice").await;
    irc.set_failing(true);
    let room = create_room(&ghost, json!({})).await;
    ghost.send_message(&room, "waiting").await;
    // Failures at about 0 s and 2 s; the next try would come 4 s later, then 8 s.
    wait_until("two failed attempts", Duration::from_secs(10), async || {
        irc.transaction_attempts().len() >= 2
    })
    .await;
    irc.set_failing(false);

    let pinged = std::time::Instant::now();
    irc.client()
        .post("/_matrix/client/v1/appservice/irc/ping", json!({}))
        .await
        .ok();
    irc.wait_for_event(|e| e["content"]["body"] == "waiting")
        .await;
    assert!(
        pinged.elapsed() < Duration::from_millis(1500),
        "sent at once after the ping, not after the back-off ({:?})",
        pinged.elapsed()
    );
}
