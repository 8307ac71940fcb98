//! Tables `media` and `media_thumbnails`: which media ids (local uploads, pending asynchronous
//! uploads, cached remote media) and thumbnails point at which content-addressed file. The files
//! themselves are `service::media`'s business; this module only says which hashes are still
//! referenced, so the service knows when a file may go.

use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// One row of `media`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    pub origin: String,
    pub media_id: String,
    /// `None` while an asynchronous upload is pending.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub uploader: Option<String>,
    pub created_ts: i64,
    pub expires_ts: Option<i64>,
    pub quarantined: bool,
}

/// One row of `media_thumbnails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRow {
    pub width: u32,
    pub height: u32,
    pub method: String,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
}

const MEDIA_COLUMNS: &str = "origin, media_id, sha256, size, content_type, filename, uploader, \
     created_ts, expires_ts, quarantined";

fn media_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MediaRow> {
    Ok(MediaRow {
        origin: row.get(0)?,
        media_id: row.get(1)?,
        sha256: row.get(2)?,
        size: row.get::<_, Option<i64>>(3)?.map(|s| s.max(0) as u64),
        content_type: row.get(4)?,
        filename: row.get(5)?,
        uploader: row.get(6)?,
        created_ts: row.get(7)?,
        expires_ts: row.get(8)?,
        quarantined: row.get(9)?,
    })
}

pub fn get_media(conn: &Connection, origin: &str, media_id: &str) -> Result<Option<MediaRow>> {
    let sql = format!("SELECT {MEDIA_COLUMNS} FROM media WHERE origin = ?1 AND media_id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![origin, media_id], media_row)
        .optional()?)
}

/// Inserts a media row; `false` when the id is taken already.
pub fn insert_media_txn(txn: &Connection, row: &MediaRow) -> Result<bool> {
    let changed = txn
        .prepare_cached(
            "INSERT OR IGNORE INTO media (origin, media_id, sha256, size, content_type, filename, \
         uploader, created_ts, expires_ts, quarantined) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            row.origin,
            row.media_id,
            row.sha256,
            row.size.map(|s| s as i64),
            row.content_type,
            row.filename,
            row.uploader,
            row.created_ts,
            row.expires_ts,
            row.quarantined,
        ])?;
    Ok(changed == 1)
}

/// Fills in a pending asynchronous upload; `false` when the id is not pending any more.
pub fn complete_pending_txn(
    txn: &Connection,
    origin: &str,
    media_id: &str,
    sha256: &str,
    size: u64,
    content_type: Option<&str>,
    filename: Option<&str>,
) -> Result<bool> {
    let changed = txn
        .prepare_cached(
            "UPDATE media SET sha256 = ?3, size = ?4, content_type = ?5, filename = ?6, \
             expires_ts = NULL WHERE origin = ?1 AND media_id = ?2 AND sha256 IS NULL",
        )?
        .execute(params![
            origin,
            media_id,
            sha256,
            size as i64,
            content_type,
            filename
        ])?;
    Ok(changed == 1)
}

/// Forgets pending ids unused past their expiry; returns how many.
pub fn delete_expired_pending_txn(txn: &Connection, now: i64) -> Result<usize> {
    Ok(txn
        .prepare_cached("DELETE FROM media WHERE sha256 IS NULL AND expires_ts < ?1")?
        .execute([now])?)
}

/// The pending (not yet uploaded, not expired) ids a user holds.
pub fn count_pending(conn: &Connection, uploader: &str, now: i64) -> Result<u64> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM media WHERE uploader = ?1 AND sha256 IS NULL \
             AND expires_ts >= ?2",
        )?
        .query_row(params![uploader, now], |r| r.get(0))?;
    Ok(count.max(0) as u64)
}

pub fn get_thumbnail(
    conn: &Connection,
    origin: &str,
    media_id: &str,
    width: u32,
    height: u32,
    method: &str,
) -> Result<Option<ThumbnailRow>> {
    Ok(conn
        .prepare_cached(
            "SELECT width, height, method, sha256, size, content_type FROM media_thumbnails \
             WHERE origin = ?1 AND media_id = ?2 AND width = ?3 AND height = ?4 AND method = ?5",
        )?
        .query_row(params![origin, media_id, width, height, method], |row| {
            Ok(ThumbnailRow {
                width: row.get(0)?,
                height: row.get(1)?,
                method: row.get(2)?,
                sha256: row.get(3)?,
                size: row.get::<_, i64>(4)?.max(0) as u64,
                content_type: row.get(5)?,
            })
        })
        .optional()?)
}

/// Records a thumbnail (replacing an earlier one of the same size and method).
pub fn insert_thumbnail_txn(
    txn: &Connection,
    origin: &str,
    media_id: &str,
    thumbnail: &ThumbnailRow,
) -> Result<()> {
    txn.prepare_cached(
        "INSERT OR REPLACE INTO media_thumbnails (origin, media_id, width, height, method, \
         sha256, size, content_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        origin,
        media_id,
        thumbnail.width,
        thumbnail.height,
        thumbnail.method,
        thumbnail.sha256,
        thumbnail.size as i64,
        thumbnail.content_type,
    ])?;
    Ok(())
}

/// Whether any media or thumbnail still names this content hash.
pub fn sha256_referenced(conn: &Connection, sha256: &str) -> Result<bool> {
    let found: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = ?1) \
             OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = ?1)",
        )?
        .query_row([sha256], |r| r.get(0))?;
    Ok(found)
}

/// Deletes a media row and its thumbnails; returns the content hashes they named (which may now
/// be unreferenced), or `None` when there was no such media.
pub fn delete_media_txn(
    txn: &Connection,
    origin: &str,
    media_id: &str,
) -> Result<Option<Vec<String>>> {
    let Some(row) = get_media(txn, origin, media_id)? else {
        return Ok(None);
    };
    let mut hashes: Vec<String> = txn
        .prepare_cached("SELECT sha256 FROM media_thumbnails WHERE origin = ?1 AND media_id = ?2")?
        .query_map(params![origin, media_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    hashes.extend(row.sha256);
    txn.prepare_cached("DELETE FROM media_thumbnails WHERE origin = ?1 AND media_id = ?2")?
        .execute(params![origin, media_id])?;
    txn.prepare_cached("DELETE FROM media WHERE origin = ?1 AND media_id = ?2")?
        .execute(params![origin, media_id])?;
    Ok(Some(hashes))
}

/// Sets or clears the quarantine flag; `false` when there is no such media.
pub fn set_quarantined_txn(
    txn: &Connection,
    origin: &str,
    media_id: &str,
    quarantined: bool,
) -> Result<bool> {
    let changed = txn
        .prepare_cached("UPDATE media SET quarantined = ?3 WHERE origin = ?1 AND media_id = ?2")?
        .execute(params![origin, media_id, quarantined])?;
    Ok(changed == 1)
}

/// The ids of the media a local user uploaded (pending ones included), oldest first.
pub fn media_of_uploader(conn: &Connection, uploader: &str) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT origin, media_id FROM media WHERE uploader = ?1 ORDER BY created_ts",
        )?
        .query_map([uploader], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// The `mxc://server/id` URIs named anywhere in the stored events of a room, each once.
pub fn mxc_uris_in_room(conn: &Connection, room_id: &str) -> Result<Vec<(String, String)>> {
    let mut statement = conn.prepare_cached(
        "SELECT json FROM events WHERE room_id = ?1 AND instr(json, 'mxc://') > 0",
    )?;
    let mut rows = statement.query([room_id])?;
    let mut found = std::collections::BTreeSet::new();
    while let Some(row) = rows.next()? {
        let json: String = row.get(0)?;
        found.extend(find_mxc_uris(&json));
    }
    Ok(found.into_iter().collect())
}

/// Every `mxc://server/id` in a text, as (server, id): the server runs to the first `/`, the id
/// over the characters a media id may have.
pub fn find_mxc_uris(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("mxc://") {
        rest = &rest[start + "mxc://".len()..];
        let server_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
            .unwrap_or(rest.len());
        let (server, after) = rest.split_at(server_end);
        let Some(after) = after.strip_prefix('/') else {
            continue;
        };
        let id_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        if !server.is_empty() && id_end > 0 {
            found.push((server.to_owned(), after[..id_end].to_owned()));
        }
        rest = after;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::migrated_in_memory;

    fn row(id: &str, sha: Option<&str>) -> MediaRow {
        MediaRow {
            origin: "hs".into(),
            media_id: id.into(),
            sha256: sha.map(str::to_owned),
            size: sha.map(|_| 3),
            content_type: Some("text/plain".into()),
            filename: None,
            uploader: Some("@a:hs".into()),
            created_ts: 1,
            expires_ts: if sha.is_none() { Some(100) } else { None },
            quarantined: false,
        }
    }

    #[test]
    fn shared_content_stays_referenced_until_its_last_media_goes() {
        let conn = migrated_in_memory();
        assert!(insert_media_txn(&conn, &row("a", Some("h1"))).unwrap());
        assert!(insert_media_txn(&conn, &row("b", Some("h1"))).unwrap());
        assert!(!insert_media_txn(&conn, &row("a", Some("h2"))).unwrap());
        assert_eq!(
            delete_media_txn(&conn, "hs", "a").unwrap(),
            Some(vec!["h1".to_owned()])
        );
        assert!(sha256_referenced(&conn, "h1").unwrap());
        delete_media_txn(&conn, "hs", "b").unwrap();
        assert!(!sha256_referenced(&conn, "h1").unwrap());
        assert_eq!(delete_media_txn(&conn, "hs", "b").unwrap(), None);
    }

    #[test]
    fn a_pending_upload_completes_once_and_expires_when_unused() {
        let conn = migrated_in_memory();
        insert_media_txn(&conn, &row("p", None)).unwrap();
        insert_media_txn(&conn, &row("q", None)).unwrap();
        assert_eq!(count_pending(&conn, "@a:hs", 50).unwrap(), 2);
        assert!(complete_pending_txn(&conn, "hs", "p", "h", 3, None, None).unwrap());
        assert!(!complete_pending_txn(&conn, "hs", "p", "h", 3, None, None).unwrap());
        assert_eq!(delete_expired_pending_txn(&conn, 101).unwrap(), 1);
        assert!(get_media(&conn, "hs", "p").unwrap().is_some());
        assert!(get_media(&conn, "hs", "q").unwrap().is_none());
    }

    #[test]
    fn mxc_uris_are_found_in_event_json() {
        let text = r#"{"url":"mxc://hs.test/AbC_1-2","info":{"thumbnail_url":"mxc://other:8448/x"},"b":"mxc://bad","c":"mxc://s/"}"#;
        assert_eq!(
            find_mxc_uris(text),
            vec![
                ("hs.test".to_owned(), "AbC_1-2".to_owned()),
                ("other:8448".to_owned(), "x".to_owned()),
            ]
        );
    }
}
