//! Tables `users` and `profile_fields`: accounts, their password hashes and profile fields.

use ruma::UserId;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as JsonValue;

use super::{Result, now_ms};

/// An account as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
}

/// Inserts a new account. Returns false, writing nothing, when the user id is taken.
pub fn insert_user_txn(
    txn: &Connection,
    user_id: &UserId,
    password_hash: Option<&str>,
    is_admin: bool,
) -> Result<bool> {
    let inserted = txn.execute(
        "INSERT INTO users (user_id, password_hash, is_admin, created_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO NOTHING",
        params![user_id.as_str(), password_hash, is_admin, now_ms()],
    )?;
    Ok(inserted == 1)
}

pub fn get_user(conn: &Connection, user_id: &UserId) -> Result<Option<UserRow>> {
    Ok(conn
        .query_row(
            "SELECT password_hash, is_admin, deactivated FROM users WHERE user_id = ?1",
            [user_id.as_str()],
            |row| {
                Ok(UserRow {
                    password_hash: row.get(0)?,
                    is_admin: row.get(1)?,
                    deactivated: row.get(2)?,
                })
            },
        )
        .optional()?)
}

/// How many accounts exist; used to pick the next numeric localpart.
pub fn count_users(conn: &Connection) -> Result<u64> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |row| row.get(0))?;
    Ok(count.max(0) as u64)
}

pub fn set_password_hash_txn(txn: &Connection, user_id: &UserId, hash: &str) -> Result<()> {
    txn.execute(
        "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
        params![user_id.as_str(), hash],
    )?;
    Ok(())
}

pub fn set_admin_txn(txn: &Connection, user_id: &UserId, is_admin: bool) -> Result<()> {
    txn.execute(
        "UPDATE users SET is_admin = ?2 WHERE user_id = ?1",
        params![user_id.as_str(), is_admin],
    )?;
    Ok(())
}

/// Marks the account deactivated. The row stays, so the user id can never be registered again;
/// the password hash is kept unless `erase` so that a login attempt can say the account is
/// deactivated rather than that the password is wrong.
pub fn deactivate_user_txn(txn: &Connection, user_id: &UserId, erase: bool) -> Result<()> {
    txn.execute(
        "UPDATE users SET deactivated = 1,
             password_hash = CASE WHEN ?2 THEN NULL ELSE password_hash END
         WHERE user_id = ?1",
        params![user_id.as_str(), erase],
    )?;
    Ok(())
}

/// Every profile field of a user, as (field, JSON value) pairs.
pub fn get_profile(conn: &Connection, user_id: &UserId) -> Result<Vec<(String, JsonValue)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT field, value FROM profile_fields WHERE user_id = ?1 ORDER BY field",
    )?;
    let rows = stmt.query_map([user_id.as_str()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (field, value) = row?;
        Ok((field, serde_json::from_str(&value)?))
    })
    .collect()
}

pub fn get_profile_field(
    conn: &Connection,
    user_id: &UserId,
    field: &str,
) -> Result<Option<JsonValue>> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM profile_fields WHERE user_id = ?1 AND field = ?2",
            params![user_id.as_str(), field],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value.map(|v| serde_json::from_str(&v)).transpose()?)
}

pub fn set_profile_field_txn(
    txn: &Connection,
    user_id: &UserId,
    field: &str,
    value: &JsonValue,
) -> Result<()> {
    txn.execute(
        "INSERT INTO profile_fields (user_id, field, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
        params![user_id.as_str(), field, value.to_string()],
    )?;
    Ok(())
}

pub fn delete_profile_field_txn(txn: &Connection, user_id: &UserId, field: &str) -> Result<()> {
    txn.execute(
        "DELETE FROM profile_fields WHERE user_id = ?1 AND field = ?2",
        params![user_id.as_str(), field],
    )?;
    Ok(())
}

/// Removes every profile field (used when an account is deactivated with erasure).
pub fn delete_profile_txn(txn: &Connection, user_id: &UserId) -> Result<()> {
    txn.execute(
        "DELETE FROM profile_fields WHERE user_id = ?1",
        [user_id.as_str()],
    )?;
    Ok(())
}
