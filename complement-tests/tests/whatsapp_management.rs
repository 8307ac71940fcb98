//! Managing the WhatsApp bridge (`appservices/whatsapp`) from Matrix, against a real Plexus and
//! the Cloud API simulator: the bot's commands in the staff's direct chat with it (`help`,
//! `status`, `template <name> <phone>` with parameters, `opt-out`), who is invited into a new
//! portal (listed users and a care team's room), a portal member who is not staff being told
//! their message did not go to WhatsApp, and the template configured for a closed 24-hour window.

#[path = "whatsapp_bridge/support.rs"]
mod support;

use std::time::Duration;

use complement_tests::{Value, json, wait_until};
use support::*;

/// `help` lists every command; `status` says the Cloud API answers and who the staff are.
#[tokio::test]
async fn help_and_status_describe_the_bridge() {
    let setup = Setup::start().await;
    let dm = setup.management_room().await;

    let help = setup.command(&dm, "help").await;
    for command in [
        "• help",
        "• status",
        "• start <phone>",
        "• template <name> [<phone>]",
        "• opt-out",
    ] {
        assert!(help.contains(command), "{command} in {help}");
    }

    let status = setup.command(&dm, "status").await;
    assert!(status.contains(PHONE_NUMBER_ID), "{status}");
    assert!(status.contains("Cloud API: reachable"), "{status}");
    assert!(status.contains("Opted out (STOP): 0"), "{status}");
    assert!(status.contains("Staff: @alice:localhost"), "{status}");
    let probes = setup
        .calls()
        .await
        .into_iter()
        .filter(|c| c["method"] == "GET" && c["path"] == format!("/v21.0/{PHONE_NUMBER_ID}"))
        .count();
    assert_eq!(probes, 1);

    // In a portal the prefix is needed, and the same list answers.
    setup.contact_writes(MARIA, "Maria Lopez", "hello").await;
    let room = setup.portal(MARIA).await;
    let help = setup.command(&room, "!wa help").await;
    assert!(help.contains("• opt-out"), "{help}");
}

/// `template <name> <phone> "…" "…"` in the management room opens the number's portal and sends
/// the template with its body parameters, in the documented shape; the portal shows it. A wrong
/// number of parameters is refused by WhatsApp (132000), and both rooms say so plainly.
#[tokio::test]
async fn a_template_with_parameters_is_sent_to_a_phone() {
    let setup = Setup::start().await;
    setup
        .http
        .post(
            &setup.sim("/templates"),
            json!({"name": "appointment_reminder",
                   "body": "Your appointment is on {{1}} at {{2}}. Reply STOP to opt out."}),
        )
        .await;
    setup
        .http
        .post(
            &setup.sim("/contacts"),
            json!({"wa_id": MARIA, "name": "Maria Lopez"}),
        )
        .await;
    let dm = setup.management_room().await;

    let answer = setup
        .command(
            &dm,
            r#"template appointment_reminder +447700900123 "Tuesday 3 March" "10:00""#,
        )
        .await;
    let room = setup.portal(MARIA).await;
    assert_eq!(
        answer,
        format!("Template appointment_reminder sent to +{MARIA} in {room}.")
    );
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        calls[0]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "template",
               "template": {"name": "appointment_reminder", "language": {"code": "en_US"},
                            "components": [{"type": "body", "parameters": [
                                {"type": "text", "text": "Tuesday 3 March"},
                                {"type": "text", "text": "10:00"}]}]}})
    );
    assert_eq!(calls[0]["status"], 200);
    assert_eq!(
        calls[0]["response"]["messages"][0]["message_status"],
        "accepted"
    );
    let portal_notice = |events: &[Value], needle: &str| {
        events
            .iter()
            .find(|e| {
                e["sender"] == BOT
                    && e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(needle))
            })
            .cloned()
    };
    let events = setup.messages(&room).await;
    let shown = portal_notice(&events, "📨 Template appointment_reminder").expect("the record");
    assert_eq!(
        shown["content"]["body"],
        "📨 Template appointment_reminder (en_US) with “Tuesday 3 March”, “10:00”, sent for @alice:localhost."
    );

    // One parameter for two placeholders: WhatsApp refuses it, and the rooms say why.
    let answer = setup
        .command(
            &dm,
            r#"template appointment_reminder +447700900123 "Tuesday""#,
        )
        .await;
    assert!(
        answer.starts_with("⚠ Template appointment_reminder not sent to +447700900123: template appointment_reminder takes a different number of parameters than the 1 given"),
        "{answer}"
    );
    assert!(answer.contains("expected number of params (2)"), "{answer}");
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[1]["status"], 400);
    assert_eq!(calls[1]["response"]["error"]["code"], 132000);
    wait_until(
        "the failure in the portal",
        Duration::from_secs(20),
        async || portal_notice(&setup.messages(&room).await, "⚠ Not delivered: template").is_some(),
    )
    .await;
    let events = setup.messages(&room).await;
    let records: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("📨"))
        })
        .collect();
    assert_eq!(records.len(), 2, "{events:#?}");
    let failure = portal_notice(&events, "⚠ Not delivered: template").expect("the failure");
    assert_eq!(
        failure["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        records[1]["event_id"]
    );

    // Outside a portal the phone is required.
    let usage = setup.command(&dm, "template hello_world").await;
    assert!(
        usage.starts_with("Usage: template <name> <phone>"),
        "{usage}"
    );
}

/// `opt-out` lists the contacts who wrote STOP, with when, and no longer lists one who wrote
/// START; a template to someone opted out is not sent.
#[tokio::test]
async fn opt_out_lists_who_wrote_stop_until_they_write_start() {
    let setup = Setup::start().await;
    let dm = setup.management_room().await;
    assert_eq!(
        setup.command(&dm, "opt-out").await,
        "No contact has opted out."
    );

    setup.contact_writes(MARIA, "Maria Lopez", "STOP").await;
    setup.contact_writes("15550002222", "Bob", "hi there").await;
    let room = setup.portal(MARIA).await;
    setup.portal("15550002222").await;
    bot_says(&setup, &room, "wrote STOP").await;

    let list = setup.command(&dm, "opt-out").await;
    let mut lines = list.lines();
    assert_eq!(
        lines.next(),
        Some("1 opted out (they wrote STOP; nothing is sent to them until they write START):")
    );
    let line = lines.next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("• +{MARIA} Maria Lopez (WhatsApp), since 20"))
            && line.ends_with(" UTC"),
        "{list}"
    );
    assert_eq!(lines.next(), None, "{list}");

    let answer = setup
        .command(&dm, &format!("template hello_world +{MARIA}"))
        .await;
    assert!(answer.contains("opted out"), "{answer}");
    assert!(setup.message_calls().await.is_empty());

    setup.contact_writes(MARIA, "Maria Lopez", "START").await;
    bot_says(&setup, &room, "wrote START").await;
    assert_eq!(
        setup.command(&dm, "opt-out").await,
        "No contact has opted out."
    );
    let status = setup.command(&dm, "status").await;
    assert!(status.contains("Opted out (STOP): 0"), "{status}");
}

/// With `invite` rules naming a user and a care team's room, a new portal invites that user and
/// every member of the team room. Team members count as staff (the room is in `staff`): their
/// answers go to WhatsApp. Someone invited who is not staff — by the rules or by a staff member —
/// is told their message did not go to WhatsApp, and it does not.
#[tokio::test]
async fn invite_rules_bring_the_team_and_only_staff_are_bridged() {
    let setup = Setup::start_with(
        r##"staff = ["@alice:localhost", "#care-team:localhost"]
invite = ["@alice:localhost", "@dora:localhost", "#care-team:localhost"]"##,
    )
    .await;
    let server = setup.server();
    let carol = server.register_user("carol").await;
    let dora = server.register_user("dora").await;
    let eve = server.register_user("eve").await;

    // The care team's room, with the bot in it so it can read who is in the team.
    let team = setup
        .alice
        .create_room(json!({"room_alias_name": "care-team", "invite": [BOT, "@carol:localhost"]}))
        .await;
    carol.join(&team).await;
    wait_until(
        "the bot joins the team room",
        Duration::from_secs(20),
        async || {
            setup
                .alice
                .joined_members(&team)
                .await
                .iter()
                .any(|m| m == BOT)
        },
    )
    .await;

    setup
        .contact_writes(MARIA, "Maria Lopez", "Can I move my appointment?")
        .await;
    let room = setup.portal(MARIA).await;
    let members = setup.alice.members(&room, "").await;
    for (user, expected) in [
        ("@alice:localhost", "join"),
        ("@carol:localhost", "invite"),
        ("@dora:localhost", "invite"),
    ] {
        assert!(
            members.contains(&(user.to_owned(), expected.to_owned())),
            "{user} {expected}: {members:?}"
        );
    }
    assert!(!members.iter().any(|(user, _)| user == "@eve:localhost"));

    // Carol is staff through the team room: her answer reaches WhatsApp.
    carol.join(&room).await;
    carol
        .send_message(&room, "Of course, which day suits you?")
        .await;
    wait_until(
        "Carol's answer is sent",
        Duration::from_secs(20),
        async || setup.message_calls().await.len() == 1,
    )
    .await;
    assert_eq!(
        setup.message_calls().await[0]["body"]["text"]["body"],
        "Of course, which day suits you?"
    );

    // Dora (invited by the rules) and Eve (invited by Alice) are not staff: not sent, and told.
    setup.alice.invite(&room, "@eve:localhost").await;
    dora.join(&room).await;
    eve.join(&room).await;
    for (user, who) in [(&dora, "@dora:localhost"), (&eve, "@eve:localhost")] {
        let event = user.send_message(&room, "I can help with that").await;
        wait_until("the refusal", Duration::from_secs(20), async || {
            setup.messages(&room).await.iter().any(|e| {
                e["sender"] == BOT
                    && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event.as_str()
            })
        })
        .await;
        let events = setup.messages(&room).await;
        let refusal = events
            .iter()
            .find(|e| e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event.as_str())
            .expect("the refusal");
        assert_eq!(refusal["content"]["msgtype"], "m.notice");
        assert_eq!(
            refusal["content"]["body"],
            format!(
                "⚠ Not delivered: {who} is not on this bridge's staff list, so their messages \
                 are not sent to WhatsApp and +{MARIA} did not receive this. A bridge \
                 administrator can add them to `staff` in the bridge configuration."
            )
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(setup.message_calls().await.len(), 1);
    // Their commands are refused too.
    let answer = {
        let event = eve.send_message(&room, "!wa status").await;
        let mut answer = None;
        wait_until("the command refusal", Duration::from_secs(20), async || {
            answer = setup
                .messages(&room)
                .await
                .iter()
                .skip_while(|e| e["event_id"] != event.as_str())
                .find(|e| e["sender"] == BOT)
                .and_then(|e| e["content"]["body"].as_str().map(str::to_owned));
            answer.is_some()
        })
        .await;
        answer.unwrap_or_default()
    };
    assert_eq!(answer, "You may not run commands of this bridge.");
}

/// With `[bridge.window_template]` and `include_text`, a staff message refused because the
/// 24-hour window is closed goes out once more, as the template carrying its text; it counts as
/// sent (the template's statuses are its own) and the room is told how it went.
#[tokio::test]
async fn a_closed_window_sends_the_message_in_the_configured_template() {
    let setup = Setup::start_with(
        r#"staff = ["@alice:localhost"]
[bridge.window_template]
name = "care_team_message"
language = "en_GB"
include_text = true"#,
    )
    .await;
    setup
        .http
        .post(
            &setup.sim("/templates"),
            json!({"name": "care_team_message", "body": "A message from your care team: {{1}}"}),
        )
        .await;
    setup.contact_writes(MARIA, "Maria Lopez", "thanks!").await;
    let room = setup.portal(MARIA).await;
    let window = format!("/contacts/{MARIA}/window");
    setup
        .http
        .put(&setup.sim(&window), json!({"open": false}))
        .await;

    let event = setup
        .alice
        .send_message(&room, "Your visit is confirmed")
        .await;
    bot_says(
        &setup,
        &room,
        "went out in the approved template care_team_message",
    )
    .await;
    let calls = setup.message_calls().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0]["response"]["error"]["code"], 131047);
    assert_eq!(calls[1]["status"], 200, "{:#}", calls[1]);
    let mut template = calls[1]["body"].clone();
    assert_eq!(
        template["biz_opaque_callback_data"].as_str(),
        Some(event.as_str()),
        "the template's statuses name the message"
    );
    template
        .as_object_mut()
        .map(|t| t.remove("biz_opaque_callback_data"));
    assert_eq!(
        template,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "template",
               "template": {"name": "care_team_message", "language": {"code": "en_GB"},
                            "components": [{"type": "body", "parameters": [
                                {"type": "text", "text": "Your visit is confirmed"}]}]}})
    );
    // Nothing says the message failed.
    let events = setup.messages(&room).await;
    assert!(
        !events.iter().any(|e| e["content"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("Not delivered"))),
        "{events:#?}"
    );
}

/// Without `include_text`, the template is an invitation to write back: sent once however many
/// messages meet the closed window, and each message is reported as not delivered.
#[tokio::test]
async fn a_closed_window_invites_the_contact_once() {
    let setup = Setup::start_with(
        r#"staff = ["@alice:localhost"]
[bridge.window_template]
name = "hello_world""#,
    )
    .await;
    setup.contact_writes(MARIA, "Maria Lopez", "thanks!").await;
    let room = setup.portal(MARIA).await;
    let window = format!("/contacts/{MARIA}/window");
    setup
        .http
        .put(&setup.sim(&window), json!({"open": false}))
        .await;

    setup
        .alice
        .send_message(&room, "Are you free on Monday?")
        .await;
    bot_says(&setup, &room, "asking them to write back was sent instead").await;
    setup.alice.send_message(&room, "Or Tuesday?").await;
    bot_says(&setup, &room, "asking them to write back was sent already").await;
    let calls = setup.message_calls().await;
    let templates: Vec<&Value> = calls
        .iter()
        .filter(|c| c["body"]["type"] == "template")
        .collect();
    assert_eq!(templates.len(), 1, "{calls:#?}");
    assert_eq!(templates[0]["status"], 200);
    assert_eq!(
        templates[0]["body"]["template"],
        json!({"name": "hello_world", "language": {"code": "en_US"}})
    );
    assert_eq!(
        calls.len(),
        3,
        "two refused messages and one template: {calls:#?}"
    );
}

/// Waits for a notice of the bot's in `room` containing `needle`.
async fn bot_says(setup: &Setup, room: &str, needle: &str) {
    wait_until(needle, Duration::from_secs(20), async || {
        setup.messages(room).await.iter().any(|e| {
            e["sender"] == BOT
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(needle))
        })
    })
    .await;
}
