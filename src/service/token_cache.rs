//! An in-memory cache of authenticated access tokens, so that a request normally costs no
//! database read to authenticate. Entries hold the token's hash, identity, expiry and last-seen
//! time. Every change that revokes tokens clears the cache after it has committed, and a lookup
//! that raced with such a change cannot put a stale entry back: entries are only stored under the
//! generation observed before the database was read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::UserSession;

/// More distinct tokens than this in use at once empties the cache instead of growing it.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct CachedToken {
    pub session: UserSession,
    pub expires_ts: Option<i64>,
    pub last_seen_ts: Option<i64>,
}

#[derive(Default)]
pub struct TokenCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<Vec<u8>, CachedToken>>,
}

impl TokenCache {
    pub fn get(&self, hash: &[u8]) -> Option<CachedToken> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
    }

    /// The generation to pass to `insert` for a lookup about to read the database.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Stores an entry read from the database, unless tokens were revoked since `generation`.
    pub fn insert(&self, generation: u64, hash: Vec<u8>, entry: CachedToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, entry);
    }

    pub fn set_last_seen(&self, hash: &[u8], ts: i64) {
        if let Some(entry) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(hash)
        {
            entry.last_seen_ts = Some(ts);
        }
    }

    /// Forgets everything; called after any write that revokes tokens has committed.
    pub fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}
