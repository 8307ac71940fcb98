//! What Plexus serves other servers about its rooms, told from the other side: a test peer (a
//! fake homeserver in the test process, with its own name and key) signs requests to the
//! federation listener of `hs1.test` and reads rooms its users could see — single events, the
//! state at an event with its auth chain, auth chains, backfill and missing events — plus the
//! alias and room directories, spaces, device lists and OpenID tokens. A room the peer never had
//! a member in is readable only where it is world-readable.

use std::collections::HashSet;

use complement_tests::e2ee::E2eeDevice;
use complement_tests::{
    FederationPeer, PeerClient, Server, TestAppservice, User, Value, encode, json, pdu_event_id,
    verify_pdu,
};

/// A Plexus server that federates with the peer, and a local user.
async fn setup() -> (FederationPeer, Server, User) {
    let peer = FederationPeer::start().await;
    let server = peer.server("hs1.test").start().await;
    let alice = server.register_user("alice").await;
    (peer, server, alice)
}

fn world_readable() -> Value {
    json!({"type": "m.room.history_visibility", "state_key": "",
           "content": {"history_visibility": "world_readable"}})
}

fn event_uri(event_id: &str) -> String {
    format!("/_matrix/federation/v1/event/{}", encode(event_id))
}

fn room_uri(endpoint: &str, room_id: &str, query: &str) -> String {
    format!(
        "/_matrix/federation/v1/{endpoint}/{}{query}",
        encode(room_id)
    )
}

fn at(event_id: &str) -> String {
    format!("?event_id={}", encode(event_id))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn ids_of(pdus: &Value, version: &str) -> Vec<String> {
    pdus.as_array()
        .unwrap_or_else(|| panic!("expected PDUs, got {pdus}"))
        .iter()
        .map(|pdu| pdu_event_id(pdu, version))
        .collect()
}

/// The ids at `indexes` of `ids`, in that order.
fn pick(ids: &[String], indexes: &[usize]) -> Vec<String> {
    indexes.iter().map(|i| ids[*i].clone()).collect()
}

fn assert_unique(ids: &[String], what: &str) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what} has duplicates: {ids:?}");
}

/// Fetches one PDU as the peer and checks it is the signed federation form of `event_id`.
async fn fetch_pdu(client: &PeerClient, event_id: &str, version: &str) -> Value {
    let body = client.get(&event_uri(event_id)).await.ok();
    assert_eq!(body["origin"], "hs1.test");
    assert!(body["origin_server_ts"].as_u64().is_some(), "{body}");
    let pdus = body["pdus"].as_array().expect("a transaction has pdus");
    assert_eq!(pdus.len(), 1, "{body}");
    let pdu = pdus[0].clone();
    assert!(
        pdu.get("event_id").is_none(),
        "federation PDUs carry no event_id: {pdu}"
    );
    assert!(pdu.get("unsigned").is_none(), "{pdu}");
    assert_eq!(pdu_event_id(&pdu, version), event_id);
    pdu
}

/// A room of `version` that anyone may read, with `n` messages; returns the room and the
/// message ids, oldest first.
async fn readable_room(alice: &User, version: &str, n: usize) -> (String, Vec<String>) {
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": version,
                            "initial_state": [world_readable()]}))
        .await;
    let mut messages = Vec::new();
    for i in 1..=n {
        messages.push(alice.send_message(&room, &format!("message {i}")).await);
    }
    (room, messages)
}

#[tokio::test]
async fn a_peer_reads_single_events_signed_by_the_server() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let (key_id, public_key) = client.server_key().await;
    for version in ["10", "11", "12"] {
        let (room, messages) = readable_room(&alice, version, 2).await;
        let pdu = fetch_pdu(&client, &messages[0], version).await;
        assert_eq!(pdu["room_id"], room, "v{version}");
        assert_eq!(pdu["content"]["body"], "message 1");
        assert_eq!(pdu["sender"], alice.user_id.as_str());
        verify_pdu(&pdu, version, "hs1.test", &key_id, &public_key)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }
}

#[tokio::test]
async fn the_state_at_an_event_comes_with_its_whole_auth_chain() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    for version in ["10", "11", "12"] {
        let (room, messages) = readable_room(&alice, version, 3).await;
        alice
            .set_state(&room, "m.room.topic", "", json!({"topic": "Tea at 4"}))
            .await;
        let last = alice.send_message(&room, "after the topic").await;

        let ids = client
            .get(&room_uri("state_ids", &room, &at(&last)))
            .await
            .ok();
        let state_ids = strings(&ids["pdu_ids"]);
        let chain_ids = strings(&ids["auth_chain_ids"]);
        assert_unique(&state_ids, "pdu_ids");
        assert_unique(&chain_ids, "auth_chain_ids");

        let full = client.get(&room_uri("state", &room, &at(&last))).await.ok();
        let state = full["pdus"].as_array().expect("pdus").clone();
        let chain = full["auth_chain"].as_array().expect("auth_chain").clone();
        let state_set: HashSet<String> = ids_of(&full["pdus"], version).into_iter().collect();
        let chain_set: HashSet<String> = ids_of(&full["auth_chain"], version).into_iter().collect();
        assert_eq!(
            state_set,
            state_ids.iter().cloned().collect(),
            "v{version}: /state = /state_ids"
        );
        assert_eq!(chain_set, chain_ids.iter().cloned().collect(), "v{version}");

        // The state before the last message: create, power levels, join rules, history
        // visibility, alice's membership and the topic.
        let kinds: HashSet<(String, String)> = state
            .iter()
            .map(|e| {
                let kind = e["type"].as_str().unwrap_or_default().to_owned();
                (kind, e["state_key"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        for (kind, key) in [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.join_rules", ""),
            ("m.room.history_visibility", ""),
            ("m.room.topic", ""),
            ("m.room.member", alice.user_id.as_str()),
        ] {
            assert!(
                kinds.contains(&(kind.to_owned(), key.to_owned())),
                "v{version}: no {kind} {key:?} in the state {kinds:?}"
            );
        }
        assert!(
            !state_set.contains(&last),
            "the state is the one before the event"
        );
        assert!(!state_set.contains(&messages[0]), "messages are not state");

        // The chain is closed under auth_events: everything the state and the chain cite is in it
        // (and from v12 on the create event, which events no longer cite, is there too).
        for event in state.iter().chain(&chain) {
            for auth in strings(&event["auth_events"]) {
                assert!(
                    chain_set.contains(&auth),
                    "v{version}: {auth} is missing from the chain"
                );
            }
        }
        let create = state
            .iter()
            .find(|e| e["type"] == "m.room.create")
            .expect("a create event");
        assert!(
            chain_set.contains(&pdu_event_id(create, version)),
            "v{version}"
        );
    }
}

#[tokio::test]
async fn event_auth_is_the_auth_chain_of_one_event() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let (room, messages) = readable_room(&alice, "10", 2).await;
    let body = client
        .get(&format!(
            "/_matrix/federation/v1/event_auth/{}/{}",
            encode(&room),
            encode(&messages[1])
        ))
        .await
        .ok();
    let chain = body["auth_chain"].as_array().expect("auth_chain").clone();
    let ids = ids_of(&body["auth_chain"], "10");
    assert_unique(&ids, "auth_chain");
    let message = fetch_pdu(&client, &messages[1], "10").await;
    for auth in strings(&message["auth_events"]) {
        assert!(
            ids.contains(&auth),
            "{auth} is cited by the message but not in its chain"
        );
    }
    for event in &chain {
        for auth in strings(&event["auth_events"]) {
            assert!(ids.contains(&auth), "the chain is not closed: {auth}");
        }
    }
    let kinds: HashSet<&str> = chain.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        HashSet::from(["m.room.create", "m.room.member", "m.room.power_levels"]),
        "a message is authorised by the create event, power levels and its sender's membership"
    );
    assert!(!ids.contains(&messages[1]));
}

#[tokio::test]
async fn backfill_walks_back_in_pages_without_duplicates() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let (room, messages) = readable_room(&alice, "11", 5).await;
    let backfill = |from: &str, limit: u32| {
        room_uri(
            "backfill",
            &room,
            &format!("?v={}&limit={limit}", encode(from)),
        )
    };

    let page = client.get(&backfill(&messages[4], 3)).await.ok();
    assert_eq!(page["origin"], "hs1.test");
    assert_eq!(ids_of(&page["pdus"], "11"), pick(&messages, &[4, 3, 2]));
    // The next page starts from the oldest event of the last one, which comes again.
    let page = client.get(&backfill(&messages[2], 3)).await.ok();
    assert_eq!(ids_of(&page["pdus"], "11"), pick(&messages, &[2, 1, 0]));

    // Everything, newest first: the messages, then the room's creation back to the create event.
    let all = client.get(&backfill(&messages[4], 100)).await.ok();
    let pdus = all["pdus"].as_array().expect("pdus").clone();
    let ids = ids_of(&all["pdus"], "11");
    assert_unique(&ids, "backfill");
    assert_eq!(ids[..5], pick(&messages, &[4, 3, 2, 1, 0]));
    assert_eq!(pdus.last().expect("events")["type"], "m.room.create");
    let depths: Vec<u64> = pdus
        .iter()
        .map(|e| e["depth"].as_u64().expect("a depth"))
        .collect();
    assert!(
        depths.windows(2).all(|w| w[0] > w[1]),
        "newest first: {depths:?}"
    );

    // A limit above the cap is cut to 100, not refused.
    client.get(&backfill(&messages[4], 1000)).await.ok();
}

#[tokio::test]
async fn missing_events_are_the_gap_between_earliest_and_latest_oldest_first() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let (room, m) = readable_room(&alice, "10", 6).await;
    let missing = |earliest: &[&String], latest: &[&String], limit: Option<u32>| {
        let mut body = json!({"earliest_events": earliest, "latest_events": latest});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        (room_uri("get_missing_events", &room, ""), body)
    };

    let (uri, body) = missing(&[&m[0]], &[&m[5]], None);
    let events = client.post(&uri, body).await.ok();
    assert_eq!(ids_of(&events["events"], "10"), pick(&m, &[1, 2, 3, 4]));

    // The limit keeps the events nearest the latest ones, still oldest first.
    let (uri, body) = missing(&[&m[0]], &[&m[5]], Some(2));
    let events = client.post(&uri, body).await.ok();
    assert_eq!(ids_of(&events["events"], "10"), pick(&m, &[3, 4]));

    // Without earliest events the walk goes back until the default limit of 10.
    let (uri, body) = missing(&[], &[&m[5]], None);
    let events = client.post(&uri, body).await.ok();
    let ids = ids_of(&events["events"], "10");
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_unique(&ids, "missing events");
    assert_eq!(ids[5..], pick(&m, &[0, 1, 2, 3, 4]));

    // Latest events the server does not have give nothing to walk back from.
    let unknown = "$unknownunknownunknownunknownunknownunknown00".to_owned();
    let (uri, body) = missing(&[], &[&unknown], None);
    let events = client.post(&uri, body).await.ok();
    assert_eq!(events["events"], json!([]));
}

#[tokio::test]
async fn a_server_without_members_reads_only_what_is_world_readable() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    // Readable by anyone at first, then only by members (`shared`).
    let (room, before) = readable_room(&alice, "10", 1).await;
    alice
        .set_state(
            &room,
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "shared"}),
        )
        .await;
    let after = alice.send_message(&room, "members only").await;

    fetch_pdu(&client, &before[0], "10").await;
    let refused = [
        ("event", client.get(&event_uri(&after)).await),
        (
            "state_ids",
            client.get(&room_uri("state_ids", &room, &at(&after))).await,
        ),
        (
            "state",
            client.get(&room_uri("state", &room, &at(&after))).await,
        ),
        (
            "event_auth",
            client
                .get(&format!(
                    "/_matrix/federation/v1/event_auth/{}/{}",
                    encode(&room),
                    encode(&after)
                ))
                .await,
        ),
        (
            "backfill",
            client
                .get(&room_uri(
                    "backfill",
                    &room,
                    &format!("?v={}&limit=10", encode(&after)),
                ))
                .await,
        ),
        (
            "get_missing_events",
            client
                .post(
                    &room_uri("get_missing_events", &room, ""),
                    json!({"earliest_events": [], "latest_events": [after]}),
                )
                .await,
        ),
    ];
    for (label, reply) in refused {
        reply.labelled(label).assert_error(403, "M_FORBIDDEN");
    }

    // A walk that starts from something the peer may see hands over what it may not see
    // redacted: the DAG stays whole, the message's content does not leave.
    let walk = client
        .get(&room_uri(
            "backfill",
            &room,
            &format!("?v={}&v={}&limit=10", encode(&after), encode(&before[0])),
        ))
        .await
        .ok();
    let pdus = walk["pdus"].as_array().expect("pdus").clone();
    let hidden = pdus
        .iter()
        .find(|e| pdu_event_id(e, "10") == after)
        .expect("the members-only message, redacted");
    assert_eq!(hidden["content"], json!({}), "{hidden}");
    let visible = pdus
        .iter()
        .find(|e| pdu_event_id(e, "10") == before[0])
        .expect("the world-readable message");
    assert_eq!(visible["content"]["body"], "message 1");

    // A room that was never world-readable is closed to the peer altogether.
    let shared = alice.create_room(json!({"preset": "public_chat"})).await;
    let message = alice.send_message(&shared, "hello members").await;
    client
        .get(&event_uri(&message))
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .get(&room_uri("state_ids", &shared, &at(&message)))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn unknown_rooms_and_events_are_not_found_and_bad_requests_are_refused() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let (room, messages) = readable_room(&alice, "10", 1).await;
    let (other_room, _) = readable_room(&alice, "10", 1).await;
    let unknown_event = "$unknownunknownunknownunknownunknownunknown00";
    let unknown_room = "!nowhere:hs1.test";

    let not_found = [
        ("unknown event", event_uri(unknown_event)),
        (
            "state_ids of an unknown event",
            room_uri("state_ids", &room, &at(unknown_event)),
        ),
        (
            "state of an unknown room",
            room_uri("state", unknown_room, &at(&messages[0])),
        ),
        (
            "an event asked for in another room",
            room_uri("state_ids", &other_room, &at(&messages[0])),
        ),
        (
            "event_auth of an unknown event",
            format!(
                "/_matrix/federation/v1/event_auth/{}/{}",
                encode(&room),
                encode(unknown_event)
            ),
        ),
        (
            "backfill from an unknown event",
            room_uri(
                "backfill",
                &room,
                &format!("?v={}&limit=5", encode(unknown_event)),
            ),
        ),
        (
            "backfill in an unknown room",
            room_uri(
                "backfill",
                unknown_room,
                &format!("?v={}&limit=5", encode(&messages[0])),
            ),
        ),
    ];
    for (label, uri) in not_found {
        client
            .get(&uri)
            .await
            .labelled(label)
            .assert_error(404, "M_NOT_FOUND");
    }
    client
        .post(
            &room_uri("get_missing_events", unknown_room, ""),
            json!({"earliest_events": [], "latest_events": [messages[0]]}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Malformed ids and missing parameters are the client's fault, never the server's.
    let bad = [
        (
            "a malformed room id",
            room_uri("state_ids", "not-a-room", &at(&messages[0])),
        ),
        ("a malformed event id", event_uri("not-an-event")),
        ("no event_id", room_uri("state_ids", &room, "")),
        (
            "no limit",
            room_uri("backfill", &room, &format!("?v={}", encode(&messages[0]))),
        ),
    ];
    for (label, uri) in bad {
        let reply = client.get(&uri).await.labelled(label);
        reply.assert_status(400);
        assert!(
            matches!(
                reply.errcode(),
                Some("M_INVALID_PARAM" | "M_MISSING_PARAM" | "M_BAD_JSON")
            ),
            "{reply}"
        );
    }

    // Without a signature nothing is answered.
    for uri in [
        event_uri(&messages[0]),
        room_uri("state_ids", &room, &at(&messages[0])),
    ] {
        client
            .get_unsigned(&uri)
            .await
            .assert_error(401, "M_UNAUTHORIZED");
    }
}

/// Another server looking up an alias in an appservice's namespace that nobody made yet gets
/// what a local client would: the appservice is asked, may create the room behind it, and the
/// answer names that room.
#[tokio::test]
async fn an_alias_a_bridge_creates_when_asked_is_answered_over_federation() {
    let peer = FederationPeer::start().await;
    let bridge = TestAppservice::start("whatsapp").await;
    let server = TestAppservice::configure(peer.server("hs1.test"), &[&bridge])
        .start()
        .await;
    bridge.attach(&server);
    bridge.create_rooms_for_aliases("#_whatsapp_group");
    let client = peer.client(&server);
    let lookup = |alias: &str| {
        format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            encode(alias)
        )
    };
    let found = client.get(&lookup("#_whatsapp_group7:hs1.test")).await.ok();
    assert!(
        found["room_id"]
            .as_str()
            .is_some_and(|r| r.starts_with('!')),
        "{found}"
    );
    assert_eq!(found["servers"], json!(["hs1.test"]));
    // Asked once; the second lookup finds the alias stored.
    let again = client.get(&lookup("#_whatsapp_group7:hs1.test")).await.ok();
    assert_eq!(again["room_id"], found["room_id"]);
    let queries = bridge
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/_matrix/app/v1/rooms/"))
        .count();
    assert_eq!(queries, 1);
    // An alias the bridge does not make is not found.
    client
        .get(&lookup("#_whatsapp_nothing:hs1.test"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn aliases_and_the_public_room_directory_are_answered_for_local_rooms() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let room = alice
        .create_room(json!({"preset": "public_chat", "visibility": "public",
                            "name": "Residents' lounge", "room_alias_name": "lounge"}))
        .await;

    let found = client
        .get(&format!(
            "/_matrix/federation/v1/query/directory?room_alias={}",
            encode("#lounge:hs1.test")
        ))
        .await
        .ok();
    assert_eq!(found["room_id"], room);
    assert_eq!(found["servers"], json!(["hs1.test"]));
    for alias in ["#nothing:hs1.test", "#lounge:elsewhere.test"] {
        client
            .get(&format!(
                "/_matrix/federation/v1/query/directory?room_alias={}",
                encode(alias)
            ))
            .await
            .labelled(alias)
            .assert_error(404, "M_NOT_FOUND");
    }

    let listed = client.get("/_matrix/federation/v1/publicRooms").await.ok();
    let rooms: Vec<&Value> = listed["chunk"]
        .as_array()
        .expect("a chunk")
        .iter()
        .collect();
    assert_eq!(rooms.len(), 1, "{listed}");
    assert_eq!(rooms[0]["room_id"], room);
    assert_eq!(rooms[0]["name"], "Residents' lounge");
    assert_eq!(rooms[0]["num_joined_members"], 1);

    let search = |term: &str| json!({"filter": {"generic_search_term": term}, "limit": 10});
    let hit = client
        .post("/_matrix/federation/v1/publicRooms", search("lounge"))
        .await
        .ok();
    assert_eq!(hit["chunk"][0]["room_id"], room);
    let miss = client
        .post("/_matrix/federation/v1/publicRooms", search("kitchen"))
        .await
        .ok();
    assert_eq!(miss["chunk"], json!([]));
}

#[tokio::test]
async fn a_space_shows_the_children_the_peer_could_join() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let space = alice
        .create_room(json!({"preset": "public_chat", "name": "Care home",
                            "creation_content": {"type": "m.space"}}))
        .await;
    let lounge = alice
        .create_room(json!({"preset": "public_chat", "name": "Lounge"}))
        .await;
    let office = alice
        .create_room(json!({"preset": "private_chat", "name": "Office"}))
        .await;
    for child in [&lounge, &office] {
        alice
            .set_state(&space, "m.space.child", child, json!({"via": ["hs1.test"]}))
            .await;
    }

    let uri = format!("/_matrix/federation/v1/hierarchy/{}", encode(&space));
    let body = client.get(&uri).await.ok();
    assert_eq!(body["room"]["room_id"], space);
    assert_eq!(body["room"]["name"], "Care home");
    assert_eq!(
        body["room"]["children_state"]
            .as_array()
            .expect("links")
            .len(),
        2
    );
    let children: Vec<&str> = body["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["room_id"].as_str())
        .collect();
    assert_eq!(children, [lounge.as_str()]);
    assert_eq!(body["inaccessible_children"], json!([office]));

    // The private room itself is not shown to a server with nobody in it.
    client
        .get(&format!(
            "/_matrix/federation/v1/hierarchy/{}",
            encode(&office)
        ))
        .await
        .assert_error(404, "M_NOT_FOUND");
    client
        .get("/_matrix/federation/v1/hierarchy/%21nowhere%3Ahs1.test")
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn an_openid_token_tells_a_third_party_who_the_user_is() {
    let (peer, server, alice) = setup().await;
    let bob = server.register_user("bob").await;
    let client = peer.client(&server);
    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        encode(&alice.user_id)
    );

    let token = alice.post(&path, json!({})).await.ok();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], "hs1.test");
    assert_eq!(token["expires_in"], 3600);
    let access_token = token["access_token"].as_str().expect("a token");

    // The third party asks without any signature: the token is the credential.
    let userinfo = |token: &str| {
        format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            encode(token)
        )
    };
    let info = client.get_unsigned(&userinfo(access_token)).await.ok();
    assert_eq!(info["sub"], alice.user_id.as_str());
    client
        .get_unsigned(&userinfo("not-a-token"))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    // The OpenID token is not an access token, nor the other way round.
    alice
        .client()
        .with_token(access_token)
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");

    // Nobody gets a token in another user's name.
    bob.post(&path, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_local_users_device_list_is_shared_without_names() {
    let (peer, server, alice) = setup().await;
    let client = peer.client(&server);
    let devices_uri = |user: &str| format!("/_matrix/federation/v1/user/devices/{}", encode(user));
    // Two devices publish keys; a third never does and is not a device other servers can use.
    let mut phone = E2eeDevice::new(alice.login_new_device().await);
    let mut laptop = E2eeDevice::new(alice.login_new_device().await);
    let _silent = alice.login_new_device().await;
    phone.upload_keys(1).await;
    laptop.upload_keys(1).await;

    let list = client.get(&devices_uri(&alice.user_id)).await.ok();
    assert_eq!(list["user_id"], alice.user_id.as_str());
    assert!(
        list["stream_id"].as_u64().is_some_and(|id| id > 0),
        "{list}"
    );
    let mut ids: Vec<String> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            assert!(d.get("device_display_name").is_none(), "{d}");
            assert_eq!(d["keys"]["user_id"], alice.user_id.as_str());
            assert_eq!(d["keys"]["device_id"], d["device_id"]);
            d["device_id"].as_str().expect("a device id").to_owned()
        })
        .collect();
    ids.sort();
    let mut expected = vec![phone.device_id().to_owned(), laptop.device_id().to_owned()];
    expected.sort();
    assert_eq!(ids, expected);

    for user in ["@nobody:hs1.test", &peer.user_id("carol")] {
        client
            .get(&devices_uri(user))
            .await
            .labelled(user)
            .assert_error(404, "M_NOT_FOUND");
    }
}
