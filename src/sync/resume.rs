//! What a long-poll leaves for the next request of the same device. A client syncing in a loop
//! sends each answer's `next_batch` straight back; the request that continues from it takes over
//! the previous one's subscriptions and fast-path base instead of starting with a full pass. An
//! entry is used once, only with the exact token it was left with, and expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::{OwnedDeviceId, OwnedUserId};

use super::Wakers;
use super::hot::HotBase;

/// Entries kept at most; beyond it the expired ones go, and if none has, all of them.
const MAX_ENTRIES: usize = 10_000;
/// A device that has not come back within this long starts afresh.
const EXPIRY: Duration = Duration::from_secs(300);

pub(super) struct Resume {
    pub token: String,
    pub base: HotBase,
    pub wakers: Wakers,
    /// Unread counts up to this push position are in what the client has.
    pub known_push: i64,
    left_at: Instant,
}

#[derive(Default)]
pub struct ResumeCache(Mutex<HashMap<(OwnedUserId, OwnedDeviceId), Resume>>);

impl ResumeCache {
    /// Leaves what a request knew for the device's next request, continuing from `token`.
    pub(super) fn keep(
        &self,
        device: (OwnedUserId, OwnedDeviceId),
        token: &str,
        base: HotBase,
        wakers: Wakers,
    ) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, resume| resume.left_at.elapsed() < EXPIRY);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let known_push = base.token.push;
        entries.insert(
            device,
            Resume {
                token: token.to_owned(),
                base,
                wakers,
                known_push,
                left_at: Instant::now(),
            },
        );
    }

    /// Takes what the device's last request left, if it continues from exactly `token`.
    pub(super) fn take(
        &self,
        device: &(OwnedUserId, OwnedDeviceId),
        token: &str,
    ) -> Option<Resume> {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let resume = entries.remove(device)?;
        (resume.token == token && resume.left_at.elapsed() < EXPIRY).then_some(resume)
    }
}
