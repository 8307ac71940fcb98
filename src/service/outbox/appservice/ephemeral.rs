//! The ephemeral part of the appservice outbox, for registrations with `receive_ephemeral`:
//! typing and receipts of rooms they are interested in (each with its `room_id`; private receipts
//! only to the registration of their user), presence of their users and of users sharing a
//! joined room with them, and to-device messages for their users' devices (MSC4203). Typing and
//! presence are read from memory, receipts from `receipts`, to-device messages from
//! `device_inbox`; the positions live in memory and start at the newest on start-up.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value as JsonValue, json};

use super::Outbox;
use super::interest::{Target, in_namespace, interested_in_room};
use crate::service::{Result, Services};
use crate::storage;
use crate::storage::appservice_queue::{self as queue, EntryKind, NewEntry};

/// To-device messages read at a time.
const TO_DEVICE_BATCH: usize = 500;
/// Ephemeral sources are read at least this often, also when the generation did not move.
const EPHEMERAL_REFRESH: Duration = Duration::from_secs(1);

/// How far the ephemeral sources have been read. Typing and presence live in memory, so their
/// positions do too; receipts and to-device messages start from the newest at start-up (what
/// was committed but not yet queued when the server stopped is not sent).
pub(super) struct EphemeralPositions {
    generation: u64,
    checked: Instant,
    typing: u64,
    presence: u64,
    receipts: i64,
    to_device: i64,
}

impl Services {
    /// Where the ephemeral sources stand now: the outbox starts there.
    pub(super) async fn ephemeral_positions(&self) -> Result<EphemeralPositions> {
        let (receipts, to_device) = self
            .db
            .read(|c| {
                Ok((
                    storage::receipts::max_stream_id(c)?,
                    queue::newest_to_device(c)?,
                ))
            })
            .await?;
        let (_, presence) = self.presence_changes(u64::MAX).await?;
        Ok(EphemeralPositions {
            generation: self.notifier.ephemeral_generation(),
            checked: Instant::now(),
            typing: self.typing_position(),
            presence,
            receipts,
            to_device,
        })
    }

    /// Queues typing, receipts, presence and to-device messages that changed since the last look,
    /// for the appservices with `receive_ephemeral` interested in them.
    pub(super) async fn queue_appservice_ephemeral(&self, outbox: &mut Outbox) -> Result<()> {
        let Some(positions) = outbox.ephemeral.as_mut() else {
            return Ok(());
        };
        let generation = self.notifier.ephemeral_generation();
        let refresh = positions.checked.elapsed() >= EPHEMERAL_REFRESH;
        if generation == positions.generation && !refresh {
            return Ok(());
        }
        positions.generation = generation;
        positions.checked = Instant::now();

        let typing_position = self.typing_position();
        let typing = match typing_position == positions.typing {
            true => HashMap::new(),
            false => self.typing_changed_since(positions.typing),
        };
        let (presence_users, presence_position) = self.presence_changes(positions.presence).await?;
        let presence: Vec<(String, JsonValue)> = presence_users
            .iter()
            .filter_map(|user| {
                self.presence_events(user, std::slice::from_ref(user), &HashSet::new())
                    .pop()
                    .map(|event| (user.to_string(), event))
            })
            .collect();
        let (receipts_from, to_device_from) = (positions.receipts, positions.to_device);
        let targets = outbox.targets.clone();
        let mut members = std::mem::take(&mut outbox.members);
        let read = self
            .db
            .read(move |c| {
                let upto = storage::receipts::max_stream_id(c)?;
                let receipts = storage::receipts::receipts_between(c, receipts_from, upto)?;
                let to_device = match refresh {
                    true => queue::to_device_after(c, to_device_from, TO_DEVICE_BATCH)?,
                    false => Vec::new(),
                };
                let mut entries = Vec::new();
                let mut aliases = HashMap::new();
                for (room, users) in &typing {
                    let content = json!({
                        "type": "m.typing",
                        "room_id": room,
                        "content": { "user_ids": users },
                    });
                    let key = format!("m.typing {room}");
                    for index in
                        interested_in_room(c, room.as_str(), &targets, &mut members, &mut aliases)?
                    {
                        entries.push(ephemeral_entry(&targets[index], &content, Some(&key)));
                    }
                }
                for receipt in &receipts {
                    let private = receipt.receipt_type != "m.read";
                    let mut data = json!({ "ts": receipt.ts });
                    if !receipt.thread_id.is_empty() {
                        data["thread_id"] = receipt.thread_id.clone().into();
                    }
                    let content = json!({
                        "type": "m.receipt",
                        "room_id": receipt.room_id,
                        "content": { &receipt.event_id: {
                            &receipt.receipt_type: { &receipt.user_id: data },
                        }},
                    });
                    // A newer receipt of the same user, type and thread replaces a waiting one.
                    let key = format!(
                        "m.receipt {} {} {} {}",
                        receipt.room_id, receipt.user_id, receipt.receipt_type, receipt.thread_id
                    );
                    for index in interested_in_room(
                        c,
                        &receipt.room_id,
                        &targets,
                        &mut members,
                        &mut aliases,
                    )? {
                        // Private receipts go only to the appservice of their user.
                        if private && !in_namespace(&targets[index], &receipt.user_id) {
                            continue;
                        }
                        entries.push(ephemeral_entry(&targets[index], &content, Some(&key)));
                    }
                }
                for (user, event) in &presence {
                    let key = format!("m.presence {user}");
                    let rooms = storage::rooms::rooms_of_user(c, user, "join")?;
                    for (index, target) in targets.iter().enumerate() {
                        if !target.registration.receive_ephemeral {
                            continue;
                        }
                        let mut shares = in_namespace(target, user);
                        for room in &rooms {
                            if shares {
                                break;
                            }
                            shares = !members.of(c, room, &targets)?[index].is_empty();
                        }
                        if shares {
                            entries.push(ephemeral_entry(target, event, Some(&key)));
                        }
                    }
                }
                for message in &to_device {
                    let content: JsonValue = serde_json::from_str(&message.content)?;
                    let event = json!({
                        "type": message.event_type,
                        "sender": message.sender,
                        "content": content,
                        "to_user_id": message.user_id,
                        "to_device_id": message.device_id,
                    });
                    for target in targets.iter() {
                        if target.registration.receive_ephemeral
                            && in_namespace(target, &message.user_id)
                        {
                            entries.push(NewEntry {
                                appservice_id: target.registration.id.clone(),
                                kind: EntryKind::ToDevice,
                                json: event.to_string(),
                                supersede_key: None,
                            });
                        }
                    }
                }
                let to_device_last = to_device.last().map(|m| m.stream_id);
                Ok((members, entries, upto, to_device_last))
            })
            .await?;
        let (members, entries, receipts_upto, to_device_last) = read;
        outbox.members = members;
        if !entries.is_empty() {
            self.db
                .write("queue_appservice_ephemeral", move |txn| {
                    queue::enqueue_json_txn(txn, &entries)
                })
                .await?;
        }
        let Some(positions) = outbox.ephemeral.as_mut() else {
            return Ok(());
        };
        positions.typing = typing_position;
        positions.presence = presence_position;
        positions.receipts = positions.receipts.max(receipts_upto);
        if let Some(last) = to_device_last {
            positions.to_device = last;
        }
        Ok(())
    }
}

fn ephemeral_entry(target: &Target, event: &JsonValue, key: Option<&str>) -> NewEntry {
    NewEntry {
        appservice_id: target.registration.id.clone(),
        kind: EntryKind::Ephemeral,
        json: event.to_string(),
        supersede_key: key.map(str::to_owned),
    }
}
