//! Federation between real Plexus servers when things go wrong: a server that was down catches
//! up with what it missed, concurrent sends on both sides fork the DAG and both servers still
//! agree, and traffic the room's server ACL denies or with a forged signature is refused.

use std::time::Duration;

use complement_tests::{
    Federation, FederationPeer, Method, Server, ServerKey, Toml, User, Value, encode, json,
    room_path, wait_until,
};

const WAIT: Duration = Duration::from_secs(30);

/// The message bodies of `room` in `user`'s `/sync` timelines, following `next_batch` from the
/// start until nothing new comes, oldest first.
async fn synced_bodies(user: &User, room: &str) -> Vec<String> {
    let filter = encode(r#"{"room":{"timeline":{"limit":100}}}"#);
    let reply = user
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={filter}"
        ))
        .await
        .ok();
    reply["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// name, topic and joined members of `room` from `GET /rooms/{id}/state`.
async fn summary(user: &User, room: &str) -> (Value, Value, Vec<String>) {
    let state = user.state_events(room).await;
    let find = |kind: &str| {
        state
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == "")
            .map(|e| e["content"].clone())
            .unwrap_or(Value::Null)
    };
    let mut members: Vec<String> = state
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect();
    members.sort();
    (find("m.room.name"), find("m.room.topic"), members)
}

async fn catches_up_after(kill: bool) {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let mut hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join_via(&room, "hs1.test").await.ok();
    alice.send_message(&room, "before").await;
    wait_until("bob sees the first message", WAIT, async || {
        bob.latest_bodies(&room)
            .await
            .contains(&"before".to_owned())
    })
    .await;

    if kill {
        hs2.kill9().await;
    } else {
        hs2.stop().await;
    }
    let sent: Vec<String> = (0..30).map(|i| format!("while away {i}")).collect();
    for body in &sent {
        alice.send_message(&room, body).await;
    }
    hs2.restart().await;

    let mut expected = vec!["before".to_owned()];
    expected.extend(sent.iter().cloned());
    wait_until("bob's /messages has all 30, in order", WAIT, async || {
        bob.latest_bodies(&room).await == expected
    })
    .await;
    assert_eq!(synced_bodies(&bob, &room).await, expected, "bob's /sync");
}

#[tokio::test]
async fn a_server_stopped_gracefully_catches_up_on_everything_it_missed() {
    catches_up_after(false).await;
}

#[tokio::test]
async fn a_server_killed_catches_up_on_everything_it_missed() {
    catches_up_after(true).await;
}

#[tokio::test]
async fn a_server_that_is_back_gets_what_was_queued_without_waiting_out_the_back_off() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let mut hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join_via(&room, "hs1.test").await.ok();

    hs2.stop().await;
    alice.send_message(&room, "while away").await;
    // Attempts fail at once, then after 2 s and 4 s more: hs1 now waits 8 s before the next.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    hs2.restart().await;
    // hs2 speaks to hs1 (bob's message); hs1 takes that as hs2 being back.
    let back = std::time::Instant::now();
    bob.send_message(&room, "I am back").await;
    wait_until("bob gets alice's message", WAIT, async || {
        bob.latest_bodies(&room)
            .await
            .contains(&"while away".to_owned())
    })
    .await;
    let waited = back.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "hs1 retried {waited:?} after hearing from hs2, instead of at once"
    );
}

#[tokio::test]
async fn concurrent_sends_on_both_sides_end_in_the_same_state() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    alice.set_power_level(&room, &bob.user_id, 50).await;
    bob.join_via(&room, "hs1.test").await.ok();
    wait_until("hs2 knows bob's power", WAIT, async || {
        let (_, _, members) = summary(&bob, &room).await;
        members.len() == 2
    })
    .await;

    // Both at once, several rounds: every round forks the DAG.
    let mut expected = Vec::new();
    for round in 0..3 {
        let a = async {
            alice
                .set_state(
                    &room,
                    "m.room.name",
                    "",
                    json!({"name": format!("alice {round}")}),
                )
                .await;
            alice.send_message(&room, &format!("alice {round}")).await;
            alice
                .set_state(
                    &room,
                    "m.room.topic",
                    "",
                    json!({"topic": format!("alice {round}")}),
                )
                .await;
        };
        let b = async {
            bob.set_state(
                &room,
                "m.room.name",
                "",
                json!({"name": format!("bob {round}")}),
            )
            .await;
            bob.send_message(&room, &format!("bob {round}")).await;
            bob.set_state(
                &room,
                "m.room.topic",
                "",
                json!({"topic": format!("bob {round}")}),
            )
            .await;
        };
        tokio::join!(a, b);
        expected.push(format!("alice {round}"));
        expected.push(format!("bob {round}"));
    }
    expected.sort();

    let sorted = async |user: &User| {
        let mut b = user.latest_bodies(&room).await;
        b.sort();
        b
    };
    wait_until("both servers have every message", WAIT, async || {
        sorted(&alice).await == expected && sorted(&bob).await == expected
    })
    .await;
    let mut last = (Value::Null, Value::Null, Vec::new());
    wait_until("both servers agree on the state", WAIT, async || {
        let (a, b) = (summary(&alice, &room).await, summary(&bob, &room).await);
        let same = a == b;
        last = a;
        same
    })
    .await;
    assert_eq!(last.2.len(), 2, "members: {:?}", last.2);
    assert!(last.0["name"].is_string() && last.1["topic"].is_string());
}

/// A signed federation request from `key`'s server to `server`.
async fn signed(
    key: &ServerKey,
    server: &Server,
    method: Method,
    uri: &str,
    body: Option<&Value>,
) -> complement_tests::Reply {
    let authorization = key.authorization(method.as_str(), uri, server.server_name(), body);
    let mut request = server
        .federation_client()
        .request(method, uri)
        .header("Authorization", &authorization);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await
}

#[tokio::test]
async fn a_server_denied_by_the_acl_can_neither_join_nor_send() {
    let federation = Federation::new(["hs1.test", "hs2.test", "hs3.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let hs3 = federation.server("hs3.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let carol = hs3.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join_via(&room, "hs1.test").await.ok();
    alice
        .set_state(
            &room,
            "m.room.server_acl",
            "",
            json!({"allow": ["*"], "deny": ["hs3.test"], "allow_ip_literals": true}),
        )
        .await;

    // make_join from hs3 itself: 403.
    let hs3_key = ServerKey::of(&hs3);
    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
        encode(&room),
        encode(&carol.user_id)
    );
    let reply = signed(&hs3_key, &hs1, Method::GET, &uri, None).await;
    reply.assert_status(403);

    // Carol's join through hs1 fails, and hs1 never lists her.
    let reply = carol.join_via(&room, "hs1.test").await;
    assert!(reply.status >= 400, "carol joined: {reply:?}");
    assert_eq!(carol.joined_rooms().await, Vec::<String>::new());

    // A transaction from hs3 for the room: its PDU is refused, naming the ACL.
    let latest = alice.messages(&room, "b", None, 1).await;
    let prev = latest["chunk"][0]["event_id"].clone();
    let pdu = json!({
        "room_id": room,
        "sender": carol.user_id,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "from a denied server"},
        "depth": 100,
        "prev_events": [prev],
        "auth_events": [],
        "origin_server_ts": complement_tests::now_ms(),
        "hashes": {"sha256": "AAAA"},
        "signatures": {},
    });
    let body = json!({"origin": "hs3.test", "origin_server_ts": 1, "pdus": [pdu]});
    let uri = "/_matrix/federation/v1/send/denied1";
    let answer = signed(&hs3_key, &hs1, Method::PUT, uri, Some(&body))
        .await
        .ok();
    let results = answer["pdus"].as_object().cloned().unwrap_or_default();
    assert_eq!(results.len(), 1, "{answer}");
    let error = results.values().next().unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("server ACL"), "{answer}");
    assert!(
        !alice
            .latest_bodies(&room)
            .await
            .contains(&"from a denied server".to_owned())
    );
    let mut members = vec![alice.user_id.clone(), bob.user_id.clone()];
    members.sort();
    assert_eq!(alice.joined_members(&room).await, members);

    // The room's history and hierarchy are refused to hs3 too, though the room is public.
    let event = encode(prev.as_str().unwrap_or_default());
    let room_path = encode(&room);
    for uri in [
        format!("/_matrix/federation/v1/state/{room_path}?event_id={event}"),
        format!("/_matrix/federation/v1/state_ids/{room_path}?event_id={event}"),
        format!("/_matrix/federation/v1/event_auth/{room_path}/{event}"),
        format!("/_matrix/federation/v1/backfill/{room_path}?v={event}&limit=10"),
        format!("/_matrix/federation/v1/event/{event}"),
        format!("/_matrix/federation/v1/hierarchy/{room_path}"),
    ] {
        let reply = signed(&hs3_key, &hs1, Method::GET, &uri, None).await;
        reply.assert_error(403, "M_FORBIDDEN");
    }
    let uri = format!("/_matrix/federation/v1/get_missing_events/{room_path}");
    let body = json!({"earliest_events": [], "latest_events": [prev], "limit": 10});
    let reply = signed(&hs3_key, &hs1, Method::POST, &uri, Some(&body)).await;
    reply.assert_error(403, "M_FORBIDDEN");
    // hs2, allowed, still reads it.
    let hs2_key = ServerKey::of(&hs2);
    let uri = format!("/_matrix/federation/v1/event/{event}");
    signed(&hs2_key, &hs1, Method::GET, &uri, None).await.ok();
}

/// hs1 and hs2 (Bob joined to Alice's room on hs1) and a test peer whose Dave joined too.
struct WithPeer {
    _federation: Federation,
    peer: FederationPeer,
    hs1: Server,
    _hs2: Server,
    alice: User,
    bob: User,
    room: String,
    version: String,
    dave: String,
}

impl WithPeer {
    async fn start() -> WithPeer {
        let federation = Federation::new(["hs1.test", "hs2.test"]).await;
        let peer = FederationPeer::start().await;
        peer.handle("PUT", "/_matrix/federation/v1/send/{txnId}", |_| {
            (200, json!({"pdus": {}}))
        });
        // Both servers know the peer (hs2 checks the signatures of Dave's events hs1 passes on).
        let mut entries = federation.resolve_entries();
        entries.push(peer.resolve_entry());
        let resolve = Toml::table(entries);
        let hs1 = federation
            .server("hs1.test")
            .config("federation.resolve", resolve.clone())
            .start()
            .await;
        let hs2 = federation
            .server("hs2.test")
            .config("federation.resolve", resolve)
            .start()
            .await;
        let alice = hs1.register_user("alice").await;
        let bob = hs2.register_user("bob").await;
        let room = alice.create_room(json!({"preset": "public_chat"})).await;
        bob.join_via(&room, "hs1.test").await.ok();

        let dave = peer.user_id("dave");
        let uri = format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
            encode(&room),
            encode(&dave)
        );
        let answer = peer.client(&hs1).get(&uri).await.ok();
        let version = answer["room_version"].as_str().unwrap().to_owned();
        let join = peer.sign_pdu(&version, answer["event"].clone());
        let uri = format!(
            "/_matrix/federation/v2/send_join/{}/{}",
            encode(&room),
            encode(&join.event_id)
        );
        peer.client(&hs1).put(&uri, join.json).await.ok();
        WithPeer {
            _federation: federation,
            peer,
            hs1,
            _hs2: hs2,
            alice,
            bob,
            room,
            version,
            dave,
        }
    }

    /// The auth events of a message from Dave and the room's latest event.
    async fn auth_and_latest(&self) -> (Vec<String>, String) {
        let state = self.alice.state_events(&self.room).await;
        let id_of = |kind: &str, key: &str| {
            state
                .iter()
                .find(|e| e["type"] == kind && e["state_key"] == key)
                .and_then(|e| e["event_id"].as_str())
                .map(str::to_owned)
        };
        let mut auth: Vec<String> = Vec::new();
        if self.version != "12" {
            auth.extend(id_of("m.room.create", ""));
        }
        auth.extend(id_of("m.room.power_levels", ""));
        auth.extend(id_of("m.room.member", &self.dave));
        let latest = self.alice.messages(&self.room, "b", None, 1).await;
        let latest = latest["chunk"][0]["event_id"].as_str().unwrap().to_owned();
        (auth, latest)
    }

    /// A message from Dave on `prev`, at `depth`.
    fn message(&self, auth: &[String], prev: &str, depth: u64, body: &str) -> Value {
        json!({
            "room_id": self.room,
            "sender": self.dave,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body},
            "depth": depth,
            "prev_events": [prev],
            "auth_events": auth,
        })
    }

    async fn send(&self, txn_id: &str, pdus: Vec<Value>) -> Value {
        let body = json!({"origin": self.peer.server_name(), "origin_server_ts": 1, "pdus": pdus});
        self.peer
            .client(&self.hs1)
            .put(&format!("/_matrix/federation/v1/send/{txn_id}"), body)
            .await
            .ok()
    }
}

#[tokio::test]
async fn a_forged_event_from_a_peer_is_rejected_and_seen_by_nobody() {
    let with = WithPeer::start().await;
    let (alice, bob, room, version) = (&with.alice, &with.bob, &with.room, &with.version);

    // A message from Dave signed by another server's key.
    let (auth, latest) = with.auth_and_latest().await;
    let event = with.message(&auth, &latest, 1000, "forged words");
    let stranger = FederationPeer::start().await;
    let forged = stranger.sign_pdu(version, event);
    let answer = with.send("forged1", vec![forged.json]).await;
    assert!(
        answer["pdus"][&forged.event_id]["error"].is_string(),
        "forged PDU accepted: {answer}"
    );

    // A real message after it reaches bob; the forged one is nowhere.
    alice.send_message(room, "after").await;
    wait_until("bob sees alice's message", WAIT, async || {
        bob.latest_bodies(room).await.contains(&"after".to_owned())
    })
    .await;
    for user in [alice, bob] {
        assert!(
            !user
                .latest_bodies(room)
                .await
                .contains(&"forged words".to_owned())
        );
        let event = user
            .get(&room_path(
                room,
                &format!("event/{}", encode(&forged.event_id)),
            ))
            .await;
        assert_eq!(event.status, 404, "{event:?}");
    }
}

/// The peer sends only the last of 25 messages; hs1 fetches the 24 before it with
/// `/get_missing_events`, more than one answer holds (the peer answers at most `limit`, walking
/// back from `latest_events`). Servers do not relay others' events, so hs2 learns of the 25 only
/// when Alice's next message cites the last of them: hs2 then fills the same long gap from hs1
/// (real server to real server).
#[tokio::test]
async fn a_gap_longer_than_one_get_missing_events_answer_is_filled() {
    let with = WithPeer::start().await;
    let (auth, mut prev) = with.auth_and_latest().await;
    let mut by_id: std::collections::HashMap<String, Value> = Default::default();
    let mut last = Value::Null;
    let expected: Vec<String> = (0..25).map(|i| format!("gap {i}")).collect();
    for (i, body) in expected.iter().enumerate() {
        let pdu = with.peer.sign_pdu(
            &with.version,
            with.message(&auth, &prev, 100 + i as u64, body),
        );
        by_id.insert(pdu.event_id.clone(), pdu.json.clone());
        prev = pdu.event_id.clone();
        last = pdu.json;
    }
    let chain = by_id.clone();
    with.peer.handle(
        "POST",
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        move |request| {
            let limit = request.body["limit"].as_u64().unwrap_or(10) as usize;
            let earliest: Vec<String> =
                serde_json::from_value(request.body["earliest_events"].clone()).unwrap_or_default();
            let mut events = Vec::new();
            let mut frontier: Vec<String> = request.body["latest_events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| chain.get(id.as_str()?))
                .flat_map(|e| e["prev_events"].as_array().cloned().unwrap_or_default())
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect();
            while let Some(id) = frontier.pop() {
                if events.len() >= limit || earliest.contains(&id) {
                    continue;
                }
                if let Some(event) = chain.get(&id) {
                    events.push(event.clone());
                    for prev in event["prev_events"].as_array().into_iter().flatten() {
                        frontier.extend(prev.as_str().map(str::to_owned));
                    }
                }
            }
            (200, json!({"events": events}))
        },
    );

    let answer = with.send("gap1", vec![last.clone()]).await;
    let results = answer["pdus"].as_object().cloned().unwrap_or_default();
    assert!(
        results.values().all(|r| r == &json!({})),
        "the last message refused: {answer}"
    );
    assert_eq!(with.alice.latest_bodies(&with.room).await, expected);
    with.alice.send_message(&with.room, "after").await;
    let mut expected = expected;
    expected.push("after".to_owned());
    wait_until("bob on hs2 sees the whole gap", WAIT, async || {
        with.bob.latest_bodies(&with.room).await == expected
    })
    .await;
}
