//! Tables `devices`, `access_tokens` and `refresh_tokens`. Tokens arrive here already hashed: the
//! plain token never reaches the database.

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, now_ms};

/// The identity an access token stands for, as found by `find_access_token`.
#[derive(Debug, Clone)]
pub struct AccessTokenRow {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub expires_ts: Option<i64>,
    pub used: bool,
    pub is_admin: bool,
    pub refresh_token_hash: Option<Vec<u8>>,
    pub last_seen_ts: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRow {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

/// What to issue for a device: an access token hash, its expiry, and optionally a refresh token.
pub struct NewTokens<'a> {
    pub access_hash: &'a [u8],
    pub expires_ts: Option<i64>,
    pub refresh_hash: Option<&'a [u8]>,
}

pub fn find_access_token(conn: &Connection, hash: &[u8]) -> Result<Option<AccessTokenRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.user_id, t.device_id, t.expires_ts, t.used, u.is_admin, t.refresh_token_hash,
                d.last_seen_ts
         FROM access_tokens t
         JOIN users u ON u.user_id = t.user_id
         JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
         WHERE t.token_hash = ?1 AND u.deactivated = 0",
    )?;
    let row = stmt
        .query_row([hash], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .optional()?;
    Ok(row.and_then(
        |(user, device, expires_ts, used, is_admin, refresh_token_hash, last_seen_ts)| {
            Some(AccessTokenRow {
                user_id: UserId::parse(user).ok()?,
                device_id: device.into(),
                expires_ts,
                used,
                is_admin,
                refresh_token_hash,
                last_seen_ts,
            })
        },
    ))
}

/// Creates the device if it is new (keeping its name otherwise), records it as seen now from
/// `ip`, removes every token it held and issues the new ones.
pub fn upsert_device_with_tokens_txn(
    txn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
    display_name: Option<&str>,
    ip: &str,
    tokens: &NewTokens<'_>,
) -> Result<()> {
    let now = now_ms();
    txn.execute(
        "INSERT INTO devices
             (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)
         ON CONFLICT (user_id, device_id)
         DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name),
                       last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip",
        params![user_id.as_str(), device_id.as_str(), display_name, now, ip],
    )?;
    delete_device_tokens_txn(txn, user_id, device_id)?;
    insert_tokens_txn(txn, user_id, device_id, tokens)
}

fn insert_tokens_txn(
    txn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
    tokens: &NewTokens<'_>,
) -> Result<()> {
    let now = now_ms();
    txn.execute(
        "INSERT INTO access_tokens
             (token_hash, user_id, device_id, expires_ts, refresh_token_hash, created_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            tokens.access_hash,
            user_id.as_str(),
            device_id.as_str(),
            tokens.expires_ts,
            tokens.refresh_hash,
            now
        ],
    )?;
    if let Some(refresh) = tokens.refresh_hash {
        txn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
             VALUES (?1, ?2, ?3, ?4)",
            params![refresh, user_id.as_str(), device_id.as_str(), now],
        )?;
    }
    Ok(())
}

fn delete_device_tokens_txn(
    txn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
) -> Result<()> {
    let args = params![user_id.as_str(), device_id.as_str()];
    txn.execute(
        "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
        args,
    )?;
    txn.execute(
        "DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2",
        args,
    )?;
    Ok(())
}

pub fn find_refresh_token(conn: &Connection, hash: &[u8]) -> Result<Option<RefreshTokenRow>> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT r.user_id, r.device_id FROM refresh_tokens r
             JOIN users u ON u.user_id = r.user_id
             WHERE r.token_hash = ?1 AND u.deactivated = 0",
            [hash],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(user, device)| {
        Some(RefreshTokenRow {
            user_id: UserId::parse(user).ok()?,
            device_id: device.into(),
        })
    }))
}

/// Exchanges refresh token `old` for new tokens. The old refresh token (and the access token
/// issued with it) stays valid until the successor is first used; exchanging `old` again replaces
/// a successor that was never used. Returns false when `old` is no longer valid.
pub fn rotate_refresh_token_txn(
    txn: &Connection,
    old: &[u8],
    tokens: &NewTokens<'_>,
) -> Result<bool> {
    let row: Option<(String, String, Option<Vec<u8>>)> = txn
        .query_row(
            "SELECT user_id, device_id, next_token_hash FROM refresh_tokens WHERE token_hash = ?1",
            [old],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((user, device, previous_successor)) = row else {
        return Ok(false);
    };
    if let Some(successor) = previous_successor {
        txn.execute(
            "DELETE FROM access_tokens WHERE refresh_token_hash = ?1",
            [&successor],
        )?;
        txn.execute(
            "DELETE FROM refresh_tokens WHERE token_hash = ?1",
            [&successor],
        )?;
    }
    let (Ok(user_id), device_id) = (UserId::parse(user), OwnedDeviceId::from(device)) else {
        return Ok(false);
    };
    insert_tokens_txn(txn, &user_id, &device_id, tokens)?;
    txn.execute(
        "UPDATE refresh_tokens SET next_token_hash = ?2 WHERE token_hash = ?1",
        params![old, tokens.refresh_hash],
    )?;
    Ok(true)
}

/// Called the first time a token issued by a refresh is used: the refresh token that `refresh_hash`
/// replaced, and the access token issued with that one, stop working.
pub fn retire_predecessor_txn(txn: &Connection, refresh_hash: &[u8]) -> Result<()> {
    txn.execute(
        "DELETE FROM access_tokens WHERE refresh_token_hash IN
             (SELECT token_hash FROM refresh_tokens WHERE next_token_hash = ?1)",
        [refresh_hash],
    )?;
    txn.execute(
        "DELETE FROM refresh_tokens WHERE next_token_hash = ?1",
        [refresh_hash],
    )?;
    Ok(())
}

/// Records that an access token has been used, so its first use is handled only once.
pub fn mark_access_token_used_txn(txn: &Connection, access_hash: &[u8]) -> Result<()> {
    txn.execute(
        "UPDATE access_tokens SET used = 1 WHERE token_hash = ?1",
        [access_hash],
    )?;
    Ok(())
}

pub fn touch_device_txn(
    txn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
    ip: &str,
) -> Result<()> {
    txn.execute(
        "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = ?4 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id.as_str(), device_id.as_str(), now_ms(), ip],
    )?;
    Ok(())
}

pub fn list_devices(conn: &Connection, user_id: &UserId) -> Result<Vec<DeviceRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
         WHERE user_id = ?1 ORDER BY device_id",
    )?;
    let rows = stmt.query_map([user_id.as_str()], device_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get_device(
    conn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
) -> Result<Option<DeviceRow>> {
    Ok(conn
        .query_row(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
             WHERE user_id = ?1 AND device_id = ?2",
            params![user_id.as_str(), device_id.as_str()],
            device_row,
        )
        .optional()?)
}

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: row.get::<_, String>(0)?.into(),
        display_name: row.get(1)?,
        last_seen_ts: row.get(2)?,
        last_seen_ip: row.get(3)?,
    })
}

/// Renames a device. Returns false when the user has no such device.
pub fn rename_device_txn(
    txn: &Connection,
    user_id: &UserId,
    device_id: &DeviceId,
    display_name: Option<&str>,
) -> Result<bool> {
    let changed = txn.execute(
        "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id.as_str(), device_id.as_str(), display_name],
    )?;
    Ok(changed == 1)
}

/// Deletes a device with its tokens (the foreign keys cascade).
pub fn delete_device_txn(txn: &Connection, user_id: &UserId, device_id: &DeviceId) -> Result<()> {
    txn.execute(
        "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
        params![user_id.as_str(), device_id.as_str()],
    )?;
    Ok(())
}

/// Deletes every device of the user except `keep`, with their tokens.
pub fn delete_other_devices_txn(
    txn: &Connection,
    user_id: &UserId,
    keep: Option<&DeviceId>,
) -> Result<()> {
    txn.execute(
        "DELETE FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2",
        params![user_id.as_str(), keep.map(DeviceId::as_str)],
    )?;
    Ok(())
}
