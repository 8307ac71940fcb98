//! Membership: join (by room ID, by `/rooms/{id}/join`), invite, leave, reject, kick, ban, unban
//! and forget, each with a `reason`, and the lists that follow from them (`/joined_rooms`,
//! `/rooms/{id}/joined_members`, `/rooms/{id}/members`). Knocking is in `rooms_knock.rs`.

use complement_tests::{Reply, Server, User, encode, json, room_path};

/// `POST /rooms/{roomId}/{action}` (`invite`, `kick`, `ban`, `unban`) about `target` with a
/// `reason`, returning the reply unchecked.
async fn act_on(actor: &User, room: &str, action: &str, target: &User, reason: &str) -> Reply {
    actor
        .post(
            &room_path(room, action),
            json!({"user_id": target.user_id, "reason": reason}),
        )
        .await
        .labelled(format!(
            "{} {action}s {}",
            actor.localpart, target.localpart
        ))
}

/// `POST /join/{roomIdOrAlias}` by `user`, returning the reply unchecked.
async fn try_join(user: &User, room: &str) -> Reply {
    user.post(
        &format!("/_matrix/client/v3/join/{}", encode(room)),
        json!({}),
    )
    .await
    .labelled(format!("{} joins", user.localpart))
}

/// The current `m.room.member` event of `target`, as `observer` reads it.
async fn member_event(observer: &User, room: &str, target: &User) -> complement_tests::Value {
    observer
        .state_event(room, "m.room.member", &target.user_id)
        .await
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn anyone_can_join_a_public_room_through_either_endpoint() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    let joined = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&room)),
            json!({"reason": "heard about it"}),
        )
        .await
        .ok();
    let also_joined = carol
        .post(&room_path(&room, "join"), json!({"reason": "me too"}))
        .await
        .ok();

    assert_eq!(joined["room_id"], room.as_str());
    assert_eq!(also_joined["room_id"], room.as_str());
    let bobs = member_event(&alice, &room, &bob).await;
    assert_eq!(bobs["content"]["membership"], "join", "{bobs:#}");
    assert_eq!(bobs["content"]["reason"], "heard about it", "{bobs:#}");
    assert_eq!(bobs["sender"], bob.user_id.as_str(), "{bobs:#}");
    let carols = member_event(&alice, &room, &carol).await;
    assert_eq!(carols["content"]["reason"], "me too", "{carols:#}");
    assert_eq!(
        alice.joined_members(&room).await,
        sorted(&[&alice.user_id, &bob.user_id, &carol.user_id])
    );
    assert_eq!(bob.joined_rooms().await, vec![room.clone()]);
    assert_eq!(carol.joined_rooms().await, [room]);
}

#[tokio::test]
async fn an_invite_only_room_refuses_the_uninvited() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;

    try_join(&bob, &room).await.assert_error(403, "M_FORBIDDEN");
    bob.post(&room_path(&room, "join"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(
        alice.joined_members(&room).await,
        vec![alice.user_id.clone()]
    );
    assert_eq!(bob.joined_rooms().await, Vec::<String>::new());
}

#[tokio::test]
async fn an_invitation_with_a_reason_lets_the_invitee_join() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;

    act_on(&alice, &room, "invite", &bob, "we need you on the rota")
        .await
        .ok();

    let invite = member_event(&alice, &room, &bob).await;
    assert_eq!(invite["content"]["membership"], "invite", "{invite:#}");
    assert_eq!(
        invite["content"]["reason"], "we need you on the rota",
        "{invite:#}"
    );
    assert_eq!(invite["sender"], alice.user_id.as_str(), "{invite:#}");
    assert_eq!(
        bob.joined_rooms().await,
        Vec::<String>::new(),
        "an invitation is not a join"
    );
    bob.join(&room).await;
    assert_eq!(
        member_event(&alice, &room, &bob).await["content"]["membership"],
        "join"
    );
    assert_eq!(bob.joined_rooms().await, [room]);
}

#[tokio::test]
async fn an_invitation_can_be_rejected() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    alice.invite(&room, &bob.user_id).await;

    bob.post(
        &room_path(&room, "leave"),
        json!({"reason": "not this week"}),
    )
    .await
    .ok();

    let rejection = member_event(&alice, &room, &bob).await;
    assert_eq!(rejection["content"]["membership"], "leave", "{rejection:#}");
    assert_eq!(
        rejection["content"]["reason"], "not this week",
        "{rejection:#}"
    );
    assert_eq!(rejection["sender"], bob.user_id.as_str(), "{rejection:#}");
    try_join(&bob, &room).await.assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_member_can_leave_with_a_reason_and_rejoin_a_public_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    bob.post(&room_path(&room, "leave"), json!({"reason": "shift over"}))
        .await
        .ok();

    let left = member_event(&alice, &room, &bob).await;
    assert_eq!(left["content"]["membership"], "leave", "{left:#}");
    assert_eq!(left["content"]["reason"], "shift over", "{left:#}");
    assert_eq!(
        alice.joined_members(&room).await,
        vec![alice.user_id.clone()]
    );
    assert_eq!(bob.joined_rooms().await, Vec::<String>::new());
    bob.join(&room).await;
    assert_eq!(
        alice.joined_members(&room).await,
        sorted(&[&alice.user_id, &bob.user_id])
    );
    assert_eq!(bob.joined_rooms().await, [room]);
}

#[tokio::test]
async fn after_leaving_an_invite_only_room_a_new_invitation_is_needed() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    bob.leave(&room).await;

    try_join(&bob, &room).await.assert_error(403, "M_FORBIDDEN");

    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn a_kicked_member_sees_who_kicked_them_and_why_and_may_come_back() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    act_on(&alice, &room, "kick", &bob, "too loud").await.ok();

    let kick = member_event(&alice, &room, &bob).await;
    assert_eq!(kick["content"]["membership"], "leave", "{kick:#}");
    assert_eq!(kick["content"]["reason"], "too loud", "{kick:#}");
    assert_eq!(kick["sender"], alice.user_id.as_str(), "{kick:#}");
    assert_eq!(bob.joined_rooms().await, Vec::<String>::new());
    bob.join(&room).await;
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn kicking_an_invited_user_withdraws_the_invitation() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;
    alice.invite(&room, &bob.user_id).await;

    act_on(&alice, &room, "kick", &bob, "sent by mistake")
        .await
        .ok();

    assert_eq!(
        member_event(&alice, &room, &bob).await["content"]["membership"],
        "leave"
    );
    try_join(&bob, &room).await.assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn kicking_someone_who_is_not_in_the_room_is_forbidden() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    act_on(&alice, &room, "kick", &carol, "never here")
        .await
        .assert_error(403, "M_FORBIDDEN");

    alice
        .get(&complement_tests::state_path(
            &room,
            "m.room.member",
            &carol.user_id,
        ))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn ban_then_unban_then_join() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    act_on(&alice, &room, "ban", &bob, "spam").await.ok();

    let ban = member_event(&alice, &room, &bob).await;
    assert_eq!(ban["content"]["membership"], "ban", "{ban:#}");
    assert_eq!(ban["content"]["reason"], "spam", "{ban:#}");
    assert_eq!(ban["sender"], alice.user_id.as_str(), "{ban:#}");
    try_join(&bob, &room).await.assert_error(403, "M_FORBIDDEN");
    act_on(&alice, &room, "invite", &bob, "come back?")
        .await
        .assert_error(403, "M_FORBIDDEN");

    act_on(&alice, &room, "unban", &bob, "second chance")
        .await
        .ok();

    let unban = member_event(&alice, &room, &bob).await;
    assert_eq!(unban["content"]["membership"], "leave", "{unban:#}");
    assert_eq!(unban["content"]["reason"], "second chance", "{unban:#}");
    bob.join(&room).await;
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn a_user_can_be_banned_before_ever_joining() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let mallory = server.register_user("mallory").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;

    act_on(&alice, &room, "ban", &mallory, "known troll")
        .await
        .ok();

    try_join(&mallory, &room)
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice.members(&room, "?membership=ban").await,
        [(mallory.user_id.clone(), "ban".to_owned())]
    );
}

#[tokio::test]
async fn members_without_power_cannot_kick_ban_or_unban() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let dave = server.register_user("dave").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;
    act_on(&alice, &room, "ban", &dave, "banned by the admin")
        .await
        .ok();

    act_on(&bob, &room, "kick", &carol, "mutiny")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&bob, &room, "ban", &carol, "mutiny")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&bob, &room, "unban", &dave, "mutiny")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&bob, &room, "kick", &alice, "mutiny")
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(
        alice.members(&room, "").await,
        {
            let mut expected = vec![
                (alice.user_id.clone(), "join".to_owned()),
                (bob.user_id.clone(), "join".to_owned()),
                (carol.user_id.clone(), "join".to_owned()),
                (dave.user_id.clone(), "ban".to_owned()),
            ];
            expected.sort();
            expected
        },
        "nothing changed"
    );
}

#[tokio::test]
async fn a_moderator_cannot_kick_someone_of_equal_or_higher_power() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let dave = server.register_user("dave").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": "11"}))
        .await;
    for user in [&bob, &carol, &dave] {
        user.join(&room).await;
    }
    alice.set_power_level(&room, &bob.user_id, 50).await;
    alice.set_power_level(&room, &carol.user_id, 50).await;

    act_on(&bob, &room, "kick", &alice, "coup")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&bob, &room, "kick", &carol, "rivalry")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&bob, &room, "kick", &dave, "moderation").await.ok();

    assert_eq!(
        alice.joined_members(&room).await,
        sorted(&[&alice.user_id, &bob.user_id, &carol.user_id])
    );
}

#[tokio::test]
async fn inviting_needs_the_invite_level_and_membership() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let outsider = server.register_user("outsider").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "power_level_content_override": {"invite": 50},
        }))
        .await;
    bob.join(&room).await;

    act_on(&bob, &room, "invite", &carol, "join us")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&outsider, &room, "invite", &carol, "join them")
        .await
        .assert_error(403, "M_FORBIDDEN");
    act_on(&alice, &room, "invite", &bob, "already here")
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(
        alice.members(&room, "?membership=invite").await,
        Vec::<(String, String)>::new()
    );
}

#[tokio::test]
async fn joining_an_unknown_room_fails() {
    let server = Server::start().await;
    let bob = server.register_user("bob").await;
    let room = format!("!doesnotexist:{}", server.server_name());

    let reply = try_join(&bob, &room).await;

    assert!(
        matches!(
            (reply.status, reply.errcode()),
            (404, Some("M_NOT_FOUND")) | (403, Some("M_FORBIDDEN"))
        ),
        "expected 404 M_NOT_FOUND or 403 M_FORBIDDEN, got\n{reply}"
    );
    assert_eq!(bob.joined_rooms().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_room_can_be_forgotten_only_after_leaving() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    alice.send_message(&room, "before bob left").await;

    let too_early = bob.post(&room_path(&room, "forget"), json!({})).await;
    too_early.assert_status(400);
    assert!(too_early.errcode().is_some(), "{too_early}");

    bob.leave(&room).await;
    let before_forgetting = bob.messages(&room, "b", None, 50).await;
    assert!(
        complement_tests::message_bodies(&complement_tests::chunk(&before_forgetting))
            .contains(&"before bob left".to_owned()),
        "a member who left can still read what they saw: {before_forgetting:#}"
    );
    bob.post(&room_path(&room, "forget"), json!({})).await.ok();

    bob.messages_with(&room, &[("dir", "b")])
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.join(&room).await;
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn members_can_be_filtered_by_membership() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let dave = server.register_user("dave").await;
    let erin = server.register_user("erin").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    alice.invite(&room, &carol.user_id).await;
    act_on(&alice, &room, "ban", &dave, "no").await.ok();
    erin.join(&room).await;
    erin.leave(&room).await;

    let pair = |user: &User, membership: &str| (user.user_id.clone(), membership.to_owned());
    let expect = |mut pairs: Vec<(String, String)>| {
        pairs.sort();
        pairs
    };
    let cases = [
        (
            "",
            expect(vec![
                pair(&alice, "join"),
                pair(&bob, "join"),
                pair(&carol, "invite"),
                pair(&dave, "ban"),
                pair(&erin, "leave"),
            ]),
        ),
        (
            "?membership=join",
            expect(vec![pair(&alice, "join"), pair(&bob, "join")]),
        ),
        ("?membership=invite", vec![pair(&carol, "invite")]),
        ("?membership=ban", vec![pair(&dave, "ban")]),
        ("?membership=leave", vec![pair(&erin, "leave")]),
        (
            "?not_membership=join",
            expect(vec![
                pair(&carol, "invite"),
                pair(&dave, "ban"),
                pair(&erin, "leave"),
            ]),
        ),
        (
            "?not_membership=leave",
            expect(vec![
                pair(&alice, "join"),
                pair(&bob, "join"),
                pair(&carol, "invite"),
                pair(&dave, "ban"),
            ]),
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            bob.members(&room, query).await,
            expected,
            "GET /members{query}"
        );
    }
}

#[tokio::test]
async fn membership_and_not_membership_together_mean_either() {
    // The spec: "When specified alongside `not_membership`, the two parameters create an 'or'
    // condition: either the membership *is* the same as `membership` **or** *is not* the same as
    // `not_membership`." So `invite` or-not-`ban` is everyone but the banned.
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let dave = server.register_user("dave").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    alice.invite(&room, &carol.user_id).await;
    act_on(&alice, &room, "ban", &dave, "no").await.ok();

    let members = alice
        .members(&room, "?membership=invite&not_membership=ban")
        .await;

    let mut expected = vec![
        (alice.user_id.clone(), "join".to_owned()),
        (bob.user_id.clone(), "join".to_owned()),
        (carol.user_id.clone(), "invite".to_owned()),
    ];
    expected.sort();
    assert_eq!(members, expected);
}

#[tokio::test]
async fn joined_members_carry_display_names() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    alice.set_displayname("Alice Liddell").await;
    bob.set_displayname("Bob the Builder").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    let joined = alice.get(&room_path(&room, "joined_members")).await.ok();

    assert_eq!(
        joined["joined"][&alice.user_id]["display_name"], "Alice Liddell",
        "{joined:#}"
    );
    assert_eq!(
        joined["joined"][&bob.user_id]["display_name"], "Bob the Builder",
        "{joined:#}"
    );
}

#[tokio::test]
async fn outsiders_cannot_list_members() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let outsider = server.register_user("outsider").await;
    let room = alice.create_room(json!({"preset": "private_chat"})).await;

    outsider
        .get(&room_path(&room, "members"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    outsider
        .get(&room_path(&room, "joined_members"))
        .await
        .assert_error(403, "M_FORBIDDEN");
}
