//! Table `dehydrated_devices`: each user's one dehydrated device (MSC3814) and its opaque
//! `device_data`. The device itself is a row of `devices` created here without any token (the
//! trigger `dehydrated_devices_refuse_tokens` keeps it so); deleting that row, by whichever path,
//! deletes this one, the device's keys and its to-device messages.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, now_ms};

/// A user's dehydrated device as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DehydratedDevice {
    pub device_id: String,
    /// The client's JSON object, as it was uploaded.
    pub device_data: String,
}

/// The user's dehydrated device, if any.
pub fn get_dehydrated_device(conn: &Connection, user_id: &str) -> Result<Option<DehydratedDevice>> {
    Ok(conn
        .prepare_cached("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = ?1")?
        .query_row([user_id], |row| {
            Ok(DehydratedDevice {
                device_id: row.get(0)?,
                device_data: row.get(1)?,
            })
        })
        .optional()?)
}

/// Whether the user has a device (dehydrated or not) with this id.
pub fn device_exists(conn: &Connection, user_id: &str, device_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2)",
        )?
        .query_row(params![user_id, device_id], |row| row.get(0))?)
}

/// Creates the device row and records it as the user's dehydrated device. The caller has deleted
/// the previous one (a user has at most one: a second insert fails on the primary key).
pub fn create_dehydrated_device_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
    device_data: &str,
) -> Result<()> {
    let now = now_ms();
    txn.prepare_cached(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, device_id, display_name, now])?;
    txn.prepare_cached(
        "INSERT INTO dehydrated_devices (user_id, device_id, device_data, created_ts)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, device_id, device_data, now])?;
    Ok(())
}

/// Runs `f` inside a nested savepoint that is rolled back when `f` refuses (an inner `Err`), so a
/// write that deletes before it learns of a refusal leaves nothing behind while its caller still
/// gets the refusal (not a storage error) back.
pub fn refusable_txn<T, E>(
    txn: &Connection,
    f: impl FnOnce(&Connection) -> Result<std::result::Result<T, E>>,
) -> Result<std::result::Result<T, E>> {
    txn.execute_batch("SAVEPOINT refusable")?;
    let outcome = f(txn);
    let end = match &outcome {
        Ok(Ok(_)) => "RELEASE refusable",
        _ => "ROLLBACK TO refusable; RELEASE refusable",
    };
    txn.execute_batch(end)?;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn setup() -> Connection {
        let conn = migrated_in_memory();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        conn.execute(
            "INSERT INTO users (user_id, created_ts) VALUES ('@alice:x', 0)",
            [],
        )
        .unwrap();
        conn
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn deleting_the_device_row_deletes_the_dehydrated_device_its_keys_and_messages() {
        let conn = setup();
        create_dehydrated_device_txn(&conn, "@alice:x", "DRY", Some("dry"), r#"{"a":1}"#).unwrap();
        assert_eq!(
            get_dehydrated_device(&conn, "@alice:x").unwrap(),
            Some(DehydratedDevice {
                device_id: "DRY".into(),
                device_data: r#"{"a":1}"#.into()
            })
        );
        assert!(device_exists(&conn, "@alice:x", "DRY").unwrap());
        crate::storage::e2e_keys::set_device_keys_txn(&conn, "@alice:x", "DRY", "{}").unwrap();
        crate::storage::to_device::insert_message_txn(
            &conn, "@alice:x", "DRY", "@bob:x", "m.test", "{}",
        )
        .unwrap();
        // A second dehydrated device needs the first one gone.
        assert!(create_dehydrated_device_txn(&conn, "@alice:x", "WET", None, "{}").is_err());

        conn.execute("DELETE FROM devices WHERE device_id = 'DRY'", [])
            .unwrap();
        assert_eq!(get_dehydrated_device(&conn, "@alice:x").unwrap(), None);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM e2e_device_keys"), 0);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM device_inbox"), 0);
    }

    #[test]
    fn a_dehydrated_device_never_gets_an_access_token() {
        let conn = setup();
        create_dehydrated_device_txn(&conn, "@alice:x", "DRY", None, "{}").unwrap();
        let insert = |device: &str| {
            conn.execute(
                "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts)
                 VALUES (?1, '@alice:x', ?2, 0)",
                params![device.as_bytes(), device],
            )
        };
        assert!(insert("DRY").is_err());
        conn.execute(
            "INSERT INTO devices (user_id, device_id, created_ts) VALUES ('@alice:x', 'PHONE', 0)",
            [],
        )
        .unwrap();
        insert("PHONE").unwrap();
    }

    #[test]
    fn a_refusal_rolls_back_what_the_closure_wrote() {
        let conn = setup();
        conn.execute_batch("BEGIN").unwrap();
        let refused: std::result::Result<(), &str> = refusable_txn(&conn, |txn| {
            create_dehydrated_device_txn(txn, "@alice:x", "DRY", None, "{}")?;
            Ok(Err("no"))
        })
        .unwrap();
        assert_eq!(refused, Err("no"));
        assert_eq!(get_dehydrated_device(&conn, "@alice:x").unwrap(), None);
        let kept: std::result::Result<(), &str> = refusable_txn(&conn, |txn| {
            create_dehydrated_device_txn(txn, "@alice:x", "DRY", None, "{}")?;
            Ok(Ok(()))
        })
        .unwrap();
        assert_eq!(kept, Ok(()));
        conn.execute_batch("COMMIT").unwrap();
        assert!(get_dehydrated_device(&conn, "@alice:x").unwrap().is_some());
    }
}
