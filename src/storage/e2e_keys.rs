//! Tables of end-to-end encryption: `e2e_device_keys`, `e2e_one_time_keys`, `e2e_fallback_keys`,
//! `e2e_cross_signing_keys`, `e2e_signatures`, and the device-list stream `device_list_changes`.
//! Keys are stored as the canonical JSON their owner uploaded; what a key means is the service's
//! business (`service/keys/`). Nothing here refers to `devices`, so keys of users of other servers
//! can be cached in the same tables.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// A device's published identity keys, with the display name of the device when it is local.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceKeysRow {
    pub device_id: String,
    pub key_json: String,
    pub display_name: Option<String>,
}

/// A signature kept apart from the object it signs (see `e2e_signatures`).
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureRow {
    pub target_key: String,
    pub signer_user_id: String,
    pub signer_key: String,
    pub signature: String,
}

/// A cross-signing key of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossSigningKeyRow {
    pub key_type: String,
    pub public_key: String,
    pub key_json: String,
}

/// A fallback key of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackKeyRow {
    pub key_name: String,
    pub key_json: String,
    pub used: bool,
}

// Device keys.

/// The identity keys a device published, as stored.
pub fn get_device_keys(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2",
        )?
        .query_row(params![user_id, device_id], |r| r.get(0))
        .optional()?)
}

/// Stores (or replaces) a device's identity keys.
pub fn set_device_keys_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    key_json: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
    )?
    .execute(params![user_id, device_id, key_json])?;
    Ok(())
}

/// The identity keys of every device of a user that published some, ordered by device id.
pub fn device_keys_of_user(conn: &Connection, user_id: &str) -> Result<Vec<DeviceKeysRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k
         LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
         WHERE k.user_id = ?1 ORDER BY k.device_id",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(DeviceKeysRow {
            device_id: r.get(0)?,
            key_json: r.get(1)?,
            display_name: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// Signatures.

/// Every signature uploaded on keys of `target_user_id` (devices and cross-signing keys).
pub fn signatures_on_user(conn: &Connection, target_user_id: &str) -> Result<Vec<SignatureRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT target_key, signer_user_id, signer_key, signature FROM e2e_signatures
         WHERE target_user_id = ?1 ORDER BY target_key, signer_user_id, signer_key",
    )?;
    let rows = stmt.query_map([target_user_id], |r| {
        Ok(SignatureRow {
            target_key: r.get(0)?,
            signer_user_id: r.get(1)?,
            signer_key: r.get(2)?,
            signature: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores a signature; a signature by the same signer key on the same key replaces it.
pub fn set_signature_txn(
    txn: &Connection,
    target_user_id: &str,
    target_key: &str,
    signer_user_id: &str,
    signer_key: &str,
    signature: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO e2e_signatures (target_user_id, target_key, signer_user_id, signer_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (target_user_id, target_key, signer_user_id, signer_key)
         DO UPDATE SET signature = excluded.signature",
    )?
    .execute(params![
        target_user_id,
        target_key,
        signer_user_id,
        signer_key,
        signature
    ])?;
    Ok(())
}

/// Forgets the signatures on one key (a cross-signing key that was replaced).
pub fn delete_signatures_on_txn(
    txn: &Connection,
    target_user_id: &str,
    target_key: &str,
) -> Result<()> {
    txn.prepare_cached("DELETE FROM e2e_signatures WHERE target_user_id = ?1 AND target_key = ?2")?
        .execute(params![target_user_id, target_key])?;
    Ok(())
}

// One-time keys.

/// The stored JSON of one one-time key, claimed or not.
pub fn get_one_time_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_name: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT key_json FROM e2e_one_time_keys
             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND key_name = ?4",
        )?
        .query_row(params![user_id, device_id, algorithm, key_name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Adds a one-time key behind every key the device uploaded before.
pub fn insert_one_time_key_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_name: &str,
    key_json: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_name, key_json)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![user_id, device_id, algorithm, key_name, key_json])?;
    Ok(())
}

/// The number of unclaimed one-time keys of a device, per algorithm.
pub fn count_one_time_keys(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys
         WHERE user_id = ?1 AND device_id = ?2 AND claimed = 0
         GROUP BY algorithm ORDER BY algorithm",
    )?;
    let rows = stmt.query_map(params![user_id, device_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Takes the oldest unclaimed one-time key of a device for `algorithm`, marking it claimed;
/// returns its name and JSON. Runs inside the write transaction, so no two claims can take the
/// same key.
pub fn claim_one_time_key_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, String)>> {
    let oldest: Option<(i64, String, String)> = txn
        .prepare_cached(
            "SELECT id, key_name, key_json FROM e2e_one_time_keys
             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND claimed = 0
             ORDER BY id LIMIT 1",
        )?
        .query_row(params![user_id, device_id, algorithm], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((id, key_name, key_json)) = oldest else {
        return Ok(None);
    };
    txn.prepare_cached("UPDATE e2e_one_time_keys SET claimed = 1 WHERE id = ?1")?
        .execute([id])?;
    Ok(Some((key_name, key_json)))
}

// Fallback keys.

pub fn get_fallback_key(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<FallbackKeyRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT key_name, key_json, used FROM e2e_fallback_keys
             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
        )?
        .query_row(params![user_id, device_id, algorithm], |r| {
            Ok(FallbackKeyRow {
                key_name: r.get(0)?,
                key_json: r.get(1)?,
                used: r.get(2)?,
            })
        })
        .optional()?)
}

/// Sets a device's fallback key for `algorithm`, replacing the previous one, unused.
pub fn set_fallback_key_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_name: &str,
    key_json: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_name, key_json, used)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)
         ON CONFLICT (user_id, device_id, algorithm)
         DO UPDATE SET key_name = excluded.key_name, key_json = excluded.key_json, used = 0",
    )?
    .execute(params![user_id, device_id, algorithm, key_name, key_json])?;
    Ok(())
}

/// Hands out a device's fallback key for `algorithm` (the same one again until it is replaced),
/// marking it used.
pub fn claim_fallback_key_txn(
    txn: &Connection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, String)>> {
    let Some(row) = get_fallback_key(txn, user_id, device_id, algorithm)? else {
        return Ok(None);
    };
    if !row.used {
        txn.prepare_cached(
            "UPDATE e2e_fallback_keys SET used = 1
             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
        )?
        .execute(params![user_id, device_id, algorithm])?;
    }
    Ok(Some((row.key_name, row.key_json)))
}

/// The algorithms for which a device has a fallback key nobody has been given yet.
pub fn unused_fallback_algorithms(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT algorithm FROM e2e_fallback_keys
         WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
    )?;
    let rows = stmt.query_map(params![user_id, device_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// Cross-signing keys.

/// A user's cross-signing keys, by type.
pub fn cross_signing_keys(conn: &Connection, user_id: &str) -> Result<Vec<CrossSigningKeyRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key_type, public_key, key_json FROM e2e_cross_signing_keys
         WHERE user_id = ?1 ORDER BY key_type",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok(CrossSigningKeyRow {
            key_type: r.get(0)?,
            public_key: r.get(1)?,
            key_json: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Sets (or replaces) one of a user's cross-signing keys.
pub fn set_cross_signing_key_txn(
    txn: &Connection,
    user_id: &str,
    key_type: &str,
    public_key: &str,
    key_json: &str,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, key_type)
         DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json",
    )?
    .execute(params![user_id, key_type, public_key, key_json])?;
    Ok(())
}

// The device-list stream.

/// Records that a user's device list changed (`device_id` `None`: their cross-signing keys) and
/// returns the position the change took.
pub fn add_device_list_change_txn(
    txn: &Connection,
    user_id: &str,
    device_id: Option<&str>,
) -> Result<i64> {
    let stream_id = max_device_list_position(txn)? + 1;
    txn.prepare_cached(
        "INSERT INTO device_list_changes (stream_id, user_id, device_id) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![stream_id, user_id, device_id])?;
    Ok(stream_id)
}

/// The latest `limit` changes of a user's device list, newest first: (stream id, device id;
/// `None` for their cross-signing keys).
pub fn latest_device_list_changes(
    conn: &Connection,
    user_id: &str,
    limit: usize,
) -> Result<Vec<(i64, Option<String>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT stream_id, device_id FROM device_list_changes WHERE user_id = ?1
         ORDER BY stream_id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![user_id, limit as i64], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The position of the latest committed device-list change (0 before the first).
pub fn max_device_list_position(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(stream_id), 0) FROM device_list_changes")?
        .query_row([], |r| r.get(0))?)
}

/// Users whose device list changed in `(since, upto]` and who share a joined room with `user_id`
/// now, plus `user_id` themself when a change of theirs did not come from `own_device` (pass
/// `None` to count every change of theirs). The cost is that of the changes in the range, each
/// checked against the rooms of the user.
pub fn device_list_changes_for(
    conn: &Connection,
    user_id: &str,
    own_device: Option<&str>,
    since: i64,
    upto: i64,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT c.user_id FROM device_list_changes c
         WHERE c.stream_id > ?2 AND c.stream_id <= ?3
           AND CASE WHEN c.user_id = ?1
               THEN c.device_id IS NULL OR ?4 IS NULL OR c.device_id != ?4
               ELSE EXISTS (
                   SELECT 1 FROM room_memberships other
                   JOIN room_memberships mine
                     ON mine.room_id = other.room_id AND mine.user_id = ?1
                   WHERE other.user_id = c.user_id AND other.membership = 'join'
                     AND mine.membership = 'join')
               END
         ORDER BY c.user_id",
    )?;
    let rows = stmt.query_map(params![user_id, since, upto, own_device], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Who started or may have stopped sharing a joined room with `user_id` through membership
/// changes in the event stream range `(since, upto]`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SharingChanges {
    /// Users now joined to a room with the user who joined it (or whom the user joined) in range.
    pub joined: Vec<String>,
    /// Users who left (or were left by the user) in range and now share no joined room with them.
    pub left: Vec<String>,
}

/// See `SharingChanges`. Reads the member events in range of the rooms the user is joined to (or
/// left in range), through the `(room_id, stream_ordering)` index, so the cost follows what
/// happened since `since`, not the size of the rooms; only a room the user joined or left in
/// range is read whole.
pub fn sharing_changes(
    conn: &Connection,
    user_id: &str,
    since: i64,
    upto: i64,
) -> Result<SharingChanges> {
    let mut joined = std::collections::BTreeSet::new();
    let mut maybe_left = std::collections::BTreeSet::new();
    // Members whose membership changed in range, in rooms the user is in or left in range.
    let mut stmt = conn.prepare_cached(
        "SELECT mine.membership, cur.user_id, cur.membership
         FROM room_memberships mine
         JOIN events e
           ON e.room_id = mine.room_id AND e.stream_ordering > ?2 AND e.stream_ordering <= ?3
         JOIN room_memberships cur ON cur.room_id = e.room_id AND cur.user_id = e.state_key
         WHERE mine.user_id = ?1
           AND (mine.membership = 'join'
                OR (mine.membership IN ('leave', 'ban') AND mine.event_nid > ?2))
           AND e.type = 'm.room.member' AND e.state_key IS NOT NULL",
    )?;
    let rows = stmt.query_map(params![user_id, since, upto], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (mine, other, theirs) = row?;
        match (mine.as_str(), theirs.as_str()) {
            ("join", "join") => {
                joined.insert(other);
            }
            (_, "leave" | "ban") => {
                maybe_left.insert(other);
            }
            _ => {}
        }
    }
    // Everyone joined to a room the user joined or left in range.
    let mut stmt = conn.prepare_cached(
        "SELECT mine.membership, other.user_id FROM room_memberships mine
         JOIN room_memberships other ON other.room_id = mine.room_id AND other.membership = 'join'
         WHERE mine.user_id = ?1 AND mine.event_nid > ?2 AND mine.event_nid <= ?3
           AND mine.membership IN ('join', 'leave', 'ban')",
    )?;
    let rows = stmt.query_map(params![user_id, since, upto], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (mine, other) = row?;
        if mine == "join" {
            joined.insert(other);
        } else {
            maybe_left.insert(other);
        }
    }
    joined.remove(user_id);
    maybe_left.remove(user_id);
    let mut left = Vec::new();
    for other in maybe_left {
        if !joined.contains(&other) && !super::presence::share_a_room(conn, user_id, &other)? {
            left.push(other);
        }
    }
    Ok(SharingChanges {
        joined: joined.into_iter().collect(),
        left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn add_device(conn: &Connection, user: &str, device: &str) {
        conn.execute(
            "INSERT OR IGNORE INTO users (user_id, created_ts) VALUES (?1, 0)",
            [user],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO devices (user_id, device_id, created_ts) VALUES (?1, ?2, 0)",
            params![user, device],
        )
        .unwrap();
    }

    #[test]
    fn one_time_keys_are_claimed_oldest_first_and_only_once_then_the_fallback_key() {
        let conn = migrated_in_memory();
        for name in ["b", "a", "c"] {
            insert_one_time_key_txn(&conn, "@u:x", "D", "signed_curve25519", name, "{}").unwrap();
        }
        assert_eq!(
            count_one_time_keys(&conn, "@u:x", "D").unwrap(),
            vec![("signed_curve25519".to_owned(), 3)]
        );
        let claimed: Vec<String> = (0..4)
            .filter_map(|_| {
                claim_one_time_key_txn(&conn, "@u:x", "D", "signed_curve25519")
                    .unwrap()
                    .map(|(name, _)| name)
            })
            .collect();
        assert_eq!(claimed, ["b", "a", "c"]);
        assert!(count_one_time_keys(&conn, "@u:x", "D").unwrap().is_empty());

        set_fallback_key_txn(&conn, "@u:x", "D", "signed_curve25519", "f", "{}").unwrap();
        assert_eq!(
            unused_fallback_algorithms(&conn, "@u:x", "D").unwrap(),
            ["signed_curve25519"]
        );
        for _ in 0..2 {
            let (name, _) = claim_fallback_key_txn(&conn, "@u:x", "D", "signed_curve25519")
                .unwrap()
                .unwrap();
            assert_eq!(name, "f");
        }
        assert!(
            unused_fallback_algorithms(&conn, "@u:x", "D")
                .unwrap()
                .is_empty()
        );
        set_fallback_key_txn(&conn, "@u:x", "D", "signed_curve25519", "g", "{}").unwrap();
        assert_eq!(
            unused_fallback_algorithms(&conn, "@u:x", "D").unwrap(),
            ["signed_curve25519"]
        );
    }

    #[test]
    fn deleting_a_device_deletes_its_keys_and_records_a_change_only_if_it_had_keys() {
        let conn = migrated_in_memory();
        add_device(&conn, "@u:x", "KEYED");
        add_device(&conn, "@u:x", "BARE");
        set_device_keys_txn(&conn, "@u:x", "KEYED", "{}").unwrap();
        insert_one_time_key_txn(&conn, "@u:x", "KEYED", "signed_curve25519", "a", "{}").unwrap();
        set_fallback_key_txn(&conn, "@u:x", "KEYED", "signed_curve25519", "f", "{}").unwrap();
        set_signature_txn(&conn, "@u:x", "KEYED", "@u:x", "ed25519:ssk", "sig").unwrap();
        assert_eq!(
            add_device_list_change_txn(&conn, "@u:x", Some("KEYED")).unwrap(),
            1
        );

        conn.execute("DELETE FROM devices WHERE device_id = 'BARE'", [])
            .unwrap();
        assert_eq!(max_device_list_position(&conn).unwrap(), 1);
        conn.execute("DELETE FROM devices WHERE device_id = 'KEYED'", [])
            .unwrap();
        assert_eq!(max_device_list_position(&conn).unwrap(), 2);
        assert_eq!(get_device_keys(&conn, "@u:x", "KEYED").unwrap(), None);
        assert!(
            count_one_time_keys(&conn, "@u:x", "KEYED")
                .unwrap()
                .is_empty()
        );
        assert!(
            unused_fallback_algorithms(&conn, "@u:x", "KEYED")
                .unwrap()
                .is_empty()
        );
        assert!(signatures_on_user(&conn, "@u:x").unwrap().is_empty());
    }

    /// A member event at `nid` of the event stream, and the membership it sets.
    fn member(conn: &Connection, room: &str, user: &str, membership: &str, nid: i64) {
        conn.execute(
            "INSERT OR IGNORE INTO rooms (room_id, room_version, creator, created_ts)
             VALUES (?1, '10', '@a:x', 0)",
            [room],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, sender, type, state_key,
                                 membership, depth, origin_server_ts, json)
             VALUES (?1, ?2, ?3, ?4, 'm.room.member', ?4, ?5, ?1, 0, '{}')",
            params![nid, format!("$e{nid}"), room, user, membership],
        )
        .unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO room_memberships (room_id, user_id, membership, event_nid)
             VALUES (?1, ?2, ?3, ?4)",
            params![room, user, membership, nid],
        )
        .unwrap();
    }

    #[test]
    fn joins_and_leaves_since_a_position_start_and_end_sharing() {
        let conn = migrated_in_memory();
        member(&conn, "!r:x", "@a:x", "join", 1);
        member(&conn, "!r:x", "@b:x", "join", 2);
        member(&conn, "!s:x", "@a:x", "join", 3);
        member(&conn, "!s:x", "@c:x", "join", 4);
        member(&conn, "!t:x", "@d:x", "join", 5);
        // Since 5: b leaves the only shared room, c joins another shared room, e joins.
        member(&conn, "!r:x", "@b:x", "leave", 6);
        member(&conn, "!r:x", "@c:x", "join", 7);
        member(&conn, "!r:x", "@e:x", "join", 8);
        let changes = sharing_changes(&conn, "@a:x", 5, i64::MAX).unwrap();
        assert_eq!(changes.joined, ["@c:x", "@e:x"]);
        assert_eq!(changes.left, ["@b:x"]);
        // Up to 6 only b's leave counts.
        let changes = sharing_changes(&conn, "@a:x", 5, 6).unwrap();
        assert!(changes.joined.is_empty());
        assert_eq!(changes.left, ["@b:x"]);
        // a leaves !s: c still shares !r; a joins !t: d is new.
        member(&conn, "!s:x", "@a:x", "leave", 9);
        member(&conn, "!t:x", "@a:x", "join", 10);
        let changes = sharing_changes(&conn, "@a:x", 8, i64::MAX).unwrap();
        assert_eq!(changes.joined, ["@d:x"]);
        assert!(changes.left.is_empty());
        member(&conn, "!r:x", "@a:x", "leave", 11);
        let changes = sharing_changes(&conn, "@a:x", 10, i64::MAX).unwrap();
        assert_eq!(changes.left, ["@c:x", "@e:x"]);
    }

    #[test]
    fn device_list_changes_count_for_users_sharing_a_room_and_own_other_devices() {
        let conn = migrated_in_memory();
        let member = |room: &str, user: &str, membership: &str, nid: i64| {
            conn.execute(
                "INSERT OR REPLACE INTO room_memberships (room_id, user_id, membership, event_nid)
                 VALUES (?1, ?2, ?3, ?4)",
                params![room, user, membership, nid],
            )
            .unwrap();
        };
        member("!r:x", "@a:x", "join", 1);
        member("!r:x", "@b:x", "join", 2);
        member("!s:x", "@c:x", "join", 3);
        for (user, device) in [
            ("@b:x", Some("B1")),
            ("@c:x", Some("C1")),
            ("@a:x", Some("A1")),
            ("@a:x", Some("A2")),
            ("@a:x", None),
        ] {
            add_device_list_change_txn(&conn, user, device).unwrap();
        }
        assert_eq!(
            device_list_changes_for(&conn, "@a:x", Some("A1"), 0, 5).unwrap(),
            ["@a:x", "@b:x"]
        );
        assert_eq!(
            device_list_changes_for(&conn, "@a:x", Some("A1"), 2, 3).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            device_list_changes_for(&conn, "@a:x", Some("A1"), 2, 4).unwrap(),
            ["@a:x"]
        );
        assert_eq!(
            device_list_changes_for(&conn, "@c:x", None, 0, 5).unwrap(),
            ["@c:x"]
        );
    }
}
