//! Other servers' media: fetched over federation (`GET /_matrix/federation/v1/media/download` and
//! `/thumbnail`, answered as `multipart/mixed`: a JSON part, then the content or a `Location` to
//! fetch it from), with the legacy `GET /_matrix/media/v3/download/{server}/{id}?allow_remote=false`
//! for servers that predate authenticated media; then cached like local media.
//!
//! A remote file never passes through memory whole: the answer streams from the other server
//! (`Federation::send_streaming`, or a plain GET for a `Location`) through the multipart reader
//! into the blob store's staging, the path uploads take, and `[media] max_upload_size` holds as it
//! is read. A larger file is refused with 502 `M_TOO_LARGE` (what the specification documents for
//! content too large to serve, and what Synapse answers) and its partial file removed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt, TryStreamExt};
use hyper::body::Bytes;
use ruma::ServerName;

use super::multipart::{MultipartReader, boundary_of};
use super::store::StageError;
use super::thumbnail::Method;
use super::{MediaError, MediaFile, MediaResult, clean_filename, not_found};
use crate::federation::client::{self, BodyStream, SendError};
use crate::service::{Error, Services};
use crate::storage::media::{self as media_table, MediaRow, ThumbnailRow};
use crate::storage::{StorageError, now_ms};

/// How long reading a remote file may take, on top of the wait for a pending upload.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of a multipart answer's JSON part read (it is empty in practice).
const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The most of an error answer read, for its `errcode`.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// A remote file on its way: its type and name, and its content still to be read.
struct Incoming {
    content_type: Option<String>,
    filename: Option<String>,
    /// The length the sender declared, if it did.
    length: Option<u64>,
    content: Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>,
}

/// What a remote server answered: its head and a body still to be read, or an error status.
enum Answer {
    Ok(http::Response<BodyStream>),
    Failed {
        status: http::StatusCode,
        errcode: Option<String>,
    },
}

impl Services {
    /// Fetches a remote medium (once, however many ask at the same time) and caches it.
    pub(super) async fn fetch_remote_media(
        &self,
        server: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> MediaResult<MediaRow> {
        let key = format!("{server}/{media_id}");
        let lock = {
            let mut fetches = self.media.0.fetches.lock().await;
            fetches
                .entry(key.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let guard = lock.lock().await;
        let outcome = self.fetch_remote_media_once(server, media_id, wait).await;
        drop(guard);
        let mut fetches = self.media.0.fetches.lock().await;
        if Arc::strong_count(&lock) <= 2 {
            fetches.remove(&key);
        }
        outcome
    }

    async fn fetch_remote_media_once(
        &self,
        server: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> MediaResult<MediaRow> {
        if let Some(row) = self.media.row(server.as_str(), media_id).await?
            && row.sha256.is_some()
        {
            return if row.quarantined {
                Err(not_found())
            } else {
                Ok(row)
            };
        }
        let timeout_ms = wait.as_millis();
        let path =
            format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={timeout_ms}");
        let incoming = match self.remote_get(server, &path, wait).await? {
            Answer::Ok(response) => self.read_multipart(server, response).await?,
            Answer::Failed { status, errcode } if is_unrecognized(status, errcode.as_deref()) => {
                let legacy = format!(
                    "/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false&timeout_ms={timeout_ms}"
                );
                match self.remote_get(server, &legacy, wait).await? {
                    Answer::Ok(response) => plain(response),
                    Answer::Failed { status, errcode } => {
                        return Err(refused(server, status, errcode.as_deref()));
                    }
                }
            }
            Answer::Failed { status, errcode } => {
                return Err(refused(server, status, errcode.as_deref()));
            }
        };
        let content_type = incoming.content_type.clone();
        let filename = clean_filename(incoming.filename.as_deref());
        let staged = self.stage_remote(server, incoming).await?;
        let row = MediaRow {
            origin: server.to_string(),
            media_id: media_id.to_owned(),
            sha256: Some(staged.sha256.clone()),
            size: Some(staged.size),
            content_type,
            filename,
            uploader: None,
            created_ts: now_ms(),
            expires_ts: None,
            quarantined: false,
        };
        let store = self.media.store().clone();
        let stored = row.clone();
        self.db
            .write("cache_remote_media", move |txn| {
                // A placeholder left by a thumbnail fetch is replaced by the full row.
                if media_table::get_media(txn, &stored.origin, &stored.media_id)?.is_some() {
                    let sha = stored.sha256.as_deref().unwrap_or_default();
                    media_table::complete_pending_txn(
                        txn,
                        &stored.origin,
                        &stored.media_id,
                        sha,
                        stored.size.unwrap_or(0),
                        stored.content_type.as_deref(),
                        stored.filename.as_deref(),
                    )?;
                } else {
                    media_table::insert_media_txn(txn, &stored)?;
                }
                store
                    .commit(staged)
                    .map_err(|e| StorageError::Aborted(format!("cannot store media file: {e}")))
            })
            .await?;
        tracing::info!(server.name = %server, media.id = media_id, "remote media cached");
        Ok(row)
    }

    /// Asks the remote server for a thumbnail and caches it; `None` when that server cannot
    /// thumbnail (the caller then makes one from the full file).
    pub(super) async fn fetch_remote_thumbnail(
        &self,
        server: &ServerName,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
        wait: Duration,
    ) -> MediaResult<Option<MediaFile>> {
        let path = format!(
            "/_matrix/federation/v1/media/thumbnail/{media_id}?width={width}&height={height}\
             &method={}&animated=false&timeout_ms={}",
            method.as_str(),
            wait.as_millis()
        );
        let incoming = match self.remote_get(server, &path, wait).await? {
            Answer::Ok(response) => self.read_multipart(server, response).await?,
            // An older server, or one that has the file but no thumbnail of it: the caller tries
            // itself.
            Answer::Failed { status, errcode }
                if status == http::StatusCode::BAD_REQUEST
                    || is_unrecognized(status, errcode.as_deref()) =>
            {
                return Ok(None);
            }
            Answer::Failed { status, errcode } => {
                return Err(refused(server, status, errcode.as_deref()));
            }
        };
        let content_type = incoming
            .content_type
            .clone()
            .filter(|t| t.starts_with("image/"))
            .ok_or_else(|| {
                MediaError::Service(Error::RemoteServer(format!(
                    "{server} sent a thumbnail that is not an image"
                )))
            })?;
        let staged = self.stage_remote(server, incoming).await?;
        let row = ThumbnailRow {
            width,
            height,
            method: method.as_str().to_owned(),
            sha256: staged.sha256.clone(),
            size: staged.size,
            content_type: content_type.clone(),
        };
        let placeholder = MediaRow {
            origin: server.to_string(),
            media_id: media_id.to_owned(),
            sha256: None,
            size: None,
            content_type: None,
            filename: None,
            uploader: None,
            created_ts: now_ms(),
            expires_ts: None,
            quarantined: false,
        };
        let store = self.media.store().clone();
        let (origin, id) = (server.to_string(), media_id.to_owned());
        let sha256 = row.sha256.clone();
        self.db
            .write("cache_remote_thumbnail", move |txn| {
                // Thumbnails always hang off a media row, so quarantine and deletion reach them.
                media_table::insert_media_txn(txn, &placeholder)?;
                media_table::insert_thumbnail_txn(txn, &origin, &id, &row)?;
                store
                    .commit(staged)
                    .map_err(|e| StorageError::Aborted(format!("cannot store thumbnail: {e}")))
            })
            .await?;
        let (file, len) = self.media.open(&sha256).await?;
        Ok(Some(MediaFile {
            file,
            len,
            content_type: Some(content_type),
            filename: None,
        }))
    }

    /// A signed GET to `server`; an error answer is read (a little of it) for its `errcode`.
    async fn remote_get(
        &self,
        server: &ServerName,
        path: &str,
        wait: Duration,
    ) -> MediaResult<Answer> {
        let response = self
            .federation
            .send_streaming(server, http::Method::GET, path, wait + TRANSFER_TIMEOUT)
            .await
            .map_err(|e| MediaError::Service(send_error(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer::Ok(response));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while bytes.len() < MAX_ERROR_BYTES
            && let Some(Ok(chunk)) = body.next().await
        {
            bytes.extend_from_slice(&chunk);
        }
        let errcode = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|body| body.get("errcode")?.as_str().map(str::to_owned));
        Ok(Answer::Failed { status, errcode })
    }

    /// The content part of a `multipart/mixed` federation answer, or what its `Location` part
    /// points to.
    async fn read_multipart(
        &self,
        server: &ServerName,
        response: http::Response<BodyStream>,
    ) -> MediaResult<Incoming> {
        let bad = |reason: String| {
            MediaError::Service(Error::RemoteServer(format!(
                "{server} sent unreadable media: {reason}"
            )))
        };
        let content_type = header(response.headers(), http::header::CONTENT_TYPE)
            .ok_or_else(|| bad("no content type".into()))?;
        let boundary = boundary_of(&content_type).ok_or_else(|| bad("not multipart".into()))?;
        let mut reader = MultipartReader::new(response.into_body(), &boundary);
        reader
            .next_part()
            .await
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("no metadata part".into()))?;
        reader
            .read_to_end(MAX_METADATA_BYTES)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let headers = reader
            .next_part()
            .await
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("no content part".into()))?;
        if let Some(location) = headers.get("location") {
            return self.follow_location(server, location).await;
        }
        Ok(Incoming {
            content_type: headers.get("content-type").map(str::to_owned),
            filename: headers
                .get("content-disposition")
                .and_then(disposition_filename),
            length: headers.get("content-length").and_then(|l| l.parse().ok()),
            content: Box::pin(
                reader
                    .into_content()
                    .map_ok(Bytes::from)
                    .map_err(|e| e.to_string()),
            ),
        })
    }

    /// The content a remote server pointed to (a plain, unauthenticated GET).
    async fn follow_location(&self, server: &ServerName, location: &str) -> MediaResult<Incoming> {
        let failed = |reason: String| {
            MediaError::Service(Error::RemoteServer(format!(
                "cannot fetch media {server} redirected to: {reason}"
            )))
        };
        // The address is checked like a URL preview's: a remote server cannot point this server
        // at its own network.
        let (_, response) = self
            .media
            .0
            .preview
            .get_checked(location, TRANSFER_TIMEOUT)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        Ok(Incoming {
            content_type: header(response.headers(), http::header::CONTENT_TYPE),
            filename: header(response.headers(), http::header::CONTENT_DISPOSITION)
                .and_then(|d| disposition_filename(&d)),
            length: response.content_length(),
            content: Box::pin(client::chunks(response).map_err(|e| e.to_string())),
        })
    }

    /// Streams a remote file into the blob store's staging, refusing it (and leaving nothing
    /// behind) once it is larger than `[media] max_upload_size`.
    async fn stage_remote(
        &self,
        server: &ServerName,
        incoming: Incoming,
    ) -> MediaResult<super::store::StagedFile> {
        let limit = self.media.config().max_upload_size;
        if incoming.length.is_some_and(|length| length > limit) {
            return Err(too_large(server, limit));
        }
        self.media
            .store()
            .stage(incoming.content, limit)
            .await
            .map_err(|e| match e {
                StageError::TooLarge(limit) => too_large(server, limit),
                StageError::Body(reason) => MediaError::Service(Error::RemoteServer(format!(
                    "the media from {server} was cut short: {reason}"
                ))),
                other => other.into(),
            })
    }
}

/// The legacy download's answer: the file is the body.
fn plain(response: http::Response<BodyStream>) -> Incoming {
    let headers = response.headers();
    Incoming {
        content_type: header(headers, http::header::CONTENT_TYPE),
        filename: header(headers, http::header::CONTENT_DISPOSITION)
            .and_then(|d| disposition_filename(&d)),
        length: header(headers, http::header::CONTENT_LENGTH).and_then(|l| l.parse().ok()),
        content: Box::pin(response.into_body().map_err(|e| e.to_string())),
    }
}

/// Whether a server answered that it does not know the endpoint (an older server).
fn is_unrecognized(status: http::StatusCode, errcode: Option<&str>) -> bool {
    match status {
        http::StatusCode::METHOD_NOT_ALLOWED => true,
        http::StatusCode::NOT_FOUND | http::StatusCode::BAD_REQUEST => match errcode {
            Some(code) => code == "M_UNRECOGNIZED",
            // A 404 without a Matrix error body: no such endpoint.
            None => status == http::StatusCode::NOT_FOUND,
        },
        _ => false,
    }
}

/// The error for a remote server's refusal.
fn refused(server: &ServerName, status: http::StatusCode, errcode: Option<&str>) -> MediaError {
    let errcode = errcode.unwrap_or("");
    match (status.as_u16(), errcode) {
        (404, _) => MediaError::Service(Error::NotFound(format!("{server} has no such media"))),
        (504, "M_NOT_YET_UPLOADED") => MediaError::NotYetUploaded,
        (413, _) | (502, "M_TOO_LARGE") => {
            MediaError::RemoteTooLarge(format!("{server} refused: the media is too large"))
        }
        _ => MediaError::Service(Error::RemoteServer(format!(
            "{server} answered {status} {errcode}"
        ))),
    }
}

fn too_large(server: &ServerName, limit: u64) -> MediaError {
    MediaError::RemoteTooLarge(format!(
        "the media on {server} is larger than this server's limit of {limit} bytes"
    ))
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::Disabled => Error::NotFound("federation is off on this server".into()),
        SendError::InvalidName(e) => Error::NotFound(format!("unknown server: {e}")),
        SendError::Denied(server) => Error::Forbidden(format!(
            "{server} is not allowed to federate with this server"
        )),
        other => Error::RemoteServer(other.to_string()),
    }
}

fn header(headers: &http::HeaderMap, name: http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The file name of a `Content-Disposition` value (`filename*=utf-8''…` preferred).
pub fn disposition_filename(value: &str) -> Option<String> {
    let params: Vec<(String, String)> = value
        .split(';')
        .skip(1)
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    if let Some((_, extended)) = params.iter().find(|(n, _)| n == "filename*")
        && let Some((charset, rest)) = extended.split_once('\'')
        && charset.eq_ignore_ascii_case("utf-8")
        && let Some((_, encoded)) = rest.split_once('\'')
    {
        let decoded: Vec<u8> = percent_decode(encoded);
        if let Ok(name) = String::from_utf8(decoded) {
            return Some(name);
        }
    }
    params
        .into_iter()
        .find(|(n, _)| n == "filename")
        .map(|(_, v)| v.trim_matches('"').replace("\\\"", "\""))
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_file_names_are_decoded() {
        assert_eq!(
            disposition_filename("attachment; filename*=utf-8''caf%C3%A9.txt").as_deref(),
            Some("café.txt")
        );
    }

    #[test]
    fn plain_file_names_are_read_too() {
        assert_eq!(
            disposition_filename("inline; filename=\"a b.png\"").as_deref(),
            Some("a b.png")
        );
        assert_eq!(disposition_filename("inline"), None);
    }
}
