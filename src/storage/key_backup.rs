//! Tables `key_backup_versions` and `key_backup_keys`: users' server-side key backups. Versions are
//! numbered per user from 1 and never reused; a deleted version keeps its row, marked deleted,
//! without keys. Each version's `etag` counts the changes to its keys.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as JsonValue;

use super::Result;

/// A backup version as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: JsonValue,
    pub etag: i64,
    pub deleted: bool,
}

/// One backed-up room key.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupKey {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: JsonValue,
}

/// Creates the next version of the user's backup, which becomes the current one, and returns its
/// number.
pub fn create_version_txn(
    txn: &Connection,
    user_id: &str,
    algorithm: &str,
    auth_data: &JsonValue,
) -> Result<i64> {
    let version: i64 = txn
        .prepare_cached(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM key_backup_versions WHERE user_id = ?1",
        )?
        .query_row([user_id], |row| row.get(0))?;
    txn.prepare_cached(
        "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, version, algorithm, auth_data.to_string()])?;
    Ok(version)
}

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, i64, bool)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn parse_version(
    (version, algorithm, auth_data, etag, deleted): (i64, String, String, i64, bool),
) -> Result<BackupVersion> {
    Ok(BackupVersion {
        version,
        algorithm,
        auth_data: serde_json::from_str(&auth_data)?,
        etag,
        deleted,
    })
}

/// One version of the user's backup, deleted or not.
pub fn get_version(
    conn: &Connection,
    user_id: &str,
    version: i64,
) -> Result<Option<BackupVersion>> {
    conn.prepare_cached(
        "SELECT version, algorithm, auth_data, etag, deleted FROM key_backup_versions
         WHERE user_id = ?1 AND version = ?2",
    )?
    .query_row(params![user_id, version], version_from_row)
    .optional()?
    .map(parse_version)
    .transpose()
}

/// The current version of the user's backup: the latest one not deleted.
pub fn current_version(conn: &Connection, user_id: &str) -> Result<Option<BackupVersion>> {
    conn.prepare_cached(
        "SELECT version, algorithm, auth_data, etag, deleted FROM key_backup_versions
         WHERE user_id = ?1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
    )?
    .query_row([user_id], version_from_row)
    .optional()?
    .map(parse_version)
    .transpose()
}

/// Replaces the `auth_data` of a version.
pub fn set_auth_data_txn(
    txn: &Connection,
    user_id: &str,
    version: i64,
    auth_data: &JsonValue,
) -> Result<()> {
    txn.prepare_cached(
        "UPDATE key_backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2",
    )?
    .execute(params![user_id, version, auth_data.to_string()])?;
    Ok(())
}

/// Marks a version deleted and deletes its keys.
pub fn delete_version_txn(txn: &Connection, user_id: &str, version: i64) -> Result<()> {
    txn.prepare_cached("DELETE FROM key_backup_keys WHERE user_id = ?1 AND version = ?2")?
        .execute(params![user_id, version])?;
    txn.prepare_cached(
        "UPDATE key_backup_versions SET deleted = 1, etag = etag + 1
         WHERE user_id = ?1 AND version = ?2",
    )?
    .execute(params![user_id, version])?;
    Ok(())
}

/// Counts one more change to a version's keys.
pub fn bump_etag_txn(txn: &Connection, user_id: &str, version: i64) -> Result<()> {
    txn.prepare_cached(
        "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
    )?
    .execute(params![user_id, version])?;
    Ok(())
}

/// How many keys a version holds.
pub fn count_keys(conn: &Connection, user_id: &str, version: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM key_backup_keys WHERE user_id = ?1 AND version = ?2")?
        .query_row(params![user_id, version], |row| row.get(0))?)
}

/// The keys of a version, all or of one room or of one session, ordered by room and session.
pub fn get_keys(
    conn: &Connection,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<BackupKey>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,
                session_data
         FROM key_backup_keys
         WHERE user_id = ?1 AND version = ?2
           AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
         ORDER BY room_id, session_id",
    )?;
    let rows = stmt.query_map(params![user_id, version, room_id, session_id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, bool>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    rows.map(|row| {
        let (room_id, session_id, first_message_index, forwarded_count, is_verified, data) = row?;
        Ok(BackupKey {
            room_id,
            session_id,
            first_message_index,
            forwarded_count,
            is_verified,
            session_data: serde_json::from_str(&data)?,
        })
    })
    .collect()
}

/// Stores a key, replacing the one of the same session if there is one.
pub fn put_key_txn(txn: &Connection, user_id: &str, version: i64, key: &BackupKey) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index,
                                      forwarded_count, is_verified, session_data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
             first_message_index = excluded.first_message_index,
             forwarded_count = excluded.forwarded_count,
             is_verified = excluded.is_verified,
             session_data = excluded.session_data",
    )?
    .execute(params![
        user_id,
        version,
        key.room_id,
        key.session_id,
        key.first_message_index,
        key.forwarded_count,
        key.is_verified,
        key.session_data.to_string()
    ])?;
    Ok(())
}

/// Deletes the keys of a version, all or of one room or of one session; returns how many.
pub fn delete_keys_txn(
    txn: &Connection,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<usize> {
    Ok(txn
        .prepare_cached(
            "DELETE FROM key_backup_keys
             WHERE user_id = ?1 AND version = ?2
               AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
        )?
        .execute(params![user_id, version, room_id, session_id])?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::migrated_in_memory;

    fn key(room: &str, session: &str, index: i64) -> BackupKey {
        BackupKey {
            room_id: room.into(),
            session_id: session.into(),
            first_message_index: index,
            forwarded_count: 0,
            is_verified: false,
            session_data: json!({"ciphertext": "c"}),
        }
    }

    #[test]
    fn versions_count_up_and_deleted_ones_keep_their_number_but_lose_their_keys() {
        let conn = migrated_in_memory();
        conn.execute(
            "INSERT INTO users (user_id, created_ts) VALUES ('@a:x', 0)",
            [],
        )
        .unwrap();
        assert!(current_version(&conn, "@a:x").unwrap().is_none());
        let one = create_version_txn(&conn, "@a:x", "alg", &json!({"k": 1})).unwrap();
        let two = create_version_txn(&conn, "@a:x", "alg", &json!({"k": 2})).unwrap();
        assert_eq!((one, two), (1, 2));
        assert_eq!(current_version(&conn, "@a:x").unwrap().unwrap().version, 2);

        put_key_txn(&conn, "@a:x", 2, &key("!r:x", "s1", 0)).unwrap();
        put_key_txn(&conn, "@a:x", 2, &key("!r:x", "s2", 0)).unwrap();
        put_key_txn(&conn, "@a:x", 2, &key("!q:x", "s1", 0)).unwrap();
        put_key_txn(&conn, "@a:x", 2, &key("!r:x", "s1", 5)).unwrap();
        assert_eq!(count_keys(&conn, "@a:x", 2).unwrap(), 3);
        let room = get_keys(&conn, "@a:x", 2, Some("!r:x"), None).unwrap();
        assert_eq!(room.len(), 2);
        assert_eq!(room[0].first_message_index, 5);
        assert_eq!(
            get_keys(&conn, "@a:x", 2, Some("!r:x"), Some("s2"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            delete_keys_txn(&conn, "@a:x", 2, Some("!q:x"), None).unwrap(),
            1
        );

        delete_version_txn(&conn, "@a:x", 2).unwrap();
        assert_eq!(count_keys(&conn, "@a:x", 2).unwrap(), 0);
        assert!(get_version(&conn, "@a:x", 2).unwrap().unwrap().deleted);
        assert_eq!(current_version(&conn, "@a:x").unwrap().unwrap().version, 1);
        assert_eq!(
            create_version_txn(&conn, "@a:x", "alg", &json!({})).unwrap(),
            3
        );
    }
}
