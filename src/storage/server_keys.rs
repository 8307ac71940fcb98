//! Tables `server_signing_keys` and `server_key_responses`: other servers' signing keys (each with
//! the time it is valid until, and when it expired if the server retired it) and the freshest key
//! response each server signed, kept verbatim for the notary API.
//!
//! Checking the self-signatures is the caller's work (`federation::keys`); this file only stores
//! what it is given and answers lookups.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// One key of a server, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Unpadded base64.
    pub public_key: String,
    pub valid_until_ts: i64,
    /// Set once the server listed the key under `old_verify_keys`.
    pub expired_ts: Option<i64>,
}

/// A key to store: current (`expired_ts` unset) or retired.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
}

/// A server's key response as it signed it, with when it is valid until and when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub response: String,
    pub valid_until_ts: i64,
    pub fetched_ts: i64,
}

/// Stores the keys of one verified response and keeps the response itself if it is at least as
/// fresh as the one stored. Once a key has expired it stays expired (at the earliest expiry
/// heard), so a stale response cannot revive a retired key; a current key's validity only grows.
pub fn store_server_keys_txn(
    txn: &Connection,
    server_name: &str,
    keys: &[NewKey],
    response: &StoredResponse,
) -> Result<()> {
    let mut upsert = txn.prepare_cached(
        "INSERT INTO server_signing_keys (server_name, key_id, public_key, valid_until_ts, expired_ts)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (server_name, key_id) DO UPDATE SET
             public_key = excluded.public_key,
             valid_until_ts = MAX(valid_until_ts, excluded.valid_until_ts),
             expired_ts = CASE
                 WHEN excluded.expired_ts IS NULL THEN expired_ts
                 WHEN expired_ts IS NULL OR excluded.expired_ts < expired_ts
                     THEN excluded.expired_ts
                 ELSE expired_ts
             END",
    )?;
    for key in keys {
        upsert.execute(params![
            server_name,
            key.key_id,
            key.public_key,
            key.valid_until_ts,
            key.expired_ts
        ])?;
    }
    txn.prepare_cached(
        "INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_ts)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (server_name) DO UPDATE SET
             response = excluded.response,
             valid_until_ts = excluded.valid_until_ts,
             fetched_ts = excluded.fetched_ts
         WHERE excluded.valid_until_ts >= server_key_responses.valid_until_ts",
    )?
    .execute(params![
        server_name,
        response.response,
        response.valid_until_ts,
        response.fetched_ts
    ])?;
    Ok(())
}

/// One key of a server, whether current or expired.
pub fn get_server_key(
    conn: &Connection,
    server_name: &str,
    key_id: &str,
) -> Result<Option<StoredKey>> {
    Ok(conn
        .prepare_cached(
            "SELECT public_key, valid_until_ts, expired_ts FROM server_signing_keys
             WHERE server_name = ?1 AND key_id = ?2",
        )?
        .query_row(params![server_name, key_id], |row| {
            Ok(StoredKey {
                public_key: row.get(0)?,
                valid_until_ts: row.get(1)?,
                expired_ts: row.get(2)?,
            })
        })
        .optional()?)
}

/// The freshest key response stored for a server.
pub fn get_server_key_response(
    conn: &Connection,
    server_name: &str,
) -> Result<Option<StoredResponse>> {
    Ok(conn
        .prepare_cached(
            "SELECT response, valid_until_ts, fetched_ts FROM server_key_responses
             WHERE server_name = ?1",
        )?
        .query_row([server_name], |row| {
            Ok(StoredResponse {
                response: row.get(0)?,
                valid_until_ts: row.get(1)?,
                fetched_ts: row.get(2)?,
            })
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn key(id: &str, valid_until_ts: i64, expired_ts: Option<i64>) -> NewKey {
        NewKey {
            key_id: id.into(),
            public_key: format!("pk-{id}"),
            valid_until_ts,
            expired_ts,
        }
    }

    fn response(text: &str, valid_until_ts: i64) -> StoredResponse {
        StoredResponse {
            response: text.into(),
            valid_until_ts,
            fetched_ts: 1,
        }
    }

    #[test]
    fn keys_and_the_freshest_response_are_kept() {
        let conn = migrated_in_memory();
        store_server_keys_txn(
            &conn,
            "a.test",
            &[key("ed25519:1", 100, None)],
            &response("r1", 100),
        )
        .unwrap();
        store_server_keys_txn(
            &conn,
            "a.test",
            &[key("ed25519:1", 50, None)],
            &response("r0", 50),
        )
        .unwrap();
        let stored = get_server_key(&conn, "a.test", "ed25519:1")
            .unwrap()
            .unwrap();
        assert_eq!(stored.valid_until_ts, 100, "validity never shrinks");
        assert_eq!(stored.expired_ts, None);
        let kept = get_server_key_response(&conn, "a.test").unwrap().unwrap();
        assert_eq!(
            kept.response, "r1",
            "an older response does not replace a fresher one"
        );
        assert_eq!(get_server_key(&conn, "b.test", "ed25519:1").unwrap(), None);
    }

    #[test]
    fn an_expired_key_stays_expired() {
        let conn = migrated_in_memory();
        store_server_keys_txn(
            &conn,
            "a.test",
            &[key("ed25519:1", 100, None)],
            &response("r1", 100),
        )
        .unwrap();
        store_server_keys_txn(
            &conn,
            "a.test",
            &[key("ed25519:1", 80, Some(80)), key("ed25519:2", 200, None)],
            &response("r2", 200),
        )
        .unwrap();
        // A stale response listing the key as current again does not revive it.
        store_server_keys_txn(
            &conn,
            "a.test",
            &[key("ed25519:1", 150, None)],
            &response("r1", 150),
        )
        .unwrap();
        let old = get_server_key(&conn, "a.test", "ed25519:1")
            .unwrap()
            .unwrap();
        assert_eq!(old.expired_ts, Some(80));
        let new = get_server_key(&conn, "a.test", "ed25519:2")
            .unwrap()
            .unwrap();
        assert_eq!(new.expired_ts, None);
        assert_eq!(
            get_server_key_response(&conn, "a.test")
                .unwrap()
                .unwrap()
                .response,
            "r2"
        );
    }
}
