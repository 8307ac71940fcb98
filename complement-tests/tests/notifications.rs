//! Notification counts from push rules: messages notify, mentions highlight, `@room` highlights
//! only from someone with the power to notify the room, a read receipt resets the counts, and
//! `/notifications` lists what notified. Push evaluation runs after the commit, so the stories
//! wait for it to catch up.

use std::time::Duration;

use complement_tests::{Server, User, Value, encode, json, wait_until};

async fn counts(user: &User, room: &str) -> (u64, u64) {
    let body = user.get("/_matrix/client/v3/sync").await.ok();
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].as_u64().unwrap_or(0),
        unread["highlight_count"].as_u64().unwrap_or(0),
    )
}

async fn wait_for_counts(user: &User, room: &str, expected: (u64, u64)) {
    let what = format!("unread counts of {} to become {expected:?}", user.user_id);
    wait_until(&what, Duration::from_secs(10), async || {
        counts(user, room).await == expected
    })
    .await;
}

#[tokio::test]
async fn messages_notify_mentions_highlight_and_a_receipt_resets_the_counts() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;

    alice.send_message(&room, "tea is ready").await;
    let mention = alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "bob, your patient", "m.mentions": {"user_ids": [bob.user_id]}}),
        )
        .await;
    wait_for_counts(&bob, &room, (2, 1)).await;
    wait_for_counts(&carol, &room, (2, 0)).await;
    assert_eq!(
        counts(&alice, &room).await,
        (0, 0),
        "one's own messages never notify oneself"
    );

    bob.post(
        &format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            encode(&room),
            encode(&mention)
        ),
        json!({}),
    )
    .await
    .ok();
    wait_for_counts(&bob, &room, (0, 0)).await;

    let listed = bob.get("/_matrix/client/v3/notifications").await.ok();
    let notifications = listed["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed:#}"));
    assert_eq!(notifications.len(), 2);
    assert_eq!(
        notifications[0]["event"]["event_id"],
        mention.as_str(),
        "newest first"
    );
    assert_eq!(notifications[0]["read"], true);
    let highlights = bob
        .get("/_matrix/client/v3/notifications?only=highlight")
        .await
        .ok();
    assert_eq!(
        highlights["notifications"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_mention_highlights_only_the_member_it_names_whoever_is_evaluated_first() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    // Members with the default rules share one evaluation unless the event names them: the
    // named member comes before and after unnamed ones in the member list.
    let mut members = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let member = server.register_user(name).await;
        member.join(&room).await;
        members.push(member);
    }
    let [bob, carol, dave] = &members[..] else {
        unreachable!()
    };
    let mention = |user: &User| {
        let mentions = json!({"user_ids": [user.user_id]});
        json!({"msgtype": "m.text", "body": "see me", "m.mentions": mentions})
    };
    // Counts of bob, carol and dave after a mention of bob, then after one of dave.
    for (mentioned, expected) in [
        (bob, [(1, 1), (1, 0), (1, 0)]),
        (dave, [(2, 1), (2, 0), (2, 1)]),
    ] {
        alice
            .send_event(&room, "m.room.message", mention(mentioned))
            .await;
        for (member, counts) in [bob, carol, dave].into_iter().zip(expected) {
            wait_for_counts(member, &room, counts).await;
        }
    }
}

#[tokio::test]
async fn room_mentions_highlight_only_from_someone_with_power() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "room_version": "11"}))
        .await;
    bob.join(&room).await;
    carol.join(&room).await;
    let everyone =
        |body: &str| json!({"msgtype": "m.text", "body": body, "m.mentions": {"room": true}});

    bob.send_event(&room, "m.room.message", everyone("@room free cake"))
        .await;
    wait_for_counts(&carol, &room, (1, 0)).await;
    alice
        .send_event(&room, "m.room.message", everyone("@room fire drill at 3"))
        .await;
    wait_for_counts(&carol, &room, (2, 1)).await;
}

#[tokio::test]
async fn a_muted_room_does_not_notify() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    bob.put(
        &format!("/_matrix/client/v3/pushrules/global/room/{}", encode(&room)),
        json!({"actions": []}),
    )
    .await
    .ok();
    let loud = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&loud).await;

    alice.send_message(&room, "quiet please").await;
    alice.send_message(&loud, "loud news").await;
    wait_for_counts(&bob, &loud, (1, 0)).await;
    assert_eq!(counts(&bob, &room).await, (0, 0));
}

#[tokio::test]
async fn notifications_survive_a_crash() {
    let mut server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    for i in 0..5 {
        alice.send_message(&room, &format!("note {i}")).await;
    }

    server.kill9().await;
    server.restart().await;

    wait_for_counts(&bob, &room, (5, 0)).await;
    let listed: Value = bob.get("/_matrix/client/v3/notifications").await.ok();
    assert_eq!(listed["notifications"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn a_burst_into_a_large_room_counts_every_message_for_every_member() {
    // Sixteen members and forty messages sent at once: the evaluator takes many events in one
    // batch, hundreds of actions, and records them in several writes. None may be lost or
    // counted twice.
    const MEMBERS: usize = 16;
    const MESSAGES: u64 = 40;
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    let mut members = Vec::new();
    for i in 1..MEMBERS {
        let member = server.register_user(&format!("member{i}")).await;
        member.join(&room).await;
        members.push(member);
    }
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..MESSAGES {
        let (alice, room) = (alice.clone(), room.clone());
        sends.spawn(async move { alice.send_message(&room, &format!("round {i}")).await });
    }
    sends.join_all().await;

    for member in &members {
        wait_for_counts(member, &room, (MESSAGES, 0)).await;
    }
    let listed: Value = members[0]
        .get("/_matrix/client/v3/notifications?limit=100")
        .await
        .ok();
    assert_eq!(
        listed["notifications"].as_array().map(Vec::len),
        Some(MESSAGES as usize)
    );
    assert_eq!(
        counts(&alice, &room).await,
        (0, 0),
        "own messages never notify"
    );
}
