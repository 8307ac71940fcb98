//! Other servers' media: fetched over federation (`GET /_matrix/federation/v1/media/download` and
//! `/thumbnail`, answered as `multipart/mixed`: a JSON part, then the content or a `Location` to
//! fetch it from), with the legacy `GET /_matrix/media/v3/download/{server}/{id}?allow_remote=false`
//! for servers that predate authenticated media; then cached like local media.
//!
//! `Federation::send_raw` reads a response whole (up to its own limit), so a remote file passes
//! through memory once on its way to disk; local uploads and all downloads stream.

use std::sync::Arc;
use std::time::Duration;

use ruma::ServerName;

use super::thumbnail::Method;
use super::{MediaError, MediaFile, MediaResult, clean_filename, not_found};
use crate::federation::client::SendError;
use crate::service::{Error, Services};
use crate::storage::media::{self as media_table, MediaRow, ThumbnailRow};
use crate::storage::{StorageError, now_ms};

/// What a remote server sent: the content, its type and its file name.
struct Fetched {
    bytes: Vec<u8>,
    content_type: Option<String>,
    filename: Option<String>,
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
        let response = self.remote_get(server, &path).await?;
        let fetched = if is_unrecognized(&response) {
            let legacy = format!(
                "/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false&timeout_ms={timeout_ms}"
            );
            let response = self.remote_get(server, &legacy).await?;
            check_status(server, &response)?;
            let (parts, bytes) = response.into_parts();
            Fetched {
                content_type: header(&parts.headers, http::header::CONTENT_TYPE),
                filename: header(&parts.headers, http::header::CONTENT_DISPOSITION)
                    .and_then(|d| disposition_filename(&d)),
                bytes,
            }
        } else {
            check_status(server, &response)?;
            self.read_multipart(server, response).await?
        };
        let limit = self.media.config().max_upload_size;
        let staged = self.media.store().stage_bytes(fetched.bytes, limit).await?;
        let row = MediaRow {
            origin: server.to_string(),
            media_id: media_id.to_owned(),
            sha256: Some(staged.sha256.clone()),
            size: Some(staged.size),
            content_type: fetched.content_type,
            filename: clean_filename(fetched.filename.as_deref()),
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
        let response = self.remote_get(server, &path).await?;
        if is_unrecognized(&response) {
            return Ok(None);
        }
        if response.status() == http::StatusCode::BAD_REQUEST {
            // The server has the file but no thumbnail of it: let the caller try itself.
            return Ok(None);
        }
        check_status(server, &response)?;
        let fetched = self.read_multipart(server, response).await?;
        let content_type = fetched
            .content_type
            .filter(|t| t.starts_with("image/"))
            .ok_or_else(|| {
                MediaError::Service(Error::RemoteServer(format!(
                    "{server} sent a thumbnail that is not an image"
                )))
            })?;
        let limit = self.media.config().max_upload_size;
        let staged = self.media.store().stage_bytes(fetched.bytes, limit).await?;
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

    async fn remote_get(
        &self,
        server: &ServerName,
        path: &str,
    ) -> MediaResult<http::Response<Vec<u8>>> {
        self.federation
            .send_raw(server, http::Method::GET, path, Vec::new())
            .await
            .map_err(|e| MediaError::Service(send_error(e)))
    }

    /// The content of a `multipart/mixed` federation answer, following a `Location` part.
    async fn read_multipart(
        &self,
        server: &ServerName,
        response: http::Response<Vec<u8>>,
    ) -> MediaResult<Fetched> {
        let bad = |reason: &str| {
            MediaError::Service(Error::RemoteServer(format!(
                "{server} sent unreadable media: {reason}"
            )))
        };
        let content_type = header(response.headers(), http::header::CONTENT_TYPE)
            .ok_or_else(|| bad("no content type"))?;
        let boundary = boundary_of(&content_type).ok_or_else(|| bad("not multipart"))?;
        let mut parts =
            parse_multipart(response.body(), &boundary).ok_or_else(|| bad("malformed"))?;
        if parts.len() < 2 {
            return Err(bad("no content part"));
        }
        let content = parts.swap_remove(1);
        let headers = content.headers;
        if let Some(location) = find_header(&headers, "location") {
            return self.follow_location(server, &location).await;
        }
        Ok(Fetched {
            content_type: find_header(&headers, "content-type"),
            filename: find_header(&headers, "content-disposition")
                .and_then(|d| disposition_filename(&d)),
            bytes: content.body,
        })
    }

    /// Fetches the content a remote server pointed to (a plain, unauthenticated GET).
    async fn follow_location(&self, server: &ServerName, location: &str) -> MediaResult<Fetched> {
        let failed = |reason: String| {
            MediaError::Service(Error::RemoteServer(format!(
                "cannot fetch media {server} redirected to: {reason}"
            )))
        };
        let limit = self.media.config().max_upload_size;
        let mut response = self
            .media
            .0
            .preview
            .redirect_client()
            .ok_or_else(|| failed("no HTTP client".into()))?
            .get(location)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        let content_type = header(response.headers(), http::header::CONTENT_TYPE);
        let filename = header(response.headers(), http::header::CONTENT_DISPOSITION)
            .and_then(|d| disposition_filename(&d));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(MediaError::Service(Error::TooLarge(format!(
                    "the remote file is larger than {limit} bytes"
                ))));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            bytes,
            content_type,
            filename,
        })
    }
}

/// Whether a server answered that it does not know the endpoint (an older server).
fn is_unrecognized(response: &http::Response<Vec<u8>>) -> bool {
    let status = response.status();
    if status == http::StatusCode::METHOD_NOT_ALLOWED {
        return true;
    }
    if status != http::StatusCode::NOT_FOUND && status != http::StatusCode::BAD_REQUEST {
        return false;
    }
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
    match body.get("errcode").and_then(|c| c.as_str()) {
        Some(code) => code == "M_UNRECOGNIZED",
        // A 404 without a Matrix error body: no such endpoint.
        None => status == http::StatusCode::NOT_FOUND,
    }
}

fn check_status(server: &ServerName, response: &http::Response<Vec<u8>>) -> MediaResult<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
    let errcode = body.get("errcode").and_then(|c| c.as_str()).unwrap_or("");
    Err(match (status.as_u16(), errcode) {
        (404, _) => MediaError::Service(Error::NotFound(format!("{server} has no such media"))),
        (504, "M_NOT_YET_UPLOADED") => MediaError::NotYetUploaded,
        (413, _) => MediaError::Service(Error::TooLarge(format!(
            "{server} refused: the media is too large"
        ))),
        _ => MediaError::Service(Error::RemoteServer(format!(
            "{server} answered {status} {errcode}"
        ))),
    })
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

/// The `boundary` parameter of a `multipart/…` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim().to_ascii_lowercase();
    if !essence.starts_with("multipart/") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        (name.trim().eq_ignore_ascii_case("boundary"))
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// One part of a multipart body.
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Splits a multipart body (RFC 2046) into its parts; `None` when it is malformed.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut start = find(body, &delimiter, 0)? + delimiter.len();
    let mut parts = Vec::new();
    loop {
        if body[start..].starts_with(b"--") {
            return Some(parts);
        }
        // Skip to the end of the delimiter line.
        start += find(&body[start..], b"\r\n", 0)? + 2;
        let next = find(body, &[b"\r\n", &delimiter[..]].concat(), start)?;
        let part = &body[start..next];
        let (head, content) = match find(part, b"\r\n\r\n", 0) {
            Some(split) => (&part[..split], &part[split + 4..]),
            None if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
            None => (part, &part[part.len()..]),
        };
        let headers = String::from_utf8_lossy(head)
            .split("\r\n")
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect();
        parts.push(Part {
            headers,
            body: content.to_vec(),
        });
        start = next + 2 + delimiter.len();
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn find_header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
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
    fn a_federation_media_answer_splits_into_its_parts() {
        let body = b"--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\n\
Content-Type: text/plain\r\nContent-Disposition: attachment; filename*=utf-8''caf%C3%A9.txt\r\n\r\n\
line one\r\n--not the boundary\r\n\r\n--xyz--\r\n";
        let parts = parse_multipart(body, "xyz").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, b"{}");
        assert_eq!(parts[1].body, b"line one\r\n--not the boundary\r\n");
        let disposition = find_header(&parts[1].headers, "content-disposition").unwrap();
        assert_eq!(
            disposition_filename(&disposition).as_deref(),
            Some("café.txt")
        );
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"xyz\"").as_deref(),
            Some("xyz")
        );
        assert!(boundary_of("application/json").is_none());
        assert!(parse_multipart(b"garbage", "xyz").is_none());
    }

    #[test]
    fn a_location_part_has_no_body() {
        let body = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--";
        let parts = parse_multipart(body, "b").unwrap();
        assert_eq!(
            find_header(&parts[1].headers, "location").as_deref(),
            Some("https://cdn.example/x")
        );
        assert!(parts[1].body.is_empty());
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
