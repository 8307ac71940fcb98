//! Message kinds across the WhatsApp bridge (a real Plexus, the Cloud API simulator, the bridge
//! in-process): locations, contact cards, button and list choices, voice notes and videos
//! (byte-identical both ways), reactions that change and disappear both ways, staff edits and
//! deletions WhatsApp cannot follow, staff locations, and staff read receipts as WhatsApp's
//! mark as read.

#[path = "whatsapp_bridge/support.rs"]
mod support;

use std::time::Duration;

use complement_tests::{Value, encode, json, room_path, txn_id, wait_until};
use support::*;

/// The Cloud API sends the staff made, without the bridge's own bookkeeping field.
async fn sends(setup: &Setup) -> Vec<Value> {
    setup
        .message_calls()
        .await
        .into_iter()
        .map(|mut call| {
            if let Some(body) = call["body"].as_object_mut() {
                body.remove("biz_opaque_callback_data");
            }
            call
        })
        .collect()
}

/// Waits until the simulator received `n` message sends; answers them all.
async fn wait_for_sends(setup: &Setup, n: usize) -> Vec<Value> {
    wait_until(
        &format!("{n} sends reach WhatsApp"),
        Duration::from_secs(30),
        async || sends(setup).await.len() >= n,
    )
    .await;
    sends(setup).await
}

/// Alice's text message in the portal, and the wamid WhatsApp gave it.
async fn alice_says(setup: &Setup, room: &str, text: &str) -> (String, String) {
    let before = sends(setup).await.len();
    let event = setup.alice.send_message(room, text).await;
    let calls = wait_for_sends(setup, before + 1).await;
    let wamid = calls[before]["response"]["messages"][0]["id"]
        .as_str()
        .expect("a wamid")
        .to_owned();
    (event, wamid)
}

/// A contact's location, contact card, button and list choices and quick reply arrive as the
/// Matrix events a Matrix user reads: a map pin, a card (and its vCard), replies with the
/// chosen titles; a kind WhatsApp does not deliver is a notice.
#[tokio::test]
async fn locations_contacts_and_choices_arrive_as_matrix_events() {
    let setup = Setup::start().await;
    setup.contact_writes(MARIA, "Maria Lopez", "hello").await;
    let room = setup.portal(MARIA).await;
    let ghost = ghost_of(MARIA);

    setup
        .contact_sends(
            MARIA,
            json!({"type": "location", "location": {"latitude": 51.5074, "longitude": -0.1278,
                   "name": "Clinic", "address": "1 Main St, London"}}),
        )
        .await;
    let pin = setup
        .wait_for_message(&room, "the location", |e| {
            e["content"]["msgtype"] == "m.location"
        })
        .await;
    assert_eq!(pin["sender"], ghost.as_str());
    assert_eq!(pin["content"]["geo_uri"], "geo:51.5074,-0.1278");
    assert_eq!(
        pin["content"]["org.matrix.msc3488.location"],
        json!({"uri": "geo:51.5074,-0.1278", "description": "Clinic, 1 Main St, London"})
    );
    assert_eq!(pin["content"]["org.matrix.msc3488.asset"]["type"], "m.pin");
    let body = pin["content"]["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("Location: Clinic, 1 Main St, London\nhttps://"),
        "{body}"
    );

    setup
        .contact_sends(
            MARIA,
            json!({"type": "contacts", "contacts": [{
                "name": {"formatted_name": "Ada Lovelace", "first_name": "Ada", "last_name": "Lovelace"},
                "phones": [{"phone": "+44 7700 900456", "wa_id": "447700900456", "type": "CELL"}],
                "emails": [{"email": "ada@example.org", "type": "WORK"}],
            }]}),
        )
        .await;
    let card = setup
        .wait_for_message(&room, "the contact card", |e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("👤 Ada Lovelace"))
        })
        .await;
    assert_eq!(card["content"]["msgtype"], "m.text");
    assert_eq!(
        card["content"]["body"],
        "👤 Ada Lovelace\n📞 +44 7700 900456 (cell, on WhatsApp)\n✉️ ada@example.org (work)"
    );
    assert!(
        card["content"]["formatted_body"]
            .as_str()
            .is_some_and(|h| h.contains("<a href=\"tel:+447700900456\">")),
        "{card:#}"
    );
    let vcard = setup
        .wait_for_message(&room, "the vCard", |e| {
            e["content"]["body"] == "Ada Lovelace.vcf"
        })
        .await;
    assert_eq!(vcard["content"]["msgtype"], "m.file");
    assert_eq!(vcard["content"]["info"]["mimetype"], "text/vcard");
    let text = setup
        .matrix_media(vcard["content"]["url"].as_str().expect("an mxc URI"))
        .await;
    let text = String::from_utf8(text).expect("a text vCard");
    assert!(text.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"), "{text}");
    assert!(
        text.contains("\r\nTEL;TYPE=CELL:+44 7700 900456\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nEMAIL;TYPE=WORK:ada@example.org\r\n"),
        "{text}"
    );

    // Alice asks; Maria taps a button, picks from a list and taps a template quick reply.
    let (question, asked) = alice_says(&setup, &room, "Which day suits you?").await;
    setup
        .contact_sends(
            MARIA,
            json!({"type": "interactive", "context": {"id": asked}, "interactive": {
                "type": "button_reply", "button_reply": {"id": "tue", "title": "Tuesday"}}}),
        )
        .await;
    setup
        .contact_sends(
            MARIA,
            json!({"type": "interactive", "interactive": {"type": "list_reply",
                   "list_reply": {"id": "r3", "title": "3pm with Dr Smith", "description": "30 min"}}}),
        )
        .await;
    setup
        .contact_sends(
            MARIA,
            json!({"type": "button", "context": {"id": asked},
                   "button": {"payload": "CONFIRM", "text": "Confirm"}}),
        )
        .await;
    setup
        .contact_sends(MARIA, json!({"type": "unsupported", "unsupported": {}}))
        .await;
    let choice = setup
        .wait_for_message(&room, "the button choice", |e| {
            e["content"]["body"] == "Tuesday"
        })
        .await;
    assert_eq!(choice["sender"], ghost.as_str());
    assert_eq!(choice["content"]["msgtype"], "m.text");
    assert_eq!(
        choice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        question.as_str()
    );
    let listed = setup
        .wait_for_message(&room, "the list choice", |e| {
            e["content"]["body"] == "3pm with Dr Smith"
        })
        .await;
    assert_eq!(listed["content"]["msgtype"], "m.text");
    let quick = setup
        .wait_for_message(&room, "the quick reply", |e| {
            e["content"]["body"] == "Confirm"
        })
        .await;
    assert_eq!(
        quick["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        question.as_str()
    );
    let unsupported = setup
        .wait_for_message(&room, "the unsupported notice", |e| {
            e["content"]["msgtype"] == "m.notice" && e["sender"] == ghost.as_str()
        })
        .await;
    assert!(
        unsupported["content"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("does not deliver")),
        "{unsupported:#}"
    );
}

/// A voice note and a video from the contact reach Matrix byte for byte (the voice note marked
/// as one); the staff's voice note and video reach WhatsApp byte for byte, sent by media id.
#[tokio::test]
async fn voice_notes_and_videos_cross_byte_identical_both_ways() {
    let setup = Setup::start().await;
    setup.contact_writes(MARIA, "Maria Lopez", "hello").await;
    let room = setup.portal(MARIA).await;

    // Bytes that are not UTF-8, so nothing on the way may treat them as text.
    let voice: Vec<u8> = (0..=255u8).chain(b"OggS voice".iter().copied()).collect();
    let video: Vec<u8> = (0..=255u8)
        .rev()
        .chain(b"ftypmp42".iter().copied())
        .collect();
    let voice_id = setup
        .contact_media(&voice, "audio/ogg; codecs=opus", "voice.ogg")
        .await;
    let video_id = setup.contact_media(&video, "video/mp4", "clip.mp4").await;
    setup
        .contact_sends(
            MARIA,
            json!({"type": "audio", "audio": {"id": voice_id, "voice": true}}),
        )
        .await;
    setup
        .contact_sends(
            MARIA,
            json!({"type": "video", "video": {"id": video_id, "caption": "my knee"}}),
        )
        .await;
    let note = setup
        .wait_for_message(&room, "the voice note", |e| {
            e["content"]["msgtype"] == "m.audio"
        })
        .await;
    assert_eq!(note["content"]["body"], "Voice message");
    assert_eq!(note["content"]["org.matrix.msc3245.voice"], json!({}));
    assert!(note["content"]["org.matrix.msc1767.audio"].is_object());
    assert_eq!(
        note["content"]["info"]["mimetype"],
        "audio/ogg; codecs=opus"
    );
    let mxc = note["content"]["url"].as_str().expect("an mxc URI");
    assert_eq!(setup.matrix_media(mxc).await, voice);
    let clip = setup
        .wait_for_message(&room, "the video", |e| e["content"]["msgtype"] == "m.video")
        .await;
    assert_eq!(clip["content"]["body"], "my knee");
    assert_eq!(clip["content"]["info"]["mimetype"], "video/mp4");
    let mxc = clip["content"]["url"].as_str().expect("an mxc URI");
    assert_eq!(setup.matrix_media(mxc).await, video);

    // Alice answers with a voice note (as Element records one) and a video.
    let her_voice: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(7)).collect();
    let her_video: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(13)).collect();
    let voice_mxc = setup
        .alice_uploads(&her_voice, "audio/ogg", "Voice message.ogg")
        .await;
    let video_mxc = setup
        .alice_uploads(&her_video, "video/mp4", "exercise.mp4")
        .await;
    setup
        .alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.audio", "body": "Voice message", "url": voice_mxc,
                   "info": {"mimetype": "audio/ogg", "size": her_voice.len(), "duration": 2000},
                   "org.matrix.msc1767.audio": {"duration": 2000, "waveform": [0, 512, 1024]},
                   "org.matrix.msc3245.voice": {}}),
        )
        .await;
    wait_for_sends(&setup, 1).await;
    setup
        .alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.video", "body": "Do this twice a day", "filename": "exercise.mp4",
                   "url": video_mxc, "info": {"mimetype": "video/mp4", "size": her_video.len()}}),
        )
        .await;
    let calls = wait_for_sends(&setup, 2).await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(calls.iter().all(|c| c["status"] == 200), "{calls:#?}");
    assert_eq!(calls[0]["body"]["type"], "audio");
    assert_eq!(calls[0]["body"]["to"], MARIA);
    let audio = &calls[0]["body"]["audio"];
    assert_eq!(audio.as_object().map(|o| o.len()), Some(1), "{audio}");
    let audio_id = audio["id"].as_str().expect("sent by media id");
    assert_eq!(setup.sim_media(audio_id).await, her_voice);
    assert_eq!(calls[1]["body"]["type"], "video");
    let sent_video = &calls[1]["body"]["video"];
    assert_eq!(sent_video["caption"], "Do this twice a day");
    let video_id = sent_video["id"].as_str().expect("sent by media id");
    assert_eq!(setup.sim_media(video_id).await, her_video);
}

/// A contact's reaction changes (the old one redacted, the new one shown) and disappears (an
/// empty emoji redacts it); the staff's reaction withdrawn in Matrix is withdrawn on WhatsApp
/// (an empty emoji), and withdrawing the newest of two brings the older one back.
#[tokio::test]
async fn reactions_change_and_disappear_both_ways() {
    let setup = Setup::start().await;
    let hello = setup.contact_writes(MARIA, "Maria Lopez", "hello").await;
    let room = setup.portal(MARIA).await;
    let ghost = ghost_of(MARIA);
    let (answer, answer_wamid) = alice_says(&setup, &room, "See you at 3pm").await;

    let reactions = async || -> Vec<Value> {
        setup
            .timeline(&room)
            .await
            .into_iter()
            .filter(|e| e["type"] == "m.reaction" && e["sender"] == ghost.as_str())
            .collect()
    };
    let shown = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["content"]["m.relates_to"]["event_id"] == answer.as_str())
            .filter_map(|e| {
                e["content"]["m.relates_to"]["key"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    let react = async |emoji: &str| {
        setup
            .contact_sends(
                MARIA,
                json!({"type": "reaction", "reaction": {"message_id": answer_wamid, "emoji": emoji}}),
            )
            .await
    };
    react("👍").await;
    wait_until("Maria's 👍", Duration::from_secs(30), async || {
        shown(&reactions().await) == ["👍"]
    })
    .await;
    react("❤️").await;
    wait_until(
        "👍 replaced by ❤️",
        Duration::from_secs(30),
        async || shown(&reactions().await) == ["❤️"],
    )
    .await;
    // The replaced reaction was redacted, not left behind.
    let all = reactions().await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0]["unsigned"]["redacted_because"].is_object(),
        "{all:#?}"
    );
    react("").await;
    wait_until("❤️ removed", Duration::from_secs(30), async || {
        shown(&reactions().await).is_empty()
    })
    .await;
    // The webhook left the emoji out, as Meta does for a removed reaction.
    let webhooks = setup.http.get(&setup.sim("/webhooks")).await;
    let removal = webhooks
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| &w["body"]["entry"][0]["changes"][0]["value"]["messages"][0])
        .rfind(|m| m["type"] == "reaction")
        .cloned()
        .expect("the removal's webhook");
    assert_eq!(removal["reaction"], json!({"message_id": answer_wamid}));

    // Alice reacts to Maria's message, then withdraws it.
    let hello_event = setup
        .messages(&room)
        .await
        .into_iter()
        .find(|e| e["content"]["body"] == "hello")
        .and_then(|e| e["event_id"].as_str().map(str::to_owned))
        .expect("Maria's hello");
    let before = sends(&setup).await.len();
    let thumbs = setup.alice.react(&room, &hello_event, "👍").await;
    wait_for_sends(&setup, before + 1).await;
    let pray = setup.alice.react(&room, &hello_event, "🙏").await;
    wait_for_sends(&setup, before + 2).await;
    let redact = async |event: &str| {
        let path = room_path(&room, &format!("redact/{}/{}", encode(event), txn_id()));
        setup.alice.put(&path, json!({})).await.ok();
    };
    redact(&pray).await;
    let calls = wait_for_sends(&setup, before + 3).await;
    redact(&thumbs).await;
    let calls_after = wait_for_sends(&setup, before + 4).await;
    let reaction_bodies: Vec<Value> = calls_after[before..]
        .iter()
        .map(|c| c["body"]["reaction"].clone())
        .collect();
    assert_eq!(
        reaction_bodies,
        [
            json!({"message_id": hello, "emoji": "👍"}),
            json!({"message_id": hello, "emoji": "🙏"}),
            // 🙏 withdrawn: the 👍 still there in Matrix is the business's reaction again.
            json!({"message_id": hello, "emoji": "👍"}),
            json!({"message_id": hello, "emoji": ""}),
        ]
    );
    assert_eq!(calls.len(), before + 3);
    assert!(
        calls_after.iter().all(|c| c["status"] == 200),
        "{calls_after:#?}"
    );
}

/// WhatsApp cannot edit or delete a message a business sent: a staff edit or deletion is not
/// sent, and the bot says so under the original. A staff location is sent as a location.
#[tokio::test]
async fn staff_edits_and_deletions_are_explained_and_locations_sent() {
    let setup = Setup::start().await;
    setup
        .contact_writes(MARIA, "Maria Lopez", "where are you?")
        .await;
    let room = setup.portal(MARIA).await;
    let (message, _) = alice_says(&setup, &room, "We are at 1 Main St").await;

    setup
        .alice
        .edit(&room, &message, "We are at 2 Main St")
        .await;
    let notice = setup
        .wait_for_message(&room, "the edit notice", |e| {
            e["sender"] == BOT
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("⚠ Edit not sent to WhatsApp"))
        })
        .await;
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    assert_eq!(
        notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        message.as_str()
    );
    assert!(
        notice["content"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("still sees the original")),
        "{notice:#}"
    );

    let path = room_path(&room, &format!("redact/{}/{}", encode(&message), txn_id()));
    setup
        .alice
        .put(&path, json!({"reason": "wrong address"}))
        .await
        .ok();
    let notice = setup
        .wait_for_message(&room, "the deletion notice", |e| {
            e["sender"] == BOT
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("⚠ Not deleted on WhatsApp"))
        })
        .await;
    assert_eq!(
        notice["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        message.as_str()
    );

    // A pin dropped in Element.
    setup
        .alice
        .send_event(
            &room,
            "m.room.message",
            json!({"msgtype": "m.location", "body": "Location geo:51.5,-0.12;u=20",
                   "geo_uri": "geo:51.5,-0.12;u=20",
                   "org.matrix.msc3488.location": {"uri": "geo:51.5,-0.12;u=20", "description": "Side entrance"},
                   "org.matrix.msc3488.asset": {"type": "m.pin"}}),
        )
        .await;
    let calls = wait_for_sends(&setup, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_now = sends(&setup).await;
    assert_eq!(
        calls_now.len(),
        2,
        "only the text and the location: {calls_now:#?}"
    );
    assert_eq!(
        calls[1]["body"],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": MARIA,
               "type": "location",
               "location": {"latitude": 51.5, "longitude": -0.12, "name": "Side entrance"}})
    );
    assert_eq!(calls[1]["status"], 200, "{calls:#?}");
}

/// A staff read receipt on the contact's message marks it read on WhatsApp (once, and only the
/// newest: WhatsApp marks the earlier ones with it).
#[tokio::test]
async fn staff_read_receipts_mark_messages_read_on_whatsapp() {
    let setup = Setup::start().await;
    let first = setup
        .contact_writes(MARIA, "Maria Lopez", "are you there?")
        .await;
    let room = setup.portal(MARIA).await;
    let event_of = async |body: &str| -> String {
        setup
            .wait_for_message(&room, body, |e| e["content"]["body"] == body)
            .await["event_id"]
            .as_str()
            .expect("an event id")
            .to_owned()
    };
    let first_event = event_of("are you there?").await;
    let read = async |event: &str| {
        let path = room_path(&room, &format!("receipt/m.read/{}", encode(event)));
        setup.alice.post(&path, json!({})).await.ok();
    };
    let read_marks = async || -> Vec<Value> {
        setup
            .message_calls()
            .await
            .into_iter()
            .filter(|c| c["body"]["status"] == "read")
            .collect()
    };
    // Sorted by wamid: messages of the same second have no order.
    let read_flags = async || -> Vec<(String, bool)> {
        let messages = setup.http.get(&setup.sim("/messages")).await;
        let mut flags: Vec<(String, bool)> = messages
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["direction"] == "inbound")
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["read"] == true,
                )
            })
            .collect();
        flags.sort();
        flags
    };

    read(&first_event).await;
    wait_until(
        "the first mark as read",
        Duration::from_secs(30),
        async || read_marks().await.len() == 1,
    )
    .await;
    let marks = read_marks().await;
    assert_eq!(
        marks[0]["body"],
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": first})
    );
    assert_eq!(marks[0]["response"], json!({"success": true}));
    assert_eq!(read_flags().await, [(first.clone(), true)]);

    // Two more messages; Alice's client marks the newest read.
    let second = setup.contact_writes(MARIA, "Maria Lopez", "hello?").await;
    let third = setup
        .contact_writes(MARIA, "Maria Lopez", "I need to move my appointment")
        .await;
    let second_event = event_of("hello?").await;
    let third_event = event_of("I need to move my appointment").await;
    read(&third_event).await;
    wait_until(
        "the second mark as read",
        Duration::from_secs(30),
        async || read_marks().await.len() == 2,
    )
    .await;
    assert_eq!(read_marks().await[1]["body"]["message_id"], third.as_str());
    let mut expected = vec![(first.clone(), true), (second, true), (third.clone(), true)];
    expected.sort();
    assert_eq!(read_flags().await, expected);

    // Receipts on what WhatsApp knows is read already send nothing.
    read(&second_event).await;
    read(&third_event).await;
    read(&first_event).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(read_marks().await.len(), 2, "{:#?}", read_marks().await);

    // Maria writes again and Alice answers; her client's receipt lands on her own answer, the
    // newest event, which marks Maria's message before it read.
    let fourth = setup
        .contact_writes(MARIA, "Maria Lopez", "Thursday works better")
        .await;
    event_of("Thursday works better").await;
    let (answer, _) = alice_says(&setup, &room, "Thursday at 10 then").await;
    read(&answer).await;
    wait_until(
        "the third mark as read",
        Duration::from_secs(30),
        async || read_marks().await.len() == 3,
    )
    .await;
    assert_eq!(read_marks().await[2]["body"]["message_id"], fourth.as_str());
}
