//! Room state: `PUT /rooms/{roomId}/state/{type}/{stateKey}` and reading it back through
//! `GET /rooms/{roomId}/state/{type}/{stateKey}` (content, or the whole event with `?format=event`) and
//! `GET /rooms/{roomId}/state`, including who may read it.

use complement_tests::{Server, Value, json, room_path, state_path};

/// The events of `GET /rooms/{roomId}/state` with this type and state key.
fn find<'a>(state: &'a [Value], event_type: &str, state_key: &str) -> Vec<&'a Value> {
    state
        .iter()
        .filter(|e| e["type"] == event_type && e["state_key"] == state_key)
        .collect()
}

#[tokio::test]
async fn custom_state_can_be_set_overwritten_and_read_back() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    let ward = alice
        .set_state(&room, "care.plexus.ward", "", json!({"beds": 12}))
        .await;
    let ward_b = alice
        .set_state(&room, "care.plexus.ward", "ward-b", json!({"beds": 8}))
        .await;

    assert_eq!(
        bob.state(&room, "care.plexus.ward", "").await,
        json!({"beds": 12})
    );
    assert_eq!(
        bob.state(&room, "care.plexus.ward", "ward-b").await,
        json!({"beds": 8})
    );
    let event = bob.state_event(&room, "care.plexus.ward", "ward-b").await;
    assert_eq!(event["event_id"], ward_b.as_str(), "{event:#}");
    assert_eq!(event["type"], "care.plexus.ward", "{event:#}");
    assert_eq!(event["state_key"], "ward-b", "{event:#}");
    assert_eq!(event["sender"], alice.user_id.as_str(), "{event:#}");
    assert_eq!(event["room_id"], room.as_str(), "{event:#}");
    assert_eq!(event["content"], json!({"beds": 8}), "{event:#}");

    let replaced = alice
        .set_state(&room, "care.plexus.ward", "", json!({"beds": 14}))
        .await;

    assert_ne!(replaced, ward, "a new state event replaces the old one");
    assert_eq!(
        bob.state(&room, "care.plexus.ward", "").await,
        json!({"beds": 14})
    );
    let all = bob.get(&room_path(&room, "state")).await.ok();
    let all = all
        .as_array()
        .unwrap_or_else(|| panic!("GET /state is an array of events: {all:#}"));
    let current = find(all, "care.plexus.ward", "");
    assert_eq!(
        current.len(),
        1,
        "one event per (type, state_key): {current:#?}"
    );
    assert_eq!(current[0]["event_id"], replaced.as_str());
    assert_eq!(current[0]["content"], json!({"beds": 14}));
    assert_eq!(find(all, "care.plexus.ward", "ward-b").len(), 1);
}

#[tokio::test]
async fn format_event_returns_the_whole_state_event() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let ward_b = alice
        .set_state(&room, "care.plexus.ward", "ward-b", json!({"beds": 8}))
        .await;
    let path = state_path(&room, "care.plexus.ward", "ward-b");

    let event = bob.get(&format!("{path}?format=event")).await.ok();
    let content = bob.get(&format!("{path}?format=content")).await.ok();

    assert_eq!(event["event_id"], ward_b.as_str(), "{event:#}");
    assert_eq!(event["type"], "care.plexus.ward", "{event:#}");
    assert_eq!(event["state_key"], "ward-b", "{event:#}");
    assert_eq!(event["sender"], alice.user_id.as_str(), "{event:#}");
    assert_eq!(event["room_id"], room.as_str(), "{event:#}");
    assert_eq!(event["content"], json!({"beds": 8}), "{event:#}");
    assert!(event["origin_server_ts"].is_u64(), "{event:#}");
    assert_eq!(
        content,
        json!({"beds": 8}),
        "format=content is the default form"
    );
}

#[tokio::test]
async fn the_whole_state_holds_the_rooms_setup() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "Ward B"}))
        .await;
    bob.join(&room).await;

    let all = bob.get(&room_path(&room, "state")).await.ok();
    let all = all
        .as_array()
        .unwrap_or_else(|| panic!("GET /state is an array of events: {all:#}"));

    for (event_type, state_key) in [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.member", alice.user_id.as_str()),
        ("m.room.member", bob.user_id.as_str()),
    ] {
        let found = find(all, event_type, state_key);
        assert_eq!(
            found.len(),
            1,
            "exactly one {event_type}/{state_key} in the state: {all:#?}"
        );
        let event = found[0];
        assert!(
            event["event_id"].is_string() && event["sender"].is_string(),
            "state events are whole events: {event:#}"
        );
    }
}

#[tokio::test]
async fn an_empty_state_key_works_with_or_without_the_trailing_slash() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let without_slash = room_path(&room, "state/m.room.topic");
    let with_slash = room_path(&room, "state/m.room.topic/");

    alice
        .put(&without_slash, json!({"topic": "Falls prevention"}))
        .await
        .ok();

    assert_eq!(
        bob.get(&without_slash).await.ok()["topic"],
        "Falls prevention"
    );
    assert_eq!(bob.get(&with_slash).await.ok()["topic"], "Falls prevention");
    alice
        .put(&with_slash, json!({"topic": "Hydration"}))
        .await
        .ok();
    assert_eq!(bob.get(&without_slash).await.ok()["topic"], "Hydration");
}

#[tokio::test]
async fn missing_state_is_not_found() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({})).await;
    alice
        .set_state(&room, "care.plexus.ward", "ward-a", json!({"beds": 3}))
        .await;

    alice
        .get(&state_path(&room, "care.plexus.ward", "ward-z"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .get(&state_path(&room, "m.room.topic", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_state_key_naming_another_user_belongs_to_that_user() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": "11"}))
        .await;
    bob.join(&room).await;
    alice.set_power_level(&room, &bob.user_id, 50).await;

    bob.set_state(
        &room,
        "care.plexus.shift",
        &bob.user_id,
        json!({"on": true}),
    )
    .await;
    bob.put(
        &state_path(&room, "care.plexus.shift", &alice.user_id),
        json!({"on": false}),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");

    alice
        .get(&state_path(&room, "care.plexus.shift", &alice.user_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        alice.state(&room, "care.plexus.shift", &bob.user_id).await,
        json!({"on": true})
    );
}

#[tokio::test]
async fn outsiders_cannot_read_the_state_of_a_private_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Staff only"}))
        .await;

    outsider
        .get(&room_path(&room, "state"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    outsider
        .get(&state_path(&room, "m.room.name", ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_former_member_sees_the_state_as_it_was_when_they_left() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "private_chat", "name": "Before"}))
        .await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    bob.leave(&room).await;

    alice
        .set_state(&room, "m.room.name", "", json!({"name": "After"}))
        .await;

    assert_eq!(bob.state(&room, "m.room.name", "").await["name"], "Before");
    assert_eq!(alice.state(&room, "m.room.name", "").await["name"], "After");
}
