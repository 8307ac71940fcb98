//! Power levels: what changing `m.room.power_levels` lets members do or stops them doing, and the
//! limits on who may change it. Rooms here are version 11, where the creator is listed at 100.

use complement_tests::{Reply, Server, User, json, room_path, state_path, txn_id};

async fn public_room(alice: &User) -> String {
    alice
        .create_room(json!({"preset": "public_chat", "room_version": "11"}))
        .await
}

async fn try_send(user: &User, room: &str, body: &str) -> Reply {
    user.put(
        &room_path(room, &format!("send/m.room.message/{}", txn_id())),
        json!({"msgtype": "m.text", "body": body}),
    )
    .await
    .labelled(format!("{} says {body:?}", user.localpart))
}

async fn try_rename(user: &User, room: &str, name: &str) -> Reply {
    user.put(&state_path(room, "m.room.name", ""), json!({"name": name}))
        .await
        .labelled(format!("{} renames the room", user.localpart))
}

/// Reads the power levels as `actor`, changes them with `change` and `PUT`s them back as `actor`.
async fn try_change_levels(
    actor: &User,
    room: &str,
    change: impl FnOnce(&mut complement_tests::Value),
) -> Reply {
    let mut levels = actor.state(room, "m.room.power_levels", "").await;
    change(&mut levels);
    actor
        .put(&state_path(room, "m.room.power_levels", ""), levels)
        .await
        .labelled(format!("{} changes power levels", actor.localpart))
}

#[tokio::test]
async fn raising_a_members_level_lets_them_rename_the_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = public_room(&alice).await;
    bob.join(&room).await;
    try_rename(&bob, &room, "Bob's room")
        .await
        .assert_error(403, "M_FORBIDDEN");

    alice.set_power_level(&room, &bob.user_id, 50).await;

    try_rename(&bob, &room, "Bob's room").await.ok();
    assert_eq!(
        alice.state(&room, "m.room.name", "").await["name"],
        "Bob's room"
    );
    assert_eq!(
        bob.state(&room, "m.room.power_levels", "").await["users"][&bob.user_id],
        50
    );
}

#[tokio::test]
async fn raising_events_default_above_a_members_level_silences_them() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = public_room(&alice).await;
    bob.join(&room).await;
    try_send(&bob, &room, "before").await.ok();

    try_change_levels(&alice, &room, |levels| levels["events_default"] = json!(10))
        .await
        .ok();

    try_send(&bob, &room, "after")
        .await
        .assert_error(403, "M_FORBIDDEN");
    try_send(&alice, &room, "admins still talk").await.ok();

    alice.set_power_level(&room, &bob.user_id, 10).await;
    try_send(&bob, &room, "voice restored").await.ok();
}

#[tokio::test]
async fn a_per_type_level_opens_one_kind_of_state_only() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = public_room(&alice).await;
    bob.join(&room).await;

    try_change_levels(&alice, &room, |levels| {
        levels["events"]["m.room.topic"] = json!(0);
    })
    .await
    .ok();

    bob.set_state(
        &room,
        "m.room.topic",
        "",
        json!({"topic": "Anyone may set this"}),
    )
    .await;
    try_rename(&bob, &room, "But not this")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn users_default_applies_to_members_not_listed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let carol = server.register_user("carol").await;
    let room = public_room(&alice).await;

    try_change_levels(&alice, &room, |levels| levels["users_default"] = json!(50))
        .await
        .ok();
    carol.join(&room).await;

    try_rename(&carol, &room, "Everyone's a moderator")
        .await
        .ok();
}

#[tokio::test]
async fn nobody_can_grant_more_power_than_they_have() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = public_room(&alice).await;
    bob.join(&room).await;
    carol.join(&room).await;
    // Bob may edit power levels at 50, so only the limits on the values stop him.
    try_change_levels(&alice, &room, |levels| {
        levels["events"]["m.room.power_levels"] = json!(50);
        levels["users"][bob.user_id.as_str()] = json!(50);
    })
    .await
    .ok();

    try_change_levels(&bob, &room, |levels| {
        levels["users"][carol.user_id.as_str()] = json!(75);
    })
    .await
    .assert_error(403, "M_FORBIDDEN");
    try_change_levels(&bob, &room, |levels| {
        levels["users"][alice.user_id.as_str()] = json!(0);
    })
    .await
    .assert_error(403, "M_FORBIDDEN");
    try_change_levels(&bob, &room, |levels| levels["state_default"] = json!(75))
        .await
        .assert_error(403, "M_FORBIDDEN");

    try_change_levels(&bob, &room, |levels| {
        levels["users"][carol.user_id.as_str()] = json!(50);
    })
    .await
    .ok();
    let levels = alice.state(&room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&carol.user_id], 50, "{levels:#}");
    assert_eq!(levels["users"][&alice.user_id], 100, "{levels:#}");
    assert_eq!(levels["state_default"], 50, "{levels:#}");
}

#[tokio::test]
async fn a_member_may_lower_their_own_level_but_not_a_peers() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = public_room(&alice).await;
    bob.join(&room).await;
    carol.join(&room).await;
    try_change_levels(&alice, &room, |levels| {
        levels["events"]["m.room.power_levels"] = json!(50);
        levels["users"][bob.user_id.as_str()] = json!(50);
        levels["users"][carol.user_id.as_str()] = json!(50);
    })
    .await
    .ok();

    try_change_levels(&bob, &room, |levels| {
        levels["users"][carol.user_id.as_str()] = json!(0);
    })
    .await
    .assert_error(403, "M_FORBIDDEN");
    try_change_levels(&bob, &room, |levels| {
        levels["users"][bob.user_id.as_str()] = json!(10);
    })
    .await
    .ok();

    let levels = alice.state(&room, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&bob.user_id], 10, "{levels:#}");
    assert_eq!(levels["users"][&carol.user_id], 50, "{levels:#}");
    try_rename(&bob, &room, "no longer allowed")
        .await
        .assert_error(403, "M_FORBIDDEN");
}
