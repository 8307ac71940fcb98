//! Redaction: `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` with a reason, and the redacted form
//! that `GET /rooms/{roomId}/event/{eventId}`, `/messages` and room state show afterwards, for room
//! versions 10 and 11 (whose redaction algorithms differ); and who may redact.

use complement_tests::{Reply, Server, User, Value, encode, json, room_path, txn_id};

async fn redact(user: &User, room: &str, event_id: &str, txn: &str, reason: &str) -> Reply {
    user.put(
        &room_path(
            room,
            &format!("redact/{}/{}", encode(event_id), encode(txn)),
        ),
        json!({"reason": reason}),
    )
    .await
    .labelled(format!("{} redacts", user.localpart))
}

fn event_id(reply: &Reply) -> String {
    reply.ok()["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id in\n{reply}"))
        .to_owned()
}

/// The event `event_id` as it appears in `reader`'s walk over the room's history.
async fn in_history(reader: &User, room: &str, event_id: &str) -> Value {
    reader
        .all_messages(room, "b", 50)
        .await
        .into_iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is not in /messages of {room}"))
}

/// Alice's public room of `version`, which bob has joined.
async fn room_of_version(server: &Server, version: &str) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": version}))
        .await;
    bob.join(&room).await;
    (alice, bob, room)
}

/// Bob's message, redacted by alice with a reason, shows no content and says who redacted it and
/// why, both through `/event` and `/messages`.
async fn a_redacted_message_loses_its_content(version: &str) {
    let server = Server::start().await;
    let (alice, bob, room) = room_of_version(&server, version).await;
    let message = bob
        .send_event(
            &room,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "Mrs Smith's results: ...",
                "format": "org.matrix.custom.html",
                "formatted_body": "<b>Mrs Smith</b>'s results: ...",
            }),
        )
        .await;

    let redaction = event_id(&redact(&alice, &room, &message, &txn_id(), "wrong patient").await);

    for (source, event) in [
        ("/event", bob.event(&room, &message).await),
        ("/messages", in_history(&bob, &room, &message).await),
    ] {
        assert_eq!(
            event["content"],
            json!({}),
            "v{version} {source}: {event:#}"
        );
        assert_eq!(event["type"], "m.room.message", "v{version} {source}");
        assert_eq!(event["sender"], bob.user_id.as_str(), "v{version} {source}");
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(
            because["event_id"],
            redaction.as_str(),
            "v{version} {source}: {event:#}"
        );
        assert_eq!(because["type"], "m.room.redaction", "v{version} {source}");
        assert_eq!(
            because["sender"],
            alice.user_id.as_str(),
            "v{version} {source}"
        );
        assert_eq!(
            because["content"]["reason"], "wrong patient",
            "v{version} {source}"
        );
    }
    let redaction_event = bob.event(&room, &redaction).await;
    assert_eq!(redaction_event["type"], "m.room.redaction");
    assert_eq!(redaction_event["content"]["reason"], "wrong patient");
    let redacts = if version == "10" {
        &redaction_event["redacts"]
    } else {
        &redaction_event["content"]["redacts"]
    };
    assert_eq!(
        redacts,
        message.as_str(),
        "v{version} names the redacted event: {redaction_event:#}"
    );
}

#[tokio::test]
async fn a_redacted_message_loses_its_content_in_version_10() {
    a_redacted_message_loses_its_content("10").await;
}

#[tokio::test]
async fn a_redacted_message_loses_its_content_in_version_11() {
    a_redacted_message_loses_its_content("11").await;
}

/// Bob's join carries a reason; once alice redacts it only `membership` is left, and bob is still a
/// member.
async fn a_redacted_member_event_keeps_its_membership(version: &str) {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    bob.set_displayname("Bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": version}))
        .await;
    bob.post(&room_path(&room, "join"), json!({"reason": "night shift"}))
        .await
        .ok();
    let join = alice
        .state_event(&room, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(join["content"]["reason"], "night shift", "{join:#}");
    let join_id = join["event_id"].as_str().unwrap_or_default().to_owned();

    redact(&alice, &room, &join_id, &txn_id(), "tidy up")
        .await
        .ok();

    assert_eq!(
        alice.event(&room, &join_id).await["content"],
        json!({"membership": "join"}),
        "v{version}"
    );
    assert_eq!(
        alice.state(&room, "m.room.member", &bob.user_id).await,
        json!({"membership": "join"}),
        "v{version}: the current state shows the redacted form"
    );
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
    bob.send_message(&room, "still here").await;
}

#[tokio::test]
async fn a_redacted_member_event_keeps_its_membership_in_version_10() {
    a_redacted_member_event_keeps_its_membership("10").await;
}

#[tokio::test]
async fn a_redacted_member_event_keeps_its_membership_in_version_11() {
    a_redacted_member_event_keeps_its_membership("11").await;
}

/// Alice redacts her room's create event, made with extra creation content.
async fn redacted_create_content(version: &str) -> (User, Value) {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice
        .create_room(json!({
            "room_version": version,
            "creation_content": {"m.federate": false, "care.plexus.unit": "ward b"},
        }))
        .await;
    let create = alice.state_event(&room, "m.room.create", "").await;
    let create_id = create["event_id"].as_str().unwrap_or_default().to_owned();

    redact(&alice, &room, &create_id, &txn_id(), "testing")
        .await
        .ok();

    (alice.clone(), alice.event(&room, &create_id).await)
}

#[tokio::test]
async fn a_redacted_create_event_keeps_only_the_creator_in_version_10() {
    let (alice, create) = redacted_create_content("10").await;

    assert_eq!(
        create["content"],
        json!({"creator": alice.user_id}),
        "{create:#}"
    );
}

#[tokio::test]
async fn a_redacted_create_event_keeps_all_its_content_in_version_11() {
    let (_, create) = redacted_create_content("11").await;

    assert_eq!(
        create["content"],
        json!({"room_version": "11", "m.federate": false, "care.plexus.unit": "ward b"}),
        "{create:#}"
    );
}

/// Alice sets an `invite` level of 50 and then redacts that power levels event; returns the power
/// levels bob reads afterwards.
async fn redacted_power_levels(version: &str) -> Value {
    let server = Server::start().await;
    let (alice, bob, room) = room_of_version(&server, version).await;
    let mut levels = alice.state(&room, "m.room.power_levels", "").await;
    levels["invite"] = json!(50);
    let levels_id = alice
        .set_state(&room, "m.room.power_levels", "", levels)
        .await;

    redact(&alice, &room, &levels_id, &txn_id(), "testing")
        .await
        .ok();

    let redacted = bob.event(&room, &levels_id).await;
    assert_eq!(
        redacted["content"]["users"][&alice.user_id], 100,
        "v{version}: users survive redaction: {redacted:#}"
    );
    bob.state(&room, "m.room.power_levels", "").await
}

#[tokio::test]
async fn redacted_power_levels_lose_the_invite_level_in_version_10() {
    let levels = redacted_power_levels("10").await;

    assert!(levels.get("invite").is_none(), "{levels:#}");
}

#[tokio::test]
async fn redacted_power_levels_keep_the_invite_level_in_version_11() {
    let levels = redacted_power_levels("11").await;

    assert_eq!(levels["invite"], 50, "{levels:#}");
}

#[tokio::test]
async fn members_without_power_may_redact_only_their_own_events() {
    let server = Server::start().await;
    let (alice, bob, room) = room_of_version(&server, "11").await;
    let carol = server.register_user("carol").await;
    carol.join(&room).await;
    alice.set_power_level(&room, &carol.user_id, 50).await;
    let alices = alice.send_message(&room, "from alice").await;
    let bobs = bob.send_message(&room, "from bob").await;
    let bobs_second = bob.send_message(&room, "from bob again").await;

    redact(&bob, &room, &alices, &txn_id(), "I don't like it")
        .await
        .assert_error(403, "M_FORBIDDEN");
    redact(&bob, &room, &bobs, &txn_id(), "typo").await.ok();
    redact(&carol, &room, &bobs_second, &txn_id(), "moderation")
        .await
        .ok();

    assert_eq!(
        bob.event(&room, &alices).await["content"]["body"],
        "from alice",
        "a refused redaction changes nothing"
    );
    assert_eq!(bob.event(&room, &bobs).await["content"], json!({}));
    assert_eq!(bob.event(&room, &bobs_second).await["content"], json!({}));
}

#[tokio::test]
async fn retrying_a_redaction_with_the_same_txn_id_is_one_redaction() {
    let server = Server::start().await;
    let (alice, bob, room) = room_of_version(&server, "11").await;
    let message = bob.send_message(&room, "oops").await;

    let first = event_id(&redact(&alice, &room, &message, "redact-1", "oops").await);
    let retry = event_id(&redact(&alice, &room, &message, "redact-1", "oops").await);

    assert_eq!(first, retry);
    let redactions = bob
        .all_messages(&room, "b", 50)
        .await
        .into_iter()
        .filter(|e| e["type"] == "m.room.redaction")
        .count();
    assert_eq!(redactions, 1);
}
