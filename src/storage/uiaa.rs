//! Table `uiaa_sessions`: the state of user-interactive authentication sessions.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value as JsonValue};

use super::{Result, now_ms};

#[derive(Debug, Clone)]
pub struct UiaaSessionRow {
    pub purpose: String,
    pub user_id: Option<String>,
    pub completed: Vec<String>,
    pub params: Map<String, JsonValue>,
    pub created_ts: i64,
}

pub fn insert_session_txn(
    txn: &Connection,
    session_id: &str,
    purpose: &str,
    user_id: Option<&str>,
) -> Result<()> {
    txn.execute(
        "INSERT INTO uiaa_sessions (session_id, purpose, user_id, created_ts) VALUES (?1, ?2, ?3, ?4)",
        params![session_id, purpose, user_id, now_ms()],
    )?;
    Ok(())
}

pub fn get_session(conn: &Connection, session_id: &str) -> Result<Option<UiaaSessionRow>> {
    let row: Option<(String, Option<String>, String, String, i64)> = conn
        .query_row(
            "SELECT purpose, user_id, completed, params, created_ts FROM uiaa_sessions
             WHERE session_id = ?1",
            [session_id],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .optional()?;
    row.map(|(purpose, user_id, completed, params, created_ts)| {
        Ok(UiaaSessionRow {
            purpose,
            user_id,
            completed: serde_json::from_str(&completed)?,
            params: serde_json::from_str(&params)?,
            created_ts,
        })
    })
    .transpose()
}

pub fn update_session_txn(
    txn: &Connection,
    session_id: &str,
    completed: &[String],
    params: &Map<String, JsonValue>,
) -> Result<()> {
    txn.execute(
        "UPDATE uiaa_sessions SET completed = ?2, params = ?3 WHERE session_id = ?1",
        params![
            session_id,
            serde_json::to_string(completed)?,
            serde_json::to_string(params)?
        ],
    )?;
    Ok(())
}

pub fn delete_session_txn(txn: &Connection, session_id: &str) -> Result<()> {
    txn.execute(
        "DELETE FROM uiaa_sessions WHERE session_id = ?1",
        [session_id],
    )?;
    Ok(())
}

/// Removes sessions created before `cutoff_ts`, returning the `params` of each so the caller can
/// release what they held (a reserved registration token use).
pub fn delete_sessions_before_txn(
    txn: &Connection,
    cutoff_ts: i64,
) -> Result<Vec<Map<String, JsonValue>>> {
    let mut stmt =
        txn.prepare_cached("DELETE FROM uiaa_sessions WHERE created_ts < ?1 RETURNING params")?;
    let rows = stmt.query_map([cutoff_ts], |row| row.get::<_, String>(0))?;
    rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
}
