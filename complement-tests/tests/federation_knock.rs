//! Knocking across servers: bob on hs2 knocks on alice's `knock` room on hs1 (`make_knock` /
//! `send_knock`), sees it in his `/sync`'s `knock` section with the room's stripped state, alice
//! sees the knock with its reason, accepts it with an invite over federation, and bob joins.

use std::time::Duration;

use complement_tests::{Federation, User, Value, encode, json, wait_until};

const WAIT: Duration = Duration::from_secs(20);

async fn sync(user: &User) -> Value {
    user.get("/_matrix/client/v3/sync?timeout=0").await.ok()
}

#[tokio::test]
async fn a_knock_on_a_room_of_another_server_is_seen_and_accepted() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "name": "Porch",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
            ],
        }))
        .await;

    let knocked = bob
        .post(
            &format!(
                "/_matrix/client/v3/knock/{}?server_name=hs1.test",
                encode(&room)
            ),
            json!({"reason": "let me in"}),
        )
        .await
        .ok();
    assert_eq!(knocked["room_id"], room.as_str());

    // Bob's server shows the knock with the room's stripped state.
    let synced = sync(&bob).await;
    let state = synced["rooms"]["knock"][&room]["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no knock for {room} in bob's sync: {synced}"));
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.join_rules" && e["content"]["join_rule"] == "knock"),
        "{state:?}"
    );
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Porch"),
        "{state:?}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "knock"),
        "{state:?}"
    );
    assert_eq!(bob.joined_rooms().await, Vec::<String>::new());

    // Alice sees the knock on hs1.
    assert_eq!(
        alice.members(&room, "?membership=knock").await,
        [(bob.user_id.clone(), "knock".to_owned())]
    );
    let knock_event = alice
        .state_event(&room, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(knock_event["content"]["reason"], "let me in");

    // She accepts it with an invite; bob's server learns of it and bob joins.
    alice.invite(&room, &bob.user_id).await;
    wait_until("bob sees the invite", WAIT, async || {
        !sync(&bob).await["rooms"]["invite"][&room].is_null()
    })
    .await;
    let path = format!(
        "/_matrix/client/v3/join/{}?server_name=hs1.test",
        encode(&room)
    );
    bob.post(&path, json!({})).await.ok();
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone()];
    expected.sort();
    assert_eq!(bob.joined_members(&room).await, expected);
    wait_until("alice sees bob joined", WAIT, async || {
        alice.joined_members(&room).await == expected
    })
    .await;
}

#[tokio::test]
async fn a_knock_on_a_remote_room_that_does_not_allow_it_is_refused_and_leaves_nothing() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;

    let reply = bob
        .post(
            &format!(
                "/_matrix/client/v3/knock/{}?server_name=hs1.test",
                encode(&room)
            ),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    let synced = sync(&bob).await;
    assert!(
        synced["rooms"]["knock"][&room].is_null(),
        "no knock is kept: {synced}"
    );
    assert_eq!(
        alice.members(&room, "?membership=knock").await,
        Vec::<(String, String)>::new()
    );
}

#[tokio::test]
async fn a_knock_on_a_room_of_another_server_can_be_withdrawn() {
    let federation = Federation::new(["hs1.test", "hs2.test"]).await;
    let hs1 = federation.server("hs1.test").start().await;
    let hs2 = federation.server("hs2.test").start().await;
    let alice = hs1.register_user("alice").await;
    let bob = hs2.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
            ],
        }))
        .await;
    let path = format!(
        "/_matrix/client/v3/knock/{}?server_name=hs1.test",
        encode(&room)
    );
    bob.post(&path, json!({"reason": "let me in"})).await.ok();
    assert_eq!(alice.members(&room, "?membership=knock").await.len(), 1);

    // Bob changes his mind: his leave goes to hs1, and the knock is gone on both sides.
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", encode(&room)),
        json!({}),
    )
    .await
    .ok();
    assert!(sync(&bob).await["rooms"]["knock"][&room].is_null());
    assert_eq!(
        alice.members(&room, "?membership=leave").await,
        [(bob.user_id.clone(), "leave".to_owned())]
    );
    assert!(alice.members(&room, "?membership=knock").await.is_empty());
}
