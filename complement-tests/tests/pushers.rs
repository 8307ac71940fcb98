//! Pushers: a user sets an HTTP pusher and the server posts each notification to the push gateway
//! (a real HTTP server in the test that parses every request with ruma's Push Gateway API type),
//! once, in order, retrying a failing gateway, even across a crash. `/pushers/set` refuses bad
//! input without changing anything, and logging out a device takes its pushers along.

use std::time::Duration;

use complement_tests::{Method, PushGateway, Server, User, Value, encode, json, wait_until};

const APP_ID: &str = "care.plexus.nurse.android";

/// A pusher body for `/pushers/set` sending to `url`.
fn pusher(url: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http",
        "app_id": APP_ID,
        "pushkey": pushkey,
        "app_display_name": "Plexus Nurse",
        "device_display_name": "Ward phone",
        "lang": "en-GB",
        "data": {"url": url},
    })
}

async fn set_pusher(user: &User, body: Value) {
    user.post("/_matrix/client/v3/pushers/set", body).await.ok();
}

async fn pushers(user: &User) -> Vec<Value> {
    let body = user.get("/_matrix/client/v3/pushers").await.ok();
    body["pushers"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /pushers has no pushers array: {body:#}"))
        .clone()
}

/// Alice and Bob ("Bob Builder") in a fresh room.
async fn alice_and_bob(server: &Server) -> (User, User, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    bob.set_displayname("Bob Builder").await;
    let room = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&room).await;
    (alice, bob, room)
}

fn event_ids(notifications: &[Value]) -> Vec<&str> {
    notifications
        .iter()
        .map(|n| n["event_id"].as_str().unwrap_or_default())
        .collect()
}

/// Gives the server time to send anything more it (wrongly) would.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn read_up_to(user: &User, room: &str, event_id: &str) {
    user.post(
        &format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            encode(room),
            encode(event_id)
        ),
        json!({}),
    )
    .await
    .ok();
}

#[tokio::test]
async fn each_message_reaches_the_gateway_once_with_counts_and_a_mention_highlights() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    let mut body = pusher(&gateway.url(), "alice-phone");
    body["data"]["custom"] = json!({"channel": "ward-3"});
    set_pusher(&alice, body).await;

    let hello = bob.send_message(&room, "morning round at 9").await;
    let mention = bob
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "alice, bed 4 please",
                   "m.mentions": {"user_ids": [alice.user_id]}}),
        )
        .await;
    let sent = gateway.wait_for(2).await;
    settle().await;

    let sent_again = gateway.notifications();
    assert_eq!(event_ids(&sent_again), [hello.as_str(), mention.as_str()]);
    let first = &sent[0];
    assert_eq!(first["room_id"], room.as_str());
    assert_eq!(first["sender"], bob.user_id.as_str());
    assert_eq!(first["sender_display_name"], "Bob Builder");
    assert_eq!(first["type"], "m.room.message");
    assert_eq!(first["content"]["body"], "morning round at 9");
    assert_eq!(
        first["counts"]["unread"], 1,
        "one room holds unread messages"
    );
    let device = &first["devices"][0];
    assert_eq!(device["app_id"], APP_ID);
    assert_eq!(device["pushkey"], "alice-phone");
    assert!(device["pushkey_ts"].as_u64().is_some(), "{device:#}");
    assert_eq!(
        device["data"],
        json!({"custom": {"channel": "ward-3"}}),
        "the pusher data goes along, without its url"
    );
    assert_ne!(device["tweaks"]["highlight"], true);
    assert_eq!(sent[1]["devices"][0]["tweaks"]["highlight"], true);
    assert_eq!(
        sent[1]["prio"].as_str().unwrap_or("high"),
        "high",
        "messages are high priority"
    );

    let other = bob.create_room(json!({"preset": "public_chat"})).await;
    alice.join(&other).await;
    bob.send_message(&other, "and the pharmacy called").await;
    let sent = gateway.wait_for(3).await;
    assert_eq!(
        sent[2]["counts"]["unread"], 2,
        "two rooms hold unread messages"
    );
}

#[tokio::test]
async fn own_messages_and_muted_rooms_send_nothing() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, muted) = alice_and_bob(&server).await;
    let loud = alice.create_room(json!({"preset": "public_chat"})).await;
    bob.join(&loud).await;
    alice
        .put(
            &format!(
                "/_matrix/client/v3/pushrules/global/room/{}",
                encode(&muted)
            ),
            json!({"actions": []}),
        )
        .await
        .ok();
    set_pusher(&alice, pusher(&gateway.url(), "alice-phone")).await;

    alice.send_message(&loud, "my own note").await;
    bob.send_message(&muted, "chatter in a muted room").await;
    let news = bob.send_message(&loud, "news for alice").await;
    gateway.wait_for(1).await;
    settle().await;

    assert_eq!(event_ids(&gateway.notifications()), [news.as_str()]);
}

#[tokio::test]
async fn event_id_only_sends_ids_and_counts_but_not_the_event() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    let mut body = pusher(&gateway.url(), "alice-phone");
    body["data"]["format"] = json!("event_id_only");
    set_pusher(&alice, body).await;

    let secret = bob.send_message(&room, "the door code is 1234").await;
    let sent = gateway.wait_for(1).await;

    let notification = &sent[0];
    assert_eq!(notification["event_id"], secret.as_str());
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["counts"]["unread"], 1);
    assert_eq!(
        notification["devices"][0]["data"],
        json!({"format": "event_id_only"})
    );
    for absent in [
        "content",
        "sender",
        "type",
        "sender_display_name",
        "room_name",
    ] {
        assert!(
            notification.get(absent).is_none(),
            "{absent} must be left out: {notification:#}"
        );
    }
}

#[tokio::test]
async fn a_failing_gateway_is_retried_and_gets_each_notification_once_in_order() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    set_pusher(&alice, pusher(&gateway.url(), "alice-phone")).await;
    gateway.fail_next(2);

    let mut sent_ids = Vec::new();
    for i in 0..3 {
        sent_ids.push(bob.send_message(&room, &format!("update {i}")).await);
    }
    let sent = gateway.wait_for(3).await;
    settle().await;

    let expected: Vec<&str> = sent_ids.iter().map(String::as_str).collect();
    assert_eq!(event_ids(&sent), expected);
    assert_eq!(
        event_ids(&gateway.notifications()),
        expected,
        "no duplicates"
    );
    let attempts = gateway.attempts();
    assert_eq!(
        event_ids(&attempts),
        [
            expected[0],
            expected[0],
            expected[0],
            expected[1],
            expected[2]
        ],
        "the first notification is retried until accepted, then the rest follow"
    );
}

#[tokio::test]
async fn a_gateway_that_was_down_gets_the_notification_when_it_comes_up() {
    let server = Server::start().await;
    let address = PushGateway::reserve_address().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    set_pusher(&alice, pusher(&PushGateway::url_of(address), "alice-phone")).await;

    let message = bob.send_message(&room, "are you there?").await;
    settle().await;
    let gateway = PushGateway::start_on(address).await;

    let sent = gateway.wait_for(1).await;
    assert_eq!(event_ids(&sent), [message.as_str()]);
}

#[tokio::test]
async fn a_notification_pending_at_a_crash_is_delivered_after_the_restart() {
    let mut server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    set_pusher(&alice, pusher(&gateway.url(), "alice-phone")).await;
    gateway.set_failing(true);
    let message = bob.send_message(&room, "handover notes are ready").await;
    gateway.wait_for_attempts(1).await;

    server.kill9().await;
    gateway.set_failing(false);
    server.restart().await;

    let sent = gateway.wait_for(1).await;
    settle().await;
    assert_eq!(event_ids(&sent), [message.as_str()]);
    assert_eq!(gateway.notifications().len(), 1);
}

#[tokio::test]
async fn a_notification_read_while_the_gateway_failed_is_not_sent() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    set_pusher(&alice, pusher(&gateway.url(), "alice-phone")).await;
    gateway.set_failing(true);
    let seen = bob.send_message(&room, "seen on the desktop").await;
    gateway.wait_for_attempts(1).await;
    read_up_to(&alice, &room, &seen).await;
    let unseen = bob.send_message(&room, "not seen yet").await;

    gateway.set_failing(false);
    let sent = gateway.wait_for(1).await;
    settle().await;

    assert_eq!(event_ids(&gateway.notifications()), [unseen.as_str()]);
    assert_eq!(sent[0]["counts"]["unread"], 1);
}

#[tokio::test]
async fn a_rejected_pushkey_loses_its_pusher() {
    let server = Server::start().await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = alice_and_bob(&server).await;
    set_pusher(&alice, pusher(&gateway.url(), "expired-token")).await;
    gateway.reject("expired-token");

    bob.send_message(&room, "anyone?").await;
    gateway.wait_for(1).await;
    wait_until(
        "the rejected pusher is removed",
        Duration::from_secs(10),
        async || pushers(&alice).await.is_empty(),
    )
    .await;
    bob.send_message(&room, "still anyone?").await;
    settle().await;

    assert_eq!(gateway.attempts().len(), 1, "nothing more is sent to it");
}

#[tokio::test]
async fn logging_out_or_deleting_a_device_removes_its_pushers() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let phone = alice.login_new_device().await;
    let tablet = alice.login_new_device().await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    set_pusher(&alice, pusher(url, "desktop")).await;
    set_pusher(&phone, pusher(url, "phone")).await;
    set_pusher(&tablet, pusher(url, "tablet")).await;
    assert_eq!(pushers(&alice).await.len(), 3);

    phone
        .post("/_matrix/client/v3/logout", json!({}))
        .await
        .ok();
    alice
        .with_password_uia(
            Method::DELETE,
            &format!("/_matrix/client/v3/devices/{}", tablet.device_id),
            json!({}),
        )
        .await
        .ok();

    let left: Vec<Value> = pushers(&alice).await;
    let keys: Vec<&str> = left.iter().filter_map(|p| p["pushkey"].as_str()).collect();
    assert_eq!(keys, ["desktop"]);
}

#[tokio::test]
async fn pushers_are_listed_as_set_updated_in_place_and_deleted() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    assert!(pushers(&alice).await.is_empty());
    let set = json!({
        "kind": "http",
        "app_id": APP_ID,
        "pushkey": "alice-phone",
        "app_display_name": "Plexus Nurse",
        "device_display_name": "Ward phone",
        "profile_tag": "night-shift",
        "lang": "en-GB",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify",
                 "format": "event_id_only", "custom": [1, 2]},
    });
    set_pusher(&alice, set.clone()).await;

    let mut expected = set.clone();
    assert_eq!(pushers(&alice).await, [expected.clone()]);

    let mut update = set.clone();
    update["lang"] = json!("cy");
    update["device_display_name"] = json!("Night phone");
    set_pusher(&alice, update).await;
    expected["lang"] = json!("cy");
    expected["device_display_name"] = json!("Night phone");
    assert_eq!(pushers(&alice).await, [expected], "updated, not added");

    set_pusher(
        &alice,
        json!({"kind": null, "app_id": APP_ID, "pushkey": "alice-phone"}),
    )
    .await;
    assert!(pushers(&alice).await.is_empty());
}

#[tokio::test]
async fn a_pushkey_moves_between_users_unless_appended() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let url = "https://push.example.org/_matrix/push/v1/notify";
    set_pusher(&alice, pusher(url, "shared-phone")).await;

    let mut appended = pusher(url, "shared-phone");
    appended["append"] = json!(true);
    set_pusher(&bob, appended).await;
    assert_eq!(
        pushers(&alice).await.len(),
        1,
        "append keeps Alice's pusher"
    );
    assert_eq!(pushers(&bob).await.len(), 1);

    set_pusher(&bob, pusher(url, "shared-phone")).await;
    assert!(
        pushers(&alice).await.is_empty(),
        "the phone now belongs to Bob alone"
    );
    assert_eq!(pushers(&bob).await.len(), 1);
}

#[tokio::test]
async fn bad_pushers_are_refused_and_change_nothing() {
    let server = Server::start().await;
    let alice = server.register_user("alice").await;
    let good = pusher(
        "https://push.example.org/_matrix/push/v1/notify",
        "alice-phone",
    );
    set_pusher(&alice, good.clone()).await;
    let before = pushers(&alice).await;

    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let with_url = |url: &str| with("data", json!({"url": url}));
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().map(|o| o.remove(field));
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "email pushers",
            with("kind", json!("email")),
            "M_INVALID_PARAM",
        ),
        (
            "an unknown kind",
            with("kind", json!("carrier_pigeon")),
            "M_INVALID_PARAM",
        ),
        (
            "a url with another path",
            with_url("https://push.example.org/notify"),
            "M_INVALID_PARAM",
        ),
        (
            "a url that is not http",
            with_url("ftp://push.example.org/_matrix/push/v1/notify"),
            "M_INVALID_PARAM",
        ),
        (
            "a url that is not a url",
            with_url("push gateway please"),
            "M_INVALID_PARAM",
        ),
        (
            "an app_id over 64 characters",
            with("app_id", json!("a".repeat(65))),
            "M_INVALID_PARAM",
        ),
        (
            "a pushkey over 512 bytes",
            with("pushkey", json!("k".repeat(513))),
            "M_INVALID_PARAM",
        ),
        (
            "http data without a url",
            with("data", json!({"format": "event_id_only"})),
            "M_INVALID_PARAM",
        ),
        (
            "a url that is not a string",
            with("data", json!({"url": 42})),
            "M_BAD_JSON",
        ),
        (
            "data that is not an object",
            with("data", json!("http://x")),
            "M_BAD_JSON",
        ),
        (
            "a kind that is not a string",
            with("kind", json!(7)),
            "M_BAD_JSON",
        ),
        (
            "no kind (which is not a deletion)",
            without("kind"),
            "M_MISSING_PARAM",
        ),
        ("no pushkey", without("pushkey"), "M_MISSING_PARAM"),
        ("no app_id", without("app_id"), "M_MISSING_PARAM"),
        ("no lang", without("lang"), "M_MISSING_PARAM"),
        ("no data", without("data"), "M_MISSING_PARAM"),
        (
            "no app_display_name",
            without("app_display_name"),
            "M_MISSING_PARAM",
        ),
        (
            "no device_display_name",
            without("device_display_name"),
            "M_MISSING_PARAM",
        ),
        (
            "a deletion without its pushkey",
            json!({"kind": null, "app_id": APP_ID}),
            "M_MISSING_PARAM",
        ),
    ];
    for (case, body, errcode) in cases {
        alice
            .post("/_matrix/client/v3/pushers/set", body)
            .await
            .labelled(case)
            .assert_error(400, errcode);
    }
    alice
        .client()
        .request(Method::POST, "/_matrix/client/v3/pushers/set")
        .raw_json("{\"kind\": ")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");

    assert_eq!(pushers(&alice).await, before);
}
