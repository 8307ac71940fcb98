//! Unread counts as a syncing client sees them: counts that change after the event was already
//! synced (push evaluation runs after the commit) reach a long-polling client without any new
//! event, per-thread counts come apart when the filter asks for them, and `set_presence` on
//! `/sync` marks the syncing user online, idle, or leaves them alone.

use std::time::{Duration, Instant};

use complement_tests::{Server, User, Value, encode, json};

async fn sync(user: &User, query: &str) -> Value {
    user.get(&format!("/_matrix/client/v3/sync{query}"))
        .await
        .ok()
}

fn unread<'a>(body: &'a Value, room: &str) -> &'a Value {
    &body["rooms"]["join"][room]["unread_notifications"]
}

#[tokio::test]
async fn a_long_polling_client_learns_a_new_count_without_another_event() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    let mut since = sync(&bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    alice.send_message(&room, "handover at six").await;
    // Follow Bob's sync stream, as a client would, until the count shows the message. Nothing
    // else happens in the room, so only the count catching up can deliver it.
    let started = Instant::now();
    let mut saw_message = false;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the count never reached the long-polling client"
        );
        let body = sync(&bob, &format!("?since={since}&timeout=5000")).await;
        since = body["next_batch"].as_str().unwrap().to_owned();
        let timeline = &body["rooms"]["join"][room.as_str()]["timeline"]["events"];
        saw_message |= timeline.as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["content"]["body"] == "handover at six")
        });
        if unread(&body, &room)["notification_count"] == 1 {
            break;
        }
    }
    assert!(saw_message, "the message itself was synced too");
    // Once delivered, the count is not sent again while nothing changes.
    let quiet = sync(&bob, &format!("?since={since}&timeout=500")).await;
    assert!(
        quiet["rooms"]["join"].get(&room).is_none(),
        "nothing new: {quiet:#}"
    );
}

#[tokio::test]
async fn thread_counts_are_apart_only_when_the_filter_asks_and_threaded_receipts_clear_one_thread()
{
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;

    let root = alice.send_message(&room, "medication round").await;
    for text in ["room 4 done", "room 5 done"] {
        alice
            .send_event(
                &room,
                "m.room.message",
                json!({
                    "msgtype": "m.text",
                    "body": text,
                    "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": {"event_id": root}},
                }),
            )
            .await;
    }
    let threaded = format!(
        "?filter={}",
        encode(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#)
    );
    let started = Instant::now();
    let body = loop {
        let body = sync(&bob, &threaded).await;
        if body["rooms"]["join"][room.as_str()]["unread_thread_notifications"][root.as_str()]["notification_count"]
            == 2
        {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        unread(&body, &room)["notification_count"],
        1,
        "main timeline only"
    );
    let plain = sync(&bob, "").await;
    assert_eq!(
        unread(&plain, &room)["notification_count"],
        3,
        "all threads together"
    );
    assert!(
        plain["rooms"]["join"][room.as_str()]
            .get("unread_thread_notifications")
            .is_none_or(|t| t.as_object().is_some_and(|t| t.is_empty())),
        "no per-thread counts unless asked: {plain:#}"
    );

    // A receipt in the thread clears the thread, not the main timeline.
    let thread_events = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.thread",
            encode(&room),
            encode(&root)
        ))
        .await
        .ok();
    let latest = thread_events["chunk"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.post(
        &format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            encode(&room),
            encode(&latest)
        ),
        json!({"thread_id": root}),
    )
    .await
    .ok();
    let after = sync(&bob, &threaded).await;
    assert_eq!(unread(&after, &room)["notification_count"], 1);
    let thread_count = &after["rooms"]["join"][room.as_str()]["unread_thread_notifications"]
        [root.as_str()]["notification_count"];
    assert!(
        thread_count.is_null() || *thread_count == 0,
        "thread read: {after:#}"
    );
    assert_eq!(
        unread(&sync(&bob, "").await, &room)["notification_count"],
        1
    );
}

async fn presence_of(viewer: &User, user: &User) -> Value {
    viewer
        .get(&format!(
            "/_matrix/client/v3/presence/{}/status",
            encode(&user.user_id)
        ))
        .await
        .ok()
}

#[tokio::test]
async fn set_presence_on_sync_marks_the_user_online_idle_or_leaves_them_offline() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let carol = server.register_user("carol").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    carol.join(&room).await;

    sync(&bob, "").await;
    assert_eq!(presence_of(&alice, &bob).await["presence"], "online");
    sync(&carol, "?set_presence=offline").await;
    assert_eq!(presence_of(&alice, &carol).await["presence"], "offline");
    sync(&carol, "?set_presence=unavailable").await;
    assert_eq!(presence_of(&alice, &carol).await["presence"], "unavailable");
    // An explicit "unavailable" is not overridden by a client that syncs as online.
    sync(&carol, "").await;
    assert_eq!(presence_of(&alice, &carol).await["presence"], "unavailable");

    bob.get("/_matrix/client/v3/sync?set_presence=away")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    assert_eq!(presence_of(&alice, &bob).await["presence"], "online");
}
