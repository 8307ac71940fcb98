//! Creating rooms: `POST /createRoom` with its presets and options (`name`, `topic`, `invite`,
//! `initial_state`, `power_level_content_override`, `creation_content`, `is_direct`,
//! `room_version`, `room_alias_name`), checked through the state members read back and through what
//! other users can then do.

use complement_tests::{Server, encode, json};

/// `POST /join/{roomIdOrAlias}` path, for stories that expect the join to be refused.
fn join_path(room_id_or_alias: &str) -> String {
    format!("/_matrix/client/v3/join/{}", encode(room_id_or_alias))
}

#[tokio::test]
async fn a_private_chat_is_invite_only_with_shared_history() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({"preset": "private_chat", "room_version": "11"}))
        .await;

    assert_eq!(
        alice.state(&room, "m.room.join_rules", "").await["join_rule"],
        "invite"
    );
    assert_eq!(
        alice.state(&room, "m.room.history_visibility", "").await["history_visibility"],
        "shared"
    );
    assert_eq!(
        alice.state(&room, "m.room.guest_access", "").await["guest_access"],
        "can_join"
    );
    let levels = alice.state(&room, "m.room.power_levels", "").await;
    assert_eq!(
        levels["users"][&alice.user_id], 100,
        "the creator of a version 11 room is listed at 100: {levels:#}"
    );
    assert_eq!(
        alice.joined_members(&room).await,
        vec![alice.user_id.clone()]
    );
    assert_eq!(alice.joined_rooms().await, vec![room.clone()]);
    bob.post(&join_path(&room), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_public_chat_is_open_to_anyone_without_guests() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    assert_eq!(
        alice.state(&room, "m.room.join_rules", "").await["join_rule"],
        "public"
    );
    assert_eq!(
        alice.state(&room, "m.room.history_visibility", "").await["history_visibility"],
        "shared"
    );
    assert_eq!(
        alice.state(&room, "m.room.guest_access", "").await["guest_access"],
        "forbidden"
    );
    assert_eq!(bob.join(&room).await, room);
    let mut both = vec![alice.user_id.clone(), bob.user_id.clone()];
    both.sort();
    assert_eq!(bob.joined_members(&room).await, both);
}

#[tokio::test]
async fn without_a_preset_the_visibility_picks_one() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let public = alice.create_room(json!({"visibility": "public"})).await;
    let private = alice.create_room(json!({})).await;

    assert_eq!(
        alice.state(&public, "m.room.join_rules", "").await["join_rule"],
        "public",
        "visibility public means public_chat"
    );
    assert_eq!(
        alice.state(&private, "m.room.join_rules", "").await["join_rule"],
        "invite",
        "the default visibility, private, means private_chat"
    );
    bob.join(&public).await;
    bob.post(&join_path(&private), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_trusted_private_chat_gives_invitees_the_creators_power() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "trusted_private_chat",
            "room_version": "11",
            "invite": [bob.user_id],
        }))
        .await;

    assert_eq!(
        alice.state(&room, "m.room.join_rules", "").await["join_rule"],
        "invite"
    );
    let levels = alice.state(&room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&alice.user_id], 100, "{levels:#}");
    assert_eq!(
        levels["users"][&bob.user_id], 100,
        "invitees get the creator's level: {levels:#}"
    );
    bob.join(&room).await;
    bob.set_state(&room, "m.room.name", "", json!({"name": "Bob's too"}))
        .await;
    assert_eq!(
        alice.state(&room, "m.room.name", "").await["name"],
        "Bob's too"
    );
}

#[tokio::test]
async fn a_trusted_private_chat_in_version_12_makes_invitees_additional_creators() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "trusted_private_chat",
            "room_version": "12",
            "invite": [bob.user_id],
        }))
        .await;

    let create = alice.state(&room, "m.room.create", "").await;
    assert_eq!(
        create["additional_creators"],
        json!([bob.user_id]),
        "invitees join additional_creators: {create:#}"
    );
    let levels = alice.state(&room, "m.room.power_levels", "").await;
    for creator in [&alice.user_id, &bob.user_id] {
        assert!(
            levels["users"].get(creator).is_none(),
            "creators have infinite power and are not listed in users: {levels:#}"
        );
    }
    bob.join(&room).await;
    bob.set_state(&room, "m.room.name", "", json!({"name": "Co-created"}))
        .await;
}

#[tokio::test]
async fn name_and_topic_become_room_state() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Tea Room",
            "topic": "Biscuits welcome",
        }))
        .await;
    bob.join(&room).await;

    assert_eq!(
        bob.state(&room, "m.room.name", "").await["name"],
        "Tea Room"
    );
    let topic = bob.state(&room, "m.room.topic", "").await;
    assert_eq!(topic["topic"], "Biscuits welcome", "{topic:#}");
    assert_eq!(
        topic["m.topic"]["m.text"],
        json!([{"body": "Biscuits welcome", "mimetype": "text/plain"}]),
        "the topic is sent with a text/plain representation: {topic:#}"
    );
}

#[tokio::test]
async fn name_and_topic_win_over_initial_state_which_wins_over_the_preset() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "New name",
            "initial_state": [
                {"type": "m.room.name", "state_key": "", "content": {"name": "Old name"}},
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
                {"type": "care.plexus.ward", "state_key": "ward-b", "content": {"beds": 12}},
            ],
        }))
        .await;
    bob.join(&room).await;

    assert_eq!(
        bob.state(&room, "m.room.name", "").await["name"],
        "New name"
    );
    assert_eq!(
        bob.state(&room, "m.room.history_visibility", "").await["history_visibility"],
        "joined",
        "initial_state overrides the preset's shared history"
    );
    assert_eq!(
        bob.state(&room, "m.room.join_rules", "").await["join_rule"],
        "public",
        "what initial_state does not mention keeps the preset's value"
    );
    assert_eq!(
        bob.state(&room, "care.plexus.ward", "ward-b").await,
        json!({"beds": 12})
    );
}

#[tokio::test]
async fn invitees_are_invited_and_can_join() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;

    let room = alice
        .create_room(json!({"preset": "private_chat", "invite": [bob.user_id, carol.user_id]}))
        .await;

    let mut invited = vec![
        (bob.user_id.clone(), "invite".to_owned()),
        (carol.user_id.clone(), "invite".to_owned()),
    ];
    invited.sort();
    assert_eq!(alice.members(&room, "?membership=invite").await, invited);
    let invite = alice
        .state_event(&room, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(invite["sender"], alice.user_id.as_str(), "{invite:#}");
    bob.join(&room).await;
    carol.join(&room).await;
    let mut everyone = vec![
        alice.user_id.clone(),
        bob.user_id.clone(),
        carol.user_id.clone(),
    ];
    everyone.sort();
    assert_eq!(carol.joined_members(&room).await, everyone);
}

#[tokio::test]
async fn is_direct_marks_the_invitations() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "trusted_private_chat",
            "invite": [bob.user_id],
            "is_direct": true,
        }))
        .await;

    let invite = alice.state(&room, "m.room.member", &bob.user_id).await;
    assert_eq!(invite["membership"], "invite", "{invite:#}");
    assert_eq!(invite["is_direct"], true, "{invite:#}");
}

#[tokio::test]
async fn power_level_content_override_is_applied_on_top_of_the_defaults() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "room_version": "11",
            "power_level_content_override": {"events_default": 50},
        }))
        .await;
    bob.join(&room).await;

    let levels = alice.state(&room, "m.room.power_levels", "").await;
    assert_eq!(levels["events_default"], 50, "{levels:#}");
    assert_eq!(
        levels["users"][&alice.user_id], 100,
        "keys not overridden keep their generated value: {levels:#}"
    );
    let path = complement_tests::room_path(
        &room,
        &format!("send/m.room.message/{}", complement_tests::txn_id()),
    );
    bob.put(&path, json!({"msgtype": "m.text", "body": "may I?"}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice.send_message(&room, "I may").await;
}

#[tokio::test]
async fn an_initial_state_the_creator_may_not_send_is_invalid() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let reply = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({
                "room_version": "11",
                "name": "Out of reach",
                "power_level_content_override": {"users": {alice.user_id.clone(): 0}},
            }),
        )
        .await;

    reply.assert_error(400, "M_INVALID_ROOM_STATE");
}

#[tokio::test]
async fn creation_content_lands_in_the_create_event() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "room_version": "10",
            "creation_content": {
                "m.federate": false,
                "care.plexus.unit": "night shift",
                "creator": "@mallory:localhost",
                "room_version": "1",
            },
        }))
        .await;
    bob.join(&room).await;

    let create = bob.state_event(&room, "m.room.create", "").await;
    assert_eq!(create["sender"], alice.user_id.as_str(), "{create:#}");
    assert_eq!(create["state_key"], "", "{create:#}");
    assert_eq!(
        create["content"],
        json!({
            "creator": alice.user_id,
            "room_version": "10",
            "m.federate": false,
            "care.plexus.unit": "night shift",
        }),
        "the server overwrites creator and room_version and keeps the rest"
    );
}

#[tokio::test]
async fn a_version_11_create_event_has_no_creator_key() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let room = alice
        .create_room(json!({"room_version": "11", "creation_content": {"m.federate": true}}))
        .await;

    let create = alice.state_event(&room, "m.room.create", "").await;
    assert_eq!(create["sender"], alice.user_id.as_str(), "{create:#}");
    assert_eq!(
        create["content"],
        json!({"room_version": "11", "m.federate": true}),
        "from version 11 the sender is the creator"
    );
}

#[tokio::test]
async fn rooms_of_versions_10_11_and_12_work() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;

    for version in ["10", "11", "12"] {
        let room = alice
            .create_room(json!({"preset": "public_chat", "room_version": version}))
            .await;
        bob.join(&room).await;
        let message = bob.send_message(&room, &format!("hello v{version}")).await;

        let create = alice.state_event(&room, "m.room.create", "").await;
        assert_eq!(create["content"]["room_version"], version, "{create:#}");
        let event = alice.event(&room, &message).await;
        assert_eq!(event["room_id"], room.as_str(), "{event:#}");
        assert_eq!(event["content"]["body"], format!("hello v{version}"));
        if version == "12" {
            let create_id = create["event_id"].as_str().unwrap_or_default();
            assert_eq!(
                room.strip_prefix('!'),
                create_id.strip_prefix('$'),
                "a version 12 room ID is its create event's ID with a ! sigil"
            );
            let levels = alice.state(&room, "m.room.power_levels", "").await;
            assert!(
                levels["users"].get(&alice.user_id).is_none(),
                "a version 12 creator is not listed in users: {levels:#}"
            );
            let state_default = levels["state_default"].as_i64().unwrap_or(0);
            assert!(
                levels["events"]["m.room.tombstone"]
                    .as_i64()
                    .is_some_and(|tombstone| tombstone > state_default),
                "m.room.tombstone needs more than state_default in version 12: {levels:#}"
            );
        }
    }
}

#[tokio::test]
async fn the_default_room_version_is_the_one_capabilities_announce() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    let capabilities = alice.get("/_matrix/client/v3/capabilities").await.ok();
    let room = alice.create_room(json!({})).await;

    let create = alice.state(&room, "m.room.create", "").await;
    assert_eq!(
        create["room_version"], capabilities["capabilities"]["m.room_versions"]["default"],
        "{create:#}\n{capabilities:#}"
    );
}

#[tokio::test]
async fn an_unsupported_room_version_is_refused() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;

    alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({"room_version": "9999"}),
        )
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");

    assert_eq!(
        alice.joined_rooms().await,
        Vec::<String>::new(),
        "no room is left behind"
    );
}

#[tokio::test]
async fn room_alias_name_creates_a_resolvable_canonical_alias() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let alias = format!("#tea:{}", server.server_name());
    let directory = format!("/_matrix/client/v3/directory/room/{}", encode(&alias));

    let room = alice
        .create_room(json!({"preset": "public_chat", "room_alias_name": "tea"}))
        .await;

    let resolved = bob.get(&directory).await.ok();
    assert_eq!(resolved["room_id"], room.as_str(), "{resolved:#}");
    assert!(
        resolved["servers"]
            .as_array()
            .is_some_and(|servers| servers.contains(&json!(server.server_name()))),
        "the alias lists this server: {resolved:#}"
    );
    assert_eq!(
        alice.state(&room, "m.room.canonical_alias", "").await["alias"],
        alias.as_str()
    );
    assert_eq!(bob.join(&alias).await, room, "joining by alias");
    assert!(bob.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn a_taken_alias_cannot_be_claimed_again() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let first = alice
        .create_room(json!({"room_alias_name": "coffee"}))
        .await;

    bob.post(
        "/_matrix/client/v3/createRoom",
        json!({"room_alias_name": "coffee"}),
    )
    .await
    .assert_error(400, "M_ROOM_IN_USE");

    let alias = encode(&format!("#coffee:{}", server.server_name()));
    let resolved = bob
        .get(&format!("/_matrix/client/v3/directory/room/{alias}"))
        .await
        .ok();
    assert_eq!(resolved["room_id"], first.as_str());
}

#[tokio::test]
async fn an_unknown_alias_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let alias = encode(&format!("#nowhere:{}", server.server_name()));

    alice
        .get(&format!("/_matrix/client/v3/directory/room/{alias}"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}
