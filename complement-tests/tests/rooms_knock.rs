//! Knocking: `POST /knock/{roomIdOrAlias}` on a room whose join rule is `knock`, and how members
//! accept (invite) or decline (kick) a knock.

use complement_tests::{Reply, Server, User, encode, json, room_path};

/// A room alice creates with the `knock` join rule.
async fn knock_room(alice: &User) -> String {
    alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
            ],
        }))
        .await
}

async fn knock(user: &User, room_id_or_alias: &str, reason: &str) -> Reply {
    user.post(
        &format!("/_matrix/client/v3/knock/{}", encode(room_id_or_alias)),
        json!({"reason": reason}),
    )
    .await
    .labelled(format!("{} knocks", user.localpart))
}

#[tokio::test]
async fn a_knock_with_a_reason_is_accepted_by_an_invitation() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = knock_room(&alice).await;
    assert_eq!(
        alice.state(&room, "m.room.join_rules", "").await["join_rule"],
        "knock"
    );

    let knocked = knock(&bob, &room, "I'm the new nurse").await.ok();

    assert_eq!(knocked["room_id"], room.as_str());
    assert_eq!(
        alice.members(&room, "?membership=knock").await,
        [(bob.user_id.clone(), "knock".to_owned())]
    );
    let knock_event = alice
        .state_event(&room, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(
        knock_event["content"]["reason"], "I'm the new nurse",
        "{knock_event:#}"
    );
    assert_eq!(
        knock_event["sender"],
        bob.user_id.as_str(),
        "{knock_event:#}"
    );
    assert_eq!(
        bob.joined_rooms().await,
        Vec::<String>::new(),
        "knocking is not joining"
    );

    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    assert!(alice.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn a_knock_is_declined_by_a_kick() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = knock_room(&alice).await;
    knock(&bob, &room, "let me in").await.ok();

    alice
        .post(
            &room_path(&room, "kick"),
            json!({"user_id": bob.user_id, "reason": "ward is full"}),
        )
        .await
        .ok();

    let declined = alice
        .state_event(&room, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(declined["content"]["membership"], "leave", "{declined:#}");
    assert_eq!(
        declined["content"]["reason"], "ward is full",
        "{declined:#}"
    );
    bob.post(&room_path(&room, "join"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_knocker_can_withdraw_and_knock_again() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = knock_room(&alice).await;
    knock(&bob, &room, "first try").await.ok();

    bob.leave(&room).await;

    assert_eq!(
        alice.members(&room, "?membership=leave").await,
        [(bob.user_id.clone(), "leave".to_owned())]
    );
    knock(&bob, &room, "second try").await.ok();
    assert_eq!(
        alice.members(&room, "?membership=knock").await,
        [(bob.user_id.clone(), "knock".to_owned())]
    );
}

#[tokio::test]
async fn a_knock_by_alias_reaches_the_room() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({
            "preset": "private_chat",
            "room_alias_name": "front-desk",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}},
            ],
        }))
        .await;

    let alias = format!("#front-desk:{}", server.server_name());
    let knocked = knock(&bob, &alias, "hello").await.ok();

    assert_eq!(knocked["room_id"], room.as_str());
    assert_eq!(
        alice.members(&room, "?membership=knock").await,
        [(bob.user_id.clone(), "knock".to_owned())]
    );
}

#[tokio::test]
async fn rooms_not_set_up_for_knocking_refuse_knocks() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let invite_only = alice.create_room(json!({"preset": "private_chat"})).await;
    let public = alice.create_room(json!({"preset": "public_chat"})).await;

    knock(&bob, &invite_only, "please")
        .await
        .assert_error(403, "M_FORBIDDEN");
    knock(&bob, &public, "please")
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(
        alice.members(&invite_only, "?membership=knock").await,
        Vec::<(String, String)>::new()
    );
}

#[tokio::test]
async fn a_banned_user_cannot_knock() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = knock_room(&alice).await;
    alice
        .post(
            &room_path(&room, "ban"),
            json!({"user_id": bob.user_id, "reason": "no"}),
        )
        .await
        .ok();

    knock(&bob, &room, "sorry")
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(
        alice.members(&room, "?membership=ban").await,
        [(bob.user_id.clone(), "ban".to_owned())]
    );
}
