//! Transactions another server pushes here (`PUT /_matrix/federation/v1/send/{txnId}`): a test
//! federation peer whose user Bob joined Alice's public room (through `make_join`/`send_join`)
//! sends PDUs and EDUs, and Alice sees what the checks on receipt of a PDU let through. The answer
//! is 200 with a result per PDU, whatever happens to each.

use complement_tests::{FederationPeer, PeerPdu, Reply, Server, User, Value, encode, json};

const SEND_PATH: &str = "/_matrix/federation/v1/send/{txnId}";

fn send_uri(txn_id: &str) -> String {
    format!("/_matrix/federation/v1/send/{}", encode(txn_id))
}

/// Alice's public room on hs1.test, with the peer's Bob joined.
struct Joined {
    peer: FederationPeer,
    server: Server,
    alice: User,
    room_id: String,
    version: String,
    bob: String,
    depth: u64,
}

async fn joined() -> Joined {
    let peer = FederationPeer::start().await;
    // The server sends Alice's events to the peer, which takes them all.
    peer.handle("PUT", SEND_PATH, |_| (200, json!({"pdus": {}})));
    let server = peer.server("hs1.test").start().await;
    let alice = server.register_user("alice").await;
    let room_id = alice.create_room(json!({"preset": "public_chat"})).await;
    let bob = peer.user_id("bob");

    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
        encode(&room_id),
        encode(&bob)
    );
    let answer = peer.client(&server).get(&uri).await.ok();
    let version = answer["room_version"]
        .as_str()
        .expect("a room version")
        .to_owned();
    let depth = answer["event"]["depth"].as_u64().expect("a depth");
    let join = peer.sign_pdu(&version, answer["event"].clone());
    let uri = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        encode(&room_id),
        encode(&join.event_id)
    );
    peer.client(&server).put(&uri, join.json).await.ok();
    Joined {
        peer,
        server,
        alice,
        room_id,
        version,
        bob,
        depth,
    }
}

impl Joined {
    /// An event from `sender` signed by the peer, on the room's latest event, citing the current
    /// state (create, power levels, the sender's membership if any) as its auth events.
    async fn pdu(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> PeerPdu {
        self.pdu_on(None, sender, kind, state_key, content).await
    }

    /// An event from `sender` on `prev` citing exactly `auth` as its auth events.
    fn pdu_citing(
        &mut self,
        prev: &str,
        auth: Vec<String>,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> PeerPdu {
        self.depth += 1;
        let mut event = json!({
            "room_id": self.room_id,
            "sender": sender,
            "type": kind,
            "content": content,
            "depth": self.depth,
            "prev_events": [prev],
            "auth_events": auth,
        });
        if let Some(state_key) = state_key {
            event["state_key"] = json!(state_key);
        }
        self.peer.sign_pdu(&self.version, event)
    }

    /// The ids of the room's create event (except in version 12, where it is no auth event) and
    /// power levels, as auth events cite them.
    async fn base_auth(&self) -> Vec<String> {
        let state = self.alice.state_events(&self.room_id).await;
        let mut kinds = vec!["m.room.power_levels"];
        if self.version != "12" {
            kinds.push("m.room.create");
        }
        state
            .iter()
            .filter(|e| kinds.contains(&e["type"].as_str().unwrap_or_default()))
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// A signed rename of `user` (a member) on `prev`, citing the room's current state.
    async fn rename(&mut self, prev: &str, user: &str, name: &str) -> PeerPdu {
        let state = self.alice.state_events(&self.room_id).await;
        let mut auth = self.base_auth().await;
        auth.extend(
            state
                .iter()
                .filter(|e| {
                    e["type"] == "m.room.join_rules"
                        || (e["type"] == "m.room.member" && e["state_key"] == user)
                })
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned)),
        );
        let content = json!({"membership": "join", "displayname": name});
        self.pdu_citing(prev, auth, user, "m.room.member", Some(user), content)
    }

    /// `user`'s display name in the room's current state.
    async fn display_name(&self, user: &str) -> Option<String> {
        let state = self.alice.state_events(&self.room_id).await;
        state
            .iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
            .and_then(|e| e["content"]["displayname"].as_str().map(str::to_owned))
    }

    /// The id of the room's latest event as Alice sees it.
    async fn latest(&self) -> String {
        self.timeline()
            .await
            .first()
            .cloned()
            .expect("a latest event")
    }

    /// Like `pdu`, on `prev` when given.
    async fn pdu_on(
        &mut self,
        prev: Option<&str>,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> PeerPdu {
        let state = self.alice.state_events(&self.room_id).await;
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
        auth.extend(id_of("m.room.member", sender));
        let prev = match prev {
            Some(prev) => prev.to_owned(),
            None => {
                let latest = self.alice.messages(&self.room_id, "b", None, 1).await;
                latest["chunk"][0]["event_id"]
                    .as_str()
                    .expect("a latest event")
                    .to_owned()
            }
        };
        self.pdu_citing(&prev, auth, sender, kind, state_key, content)
    }

    async fn message(&mut self, sender: &str, body: &str) -> PeerPdu {
        let sender = sender.to_owned();
        self.pdu(
            &sender,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    /// Sends a transaction of `pdus` and `edus` as the peer.
    async fn send(&self, txn_id: &str, pdus: Vec<Value>, edus: Vec<Value>) -> Reply {
        let body = json!({
            "origin": self.peer.server_name(),
            "origin_server_ts": 1,
            "pdus": pdus,
            "edus": edus,
        });
        self.peer
            .client(&self.server)
            .put(&send_uri(txn_id), body)
            .await
    }

    /// Event ids of the room's latest events as Alice's `/messages` shows them.
    async fn timeline(&self) -> Vec<String> {
        let page = self.alice.messages(&self.room_id, "b", None, 50).await;
        page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect()
    }
}

#[tokio::test]
async fn a_message_from_the_peer_reaches_local_sync() {
    let mut room = joined().await;
    let sync = room
        .alice
        .get("/_matrix/client/v3/sync?timeout=0")
        .await
        .ok();
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    let bob = room.bob.clone();
    let hello = room.message(&bob, "Hello, Alice").await;

    let answer = room.send("t1", vec![hello.json.clone()], vec![]).await.ok();
    assert_eq!(answer["pdus"][&hello.event_id], json!({}), "{answer}");

    let uri = format!("/_matrix/client/v3/sync?timeout=10000&since={since}");
    let sync = room.alice.get(&uri).await.ok();
    let timeline = &sync["rooms"]["join"][&room.room_id]["timeline"]["events"];
    let event = timeline
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|e| e["event_id"] == hello.event_id.as_str())
        })
        .unwrap_or_else(|| panic!("Bob's message is not in Alice's sync: {sync}"));
    assert_eq!(event["content"]["body"], "Hello, Alice");
    assert_eq!(event["sender"], bob.as_str());

    // Bob types; Alice's sync shows it. Typing in a room without the peer is ignored.
    let typing = |room_id: &str| {
        json!({"edu_type": "m.typing", "content": {
            "room_id": room_id, "user_id": bob, "typing": true
        }})
    };
    let elsewhere = room
        .alice
        .create_room(json!({"preset": "public_chat"}))
        .await;
    let edus = vec![typing(&elsewhere), typing(&room.room_id)];
    room.send("t2", vec![], edus).await.ok();
    // The transaction is answered once its EDUs are applied.
    let now = room
        .alice
        .get("/_matrix/client/v3/sync?timeout=0")
        .await
        .ok();
    let typists = |room_id: &str| now["rooms"]["join"][room_id]["ephemeral"]["events"].to_string();
    assert!(typists(&room.room_id).contains(bob.as_str()), "{now}");
    assert!(!typists(&elsewhere).contains(bob.as_str()), "{now}");
}

#[tokio::test]
async fn forged_tampered_and_unauthorised_pdus_get_their_own_answers() {
    let mut room = joined().await;
    let bob = room.bob.clone();
    let name_before = room
        .alice
        .get(&complement_tests::state_path(
            &room.room_id,
            "m.room.name",
            "",
        ))
        .await;

    // Signed by another server than Bob's.
    let stranger = FederationPeer::start().await;
    let mut forged = room.message(&bob, "forged").await;
    let mut unsigned = forged.json.clone();
    if let Some(object) = unsigned.as_object_mut() {
        object.remove("signatures");
        object.remove("hashes");
    }
    forged = stranger.sign_pdu(&room.version, unsigned);

    // Content changed after signing: kept, redacted.
    let mut tampered = room.message(&bob, "original words").await;
    tampered.json["content"]["body"] = json!("words Bob never said");

    // Bob may not name the room (power 0), and Carol never joined.
    let rename = room
        .pdu(&bob, "m.room.name", Some(""), json!({"name": "Bob's room"}))
        .await;
    let carol = room.peer.user_id("carol");
    let intruder = room.message(&carol, "let me in").await;

    let pdus = [&forged, &tampered, &rename, &intruder];
    let answer = room
        .send(
            "mixed",
            pdus.iter().map(|p| p.json.clone()).collect(),
            vec![],
        )
        .await
        .ok();
    let result = |pdu: &PeerPdu| answer["pdus"][&pdu.event_id].clone();
    let error = result(&forged)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("signed"), "forged: {answer}");
    assert_eq!(result(&tampered), json!({}), "{answer}");
    for pdu in [&rename, &intruder] {
        let error = result(pdu)["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains("not allowed"), "{}: {answer}", pdu.event_id);
    }

    let timeline = room.timeline().await;
    assert!(timeline.contains(&tampered.event_id), "{timeline:?}");
    for pdu in [&forged, &rename, &intruder] {
        assert!(
            !timeline.contains(&pdu.event_id),
            "{} is visible",
            pdu.event_id
        );
    }
    let event = room.alice.event(&room.room_id, &tampered.event_id).await;
    assert_eq!(event["content"], json!({}), "stored redacted: {event}");
    let name_after = room
        .alice
        .get(&complement_tests::state_path(
            &room.room_id,
            "m.room.name",
            "",
        ))
        .await;
    assert_eq!(
        name_after.status, name_before.status,
        "the room name is unchanged"
    );
}

#[tokio::test]
async fn transactions_are_idempotent_bounded_and_signed() {
    let mut room = joined().await;
    let bob = room.bob.clone();
    let first = room.message(&bob, "once").await;
    let answer = room
        .send("same", vec![first.json.clone()], vec![])
        .await
        .ok();
    assert_eq!(answer["pdus"][&first.event_id], json!({}));

    // The same transaction id again: the first answer, and nothing else is processed.
    let second = room.message(&bob, "never").await;
    let again = room
        .send("same", vec![second.json.clone()], vec![])
        .await
        .ok();
    assert_eq!(again, answer);
    let timeline = room.timeline().await;
    assert!(timeline.contains(&first.event_id) && !timeline.contains(&second.event_id));

    // A PDU for a room this server does not know: an error for it, 200 for the transaction.
    let mut elsewhere = second.json.clone();
    elsewhere["room_id"] = json!(format!("!nowhere:{}", room.peer.server_name()));
    let answer = room
        .send("unknown-room", vec![elsewhere], vec![])
        .await
        .ok();
    let results = answer["pdus"].as_object().expect("pdus");
    assert_eq!(results.len(), 1, "{answer}");
    let error = results
        .values()
        .next()
        .and_then(|r| r["error"].as_str())
        .unwrap_or_default();
    assert!(error.contains("not known"), "{answer}");

    // More than 50 PDUs is refused whole.
    let many = vec![second.json.clone(); 51];
    room.send("too-many", many, vec![])
        .await
        .assert_error(400, "M_BAD_JSON");

    // Unsigned, the transaction is not even read.
    let body = json!({"origin": room.peer.server_name(), "origin_server_ts": 1, "pdus": []});
    room.server
        .federation_client()
        .request(complement_tests::Method::PUT, &send_uri("unsigned"))
        .json(&body)
        .send()
        .await
        .assert_error(401, "M_UNAUTHORIZED");
}

#[tokio::test]
async fn missing_prev_events_are_fetched_from_the_origin() {
    let mut room = joined().await;
    let bob = room.bob.clone();
    // The peer never sent `first`; `second` comes after it.
    let first = room.message(&bob, "first").await;
    let content = json!({"msgtype": "m.text", "body": "second"});
    let second = room
        .pdu_on(Some(&first.event_id), &bob, "m.room.message", None, content)
        .await;
    let missing = first.json.clone();
    room.peer.handle(
        "POST",
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        move |_| (200, json!({"events": [missing.clone()]})),
    );

    let answer = room
        .send("gap", vec![second.json.clone()], vec![])
        .await
        .ok();
    assert_eq!(answer["pdus"][&second.event_id], json!({}), "{answer}");
    let asked = room
        .peer
        .wait_for_request("POST", "/_matrix/federation/v1/get_missing_events/")
        .await;
    assert_eq!(asked.body["latest_events"], json!([second.event_id]));
    let timeline = room.timeline().await;
    let position = |id: &str| timeline.iter().position(|e| e == id);
    assert!(
        position(&second.event_id) < position(&first.event_id)
            && position(&first.event_id).is_some(),
        "both in order (newest first): {timeline:?}"
    );
}

#[tokio::test]
async fn unknown_auth_events_are_fetched_with_event_auth() {
    let mut room = joined().await;
    let bob = room.bob.clone();
    let latest = room.latest().await;
    // Bob changed his display name in an event the server never received; his message cites it.
    let rename = room.rename(&latest, &bob, "Bob B").await;
    let mut auth = room.base_auth().await;
    auth.push(rename.event_id.clone());
    let content = json!({"msgtype": "m.text", "body": "cites an unknown event"});
    let message = room.pdu_citing(&latest, auth, &bob, "m.room.message", None, content);
    let chain = rename.json.clone();
    room.peer.handle(
        "GET",
        "/_matrix/federation/v1/event_auth/{roomId}/{eventId}",
        move |_| (200, json!({"auth_chain": [chain.clone()]})),
    );

    let answer = room
        .send("auth", vec![message.json.clone()], vec![])
        .await
        .ok();
    assert_eq!(answer["pdus"][&message.event_id], json!({}), "{answer}");
    let asked = room
        .peer
        .wait_for_request("GET", "/_matrix/federation/v1/event_auth/")
        .await;
    let id = &message.event_id;
    assert!(
        asked.path.ends_with(&encode(id)) || asked.path.ends_with(id.as_str()),
        "{}",
        asked.path
    );
    assert_eq!(room.latest().await, message.event_id);
    // The fetched event is an outlier: not in the timeline, and not the current state.
    assert!(!room.timeline().await.contains(&rename.event_id));
    assert_eq!(room.display_name(&bob).await, None);
}

#[tokio::test]
async fn a_gap_the_origin_cannot_fill_is_crossed_with_the_state_at_it() {
    let mut room = joined().await;
    let bob = room.bob.clone();
    let latest = room.latest().await;
    // Bob renames himself and writes twice; the server only receives his second message, and
    // the origin answers `/get_missing_events` with nothing.
    let rename = room.rename(&latest, &bob, "Bob B").await;
    let mut auth = room.base_auth().await;
    auth.push(rename.event_id.clone());
    let first = room.pdu_citing(
        &rename.event_id,
        auth.clone(),
        &bob,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "first"}),
    );
    let second = room.pdu_citing(
        &first.event_id,
        auth,
        &bob,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "second"}),
    );
    room.peer.handle(
        "POST",
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        |_| (200, json!({"events": []})),
    );
    // The state at `first`: the room's state as the server knows it, with Bob's new name.
    let mut state_ids: Vec<String> = room
        .alice
        .state_events(&room.room_id)
        .await
        .iter()
        .filter(|e| !(e["type"] == "m.room.member" && e["state_key"] == bob.as_str()))
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    state_ids.push(rename.event_id.clone());
    let answer_ids = json!({"pdu_ids": state_ids, "auth_chain_ids": []});
    room.peer.handle(
        "GET",
        "/_matrix/federation/v1/state_ids/{roomId}",
        move |_| (200, answer_ids.clone()),
    );
    let events: Vec<(String, Value)> = vec![
        (rename.event_id.clone(), rename.json.clone()),
        (first.event_id.clone(), first.json.clone()),
    ];
    let origin = room.peer.server_name().to_owned();
    room.peer.handle(
        "GET",
        "/_matrix/federation/v1/event/{eventId}",
        move |request| {
            let wanted = |id: &String| {
                request.path.ends_with(&encode(id)) || request.path.ends_with(id.as_str())
            };
            match events.iter().find(|(id, _)| wanted(id)) {
                Some((_, pdu)) => (
                    200,
                    json!({"origin": origin, "origin_server_ts": 1, "pdus": [pdu]}),
                ),
                None => (
                    404,
                    json!({"errcode": "M_NOT_FOUND", "error": "unknown event"}),
                ),
            }
        },
    );

    let answer = room
        .send("gap", vec![second.json.clone()], vec![])
        .await
        .ok();
    assert_eq!(answer["pdus"][&second.event_id], json!({}), "{answer}");
    let asked = room
        .peer
        .wait_for_request("GET", "/_matrix/federation/v1/state_ids/")
        .await;
    assert!(asked.uri.contains("event_id="), "{}", asked.uri);
    // Bob's second message is in the timeline, and the rename made in the gap is in the room's
    // state (resolved over both sides of the gap).
    assert_eq!(room.latest().await, second.event_id);
    assert_eq!(room.display_name(&bob).await.as_deref(), Some("Bob B"));
}
