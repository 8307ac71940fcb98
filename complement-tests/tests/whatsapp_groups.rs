//! WhatsApp group conversations across the bridge (a real Plexus, the Cloud API simulator, the
//! bridge in-process): one portal per group, named after its subject, with each participant's
//! ghost; a staff answer sent once to the group (`recipient_type: "group"`); a participant's
//! group and one-to-one chats kept apart.

#[path = "whatsapp_bridge/support.rs"]
mod support;

use complement_tests::{Value, json, state_path};
use support::*;

const JOSE: &str = "34600111222";

/// A group the business is in, with Maria and José; answers its id.
async fn create_group(setup: &Setup, subject: &str) -> String {
    let group = setup
        .http
        .post(
            &setup.sim("/groups"),
            json!({"subject": subject, "participants": [MARIA, JOSE]}),
        )
        .await;
    group["id"].as_str().expect("a group id").to_owned()
}

/// `from` writes `body` in the group (as `name`); answers the wamid.
async fn writes_in_group(setup: &Setup, group: &str, from: &str, name: &str, body: &str) -> String {
    let answer = setup
        .http
        .post(
            &setup.sim(&format!("/groups/{group}/messages")),
            json!({"from": from, "name": name, "type": "text", "text": {"body": body}}),
        )
        .await;
    answer["id"].as_str().expect("a wamid").to_owned()
}

/// The text messages of `room` as (sender, body), oldest first.
async fn texts(setup: &Setup, room: &str) -> Vec<(String, String)> {
    setup
        .messages(room)
        .await
        .iter()
        .filter(|e| e["content"]["msgtype"] == "m.text")
        .map(|e| {
            let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (field(&e["sender"]), field(&e["content"]["body"]))
        })
        .collect()
}

/// Two participants write in a group: one portal named after the group, both ghosts in it,
/// their messages in order. Alice's answer reaches WhatsApp once, addressed to the group.
#[tokio::test]
async fn a_group_is_one_portal_and_staff_answer_the_group() {
    let setup = Setup::start().await;
    let group = create_group(&setup, "Knee clinic follow-up").await;
    writes_in_group(&setup, &group, MARIA, "Maria Lopez", "Hello everyone").await;
    writes_in_group(&setup, &group, JOSE, "José Pérez", "Hi Maria").await;
    writes_in_group(
        &setup,
        &group,
        MARIA,
        "Maria Lopez",
        "When is the next session?",
    )
    .await;

    let room = setup.portal(&format!("group:{group}")).await;
    let expected = vec![
        (ghost_of(MARIA), "Hello everyone".to_owned()),
        (ghost_of(JOSE), "Hi Maria".to_owned()),
        (ghost_of(MARIA), "When is the next session?".to_owned()),
    ];
    complement_tests::wait_until(
        "the three group messages",
        std::time::Duration::from_secs(30),
        async || texts(&setup, &room).await.len() >= 3,
    )
    .await;
    assert_eq!(texts(&setup, &room).await, expected);
    let name = setup.alice.get(&state_path(&room, "m.room.name", "")).await;
    assert_eq!(name.body["name"], "Knee clinic follow-up (WhatsApp)");
    let members = setup.alice.joined_members(&room).await;
    for ghost in [ghost_of(MARIA), ghost_of(JOSE)] {
        assert!(members.contains(&ghost), "{ghost} in {members:?}");
    }
    assert_eq!(
        setup.find_portal(MARIA).await,
        None,
        "a group message opens no one-to-one portal"
    );

    let before = setup.message_calls().await.len();
    setup.alice.send_message(&room, "Thursday at 10:00").await;
    complement_tests::wait_until(
        "the answer reaches WhatsApp",
        std::time::Duration::from_secs(30),
        async || setup.message_calls().await.len() > before,
    )
    .await;
    // Nothing more follows: the answer is sent once.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sends = setup.message_calls().await;
    assert_eq!(sends.len(), before + 1, "{sends:#?}");
    let send = &sends[before];
    assert_eq!(send["status"], 200, "{send}");
    let mut body = send["body"].clone();
    body.as_object_mut()
        .expect("an object")
        .remove("biz_opaque_callback_data");
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "recipient_type": "group", "to": group,
               "type": "text", "text": {"body": "Thursday at 10:00"}})
    );
}

/// A participant's one-to-one chat and their group are separate portals, each with its own
/// messages, the same ghost in both.
#[tokio::test]
async fn a_contacts_group_and_one_to_one_chat_stay_apart() {
    let setup = Setup::start().await;
    let group = create_group(&setup, "Physio group").await;
    setup
        .contact_writes(MARIA, "Maria Lopez", "Just to you: thanks")
        .await;
    let direct = setup.portal(MARIA).await;
    writes_in_group(&setup, &group, MARIA, "Maria Lopez", "Hello group").await;
    let group_room = setup.portal(&format!("group:{group}")).await;
    assert_ne!(direct, group_room);

    complement_tests::wait_until(
        "the group message",
        std::time::Duration::from_secs(30),
        async || !texts(&setup, &group_room).await.is_empty(),
    )
    .await;
    assert_eq!(
        texts(&setup, &group_room).await,
        vec![(ghost_of(MARIA), "Hello group".to_owned())]
    );
    assert_eq!(
        texts(&setup, &direct).await,
        vec![(ghost_of(MARIA), "Just to you: thanks".to_owned())]
    );

    // An answer in the one-to-one portal still goes to Maria alone.
    let before = setup.message_calls().await.len();
    setup.alice.send_message(&direct, "You're welcome").await;
    complement_tests::wait_until(
        "the answer reaches WhatsApp",
        std::time::Duration::from_secs(30),
        async || setup.message_calls().await.len() > before,
    )
    .await;
    let send = &setup.message_calls().await[before];
    assert_eq!(send["body"]["recipient_type"], "individual");
    assert_eq!(send["body"]["to"], MARIA);
}
