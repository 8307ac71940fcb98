//! Table `registration_tokens`: tokens an admin creates so that people can register while open
//! registration is off.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Result;

/// A registration token, in the shape the admin API serves it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegistrationToken {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    pub expiry_time: Option<i64>,
}

const COLUMNS: &str = "token, uses_allowed, pending, completed, expiry_time";

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RegistrationToken> {
    Ok(RegistrationToken {
        token: row.get(0)?,
        uses_allowed: row.get(1)?,
        pending: row.get(2)?,
        completed: row.get(3)?,
        expiry_time: row.get(4)?,
    })
}

/// Inserts a token; returns false when a token with that text exists.
pub fn insert_token_txn(txn: &Connection, token: &RegistrationToken, now: i64) -> Result<bool> {
    let inserted = txn.execute(
        "INSERT INTO registration_tokens (token, uses_allowed, expiry_time, created_ts)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token) DO NOTHING",
        params![token.token, token.uses_allowed, token.expiry_time, now],
    )?;
    Ok(inserted == 1)
}

pub fn get_token(conn: &Connection, token: &str) -> Result<Option<RegistrationToken>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM registration_tokens WHERE token = ?1"),
            [token],
            token_row,
        )
        .optional()?)
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<RegistrationToken>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM registration_tokens ORDER BY created_ts"
    ))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Changes what an admin may change. Returns the updated token, or None when it does not exist.
pub fn update_token_txn(
    txn: &Connection,
    token: &str,
    uses_allowed: Option<Option<i64>>,
    expiry_time: Option<Option<i64>>,
) -> Result<Option<RegistrationToken>> {
    if let Some(uses) = uses_allowed {
        txn.execute(
            "UPDATE registration_tokens SET uses_allowed = ?2 WHERE token = ?1",
            params![token, uses],
        )?;
    }
    if let Some(expiry) = expiry_time {
        txn.execute(
            "UPDATE registration_tokens SET expiry_time = ?2 WHERE token = ?1",
            params![token, expiry],
        )?;
    }
    get_token(txn, token)
}

pub fn delete_token_txn(txn: &Connection, token: &str) -> Result<bool> {
    Ok(txn.execute("DELETE FROM registration_tokens WHERE token = ?1", [token])? == 1)
}

/// Reserves one use of a valid token for a registration in progress. Returns false when the
/// token does not exist, has expired or has no use left.
pub fn reserve_use_txn(txn: &Connection, token: &str, now: i64) -> Result<bool> {
    let changed = txn.execute(
        "UPDATE registration_tokens SET pending = pending + 1
         WHERE token = ?1
           AND (expiry_time IS NULL OR expiry_time > ?2)
           AND (uses_allowed IS NULL OR pending + completed < uses_allowed)",
        params![token, now],
    )?;
    Ok(changed == 1)
}

/// Turns a reserved use into a completed one, when the registration it was reserved for succeeds.
pub fn complete_use_txn(txn: &Connection, token: &str) -> Result<()> {
    txn.execute(
        "UPDATE registration_tokens SET pending = MAX(pending - 1, 0), completed = completed + 1
         WHERE token = ?1",
        [token],
    )?;
    Ok(())
}

/// Gives back a reserved use whose registration was abandoned.
pub fn release_use_txn(txn: &Connection, token: &str) -> Result<()> {
    txn.execute(
        "UPDATE registration_tokens SET pending = MAX(pending - 1, 0) WHERE token = ?1",
        [token],
    )?;
    Ok(())
}
