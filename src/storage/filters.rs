//! Table `filters`: the filter definitions users uploaded, by user and per-user numeric id.

use ruma::UserId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, now_ms};

/// Stores `definition` (JSON) for `user_id` and returns its id. Clients tend to upload the same
/// filter at every start; an identical definition gets its earlier id back instead of a new row,
/// so the table grows with the filters a user really has.
pub fn insert_filter_txn(txn: &Connection, user_id: &UserId, definition: &str) -> Result<i64> {
    let existing: Option<i64> = txn
        .query_row(
            "SELECT filter_id FROM filters WHERE user_id = ?1 AND definition = ?2",
            params![user_id.as_str(), definition],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(filter_id) = existing {
        return Ok(filter_id);
    }
    let filter_id: i64 = txn.query_row(
        "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
        [user_id.as_str()],
        |row| row.get(0),
    )?;
    txn.execute(
        "INSERT INTO filters (user_id, filter_id, definition, created_ts) VALUES (?1, ?2, ?3, ?4)",
        params![user_id.as_str(), filter_id, definition, now_ms()],
    )?;
    Ok(filter_id)
}

/// The stored definition (JSON) of one filter of `user_id`.
pub fn get_filter(conn: &Connection, user_id: &UserId, filter_id: i64) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT definition FROM filters WHERE user_id = ?1 AND filter_id = ?2",
            params![user_id.as_str(), filter_id],
            |row| row.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{migrated_in_memory, users};

    #[test]
    fn ids_count_up_per_user_and_identical_filters_share_one() {
        let conn = migrated_in_memory();
        let alice: &UserId = "@alice:x".try_into().unwrap();
        let bob: &UserId = "@bob:x".try_into().unwrap();
        users::insert_user_txn(&conn, alice, None, false).unwrap();
        users::insert_user_txn(&conn, bob, None, false).unwrap();

        assert_eq!(insert_filter_txn(&conn, alice, "{}").unwrap(), 0);
        assert_eq!(insert_filter_txn(&conn, alice, r#"{"a":1}"#).unwrap(), 1);
        assert_eq!(insert_filter_txn(&conn, alice, "{}").unwrap(), 0);
        assert_eq!(insert_filter_txn(&conn, bob, r#"{"a":1}"#).unwrap(), 0);

        assert_eq!(
            get_filter(&conn, alice, 1).unwrap().as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(get_filter(&conn, bob, 1).unwrap(), None);
    }
}
