//! What each inbound WhatsApp message type becomes in Matrix (reactions aside, see
//! [`super::reactions`]):
//!
//! | WhatsApp `type` | Matrix event |
//! |---|---|
//! | `text` | `m.text` (WhatsApp formatting as HTML) |
//! | `image`, `sticker` | `m.image` |
//! | `video` | `m.video` |
//! | `audio` | `m.audio`; with `voice: true` a voice message (MSC3245 / MSC1767 markers) |
//! | `document` | `m.file` with the file name |
//! | `location` | `m.location` (`geo_uri`, MSC3488 fields) |
//! | `contacts` | `m.text` card per contact, then the vCard as an `m.file` |
//! | `interactive` (`button_reply`, `list_reply`), `button` | `m.text` with the chosen title |
//! | `system` | `m.notice` with WhatsApp's text |
//! | anything else | `m.notice` saying it is not supported |
//!
//! Media is fetched from the Cloud API and re-uploaded to the Matrix media repository as the
//! ghost, byte for byte. A `context.id` naming a bridged message makes the event a reply to it.

use bridge_toolkit::Error;
use bridge_toolkit::format::{self, Style};
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

use super::WhatsAppBridge;
use super::contacts;
use super::groups;
use super::recovery::inbound_txn_id;

fn to_value(content: &RoomMessageEventContent) -> Result<Value, Error> {
    serde_json::to_value(content).map_err(|e| Error::Invalid(e.to_string()))
}

fn notice(body: String) -> Result<Value, Error> {
    to_value(&RoomMessageEventContent::notice_plain(body))
}

impl WhatsAppBridge {
    /// An inbound message other than a reaction, sent as the ghost at the WhatsApp time (with a
    /// transaction id derived from `wamid`, so a resumed webhook stores it once). Answers the
    /// event the wamid maps to.
    pub(super) async fn inbound_other(
        &self,
        kind: &str,
        message: &Value,
        ghost: &UserId,
        room: &RoomId,
        ts: Option<MilliSecondsSinceUnixEpoch>,
        wamid: &str,
    ) -> Result<OwnedEventId, Error> {
        let mut content = self.inbound_content(kind, message, ghost).await?;
        // A reply (`context.id`, also on button taps) to a bridged message becomes a Matrix reply.
        if let Some(quoted) = message["context"]["id"].as_str()
            && let Some(event) = self.store.event_for_remote(quoted)?
        {
            content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": event}});
        }
        let txn_id = inbound_txn_id(wamid);
        let event_id = self
            .client
            .send_event_with_txn(ghost, room, "m.room.message", &content, ts, &txn_id)
            .await?;
        if kind == "contacts" {
            self.contact_file(message, ghost, room, ts, &txn_id).await?;
        }
        // The newest message of each chat (a group's apart from its writer's own chat).
        let chat = match message["group_id"].as_str() {
            Some(group_id) => Some(groups::portal_key(group_id)),
            None => message["from"].as_str().map(str::to_owned),
        };
        if let Some(chat) = chat {
            let at = ts.unwrap_or_else(MilliSecondsSinceUnixEpoch::now);
            self.read_marks
                .note_inbound(&chat, wamid, u64::from(at.0))?;
        }
        Ok(event_id)
    }

    /// The Matrix content of an inbound message (media re-uploaded as the ghost).
    async fn inbound_content(
        &self,
        kind: &str,
        message: &Value,
        ghost: &UserId,
    ) -> Result<Value, Error> {
        match kind {
            "text" => {
                let body = message["text"]["body"].as_str().unwrap_or_default();
                to_value(&format::remote_to_matrix(body, Style::WhatsApp, &|_| None))
            }
            "image" | "sticker" | "video" | "audio" | "document" => {
                self.inbound_media(kind, message, ghost).await
            }
            "location" => match location_content(&message["location"]) {
                Some(content) => Ok(content),
                None => notice("[a WhatsApp location without valid coordinates]".into()),
            },
            "contacts" => match contacts::card(&message["contacts"]) {
                Some((body, html)) => Ok(json!({
                    "msgtype": "m.text", "body": body,
                    "format": "org.matrix.custom.html", "formatted_body": html,
                })),
                None => notice("[a WhatsApp contact card without contacts]".into()),
            },
            "interactive" | "button" => match chosen_title(message) {
                Some(title) => to_value(&RoomMessageEventContent::text_plain(title)),
                None => notice(format!(
                    "[a WhatsApp {} reply, not supported by the bridge]",
                    message["interactive"]["type"].as_str().unwrap_or(kind)
                )),
            },
            "system" => {
                let body = message["system"]["body"]
                    .as_str()
                    .unwrap_or("the contact's WhatsApp account changed");
                notice(format!("[WhatsApp: {body}]"))
            }
            "unsupported" => notice(
                "[a WhatsApp message of a kind the Cloud API does not deliver to businesses \
                 (such as a poll or a view-once photo)]"
                    .into(),
            ),
            other => notice(format!(
                "[a WhatsApp {other} message, not supported by the bridge]"
            )),
        }
    }

    /// An image, sticker, video, audio or document: fetched from the Cloud API, re-uploaded.
    async fn inbound_media(
        &self,
        kind: &str,
        message: &Value,
        ghost: &UserId,
    ) -> Result<Value, Error> {
        let media = &message[kind];
        let voice = kind == "audio" && media["voice"].as_bool() == Some(true);
        let media_id = media["id"].as_str().unwrap_or_default();
        let download = match self.cloud.download(media_id).await {
            Ok(download) => download,
            Err(reason) => {
                // Not worth a retry loop: the media id does not get better.
                tracing::warn!(%reason, "cannot fetch WhatsApp media");
                return notice(format!("[a WhatsApp {kind} that could not be fetched]"));
            }
        };
        let filename = media["filename"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let name = if voice { "voice" } else { kind };
                match extension(&download.mime_type) {
                    Some(ext) => format!("whatsapp-{name}.{ext}"),
                    None => format!("whatsapp-{name}"),
                }
            });
        let size = download.bytes.len();
        let duration = voice
            .then(|| ogg_opus_duration_ms(&download.bytes))
            .flatten();
        let uri = self
            .client
            .upload(ghost, download.bytes, &download.mime_type, Some(&filename))
            .await?;
        let caption = media["caption"].as_str().filter(|c| !c.is_empty());
        let msgtype = match kind {
            "image" | "sticker" => "m.image",
            "video" => "m.video",
            "audio" => "m.audio",
            _ => "m.file",
        };
        let body = match (caption, voice) {
            (Some(caption), _) => caption.to_owned(),
            (None, true) => "Voice message".to_owned(),
            (None, false) => filename.clone(),
        };
        let mut content = json!({
            "msgtype": msgtype,
            "body": body,
            "url": uri,
            "info": {"mimetype": download.mime_type, "size": size},
        });
        if caption.is_some() || voice {
            content["filename"] = json!(filename);
        }
        if voice {
            // What Element sends for a voice message, so clients show a voice player.
            let mut audio = json!({});
            if let Some(duration) = duration {
                content["info"]["duration"] = json!(duration);
                audio["duration"] = json!(duration);
            }
            content["org.matrix.msc1767.text"] = json!("Voice message");
            content["org.matrix.msc1767.file"] = json!({
                "url": uri, "name": filename, "mimetype": download.mime_type, "size": size,
            });
            content["org.matrix.msc1767.audio"] = audio;
            content["org.matrix.msc3245.voice"] = json!({});
        }
        Ok(content)
    }

    /// The vCard of a contacts message, as an `m.file` after the card (best effort: the card
    /// says it all already).
    async fn contact_file(
        &self,
        message: &Value,
        ghost: &UserId,
        room: &RoomId,
        ts: Option<MilliSecondsSinceUnixEpoch>,
        txn_id: &str,
    ) -> Result<(), Error> {
        let Some((filename, vcard)) = contacts::vcard_file(&message["contacts"]) else {
            return Ok(());
        };
        let size = vcard.len();
        let uri = match self
            .client
            .upload(ghost, vcard.into_bytes(), "text/vcard", Some(&filename))
            .await
        {
            Ok(uri) => uri,
            Err(e) => {
                tracing::warn!(room.id = %room, error = %e, "cannot upload a contact's vCard");
                return Ok(());
            }
        };
        let content = json!({
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "url": uri,
            "info": {"mimetype": "text/vcard", "size": size},
        });
        let txn_id = format!("{txn_id}.vcard");
        if let Err(e) = self
            .client
            .send_event_with_txn(ghost, room, "m.room.message", &content, ts, &txn_id)
            .await
        {
            tracing::warn!(room.id = %room, error = %e, "cannot send a contact's vCard");
        }
        Ok(())
    }
}

/// The title a contact chose: an interactive `button_reply` / `list_reply`, or a template's
/// quick-reply `button`.
pub fn chosen_title(message: &Value) -> Option<String> {
    let title = match message["type"].as_str()? {
        "button" => message["button"]["text"].as_str(),
        "interactive" => {
            let interactive = &message["interactive"];
            match interactive["type"].as_str()? {
                "button_reply" => interactive["button_reply"]["title"].as_str(),
                "list_reply" => interactive["list_reply"]["title"].as_str(),
                _ => None,
            }
        }
        _ => None,
    }?;
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

/// An `m.location` for a WhatsApp `location` (`latitude`, `longitude`, `name`?, `address`?):
/// the `geo_uri`, the MSC3488 fields Element reads (a named place is a pin, a bare position the
/// sender's own), and a body with the name, the address and a map link for other clients.
pub fn location_content(location: &Value) -> Option<Value> {
    let number = |key: &str| {
        let value = &location[key];
        value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n: &f64| n.is_finite())
    };
    let (latitude, longitude) = (number("latitude")?, number("longitude")?);
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return None;
    }
    let text = |key: &str| {
        location[key]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let (name, address) = (text("name"), text("address"));
    let geo_uri = format!("geo:{latitude},{longitude}");
    let description = match (name, address) {
        (Some(name), Some(address)) => Some(format!("{name}, {address}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    };
    let map = format!(
        "https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}#map=16/{latitude}/{longitude}"
    );
    let body = match &description {
        Some(description) => format!("Location: {description}\n{map}"),
        None => format!("Location: {map}"),
    };
    let mut extensible = json!({"uri": geo_uri});
    if let Some(description) = &description {
        extensible["description"] = json!(description);
    }
    let asset = if description.is_some() {
        "m.pin"
    } else {
        "m.self"
    };
    Some(json!({
        "msgtype": "m.location",
        "body": body,
        "geo_uri": geo_uri,
        "org.matrix.msc1767.text": body,
        "org.matrix.msc3488.location": extensible,
        "org.matrix.msc3488.asset": {"type": asset},
    }))
}

/// The usual file extension of a media type WhatsApp sends.
fn extension(mime_type: &str) -> Option<&'static str> {
    let essence = mime_type.split(';').next().unwrap_or_default().trim();
    Some(match essence.to_ascii_lowercase().as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => return None,
    })
}

/// The length of an Ogg Opus recording (what WhatsApp voice notes are), in milliseconds: the
/// last page's granule position (48 kHz samples) less the `OpusHead` pre-skip. `None` for
/// anything else.
pub fn ogg_opus_duration_ms(bytes: &[u8]) -> Option<u64> {
    let head = bytes.windows(8).position(|w| w == b"OpusHead")?;
    let pre_skip = u16::from_le_bytes([*bytes.get(head + 10)?, *bytes.get(head + 11)?]);
    let last_page = bytes.windows(4).rposition(|w| w == b"OggS")?;
    let granule: [u8; 8] = bytes.get(last_page + 6..last_page + 14)?.try_into().ok()?;
    let granule = i64::from_le_bytes(granule);
    let samples = u64::try_from(granule)
        .ok()?
        .checked_sub(u64::from(pre_skip))?;
    Some(samples * 1000 / 48_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_place_is_a_pin_with_its_address() {
        let content = location_content(&json!({
            "latitude": 51.5074, "longitude": -0.1278, "name": "Clinic", "address": "1 Main St"
        }))
        .unwrap();
        assert_eq!(content["msgtype"], "m.location");
        assert_eq!(content["geo_uri"], "geo:51.5074,-0.1278");
        assert_eq!(
            content["org.matrix.msc3488.location"],
            json!({"uri": "geo:51.5074,-0.1278", "description": "Clinic, 1 Main St"})
        );
        assert_eq!(content["org.matrix.msc3488.asset"]["type"], "m.pin");
        let body = content["body"].as_str().unwrap();
        assert!(body.starts_with("Location: Clinic, 1 Main St\nhttps://www.openstreetmap.org/"));
    }

    #[test]
    fn a_bare_position_is_the_senders_own() {
        let content = location_content(&json!({"latitude": "-33.9", "longitude": 18.4})).unwrap();
        assert_eq!(content["geo_uri"], "geo:-33.9,18.4");
        assert_eq!(content["org.matrix.msc3488.asset"]["type"], "m.self");
        assert_eq!(
            location_content(&json!({"latitude": 100, "longitude": 0})),
            None
        );
        assert_eq!(location_content(&json!({"latitude": 1})), None);
    }

    #[test]
    fn button_and_list_replies_show_the_chosen_title() {
        let button = json!({"type": "interactive", "interactive": {"type": "button_reply",
            "button_reply": {"id": "yes", "title": "Yes, confirm"}}});
        let list = json!({"type": "interactive", "interactive": {"type": "list_reply",
            "list_reply": {"id": "r2", "title": "Tuesday 3pm", "description": "Dr Smith"}}});
        let quick = json!({"type": "button", "button": {"payload": "STOP_PROMO", "text": "Stop promotions"}});
        assert_eq!(chosen_title(&button).as_deref(), Some("Yes, confirm"));
        assert_eq!(chosen_title(&list).as_deref(), Some("Tuesday 3pm"));
        assert_eq!(chosen_title(&quick).as_deref(), Some("Stop promotions"));
        let flow = json!({"type": "interactive", "interactive": {"type": "nfm_reply"}});
        assert_eq!(chosen_title(&flow), None);
    }

    /// An Ogg page header with `granule` and one segment of `payload`.
    fn ogg_page(granule: i64, payload: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&[0; 12]);
        page.push(1);
        page.push(payload.len() as u8);
        page.extend_from_slice(payload);
        page
    }

    #[test]
    fn measures_an_ogg_opus_voice_note() {
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        let mut bytes = ogg_page(0, &head);
        bytes.extend(ogg_page(0, b"OpusTags"));
        bytes.extend(ogg_page(48_000 * 3 + 312, b"audio"));
        assert_eq!(ogg_opus_duration_ms(&bytes), Some(3000));
        assert_eq!(ogg_opus_duration_ms(b"not an ogg file"), None);
    }

    #[test]
    fn media_file_names_get_their_extension() {
        assert_eq!(extension("audio/ogg; codecs=opus"), Some("ogg"));
        assert_eq!(extension("image/jpeg"), Some("jpg"));
        assert_eq!(extension("application/x-unknown"), None);
    }
}
