//! Downloads and thumbnails: the authenticated `/_matrix/client/v1/media/download|thumbnail`
//! endpoints, and the legacy unauthenticated `/_matrix/media/v3/…` ones, which answer 404
//! `M_NOT_FOUND` unless `[media] legacy_unauthenticated` is on (the specification's freeze).
//!
//! Files stream from disk in chunks; `Range` requests get 206 (or 416), and every answer carries
//! the headers that keep a browser from running what a file holds.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::on;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use ruma::api::client::authenticated_media::{
    get_content as download_v1, get_content_as_filename as download_named_v1,
    get_content_thumbnail as thumbnail_v1,
};
use ruma::api::client::media::{
    get_content as download_v3, get_content_as_filename as download_named_v3,
    get_content_thumbnail as thumbnail_v3,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::headers::{
    CONTENT_SECURITY_POLICY, RangeRequest, content_disposition, content_type, parse_range,
};
use super::{Failure, Reply, Session, method_of, not_found, on_endpoint, query};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::service::media::thumbnail::Method;
use crate::service::media::{DEFAULT_WAIT, MediaFile};

/// Bytes read from disk per chunk of a response body.
const CHUNK: usize = 256 * 1024;

type Params = Result<Path<HashMap<String, String>>, axum::extract::rejection::PathRejection>;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = on_endpoint::<download_v1::v1::Request>(
        router,
        on(method_of::<download_v1::v1::Request>(), download),
    );
    let router = on_endpoint::<download_named_v1::v1::Request>(
        router,
        on(method_of::<download_named_v1::v1::Request>(), download),
    );
    let router = on_endpoint::<thumbnail_v1::v1::Request>(
        router,
        on(method_of::<thumbnail_v1::v1::Request>(), thumbnail),
    );
    legacy_routes(router)
}

/// The legacy unauthenticated download and thumbnail, also served on the federation listeners,
/// where servers that predate authenticated media ask for them.
// Deprecated since Matrix 1.11 and served on purpose, behind `[media] legacy_unauthenticated`.
#[allow(deprecated)]
pub fn legacy_routes(router: Router<AppState>) -> Router<AppState> {
    let router = on_endpoint::<download_v3::v3::Request>(
        router,
        on(method_of::<download_v3::v3::Request>(), legacy_download),
    );
    let router = on_endpoint::<download_named_v3::v3::Request>(
        router,
        on(
            method_of::<download_named_v3::v3::Request>(),
            legacy_download,
        ),
    );
    on_endpoint::<thumbnail_v3::v3::Request>(
        router,
        on(method_of::<thumbnail_v3::v3::Request>(), legacy_thumbnail),
    )
}

/// The `server_name`, `media_id` and optional `filename` of the path.
struct Target {
    server_name: String,
    media_id: String,
    filename: Option<String>,
}

fn target(params: Params) -> Result<Target, Failure> {
    let Ok(Path(mut params)) = params else {
        return Err(not_found());
    };
    Ok(Target {
        server_name: params.remove("server_name").ok_or_else(not_found)?,
        media_id: params.remove("media_id").ok_or_else(not_found)?,
        filename: params.remove("filename"),
    })
}

/// `timeout_ms` of the query: how long to wait for an asynchronous upload.
pub fn wait_of(query: &HashMap<String, String>) -> Result<Duration, Failure> {
    match query.get("timeout_ms") {
        None => Ok(DEFAULT_WAIT),
        Some(ms) => ms.parse::<u64>().map(Duration::from_millis).map_err(|_| {
            ApiError::InvalidParam("timeout_ms must be a number of milliseconds".into()).into()
        }),
    }
}

fn allow_remote(query: &HashMap<String, String>) -> bool {
    query.get("allow_remote").is_none_or(|v| v != "false")
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
async fn download(
    State(state): State<AppState>,
    _: Session,
    params: Params,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    let target = target(params)?;
    let query = query(&uri);
    let file = state
        .media_download(
            &target.server_name,
            &target.media_id,
            wait_of(&query)?,
            true,
        )
        .await?;
    Ok(file_response(file, target.filename.as_deref(), &headers))
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]` (legacy)
async fn legacy_download(
    State(state): State<AppState>,
    params: Params,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    if !state.media.config().legacy_unauthenticated {
        return Err(not_found());
    }
    let target = target(params)?;
    let query = query(&uri);
    let file = state
        .media_download(
            &target.server_name,
            &target.media_id,
            wait_of(&query)?,
            allow_remote(&query),
        )
        .await?;
    Ok(file_response(file, target.filename.as_deref(), &headers))
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
async fn thumbnail(
    State(state): State<AppState>,
    _: Session,
    params: Params,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    serve_thumbnail(&state, params, &uri, &headers, true).await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (legacy)
async fn legacy_thumbnail(
    State(state): State<AppState>,
    params: Params,
    uri: Uri,
    headers: HeaderMap,
) -> Reply {
    if !state.media.config().legacy_unauthenticated {
        return Err(not_found());
    }
    let remote = allow_remote(&query(&uri));
    serve_thumbnail(&state, params, &uri, &headers, remote).await
}

async fn serve_thumbnail(
    state: &AppState,
    params: Params,
    uri: &Uri,
    headers: &HeaderMap,
    allow_remote: bool,
) -> Reply {
    let target = target(params)?;
    let query = query(uri);
    let request = ThumbnailRequest::from_query(&query)?;
    let file = state
        .media_thumbnail(
            &target.server_name,
            &target.media_id,
            (request.width, request.height, request.method),
            wait_of(&query)?,
            allow_remote,
        )
        .await?;
    Ok(file_response(file, None, headers))
}

/// The size and method of a thumbnail request. `animated` is accepted and answered with a still
/// image (the first frame), which the specification allows.
pub struct ThumbnailRequest {
    pub width: u32,
    pub height: u32,
    pub method: Method,
}

impl ThumbnailRequest {
    pub fn from_query(query: &HashMap<String, String>) -> Result<ThumbnailRequest, Failure> {
        let dimension = |name: &str| -> Result<u32, Failure> {
            let value = query
                .get(name)
                .ok_or_else(|| ApiError::MissingParam(format!("{name} is required")))?;
            value.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                ApiError::InvalidParam(format!("{name} must be a positive integer")).into()
            })
        };
        let method = match query.get("method") {
            None => Method::Scale,
            Some(m) => Method::parse(m).ok_or_else(|| {
                ApiError::InvalidParam("method must be \"crop\" or \"scale\"".into())
            })?,
        };
        if let Some(animated) = query.get("animated")
            && animated != "true"
            && animated != "false"
        {
            return Err(ApiError::InvalidParam("animated must be true or false".into()).into());
        }
        Ok(ThumbnailRequest {
            width: dimension("width")?,
            height: dimension("height")?,
            method,
        })
    }
}

/// The answer for a stored file: its bytes (or the asked range) streamed, with safe headers.
pub fn file_response(file: MediaFile, filename: Option<&str>, request: &HeaderMap) -> Response {
    let MediaFile {
        file,
        len,
        content_type: stored_type,
        filename: stored_name,
    } = file;
    let content_type = content_type(stored_type.as_deref());
    let disposition = content_disposition(&content_type, filename.or(stored_name.as_deref()));
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(
                &mut response,
                header::CONTENT_RANGE,
                format!("bytes */{len}"),
            );
            safe_headers(&mut response);
            return response;
        }
    };
    let mut response = Response::new(Body::from_stream(file_stream(file, start, count)));
    *response.status_mut() = status;
    set(&mut response, header::CONTENT_TYPE, content_type);
    set(&mut response, header::CONTENT_DISPOSITION, disposition);
    set(&mut response, header::CONTENT_LENGTH, count.to_string());
    set(&mut response, header::ACCEPT_RANGES, "bytes".to_owned());
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + count - 1;
        set(
            &mut response,
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{len}"),
        );
    }
    safe_headers(&mut response);
    response
}

fn safe_headers(response: &mut Response) {
    set(
        response,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.to_owned(),
    );
    set(
        response,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "cross-origin".to_owned(),
    );
    set(
        response,
        header::X_CONTENT_TYPE_OPTIONS,
        "nosniff".to_owned(),
    );
    set(
        response,
        header::CACHE_CONTROL,
        "private, max-age=86400".to_owned(),
    );
}

fn set(response: &mut Response, name: header::HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

/// `count` bytes of `file` from `start`, read in chunks as the client takes them.
pub fn file_stream(
    file: tokio::fs::File,
    start: u64,
    count: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (file, start, count, false),
        |(mut file, start, remaining, mut positioned)| async move {
            if remaining == 0 {
                return None;
            }
            if !positioned {
                if start > 0
                    && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
                {
                    return Some((Err(e), (file, start, 0, true)));
                }
                positioned = true;
            }
            let mut buffer = vec![0u8; CHUNK.min(remaining as usize)];
            match file.read(&mut buffer).await {
                // The file cannot shrink (it is content-addressed); end rather than loop.
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    let left = remaining - n as u64;
                    Some((Ok(Bytes::from(buffer)), (file, start, left, positioned)))
                }
                Err(e) => Some((Err(e), (file, start, 0, positioned))),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn thumbnail_parameters_are_checked() {
        let ok = ThumbnailRequest::from_query(&q(&[("width", "32"), ("height", "32")])).unwrap();
        assert_eq!((ok.width, ok.height, ok.method), (32, 32, Method::Scale));
        let crop = ThumbnailRequest::from_query(&q(&[
            ("width", "96"),
            ("height", "96"),
            ("method", "crop"),
            ("animated", "true"),
        ]))
        .unwrap();
        assert_eq!(crop.method, Method::Crop);
        for bad in [
            q(&[("height", "32")]),
            q(&[("width", "-1"), ("height", "32")]),
            q(&[("width", "0"), ("height", "32")]),
            q(&[("width", "1.5"), ("height", "32")]),
            q(&[("width", "32"), ("height", "32"), ("method", "stretch")]),
        ] {
            assert!(ThumbnailRequest::from_query(&bad).is_err(), "{bad:?}");
        }
    }
}
