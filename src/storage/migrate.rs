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
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(matches!(err, StorageError::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this plexus"));
    }
}
