//! The `to_device` part of `/sync`: messages sent to the syncing device, in order, each delivered
//! until the device syncs with a token past it (then it is deleted).
//!
//! The answer's `to_device` position is that of the last message it carries (or the token's, when
//! it carries none), so it moves only when this device gets messages, and an answer limited to
//! `MAX_PER_SYNC` messages leaves the rest for the next one. A token's position acknowledges the
//! messages up to it: `acknowledged` tells the sync pass that some are still stored, and the pass
//! has them deleted after it answered (`Services::delete_acknowledged_to_device`).

use ruma::{DeviceId, UserId};
use serde_json::{Value as JsonValue, json};

use crate::service::Result;
use crate::storage;

/// The most messages one sync answer carries.
pub const MAX_PER_SYNC: usize = 100;

/// To-device messages for one sync answer.
#[derive(Debug, Clone, Default)]
pub struct ToDeviceSync {
    pub events: Vec<JsonValue>,
    /// The to-device stream position the answer is complete up to.
    pub position: i64,
}

/// Reads, inside the sync's one database read, the messages for `user`'s `device` after `since`
/// (the token's `to_device` position; 0 for an initial sync).
pub fn read(
    c: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
    since: i64,
) -> Result<ToDeviceSync> {
    let messages =
        storage::to_device::messages_after(c, user.as_str(), device.as_str(), since, MAX_PER_SYNC)?;
    let position = messages.last().map_or(since, |m| m.stream_id);
    let events = messages
        .into_iter()
        .map(|m| json!({"sender": m.sender, "type": m.event_type, "content": m.content}))
        .collect();
    Ok(ToDeviceSync { events, position })
}

/// Whether messages the token acknowledges (at or before `since`) are still stored for the device.
pub fn acknowledged(
    c: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
    since: i64,
) -> Result<bool> {
    if since <= 0 {
        return Ok(false);
    }
    Ok(storage::to_device::has_messages_upto(
        c,
        user.as_str(),
        device.as_str(),
        since,
    )?)
}
