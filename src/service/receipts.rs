//! Read receipts and read markers. A receipt (`m.read`, or `m.read.private`, which only its user
//! sees) records the latest event a user has read in a room, unthreaded, in the main timeline or
//! in one thread; it only ever moves forward. Each change takes the next position of the receipt
//! stream (in the write transaction) and wakes the room's listeners; `/sync` reads them back as
//! `m.receipt` content through `receipts_changes`.
//!
//! The `m.fully_read` marker is room account data (see `account_data.rs`), set here because
//! clients may not set it through `/account_data`; it also only moves forward.

use std::collections::{HashMap, HashSet};

use ruma::events::receipt::ReceiptThread;
use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use serde_json::{Map, Value as JsonValue, json};

use super::{Error, Result, Services};
use crate::storage::{self, receipts::NewReceipt, receipts::ReceiptRow};

const READ: &str = "m.read";
const READ_PRIVATE: &str = "m.read.private";
const FULLY_READ: &str = "m.fully_read";

impl Services {
    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`. `m.fully_read` moves the read
    /// marker instead, as `/read_markers` does, and takes no thread.
    pub async fn send_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread: &ReceiptThread,
    ) -> Result<()> {
        self.require_joined(room_id, user_id).await?;
        if receipt_type == FULLY_READ {
            if *thread != ReceiptThread::Unthreaded {
                return Err(Error::InvalidParam(
                    "thread_id cannot be given for m.fully_read".into(),
                ));
            }
            return self.set_fully_read(user_id, room_id, event_id).await;
        }
        let receipt_type = match receipt_type {
            READ => READ,
            READ_PRIVATE => READ_PRIVATE,
            other => {
                return Err(Error::InvalidParam(format!("unknown receipt type {other}")));
            }
        };
        let thread_id = match thread {
            ReceiptThread::Unthreaded => "",
            ReceiptThread::Main => "main",
            ReceiptThread::Thread(root) => root.as_str(),
            _ => {
                return Err(Error::InvalidParam(
                    "thread_id must be \"main\" or the event id of a thread root".into(),
                ));
            }
        };
        let position = self.event_position(room_id, event_id).await?;
        if let ReceiptThread::Thread(root) = thread {
            let (event, root) = (event_id.to_string(), root.to_string());
            let related = self
                .db
                .read(move |c| storage::receipts::is_in_thread(c, &event, &root))
                .await?;
            if !related {
                return Err(Error::InvalidParam(format!(
                    "{event_id} is not in the thread of {thread_id}"
                )));
            }
        }
        self.store_receipt(
            user_id,
            room_id,
            receipt_type,
            thread_id,
            event_id,
            position,
        )
        .await
    }

    /// `POST /rooms/{roomId}/read_markers`: the read marker and, optionally, the public and
    /// private read receipts (unthreaded), each only moving forward.
    pub async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        fully_read: Option<&EventId>,
        read: Option<&EventId>,
        read_private: Option<&EventId>,
    ) -> Result<()> {
        self.require_joined(room_id, user_id).await?;
        if let Some(event_id) = fully_read {
            self.set_fully_read(user_id, room_id, event_id).await?;
        }
        for (receipt_type, event_id) in [(READ, read), (READ_PRIVATE, read_private)] {
            if let Some(event_id) = event_id {
                let position = self.event_position(room_id, event_id).await?;
                self.store_receipt(user_id, room_id, receipt_type, "", event_id, position)
                    .await?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    /// Provider for `/sync`: the `m.receipt` content of each room of `rooms` whose receipts
    /// changed after receipt position `since` (0: all of them), leaving out other users' private
    /// receipts, and the position the answer is complete up to (the next `since`).
    pub async fn receipts_since(
        &self,
        user_id: &UserId,
        rooms: &[OwnedRoomId],
        since: i64,
    ) -> Result<(HashMap<OwnedRoomId, JsonValue>, i64)> {
        let wanted: HashSet<String> = rooms.iter().map(ToString::to_string).collect();
        let viewer = user_id.to_owned();
        self.db
            .read(move |c| Ok(receipts_changes(c, &viewer, &wanted, since)))
            .await?
    }

    #[cfg(test)]
    /// The position of the latest committed receipt (0 before the first).
    pub async fn receipts_position(&self) -> Result<i64> {
        Ok(self.db.read(storage::receipts::max_stream_id).await?)
    }

    /// The stream position of an event of `room_id`, which orders receipts; `M_NOT_FOUND` when
    /// the room has no such event.
    async fn event_position(&self, room_id: &RoomId, event_id: &EventId) -> Result<i64> {
        let id = event_id.to_string();
        let row = self
            .db
            .read(move |c| storage::events::get_event(c, &id))
            .await?
            .filter(|row| row.room_id == room_id.as_str())
            .ok_or_else(|| Error::NotFound(format!("no event {event_id} in {room_id}")))?;
        Ok(row.nid)
    }

    async fn store_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &'static str,
        thread_id: &str,
        event_id: &EventId,
        event_stream_ordering: i64,
    ) -> Result<()> {
        let (room, user, thread, event) = (
            room_id.to_string(),
            user_id.to_string(),
            thread_id.to_owned(),
            event_id.to_string(),
        );
        let changed = self
            .db
            .write("set_receipt", move |txn| {
                storage::receipts::set_receipt_txn(
                    txn,
                    &NewReceipt {
                        room_id: &room,
                        receipt_type,
                        user_id: &user,
                        thread_id: &thread,
                        event_id: &event,
                        event_stream_ordering,
                        ts: storage::now_ms(),
                    },
                )
            })
            .await?;
        if changed.is_some() {
            self.notifier.room_ephemeral_changed(room_id);
            self.federate_receipt(room_id, user_id, receipt_type, thread_id, event_id)
                .await;
        }
        Ok(())
    }

    async fn set_fully_read(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<()> {
        let position = self.event_position(room_id, event_id).await?;
        let (user, room, event) = (user_id.to_owned(), room_id.to_owned(), event_id.to_string());
        let changed = self
            .db
            .write("set_fully_read", move |txn| {
                storage::receipts::set_fully_read_txn(txn, &user, &room, &event, position)
            })
            .await?;
        if let Some(position) = changed {
            self.notifier.user_changed(user_id, position);
        }
        Ok(())
    }
}

/// The receipts of the rooms in `wanted` after receipt position `since`, grouped into
/// `m.receipt` content per room, and the position the answer is complete up to; read over an
/// open connection, inside `/sync`'s one read.
pub(crate) fn receipts_changes(
    c: &rusqlite::Connection,
    viewer: &UserId,
    wanted: &HashSet<String>,
    since: i64,
) -> Result<(HashMap<OwnedRoomId, JsonValue>, i64)> {
    // The bound is read first: every position up to it is committed, so the answer is complete
    // up to it.
    let upto = storage::receipts::max_stream_id(c)?;
    let rows = if since == 0 {
        // A first sync reads each room through its index rather than the whole table.
        let mut rows = Vec::new();
        for room in wanted {
            rows.extend(storage::receipts::room_receipts_between(c, room, 0, upto)?);
        }
        rows.sort_by_key(|r| r.stream_id);
        rows
    } else {
        let mut rows = storage::receipts::receipts_between(c, since, upto)?;
        rows.retain(|r| wanted.contains(&r.room_id));
        rows
    };
    Ok((receipt_contents(viewer, rows), upto.max(since)))
}

/// Groups receipt rows into `m.receipt` content per room:
/// `{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}`. Private receipts of users other
/// than `viewer` are left out; rows come in stream order, so a later receipt wins a collision.
fn receipt_contents(viewer: &UserId, rows: Vec<ReceiptRow>) -> HashMap<OwnedRoomId, JsonValue> {
    let mut contents: HashMap<OwnedRoomId, Map<String, JsonValue>> = HashMap::new();
    for row in rows {
        if row.receipt_type == READ_PRIVATE && row.user_id != viewer.as_str() {
            continue;
        }
        let Ok(room) = OwnedRoomId::try_from(row.room_id.as_str()) else {
            tracing::warn!(room.id = %row.room_id, "receipt with an invalid room id");
            continue;
        };
        let mut receipt = json!({ "ts": row.ts });
        if !row.thread_id.is_empty() {
            receipt["thread_id"] = json!(row.thread_id);
        }
        let by_type = contents
            .entry(room)
            .or_default()
            .entry(row.event_id)
            .or_insert_with(|| json!({}));
        by_type[&row.receipt_type][&row.user_id] = receipt;
    }
    contents
        .into_iter()
        .map(|(room, content)| (room, JsonValue::Object(content)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::typing::tests::room_of_two;

    fn thread(text: &str) -> ReceiptThread {
        ReceiptThread::try_from(Some(text)).unwrap()
    }

    #[tokio::test]
    async fn receipts_reach_sync_moving_forward_and_private_ones_only_for_their_owner() {
        let fixture = room_of_two().await;
        let (services, room) = (&fixture.services, &fixture.room);
        let (alice, bob) = (&fixture.alice.user_id, &fixture.bob.user_id);
        let first = fixture.message("first").await;
        let second = fixture.message("second").await;
        let rooms = [room.clone()];
        let unthreaded = ReceiptThread::Unthreaded;
        let woken = services.notifier.subscribe_room(room);

        services
            .send_receipt(bob, room, READ, &second, &unthreaded)
            .await
            .unwrap();
        assert!(woken.has_changed().unwrap());
        services
            .send_receipt(bob, room, READ, &first, &unthreaded)
            .await
            .unwrap();
        services
            .send_receipt(bob, room, READ_PRIVATE, &second, &unthreaded)
            .await
            .unwrap();
        services
            .send_receipt(alice, room, READ, &first, &thread("main"))
            .await
            .unwrap();
        assert_eq!(
            services.receipts_position().await.unwrap(),
            3,
            "the move back was ignored"
        );

        let strip_ts = |mut content: JsonValue| {
            for by_type in content.as_object_mut().unwrap().values_mut() {
                for by_user in by_type.as_object_mut().unwrap().values_mut() {
                    for receipt in by_user.as_object_mut().unwrap().values_mut() {
                        assert!(receipt["ts"].as_i64().unwrap() > 0);
                        receipt.as_object_mut().unwrap().remove("ts");
                    }
                }
            }
            content
        };
        let (for_alice, position) = services.receipts_since(alice, &rooms, 0).await.unwrap();
        assert_eq!(position, 3);
        assert_eq!(
            strip_ts(for_alice[room].clone()),
            json!({
                first.as_str(): {"m.read": {alice.as_str(): {"thread_id": "main"}}},
                second.as_str(): {"m.read": {bob.as_str(): {}}},
            })
        );
        let (for_bob, _) = services.receipts_since(bob, &rooms, 0).await.unwrap();
        assert_eq!(
            strip_ts(for_bob[room].clone())[second.as_str()]["m.read.private"],
            json!({bob.as_str(): {}})
        );

        let (nothing, same) = services.receipts_since(alice, &rooms, 3).await.unwrap();
        assert!(nothing.is_empty());
        assert_eq!(same, 3);
        let (elsewhere, _) = services.receipts_since(alice, &[], 0).await.unwrap();
        assert!(elsewhere.is_empty(), "only the rooms asked for");
        services
            .send_receipt(alice, room, READ, &second, &unthreaded)
            .await
            .unwrap();
        let (newer, position) = services.receipts_since(alice, &rooms, 3).await.unwrap();
        assert_eq!(position, 4);
        assert_eq!(
            strip_ts(newer[room].clone()),
            json!({second.as_str(): {"m.read": {alice.as_str(): {}}}})
        );
    }

    #[tokio::test]
    async fn receipts_need_a_joined_user_a_known_event_and_a_sound_thread() {
        let fixture = room_of_two().await;
        let (services, room) = (&fixture.services, &fixture.room);
        let (bob, carol) = (&fixture.bob.user_id, &fixture.carol.user_id);
        let root = fixture.message("root").await;
        let other = fixture.message("not in the thread").await;
        let unknown: ruma::OwnedEventId = "$unknown".try_into().unwrap();
        let unthreaded = ReceiptThread::Unthreaded;

        let refused = [
            (carol, READ, &root, unthreaded.clone(), "forbidden"),
            (bob, READ, &unknown, unthreaded.clone(), "not found"),
            (bob, "m.unknown", &root, unthreaded.clone(), "invalid"),
            (bob, READ, &root, thread("not-a-thread"), "invalid"),
            (bob, READ, &root, thread(""), "invalid"),
            (bob, READ, &other, thread(root.as_str()), "invalid"),
            (bob, FULLY_READ, &root, thread("main"), "invalid"),
        ];
        for (user, kind, event, thread, expected) in refused {
            let error = services
                .send_receipt(user, room, kind, event, &thread)
                .await
                .unwrap_err();
            let matched = match expected {
                "forbidden" => matches!(error, Error::Forbidden(_)),
                "not found" => matches!(error, Error::NotFound(_)),
                _ => matches!(error, Error::InvalidParam(_)),
            };
            assert!(matched, "{kind} on {event} in {thread:?}: {error:?}");
        }
        services
            .send_receipt(bob, room, READ, &root, &thread(root.as_str()))
            .await
            .unwrap();
        assert_eq!(services.receipts_position().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_read_marker_is_room_account_data_that_only_moves_forward() {
        let fixture = room_of_two().await;
        let (services, room) = (&fixture.services, &fixture.room);
        let bob = &fixture.bob.user_id;
        let first = fixture.message("first").await;
        let second = fixture.message("second").await;
        let woken = services.notifier.subscribe_user(bob);

        services
            .set_read_markers(bob, room, Some(&second), Some(&second), Some(&first))
            .await
            .unwrap();
        assert!(woken.has_changed().unwrap());
        services
            .send_receipt(bob, room, FULLY_READ, &first, &ReceiptThread::Unthreaded)
            .await
            .unwrap();
        let marker = services
            .account_data(bob, Some(room), FULLY_READ)
            .await
            .unwrap();
        assert_eq!(marker, Some(json!({"event_id": second})));
        let (receipts, _) = services
            .receipts_since(bob, std::slice::from_ref(room), 0)
            .await
            .unwrap();
        assert!(receipts[room][second.as_str()]["m.read"][bob.as_str()].is_object());
        assert!(receipts[room][first.as_str()]["m.read.private"][bob.as_str()].is_object());

        let carol = &fixture.carol.user_id;
        let stranger = services
            .set_read_markers(carol, room, Some(&first), None, None)
            .await;
        assert!(matches!(stranger, Err(Error::Forbidden(_))), "{stranger:?}");
    }

    fn row(user: &str, kind: &str, thread: &str, event: &str, stream_id: i64) -> ReceiptRow {
        ReceiptRow {
            room_id: "!room:x".into(),
            receipt_type: kind.into(),
            user_id: user.into(),
            thread_id: thread.into(),
            event_id: event.into(),
            ts: 100 + stream_id,
            stream_id,
        }
    }

    #[test]
    fn receipts_group_by_event_and_type_and_hide_others_private_ones() {
        let alice: &UserId = "@alice:x".try_into().unwrap();
        let rows = vec![
            row("@alice:x", READ, "", "$a", 1),
            row("@bob:x", READ, "main", "$a", 2),
            row("@bob:x", READ_PRIVATE, "", "$b", 3),
            row("@alice:x", READ_PRIVATE, "", "$b", 4),
        ];
        let contents = receipt_contents(alice, rows);
        let room: OwnedRoomId = "!room:x".try_into().unwrap();
        assert_eq!(
            contents[&room],
            json!({
                "$a": {"m.read": {
                    "@alice:x": {"ts": 101},
                    "@bob:x": {"ts": 102, "thread_id": "main"},
                }},
                "$b": {"m.read.private": {"@alice:x": {"ts": 104}}},
            })
        );
    }
}
