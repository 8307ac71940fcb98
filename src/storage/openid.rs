//! Table `openid_tokens`: the OpenID tokens users asked for, by the SHA-256 hash of the token
//! (the plain token never reaches the database) with their owner and expiry.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// Stores a new token and drops every expired one, so the table holds only live tokens.
pub fn insert_openid_token_txn(
    txn: &Connection,
    token_hash: &[u8],
    user_id: &str,
    expires_ts: i64,
    now: i64,
) -> Result<()> {
    txn.prepare_cached("DELETE FROM openid_tokens WHERE expires_ts <= ?1")?
        .execute([now])?;
    txn.prepare_cached(
        "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![token_hash, user_id, expires_ts])?;
    Ok(())
}

/// The owner of a token that has not expired at `now`.
pub fn openid_token_user(conn: &Connection, token_hash: &[u8], now: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id FROM openid_tokens WHERE token_hash = ?1 AND expires_ts > ?2",
        )?
        .query_row(params![token_hash, now], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answers_until_it_expires_and_expired_ones_are_dropped() {
        let conn = crate::storage::migrated_in_memory();
        conn.execute(
            "INSERT INTO users (user_id, created_ts) VALUES ('@a:x', 0)",
            [],
        )
        .unwrap();
        insert_openid_token_txn(&conn, b"old", "@a:x", 1_000, 0).unwrap();
        insert_openid_token_txn(&conn, b"new", "@a:x", 5_000, 2_000).unwrap();
        assert_eq!(
            openid_token_user(&conn, b"new", 4_999).unwrap().as_deref(),
            Some("@a:x")
        );
        assert_eq!(openid_token_user(&conn, b"new", 5_000).unwrap(), None);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM openid_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 1,
            "the expired token was dropped when the new one was stored"
        );
    }
}
