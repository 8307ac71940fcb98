//! The client transaction ids of the last day's sends, indexed in memory: which event a device
//! sent into a room with a given transaction id, so that a retried `PUT /send/{txnId}` or
//! `/redact/{eventId}/{txnId}` answers with the first event instead of sending another.
//!
//! An index over every event in SQLite put a random page of a b-tree with long text keys into
//! every commit. Here the index maps a keyed hash of (room, sender, device, txn id) to the event's
//! stream ordering; a hit is confirmed against the event row, which keeps the transaction id, so
//! a hash collision can never answer with another client's event. The index is rebuilt on first
//! use from `client_txns`, the append-only list of events sent with an id, and an event joins it
//! once committed. Sends still in flight are the room head's concern (`rooms::head`).
//!
//! Ids are kept for a day, as Synapse does and as `/sendToDevice` ids are kept here: a client
//! retries within minutes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use ruma::{EventId, OwnedEventId, RoomId, UserId};

use super::Result;
use crate::storage::state::EventNid;
use crate::storage::{self, Db, client_txns::SentWithTxn};

/// How long a send's transaction id is remembered.
const KEPT_MS: i64 = 24 * 60 * 60 * 1000;
/// Ids forgotten in memory before their rows are deleted from `client_txns` in one write.
const FORGET_BATCH: usize = 1_000;

/// Who sent what with which transaction id.
#[derive(Debug, Clone, Copy)]
pub struct TxnKey<'a> {
    pub room_id: &'a str,
    pub sender: &'a str,
    pub device_id: &'a str,
    pub txn_id: &'a str,
}

impl<'a> TxnKey<'a> {
    /// The key of a local user's send with a transaction id.
    pub fn new(
        room_id: &'a RoomId,
        sender: &'a UserId,
        device_id: &'a str,
        txn_id: &'a str,
    ) -> Self {
        TxnKey {
            room_id: room_id.as_str(),
            sender: sender.as_str(),
            device_id,
            txn_id,
        }
    }
}

pub struct ClientTxns {
    db: Db,
    index: tokio::sync::OnceCell<Mutex<Index>>,
}

struct Index {
    hasher: RandomState,
    by_key: HashMap<u64, EventNid>,
    /// (when sent, key hash, event) in the order the sends committed, for forgetting the oldest.
    order: VecDeque<(i64, u64, EventNid)>,
    /// Ids forgotten in memory since `client_txns` was last trimmed.
    forgotten: usize,
}

impl Index {
    fn hash(&self, key: TxnKey<'_>) -> u64 {
        self.hasher
            .hash_one((key.room_id, key.sender, key.device_id, key.txn_id))
    }

    fn insert(&mut self, key: TxnKey<'_>, nid: EventNid, created_ms: i64) {
        let hash = self.hash(key);
        self.by_key.insert(hash, nid);
        self.order.push_back((created_ms, hash, nid));
    }

    /// Forgets the ids sent before `before_ms`; true when `client_txns` is due a trim.
    fn forget_before(&mut self, before_ms: i64) -> bool {
        while let Some(&(created, hash, nid)) = self.order.front() {
            if created >= before_ms {
                break;
            }
            self.order.pop_front();
            if self.by_key.get(&hash) == Some(&nid) {
                self.by_key.remove(&hash);
            }
            self.forgotten += 1;
        }
        if self.forgotten >= FORGET_BATCH {
            self.forgotten = 0;
            return true;
        }
        false
    }
}

impl ClientTxns {
    pub fn new(db: Db) -> ClientTxns {
        ClientTxns {
            db,
            index: tokio::sync::OnceCell::new(),
        }
    }

    /// The event `key` names, when it was committed within the last day.
    pub async fn find(&self, key: TxnKey<'_>) -> Result<Option<OwnedEventId>> {
        let nid = {
            let index = self.index().await?.lock().expect("txn index lock");
            index.by_key.get(&index.hash(key)).copied()
        };
        let Some(nid) = nid else {
            return Ok(None);
        };
        let (room, sender, device, txn) = (
            key.room_id.to_owned(),
            key.sender.to_owned(),
            key.device_id.to_owned(),
            key.txn_id.to_owned(),
        );
        let event_id = self
            .db
            .read_small(move |c| {
                storage::client_txns::event_sent_with(c, nid, &room, &sender, &device, &txn)
            })
            .await?;
        Ok(event_id.and_then(|id| EventId::parse(id).ok()))
    }

    /// Adds a committed send, and forgets those older than a day.
    pub async fn remember(&self, key: TxnKey<'_>, nid: EventNid) -> Result<()> {
        let now = storage::now_ms();
        let trim = {
            let mut index = self.index().await?.lock().expect("txn index lock");
            index.insert(key, nid, now);
            index.forget_before(now - KEPT_MS)
        };
        if trim {
            let db = self.db.clone();
            tokio::spawn(async move {
                let forgotten = db.write("forget_client_txns", move |t| {
                    storage::client_txns::forget_before_txn(t, now - KEPT_MS)
                });
                if let Err(e) = forgotten.await {
                    tracing::warn!(error = %e, "old client transaction ids not deleted");
                }
            });
        }
        Ok(())
    }

    /// The index, built from the database on first use (after deleting the expired rows).
    async fn index(&self) -> Result<&Mutex<Index>> {
        self.index
            .get_or_try_init(|| async {
                let since = storage::now_ms() - KEPT_MS;
                self.db
                    .write("forget_client_txns", move |t| {
                        storage::client_txns::forget_before_txn(t, since)
                    })
                    .await?;
                let sent = self
                    .db
                    .read(move |c| storage::client_txns::sent_since(c, since))
                    .await?;
                Ok(Mutex::new(index_of(&sent)))
            })
            .await
    }
}

fn index_of(sent: &[SentWithTxn]) -> Index {
    let mut index = Index {
        hasher: RandomState::new(),
        by_key: HashMap::with_capacity(sent.len()),
        order: VecDeque::with_capacity(sent.len()),
        forgotten: 0,
    };
    for s in sent {
        let key = TxnKey {
            room_id: &s.room_id,
            sender: &s.sender,
            device_id: &s.device_id,
            txn_id: &s.txn_id,
        };
        index.insert(key, s.nid, s.created_ts);
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(txn_id: &str) -> TxnKey<'_> {
        TxnKey {
            room_id: "!r:x",
            sender: "@a:x",
            device_id: "DEV",
            txn_id,
        }
    }

    #[test]
    fn ids_older_than_a_day_are_forgotten_and_trimmed_in_batches() {
        let mut index = index_of(&[]);
        let day = KEPT_MS;
        for n in 0..FORGET_BATCH as i64 + 10 {
            index.insert(key(&format!("t{n}")), n, n);
        }
        assert_eq!(index.by_key.get(&index.hash(key("t5"))), Some(&5));
        // Nothing is older than a day yet.
        assert!(!index.forget_before(0));
        // The first 500 expire: forgotten in memory, too few to trim the table for.
        assert!(!index.forget_before(500));
        assert_eq!(index.by_key.get(&index.hash(key("t5"))), None);
        assert_eq!(index.by_key.get(&index.hash(key("t500"))), Some(&500));
        // Past the batch size the table is due a trim, once.
        assert!(index.forget_before(FORGET_BATCH as i64 + 1));
        assert!(!index.forget_before(FORGET_BATCH as i64 + 1));
        assert_eq!(index.order.len(), 9);
        // An id sent again later (a new event) is not forgotten with its older namesake.
        index.insert(key("t1009"), 5_000, day);
        assert!(!index.forget_before(FORGET_BATCH as i64 + 10));
        assert_eq!(index.by_key.get(&index.hash(key("t1009"))), Some(&5_000));
    }

    #[test]
    fn keys_differing_in_any_part_hash_apart() {
        let index = index_of(&[]);
        let base = key("t");
        let others = [
            TxnKey {
                room_id: "!s:x",
                ..base
            },
            TxnKey {
                sender: "@b:x",
                ..base
            },
            TxnKey {
                device_id: "OTHER",
                ..base
            },
            TxnKey {
                txn_id: "u",
                ..base
            },
            // Boundaries between the parts count: "DEV"+"t" is not "DE"+"Vt".
            TxnKey {
                device_id: "DE",
                txn_id: "Vt",
                ..base
            },
        ];
        for other in others {
            assert_ne!(index.hash(base), index.hash(other), "{other:?}");
        }
    }
}
