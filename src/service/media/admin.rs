//! What operators do to media: quarantine (kept, but never served: 404 to everyone) and delete
//! (rows and, when nothing else names it, the file), by media id, by room (every `mxc://` URI in
//! the room's stored events) and by user (everything the user uploaded).

use ruma::{RoomId, UserId};

use super::{MediaResult, not_found, valid_media_id};
use crate::service::Services;
use crate::storage::media::{self as media_table, MediaRow};
use crate::storage::now_ms;

impl Services {
    /// Quarantines (or releases) one medium; not found when this server has no such row.
    pub async fn quarantine_media(
        &self,
        origin: &str,
        media_id: &str,
        quarantined: bool,
    ) -> MediaResult<()> {
        let changed = self
            .set_quarantined(vec![(origin.to_owned(), media_id.to_owned())], quarantined)
            .await?;
        if changed == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    /// Quarantines every medium named in a room's events; returns how many were known here.
    pub async fn quarantine_room_media(&self, room_id: &RoomId) -> MediaResult<usize> {
        let ids = self.room_media(room_id).await?;
        self.set_quarantined(ids, true).await
    }

    /// Quarantines everything a local user uploaded; returns how many.
    pub async fn quarantine_user_media(&self, user_id: &UserId) -> MediaResult<usize> {
        let ids = self.user_media(user_id).await?;
        self.set_quarantined(ids, true).await
    }

    /// The `(server, media id)` pairs named in a room's events.
    pub async fn room_media(&self, room_id: &RoomId) -> MediaResult<Vec<(String, String)>> {
        let room = room_id.to_string();
        Ok(self
            .db
            .read(move |conn| media_table::mxc_uris_in_room(conn, &room))
            .await?)
    }

    async fn user_media(&self, user_id: &UserId) -> MediaResult<Vec<(String, String)>> {
        let user = user_id.to_string();
        Ok(self
            .db
            .read(move |conn| media_table::media_of_uploader(conn, &user))
            .await?)
    }

    /// Sets the quarantine flag. Quarantining another server's medium not fetched yet records a
    /// placeholder, so it is never fetched; local ids without a row are skipped.
    async fn set_quarantined(
        &self,
        ids: Vec<(String, String)>,
        quarantined: bool,
    ) -> MediaResult<usize> {
        let local = self.server_name().to_string();
        let changed = self
            .db
            .write("quarantine_media", move |txn| {
                let mut changed = 0;
                for (origin, media_id) in &ids {
                    if media_table::set_quarantined_txn(txn, origin, media_id, quarantined)? {
                        changed += 1;
                    } else if quarantined && *origin != local && valid_media_id(media_id) {
                        let placeholder = MediaRow {
                            origin: origin.clone(),
                            media_id: media_id.clone(),
                            sha256: None,
                            size: None,
                            content_type: None,
                            filename: None,
                            uploader: None,
                            created_ts: now_ms(),
                            expires_ts: None,
                            quarantined: true,
                        };
                        if media_table::insert_media_txn(txn, &placeholder)? {
                            changed += 1;
                        }
                    }
                }
                Ok(changed)
            })
            .await?;
        tracing::info!(count = changed, quarantined, "media quarantine changed");
        Ok(changed)
    }

    /// Deletes one medium; not found when there is no such row.
    pub async fn delete_media(&self, origin: &str, media_id: &str) -> MediaResult<()> {
        let deleted = self
            .delete_media_ids(vec![(origin.to_owned(), media_id.to_owned())])
            .await?;
        if deleted.is_empty() {
            return Err(not_found());
        }
        Ok(())
    }

    /// Deletes every medium named in a room's events that is stored here; returns their ids.
    pub async fn delete_room_media(&self, room_id: &RoomId) -> MediaResult<Vec<String>> {
        let ids = self.room_media(room_id).await?;
        self.delete_media_ids(ids).await
    }

    /// Deletes everything a local user uploaded; returns the ids.
    pub async fn delete_user_media(&self, user_id: &UserId) -> MediaResult<Vec<String>> {
        let ids = self.user_media(user_id).await?;
        self.delete_media_ids(ids).await
    }

    /// Deletes rows and, in the same write, the files nothing names any more. Files go on the
    /// database writer, so an upload of the same content (which also commits there) never finds
    /// its file removed under it.
    async fn delete_media_ids(&self, ids: Vec<(String, String)>) -> MediaResult<Vec<String>> {
        let store = self.media.store().clone();
        let deleted = self
            .db
            .write("delete_media", move |txn| {
                let mut deleted = Vec::new();
                let mut hashes = Vec::new();
                for (origin, media_id) in &ids {
                    if let Some(found) = media_table::delete_media_txn(txn, origin, media_id)? {
                        hashes.extend(found);
                        deleted.push(media_id.clone());
                    }
                }
                hashes.sort();
                hashes.dedup();
                for sha256 in hashes {
                    if !media_table::sha256_referenced(txn, &sha256)? {
                        store.remove(&sha256);
                    }
                }
                Ok(deleted)
            })
            .await?;
        tracing::info!(count = deleted.len(), "media deleted");
        Ok(deleted)
    }
}
