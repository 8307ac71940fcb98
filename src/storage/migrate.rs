//! Schema migrations: the numbered SQL files of `migrations/`, embedded in the binary and applied
//! in order at start-up. The version reached is kept in `PRAGMA user_version`; a database newer
//! than this binary is refused rather than guessed at.

use rusqlite::Connection;

use super::{Result, StorageError};

/// Every migration, in order. Append only: a released migration never changes.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_create_accounts",
        include_str!("../../migrations/0001_create_accounts.sql"),
    ),
    (
        "0002_create_rooms",
        include_str!("../../migrations/0002_create_rooms.sql"),
    ),
    (
        "0003_create_reports",
        include_str!("../../migrations/0003_create_reports.sql"),
    ),
    (
        "0004_add_room_joined_members",
        include_str!("../../migrations/0004_add_room_joined_members.sql"),
    ),
    (
        "0005_create_filters_and_account_data",
        include_str!("../../migrations/0005_create_filters_and_account_data.sql"),
    ),
    (
        "0006_create_receipts_and_presence",
        include_str!("../../migrations/0006_create_receipts_and_presence.sql"),
    ),
    (
        "0007_create_push_actions",
        include_str!("../../migrations/0007_create_push_actions.sql"),
    ),
    (
        "0008_create_pushers",
        include_str!("../../migrations/0008_create_pushers.sql"),
    ),
    (
        "0009_create_server_keys",
        include_str!("../../migrations/0009_create_server_keys.sql"),
    ),
    (
        "0010_add_push_action_threads",
        include_str!("../../migrations/0010_add_push_action_threads.sql"),
    ),
    (
        "0011_create_openid_tokens",
        include_str!("../../migrations/0011_create_openid_tokens.sql"),
    ),
    (
        "0012_create_federation_queue",
        include_str!("../../migrations/0012_create_federation_queue.sql"),
    ),
    (
        "0013_create_received_transactions",
        include_str!("../../migrations/0013_create_received_transactions.sql"),
    ),
    (
        "0014_create_push_summary",
        include_str!("../../migrations/0014_create_push_summary.sql"),
    ),
    (
        "0015_create_e2e_keys",
        include_str!("../../migrations/0015_create_e2e_keys.sql"),
    ),
    (
        "0016_create_to_device_and_key_backup",
        include_str!("../../migrations/0016_create_to_device_and_key_backup.sql"),
    ),
    (
        "0017_create_media",
        include_str!("../../migrations/0017_create_media.sql"),
    ),
    (
        "0018_create_dehydrated_devices",
        include_str!("../../migrations/0018_create_dehydrated_devices.sql"),
    ),
    (
        "0019_create_appservice_queue",
        include_str!("../../migrations/0019_create_appservice_queue.sql"),
    ),
    (
        "0020_client_txns_and_edges_from_json",
        include_str!("../../migrations/0020_client_txns_and_edges_from_json.sql"),
    ),
    (
        "0021_push_actions_keyed_by_user_and_event",
        include_str!("../../migrations/0021_push_actions_keyed_by_user_and_event.sql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) fn apply(conn: &mut Connection) -> Result<()> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as u32 + 1;
        let txn = conn.transaction()?;
        txn.execute_batch(sql)?;
        txn.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        txn.commit()?;
        tracing::info!(migration = name, version, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    #[test]
    fn migrations_apply_once_and_record_their_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn push_actions_recorded_before_0021_are_kept_under_the_new_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, (_, sql)) in MIGRATIONS.iter().enumerate().take(20) {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO event_push_actions
               (user_id, room_id, event_nid, highlight, actions, thread_id)
             VALUES ('@bob:x', '!a:x', 7, 1, '[\"notify\"]', '$root'),
                    ('@bob:x', '!b:x', 9, 0, '[\"notify\"]', 'main')",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let rows: Vec<(i64, String, bool, String)> = conn
            .prepare(
                "SELECT event_nid, room_id, highlight, thread_id FROM event_push_actions
                 WHERE user_id = '@bob:x' ORDER BY event_nid",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (7, "!a:x".to_owned(), true, "$root".to_owned()),
                (9, "!b:x".to_owned(), false, "main".to_owned())
            ]
        );
        let index: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE name = 'event_push_actions_by_user'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        assert_eq!(index, None, "the second b-tree is gone");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(matches!(err, StorageError::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this plexus"));
    }
}
