//! The end-to-end encryption part of `/sync` that concerns devices and their keys:
//! `device_lists.changed/left` (users sharing a room whose devices or cross-signing keys changed
//! since the token's `device_lists` position, users who started sharing a room since its `events`
//! position, and users the syncing user no longer shares a room with), `device_one_time_keys_count`
//! and `device_unused_fallback_key_types` of the syncing device. `/keys/changes` answers from the
//! same reading between two tokens.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{DeviceId, OneTimeKeyAlgorithm, OwnedUserId, UInt, UserId};

use super::SyncToken;
use crate::service::Result;
use crate::storage::e2e_keys;

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

/// Reads, inside the sync's one database read, what changed about devices since `since` (`None`
/// for an initial sync, which reports no changes) for `user`'s `device`: a handful of indexed
/// queries whose cost follows the changes since the token, not the size of the user's rooms.
pub fn read(
    c: &rusqlite::Connection,
    user: &UserId,
    device: &DeviceId,
    since: Option<SyncToken>,
) -> Result<DeviceListSync> {
    let position = e2e_keys::max_device_list_position(c)?;
    let (changed, left) = match since {
        Some(since) => changes_between(c, user, Some(device), &since, None)?,
        None => (Vec::new(), Vec::new()),
    };
    let counts = e2e_keys::count_one_time_keys(c, user.as_str(), device.as_str())?;
    let unused_fallback_key_types =
        e2e_keys::unused_fallback_algorithms(c, user.as_str(), device.as_str())?
            .iter()
            .map(|a| OneTimeKeyAlgorithm::from(a.as_str()))
            .collect();
    Ok(DeviceListSync {
        changed,
        left,
        one_time_keys_count: crate::service::keys::one_time_key_counts(&counts),
        unused_fallback_key_types,
        position: position.max(since.map_or(0, |s| s.device_lists)),
    })
}

/// Users whose device lists changed (or who started sharing a room with `user`) and users who
/// stopped sharing every room with `user`, between `from` and `to` (`None`: up to now). A change
/// made by `own_device` itself is not reported back to it.
pub fn changes_between(
    c: &rusqlite::Connection,
    user: &UserId,
    own_device: Option<&DeviceId>,
    from: &SyncToken,
    to: Option<&SyncToken>,
) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
    let device_upto = to.map_or(i64::MAX, |t| t.device_lists);
    let events_upto = to.map_or(i64::MAX, |t| t.events);
    let mut changed: BTreeSet<String> = e2e_keys::device_list_changes_for(
        c,
        user.as_str(),
        own_device.map(DeviceId::as_str),
        from.device_lists,
        device_upto,
    )?
    .into_iter()
    .collect();
    let sharing = e2e_keys::sharing_changes(c, user.as_str(), from.events, events_upto)?;
    changed.extend(sharing.joined);
    let left: BTreeSet<String> = sharing.left.into_iter().collect();
    let ids = |set: BTreeSet<String>| {
        set.into_iter()
            .filter_map(|u| OwnedUserId::try_from(u).ok())
            .collect::<Vec<_>>()
    };
    let changed = changed.difference(&left).cloned().collect();
    Ok((ids(changed), ids(left)))
}
