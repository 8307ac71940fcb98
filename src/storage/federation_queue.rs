//! The federation outbox's tables (`federation_queue`, `federation_destinations`,
//! `federation_outbox_position`): PDUs and EDUs waiting for each destination server, the
//! transactions they are grouped into, each failing destination's back-off, and how far the
//! outbox has read the event stream. Which events go where, and when to send, is the service's
//! concern (`service/outbox/federation.rs`).

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::state::EventNid;

/// A transaction for one destination: its id and the PDUs (stored federation JSON) and EDUs
/// (`{"edu_type", "content"}` JSON) it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub txn_id: String,
    pub pdus: Vec<String>,
    pub edus: Vec<String>,
}

/// The stream ordering of the last event the outbox has handled.
pub fn outbox_position(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT stream_ordering FROM federation_outbox_position WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Queues the PDUs `(destination, event)` and moves the outbox's position to `position`, in one
/// transaction.
pub fn enqueue_pdus_txn(
    txn: &Connection,
    entries: &[(String, EventNid)],
    position: i64,
) -> Result<()> {
    let mut insert = txn
        .prepare_cached("INSERT INTO federation_queue (destination, event_nid) VALUES (?1, ?2)")?;
    for (destination, nid) in entries {
        insert.execute(params![destination, nid])?;
    }
    txn.prepare_cached(
        "INSERT INTO federation_outbox_position (id, stream_ordering) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET stream_ordering = MAX(stream_ordering, excluded.stream_ordering)",
    )?
    .execute([position])?;
    Ok(())
}

/// Queues one PDU for each destination.
pub fn enqueue_pdu_txn(txn: &Connection, destinations: &[String], nid: EventNid) -> Result<()> {
    let mut insert = txn
        .prepare_cached("INSERT INTO federation_queue (destination, event_nid) VALUES (?1, ?2)")?;
    for destination in destinations {
        insert.execute(params![destination, nid])?;
    }
    Ok(())
}

/// Queues one EDU (`{"edu_type", "content"}` JSON) for each destination.
pub fn enqueue_edu_txn(txn: &Connection, destinations: &[String], edu: &str) -> Result<()> {
    let mut insert =
        txn.prepare_cached("INSERT INTO federation_queue (destination, edu) VALUES (?1, ?2)")?;
    for destination in destinations {
        insert.execute(params![destination, edu])?;
    }
    Ok(())
}

/// Every destination with queued entries, with the time its back-off ends (`None`: not backing
/// off).
pub fn pending_destinations(conn: &Connection) -> Result<Vec<(String, Option<i64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.destination, d.retry_ts
         FROM (SELECT DISTINCT destination FROM federation_queue) q
         LEFT JOIN federation_destinations d ON d.destination = q.destination
         ORDER BY q.destination",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The transaction to send to `destination` next: the one already made and not yet accepted
/// (so a retry repeats it exactly), else a new one of up to `max_pdus` PDUs and `max_edus` EDUs
/// in queue order, whose id is made from its first entry (never reused: the queue's ids only
/// grow) and `now_ms` (so a fresh database does not reuse the ids of an old one). `None` when
/// nothing is queued.
pub fn next_transaction_txn(
    txn: &Connection,
    destination: &str,
    max_pdus: usize,
    max_edus: usize,
    now_ms: i64,
) -> Result<Option<Transaction>> {
    let open: Option<String> = txn
        .prepare_cached(
            "SELECT txn_id FROM federation_queue
             WHERE destination = ?1 AND txn_id IS NOT NULL ORDER BY id LIMIT 1",
        )?
        .query_row([destination], |r| r.get(0))
        .optional()?;
    let txn_id = match open {
        Some(txn_id) => txn_id,
        None => {
            let first: Option<i64> = txn
                .prepare_cached(
                    "SELECT MIN(id) FROM federation_queue WHERE destination = ?1 AND txn_id IS NULL",
                )?
                .query_row([destination], |r| r.get(0))?;
            let Some(first) = first else {
                return Ok(None);
            };
            let txn_id = format!("{first}.{now_ms}");
            for (column, limit) in [("event_nid", max_pdus), ("edu", max_edus)] {
                txn.prepare_cached(&format!(
                    "UPDATE federation_queue SET txn_id = ?2 WHERE id IN (
                         SELECT id FROM federation_queue
                         WHERE destination = ?1 AND txn_id IS NULL AND {column} IS NOT NULL
                         ORDER BY id LIMIT ?3)"
                ))?
                .execute(params![destination, txn_id, limit as i64])?;
            }
            txn_id
        }
    };
    let pdus = txn
        .prepare_cached(
            "SELECT e.json FROM federation_queue q JOIN events e ON e.stream_ordering = q.event_nid
             WHERE q.destination = ?1 AND q.txn_id = ?2 ORDER BY q.id",
        )?
        .query_map(params![destination, txn_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let edus = txn
        .prepare_cached(
            "SELECT edu FROM federation_queue
             WHERE destination = ?1 AND txn_id = ?2 AND edu IS NOT NULL ORDER BY id",
        )?
        .query_map(params![destination, txn_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(Some(Transaction { txn_id, pdus, edus }))
}

/// The destination accepted transaction `txn_id`: its entries go, and so does any back-off.
pub fn complete_transaction_txn(txn: &Connection, destination: &str, txn_id: &str) -> Result<()> {
    txn.prepare_cached("DELETE FROM federation_queue WHERE destination = ?1 AND txn_id = ?2")?
        .execute(params![destination, txn_id])?;
    txn.prepare_cached("DELETE FROM federation_destinations WHERE destination = ?1")?
        .execute([destination])?;
    Ok(())
}

/// Records one more failure in a row for `destination`; returns how many there have been now.
/// The caller then sets the back-off with [`set_retry_txn`].
pub fn record_failure_txn(txn: &Connection, destination: &str) -> Result<i64> {
    Ok(txn
        .prepare_cached(
            "INSERT INTO federation_destinations (destination, failures) VALUES (?1, 1)
             ON CONFLICT (destination) DO UPDATE SET failures = failures + 1
             RETURNING failures",
        )?
        .query_row([destination], |r| r.get(0))?)
}

/// Ends `destination`'s back-off: it is tried at once, and its next failure counts as the first.
pub fn clear_backoff_txn(txn: &Connection, destination: &str) -> Result<()> {
    txn.prepare_cached(
        "UPDATE federation_destinations SET retry_ts = NULL, failures = 0 WHERE destination = ?1",
    )?
    .execute([destination])?;
    Ok(())
}

/// The time (ms since the epoch) before which `destination` is not tried again.
pub fn set_retry_txn(txn: &Connection, destination: &str, retry_ts: i64) -> Result<()> {
    txn.prepare_cached("UPDATE federation_destinations SET retry_ts = ?2 WHERE destination = ?1")?
        .execute(params![destination, retry_ts])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(conn: &Connection, nid: i64, json: &str) {
        if nid == 1 {
            crate::storage::events::insert_room_txn(conn, "!r:hs1", "11", "@a:hs1", 0).unwrap();
        }
        conn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, depth,
                                 origin_server_ts, json)
             VALUES (?1, ?2, '!r:hs1', '@a:hs1', 'm.room.message', 1, 0, ?3)",
            params![nid, format!("$e{nid}"), json],
        )
        .unwrap();
    }

    #[test]
    fn transactions_are_repeated_until_accepted_and_then_removed() {
        let conn = crate::storage::migrated_in_memory();
        for nid in 1..=3 {
            event(&conn, nid, &format!("{{\"n\":{nid}}}"));
        }
        assert_eq!(outbox_position(&conn).unwrap(), 0);
        let entries: Vec<(String, i64)> = (1..=3).map(|n| ("hs2".to_string(), n)).collect();
        enqueue_pdus_txn(&conn, &entries, 3).unwrap();
        assert_eq!(outbox_position(&conn).unwrap(), 3);
        enqueue_edu_txn(&conn, &["hs2".into(), "hs3".into()], "{\"edu_type\":\"x\"}").unwrap();

        let first = next_transaction_txn(&conn, "hs2", 2, 100, 7)
            .unwrap()
            .unwrap();
        assert_eq!(first.pdus, ["{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(first.edus, ["{\"edu_type\":\"x\"}"]);
        // Until accepted, the same transaction comes back.
        let again = next_transaction_txn(&conn, "hs2", 2, 100, 8)
            .unwrap()
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(record_failure_txn(&conn, "hs2").unwrap(), 1);
        assert_eq!(record_failure_txn(&conn, "hs2").unwrap(), 2);
        set_retry_txn(&conn, "hs2", 99).unwrap();
        let pending = pending_destinations(&conn).unwrap();
        assert_eq!(pending, [("hs2".into(), Some(99)), ("hs3".into(), None)]);

        complete_transaction_txn(&conn, "hs2", &first.txn_id).unwrap();
        let second = next_transaction_txn(&conn, "hs2", 2, 100, 9)
            .unwrap()
            .unwrap();
        assert_ne!(second.txn_id, first.txn_id);
        assert_eq!(second.pdus, ["{\"n\":3}"]);
        assert!(second.edus.is_empty());
        complete_transaction_txn(&conn, "hs2", &second.txn_id).unwrap();
        assert_eq!(
            next_transaction_txn(&conn, "hs2", 2, 100, 10).unwrap(),
            None
        );
        assert_eq!(pending_destinations(&conn).unwrap(), [("hs3".into(), None)]);
    }

    #[test]
    fn events_after_a_position_come_in_stream_order() {
        let conn = crate::storage::migrated_in_memory();
        for nid in 1..=3 {
            event(&conn, nid, "{}");
        }
        let events = crate::storage::event_stream::events_after(&conn, 1, 10).unwrap();
        assert_eq!(events.iter().map(|e| e.nid).collect::<Vec<_>>(), [2, 3]);
        assert!(events.iter().all(|e| e.sendable() && e.sender == "@a:hs1"));
    }
}
