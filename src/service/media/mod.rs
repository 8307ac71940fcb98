//! The media repository: uploads (direct and asynchronous), lookups for downloads, thumbnails,
//! other servers' media fetched over federation and cached, URL previews, and the operators'
//! quarantine and deletion.
//!
//! Files are content-addressed on disk (`store.rs`); their metadata is in `storage::media`. A file
//! streams from the request to a synced temporary file and is renamed into place by the database
//! writer in the same write that records it, so neither a crash nor an error leaves a half-written
//! file or a row without its file; other servers' media takes the same path (`remote.rs`).
//! Downloads hand the API an open file to stream; nothing here holds a whole file in memory
//! except thumbnails.

mod admin;
mod multipart;
mod preview;
mod remote;
pub mod store;
pub mod thumbnail;

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use ruma::{OwnedMxcUri, ServerName, UserId};

pub use preview::Preview;
use store::{BlobStore, StageError, StagedFile};
use thumbnail::Method;

use super::{Error, Services};
use crate::config::MediaConfig;
use crate::storage::media::{self as media_table, MediaRow, ThumbnailRow};
use crate::storage::{Db, StorageError, now_ms};

/// Length of the media ids this server makes.
const MEDIA_ID_LENGTH: usize = 24;
/// The longest file name kept, in characters.
const MAX_FILENAME_CHARS: usize = 255;
/// The longest a download may wait for an asynchronous upload.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// How long a download waits for an asynchronous upload when the client does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// Images larger than this are not thumbnailed in advance (on demand they still are).
const MAX_PREGENERATE_BYTES: u64 = 32 * 1024 * 1024;

/// What can go wrong in the media repository, beyond the service's common errors.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Service(#[from] Error),
    /// Another server's medium is larger than this server takes (`[media] max_upload_size`), or
    /// than that server serves (502 `M_TOO_LARGE`, as the specification's downloads say).
    #[error("{0}")]
    RemoteTooLarge(String),
    /// The asynchronous upload's id has its content already (409 `M_CANNOT_OVERWRITE_MEDIA`).
    #[error("this media has been uploaded already")]
    CannotOverwrite,
    /// The asynchronous upload has not arrived within the wait (504 `M_NOT_YET_UPLOADED`).
    #[error("the media has not been uploaded yet")]
    NotYetUploaded,
}

impl From<StorageError> for MediaError {
    fn from(e: StorageError) -> Self {
        MediaError::Service(Error::Storage(e))
    }
}

impl From<StageError> for MediaError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::TooLarge(limit) => MediaError::Service(Error::TooLarge(format!(
                "the file is larger than the limit of {limit} bytes"
            ))),
            StageError::Body(message) => {
                MediaError::Service(Error::InvalidParam(format!("the upload failed: {message}")))
            }
            StageError::Io(e) => {
                MediaError::Service(Error::Internal(format!("media storage: {e}")))
            }
        }
    }
}

pub type MediaResult<T> = Result<T, MediaError>;

/// The media repository's own state, shared with its background tasks.
#[derive(Clone)]
pub struct Media(Arc<Inner>);

struct Inner {
    store: BlobStore,
    db: Db,
    config: MediaConfig,
    /// Bumped whenever an asynchronous upload completes, waking downloads waiting for one.
    uploaded: tokio::sync::watch::Sender<u64>,
    /// Thumbnailing decodes whole images: one at a time keeps the memory it takes bounded.
    thumbnailer: tokio::sync::Semaphore,
    /// Fetches of remote media in flight, so concurrent requests for one medium share a fetch.
    fetches: tokio::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    preview: preview::PreviewClient,
}

/// A stored file ready to stream.
pub struct MediaFile {
    pub file: tokio::fs::File,
    pub len: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

impl Media {
    pub fn new(config: &crate::config::Config, db: Db) -> Media {
        let store = BlobStore::new(config.data_dir.join("media"));
        if let Err(e) = store.prepare() {
            tracing::error!(error = %e, "cannot prepare the media directory");
        }
        Media(Arc::new(Inner {
            store,
            db,
            config: config.media.clone(),
            uploaded: tokio::sync::watch::Sender::new(0),
            thumbnailer: tokio::sync::Semaphore::new(1),
            fetches: Default::default(),
            preview: preview::PreviewClient::new(&config.media),
        }))
    }

    pub fn config(&self) -> &MediaConfig {
        &self.0.config
    }

    pub fn store(&self) -> &BlobStore {
        &self.0.store
    }

    /// Records a staged file under a new media row, moving it into place in the same write.
    async fn insert(&self, row: MediaRow, staged: StagedFile) -> MediaResult<()> {
        let store = self.0.store.clone();
        self.0
            .db
            .write("insert_media", move |txn| {
                if !media_table::insert_media_txn(txn, &row)? {
                    return Err(StorageError::Aborted("media id in use".into()));
                }
                store
                    .commit(staged)
                    .map_err(|e| StorageError::Aborted(format!("cannot store media file: {e}")))
            })
            .await?;
        Ok(())
    }

    /// Records a thumbnail, moving its file into place in the same write.
    async fn insert_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        row: ThumbnailRow,
        staged: StagedFile,
    ) -> MediaResult<()> {
        let (store, origin, media_id) =
            (self.0.store.clone(), origin.to_owned(), media_id.to_owned());
        self.0
            .db
            .write("insert_media_thumbnail", move |txn| {
                // The medium may have been deleted while its thumbnail was being made.
                if media_table::get_media(txn, &origin, &media_id)?.is_none() {
                    return Err(StorageError::Aborted("the media is gone".into()));
                }
                media_table::insert_thumbnail_txn(txn, &origin, &media_id, &row)?;
                store
                    .commit(staged)
                    .map_err(|e| StorageError::Aborted(format!("cannot store thumbnail: {e}")))
            })
            .await?;
        Ok(())
    }

    async fn row(&self, origin: &str, media_id: &str) -> MediaResult<Option<MediaRow>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        Ok(self
            .0
            .db
            .read(move |conn| media_table::get_media(conn, &origin, &media_id))
            .await?)
    }

    async fn open(&self, sha256: &str) -> MediaResult<(tokio::fs::File, u64)> {
        self.0.store.open(sha256).await.map_err(|e| {
            MediaError::Service(Error::Internal(format!("cannot open a media file: {e}")))
        })
    }

    /// Makes and stores the standard thumbnails of an image, in the background of its upload.
    /// The task holds the repository only while it works on a size, so a server shutting down
    /// is not kept waiting (its database handle closes once every holder is gone).
    fn pregenerate(&self, origin: String, media_id: String, sha256: String) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut made = 0;
            for (width, height, method) in thumbnail::STANDARD_SIZES {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let media = Media(inner);
                match media
                    .make_thumbnail(&origin, &media_id, &sha256, width, height, method)
                    .await
                {
                    Ok(_) => made += 1,
                    Err(e) => {
                        tracing::debug!(error = %e, "no thumbnails for an upload");
                        break;
                    }
                }
            }
            tracing::debug!(thumbnails = made, "thumbnails made in advance");
        });
    }

    /// Decodes the file and stores its thumbnail for a standard size (on the blocking pool, one
    /// image at a time).
    async fn make_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        sha256: &str,
        width: u32,
        height: u32,
        method: Method,
    ) -> MediaResult<ThumbnailRow> {
        let _permit = self
            .0
            .thumbnailer
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let path = self
            .0
            .store
            .path_of(sha256)
            .ok_or_else(|| Error::Internal("a stored hash is malformed".into()))?;
        let max_pixels = self.0.config.max_image_pixels;
        let made = tokio::task::spawn_blocking(move || {
            thumbnail::decode(&path, max_pixels)?.thumbnail(width, height, method)
        })
        .await
        .map_err(|e| Error::Internal(format!("the thumbnailer failed: {e}")))?
        .map_err(|e| match e {
            thumbnail::ThumbnailError::Io(e) => Error::Internal(format!("thumbnailing: {e}")),
            other => Error::Unsupported(format!("cannot make a thumbnail: {other}")),
        })?;
        let staged = self.0.store.stage_bytes(made.bytes, u64::MAX).await?;
        let row = ThumbnailRow {
            width,
            height,
            method: method.as_str().to_owned(),
            sha256: staged.sha256.clone(),
            size: staged.size,
            content_type: made.content_type.to_owned(),
        };
        self.insert_thumbnail(origin, media_id, row.clone(), staged)
            .await?;
        Ok(row)
    }
}

/// A media id made here or asked for: 1 to 255 of `[A-Za-z0-9_-]`. Anything else (path tricks
/// included) cannot name a medium.
pub fn valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A client's file name, kept for `Content-Disposition`: control characters dropped, path
/// separators kept as text (the name never touches the file system), length bounded.
pub fn clean_filename(name: Option<&str>) -> Option<String> {
    let cleaned: String = name?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

fn not_found() -> MediaError {
    MediaError::Service(Error::NotFound("no such media".into()))
}

impl Services {
    /// `POST /upload`: stores a file from a local user and returns its `mxc://` URI.
    pub async fn upload_media<S, B, E>(
        &self,
        user: &UserId,
        content_type: Option<&str>,
        filename: Option<&str>,
        body: S,
    ) -> MediaResult<OwnedMxcUri>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let limit = self.media.config().max_upload_size;
        let staged = self.media.store().stage(body, limit).await?;
        let media_id = super::random_string(MEDIA_ID_LENGTH);
        let sha256 = staged.sha256.clone();
        let row = MediaRow {
            origin: self.server_name().to_string(),
            media_id: media_id.clone(),
            sha256: Some(sha256.clone()),
            size: Some(staged.size),
            content_type: content_type.map(str::to_owned),
            filename: clean_filename(filename),
            uploader: Some(user.to_string()),
            created_ts: now_ms(),
            expires_ts: None,
            quarantined: false,
        };
        let size = staged.size;
        self.media.insert(row, staged).await?;
        if thumbnail::is_thumbnailable(content_type) && size <= MAX_PREGENERATE_BYTES {
            self.media
                .pregenerate(self.server_name().to_string(), media_id.clone(), sha256);
        }
        tracing::info!(media.id = %media_id, size, "media uploaded");
        Ok(OwnedMxcUri::from(format!(
            "mxc://{}/{media_id}",
            self.server_name()
        )))
    }

    /// `POST /create`: reserves a media id for an asynchronous upload by `user`. Returns the URI
    /// and when it expires unused.
    pub async fn create_pending_media(&self, user: &UserId) -> MediaResult<(OwnedMxcUri, i64)> {
        let config = self.media.config();
        let max = config.max_pending_uploads as u64;
        let now = now_ms();
        let expires = now + (config.pending_upload_lifetime_secs as i64).saturating_mul(1000);
        let media_id = super::random_string(MEDIA_ID_LENGTH);
        let row = MediaRow {
            origin: self.server_name().to_string(),
            media_id: media_id.clone(),
            sha256: None,
            size: None,
            content_type: None,
            filename: None,
            uploader: Some(user.to_string()),
            created_ts: now,
            expires_ts: Some(expires),
            quarantined: false,
        };
        let uploader = user.to_string();
        let created = self
            .db
            .write("create_pending_media", move |txn| {
                media_table::delete_expired_pending_txn(txn, now)?;
                if media_table::count_pending(txn, &uploader, now)? >= max {
                    return Ok(false);
                }
                media_table::insert_media_txn(txn, &row)
            })
            .await?;
        if !created {
            return Err(MediaError::Service(Error::LimitExceeded {
                retry_after: Duration::from_secs(60),
            }));
        }
        let uri = OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.server_name()));
        Ok((uri, expires))
    }

    /// `PUT /upload/{serverName}/{mediaId}`: the content of an id from `/create`.
    pub async fn upload_pending_media<S, B, E>(
        &self,
        user: &UserId,
        server_name: &str,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        body: S,
    ) -> MediaResult<()>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        if server_name != self.server_name().as_str() || !valid_media_id(media_id) {
            return Err(not_found());
        }
        let row = self.media.row(server_name, media_id).await?;
        let row = match row {
            Some(row) if row.expires_ts.is_none_or(|e| e >= now_ms()) || row.sha256.is_some() => {
                row
            }
            _ => return Err(not_found()),
        };
        if row.uploader.as_deref() != Some(user.as_str()) {
            return Err(MediaError::Service(Error::Forbidden(
                "this media id was created by another user".into(),
            )));
        }
        if row.sha256.is_some() {
            return Err(MediaError::CannotOverwrite);
        }
        let limit = self.media.config().max_upload_size;
        let staged = self.media.store().stage(body, limit).await?;
        let sha256 = staged.sha256.clone();
        let size = staged.size;
        let (origin, id) = (server_name.to_owned(), media_id.to_owned());
        let (content_type, filename) = (content_type.map(str::to_owned), clean_filename(filename));
        let store = self.media.store().clone();
        let completed = self
            .db
            .write("complete_pending_media", {
                let sha256 = sha256.clone();
                let content_type = content_type.clone();
                move |txn| {
                    let done = media_table::complete_pending_txn(
                        txn,
                        &origin,
                        &id,
                        &sha256,
                        size,
                        content_type.as_deref(),
                        filename.as_deref(),
                    )?;
                    if done {
                        store.commit(staged).map_err(|e| {
                            StorageError::Aborted(format!("cannot store media file: {e}"))
                        })?;
                    }
                    Ok(done)
                }
            })
            .await?;
        if !completed {
            // Another upload to the same id won the race.
            return Err(MediaError::CannotOverwrite);
        }
        self.media.0.uploaded.send_modify(|n| *n += 1);
        if thumbnail::is_thumbnailable(content_type.as_deref()) && size <= MAX_PREGENERATE_BYTES {
            self.media
                .pregenerate(server_name.to_owned(), media_id.to_owned(), sha256);
        }
        Ok(())
    }

    /// The row of a medium whose content is here: local media (waiting up to `wait` for an
    /// asynchronous upload), or remote media from the cache, else fetched when `allow_remote`.
    /// Quarantined media and unknown ids are not found.
    async fn media_row_with_content(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
        allow_remote: bool,
    ) -> MediaResult<MediaRow> {
        let Ok(server) = <&ServerName>::try_from(server_name) else {
            return Err(not_found());
        };
        if !valid_media_id(media_id) {
            return Err(not_found());
        }
        if server != self.server_name() {
            let row = self.media.row(server_name, media_id).await?;
            return match row {
                Some(row) if row.quarantined => Err(not_found()),
                Some(row) if row.sha256.is_some() => Ok(row),
                _ if allow_remote => self.fetch_remote_media(server, media_id, wait).await,
                _ => Err(not_found()),
            };
        }
        let mut uploaded = self.media.0.uploaded.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            uploaded.borrow_and_update();
            let row = self.media.row(server_name, media_id).await?;
            match row {
                Some(row) if row.quarantined => return Err(not_found()),
                Some(row) if row.sha256.is_some() => return Ok(row),
                Some(row) if row.expires_ts.is_some_and(|e| e >= now_ms()) => {}
                _ => return Err(not_found()),
            }
            if tokio::time::timeout_at(deadline, uploaded.changed())
                .await
                .is_err()
            {
                return Err(MediaError::NotYetUploaded);
            }
        }
    }

    /// A medium's file for download.
    pub async fn media_download(
        &self,
        server_name: &str,
        media_id: &str,
        wait: Duration,
        allow_remote: bool,
    ) -> MediaResult<MediaFile> {
        let row = self
            .media_row_with_content(server_name, media_id, wait, allow_remote)
            .await?;
        let sha256 = row.sha256.unwrap_or_default();
        let (file, len) = self.media.open(&sha256).await?;
        Ok(MediaFile {
            file,
            len,
            content_type: row.content_type,
            filename: row.filename,
        })
    }

    /// A thumbnail of a medium: the stored one of the standard size answering the request, else
    /// made now (and kept). Remote media's thumbnails are asked of their server.
    pub async fn media_thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        (width, height, method): (u32, u32, Method),
        wait: Duration,
        allow_remote: bool,
    ) -> MediaResult<MediaFile> {
        let (width, height, method) = thumbnail::choose_size(width, height, method);
        let is_local = server_name == self.server_name().as_str();
        if !is_local && valid_media_id(media_id) {
            let row = self.media.row(server_name, media_id).await?;
            if row.as_ref().is_some_and(|r| r.quarantined) {
                return Err(not_found());
            }
            if let Some(found) = self
                .stored_thumbnail(server_name, media_id, width, height, method)
                .await?
            {
                return Ok(found);
            }
            if allow_remote
                && let Ok(server) = <&ServerName>::try_from(server_name)
                && let Some(found) = self
                    .fetch_remote_thumbnail(server, media_id, width, height, method, wait)
                    .await?
            {
                return Ok(found);
            }
        }
        let row = self
            .media_row_with_content(server_name, media_id, wait, allow_remote)
            .await?;
        if let Some(found) = self
            .stored_thumbnail(server_name, media_id, width, height, method)
            .await?
        {
            return Ok(found);
        }
        let sha256 = row.sha256.unwrap_or_default();
        let made = self
            .media
            .make_thumbnail(server_name, media_id, &sha256, width, height, method)
            .await?;
        let (file, len) = self.media.open(&made.sha256).await?;
        Ok(MediaFile {
            file,
            len,
            content_type: Some(made.content_type),
            filename: None,
        })
    }

    async fn stored_thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
    ) -> MediaResult<Option<MediaFile>> {
        let (origin, id) = (server_name.to_owned(), media_id.to_owned());
        let row = self
            .db
            .read(move |conn| {
                media_table::get_thumbnail(conn, &origin, &id, width, height, method.as_str())
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (file, len) = self.media.open(&row.sha256).await?;
        Ok(Some(MediaFile {
            file,
            len,
            content_type: Some(row.content_type),
            filename: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_plain_tokens() {
        assert!(valid_media_id("AbC_12-x"));
        for bad in [
            "",
            "../etc",
            "a/b",
            "a.b",
            "%2e%2e",
            "a b",
            &"x".repeat(256),
        ] {
            assert!(!valid_media_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn file_names_lose_control_characters_and_stay_bounded() {
        assert_eq!(
            clean_filename(Some("a\nb\u{0}.txt")).as_deref(),
            Some("ab.txt")
        );
        assert_eq!(clean_filename(Some("  ")), None);
        assert_eq!(clean_filename(None), None);
        assert_eq!(
            clean_filename(Some(&"é".repeat(300))).map(|n| n.chars().count()),
            Some(255)
        );
    }
}
