//! Reporting abuse: members report events they can see, anyone reports a room, and the server's
//! operators find every report through the Synapse-compatible admin API, where they read and
//! close them.

use complement_tests::{Server, User, Value, encode, json, query, room_path};

const EVENT_REPORTS: &str = "/_synapse/admin/v1/event_reports";
const ROOM_REPORTS: &str = "/_synapse/admin/v1/room_reports";

fn report_path(room_id: &str, event_id: &str) -> String {
    room_path(room_id, &format!("report/{}", encode(event_id)))
}

/// The `event_reports` (or `room_reports`) array of an admin listing.
fn reports(listing: &Value, key: &str) -> Vec<Value> {
    listing[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {listing:#}"))
        .clone()
}

/// Alice's public room that bob has joined, with one of alice's messages in it.
async fn room_with_message(server: &Server) -> (User, User, String, String) {
    let alice = server.register_user("alice").await;
    let bob = server.register_user("bob").await;
    let room = alice
        .create_room(json!({"preset": "public_chat", "name": "Town square"}))
        .await;
    bob.join(&room).await;
    let message = alice.send_message(&room, "buy cheap watches").await;
    (alice, bob, room, message)
}

#[tokio::test]
async fn a_member_reports_an_event_and_an_operator_reads_and_closes_it() {
    let mut server = Server::start().await;
    let admin = server.register_admin("admin").await;
    let (alice, bob, room, message) = room_with_message(&server).await;

    let reply = bob
        .post(
            &report_path(&room, &message),
            json!({"reason": "spam", "score": -100}),
        )
        .await;
    assert_eq!(reply.ok(), json!({}));

    // Reports are kept, across a restart, until an operator closes them.
    server.restart().await;
    let listing = admin.get(EVENT_REPORTS).await.ok();
    assert_eq!(listing["total"], 1);
    assert!(listing.get("next_token").is_none());
    let report = &reports(&listing, "event_reports")[0];
    assert_eq!(report["room_id"], room);
    assert_eq!(report["event_id"], message);
    assert_eq!(report["user_id"], bob.user_id, "the reporter");
    assert_eq!(
        report["sender"], alice.user_id,
        "who sent the reported event"
    );
    assert_eq!(report["reason"], "spam");
    assert_eq!(report["score"], -100);
    assert_eq!(report["name"], "Town square");
    assert!(report["received_ts"].as_u64().is_some_and(|ts| ts > 0));

    let id = report["id"].as_i64().expect("a report id");
    let one = admin.get(&format!("{EVENT_REPORTS}/{id}")).await.ok();
    assert_eq!(one["event_json"]["content"]["body"], "buy cheap watches");

    admin
        .delete(&format!("{EVENT_REPORTS}/{id}"), json!({}))
        .await
        .ok();
    let listing = admin.get(EVENT_REPORTS).await.ok();
    assert_eq!(
        (
            listing["total"].clone(),
            reports(&listing, "event_reports").len()
        ),
        (json!(0), 0)
    );
    admin
        .get(&format!("{EVENT_REPORTS}/{id}"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn only_members_who_can_see_an_event_may_report_it() {
    let server = Server::start().await;
    let (alice, bob, room, message) = room_with_message(&server).await;
    let carol = server.register_user("carol").await;

    // Carol is not in the room: the event is "not found" for her, as the specification says.
    carol
        .post(&report_path(&room, &message), json!({"reason": "spam"}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    bob.post(
        &report_path(&room, "$doesnotexist"),
        json!({"reason": "spam"}),
    )
    .await
    .assert_error(404, "M_NOT_FOUND");

    // An event of another room is not found through this one.
    let other = alice.create_room(json!({"preset": "public_chat"})).await;
    let elsewhere = alice.send_message(&other, "elsewhere").await;
    bob.post(&report_path(&room, &elsewhere), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // History from before dave joined a "joined"-visibility room is hidden from him, so he may
    // not report it either; what he can see, he may.
    let private = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                               "content": {"history_visibility": "joined"}}],
        }))
        .await;
    let before = alice.send_message(&private, "said before dave came").await;
    let dave = server.register_user("dave").await;
    dave.join(&private).await;
    let after = alice.send_message(&private, "said to dave").await;
    dave.post(&report_path(&private, &before), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    dave.post(&report_path(&private, &after), json!({"reason": "rude"}))
        .await
        .ok();

    // Bob leaves: he may no longer report what he saw while he was there.
    bob.leave(&room).await;
    bob.post(&report_path(&room, &message), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_score_must_be_an_integer_from_minus_100_to_0() {
    let server = Server::start().await;
    let (_alice, bob, room, message) = room_with_message(&server).await;
    let cases = [
        (json!({"score": 1}), 400),
        (json!({"score": -101}), 400),
        (json!({"score": "very bad"}), 400),
        (json!({"score": -12.5}), 400),
        (json!({"score": -100}), 200),
        (json!({"score": 0}), 200),
        (json!({"reason": "no score at all"}), 200),
        (json!({}), 200),
    ];
    for (body, status) in cases {
        let reply = bob
            .post(&report_path(&room, &message), body.clone())
            .await
            .labelled(&body);
        if status == 200 {
            reply.ok();
        } else {
            reply.assert_error(400, "M_INVALID_PARAM");
        }
    }
    bob.client()
        .request(
            complement_tests::Method::POST,
            &report_path(&room, &message),
        )
        .raw_json("{not json")
        .send()
        .await
        .assert_error(400, "M_NOT_JSON");
    bob.anonymous()
        .post(&report_path(&room, &message), json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn anyone_may_report_a_room_the_server_knows() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;
    let (_alice, _bob, room, _message) = room_with_message(&server).await;
    let carol = server.register_user("carol").await;

    carol
        .post(&room_path(&room, "report"), json!({"reason": "scam shop"}))
        .await
        .ok();
    carol
        .post(
            &room_path("!nowhere:localhost", "report"),
            json!({"reason": "?"}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");

    let rooms = admin.get(ROOM_REPORTS).await.ok();
    let listed = reports(&rooms, "room_reports");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["room_id"], room);
    assert_eq!(listed[0]["user_id"], carol.user_id);
    assert_eq!(listed[0]["reason"], "scam shop");
    assert_eq!(listed[0]["name"], "Town square");
    assert_eq!(
        admin.get(EVENT_REPORTS).await.ok()["total"],
        0,
        "a room report is not an event report"
    );
}

#[tokio::test]
async fn operators_page_and_filter_reports_and_nobody_else_sees_them() {
    let server = Server::start().await;
    let admin = server.register_admin("admin").await;
    let (alice, bob, room, message) = room_with_message(&server).await;
    let second = alice.send_message(&room, "click this link").await;
    for (reporter, event, reason) in [
        (&bob, &message, "first"),
        (&bob, &second, "second"),
        (&alice, &message, "third"),
    ] {
        reporter
            .post(&report_path(&room, event), json!({"reason": reason}))
            .await
            .ok();
    }
    let reasons = |listing: &Value| -> Vec<String> {
        reports(listing, "event_reports")
            .iter()
            .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let page = |pairs: &[(&str, &str)]| {
        let path = format!("{EVENT_REPORTS}{}", query(pairs));
        let admin = admin.clone();
        async move { admin.get(&path).await }
    };

    let first = page(&[("limit", "2")]).await.ok();
    assert_eq!(reasons(&first), ["third", "second"], "newest first");
    assert_eq!(
        (first["total"].clone(), first["next_token"].clone()),
        (json!(3), json!(2))
    );
    let rest = page(&[("limit", "2"), ("from", "2")]).await.ok();
    assert_eq!(reasons(&rest), ["first"]);
    assert!(rest.get("next_token").is_none());
    let oldest = page(&[("dir", "f")]).await.ok();
    assert_eq!(reasons(&oldest), ["first", "second", "third"]);
    let by_alice = page(&[("user_id", &alice.user_id)]).await.ok();
    assert_eq!(reasons(&by_alice), ["third"]);
    let about_alice = page(&[("event_sender_user_id", &alice.user_id)]).await.ok();
    assert_eq!(about_alice["total"], 3);
    let other_room = page(&[("room_id", "!elsewhere:localhost")]).await.ok();
    assert_eq!(other_room["total"], 0);

    for (name, value) in [("dir", "sideways"), ("from", "-1"), ("limit", "lots")] {
        page(&[(name, value)])
            .await
            .labelled(format!("{name}={value}"))
            .assert_error(400, "M_INVALID_PARAM");
    }
    admin
        .get(&format!("{EVENT_REPORTS}/not-a-number"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    admin
        .get(&format!("{EVENT_REPORTS}/999"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    bob.get(EVENT_REPORTS)
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.delete(&format!("{EVENT_REPORTS}/1"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    server
        .client()
        .get(ROOM_REPORTS)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}
