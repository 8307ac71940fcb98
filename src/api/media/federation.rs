//! This server's media for other servers: `GET /_matrix/federation/v1/media/download/{mediaId}`
//! and `/thumbnail/{mediaId}`, authenticated with `X-Matrix` like every federation endpoint and
//! answered as `multipart/mixed` — a JSON metadata part (empty), then the file with its
//! `Content-Type` and `Content-Disposition`, streamed from disk. Only local media is served;
//! other servers' media cached here is theirs to serve.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::on;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};

use super::download::file_stream;
use super::headers::{content_disposition, content_type};
use super::{Reply, method_of, on_endpoint};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::federation::auth::Signed;
use crate::service::media::MediaFile;
use crate::service::media::thumbnail::Method;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = on_endpoint::<get_content::v1::Request>(
        router,
        on(method_of::<get_content::v1::Request>(), download),
    );
    on_endpoint::<get_content_thumbnail::v1::Request>(
        router,
        on(method_of::<get_content_thumbnail::v1::Request>(), thumbnail),
    )
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`
async fn download(
    State(state): State<AppState>,
    request: Signed<get_content::v1::Request>,
) -> Reply {
    let body = request.body;
    let file = state
        .media_download(
            state.server_name().as_str(),
            &body.media_id,
            body.timeout_ms,
            false,
        )
        .await?;
    Ok(multipart(file))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
async fn thumbnail(
    State(state): State<AppState>,
    request: Signed<get_content_thumbnail::v1::Request>,
) -> Reply {
    let body = request.body;
    let dimension = |value: ruma::UInt, name: &str| {
        u32::try_from(u64::from(value))
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ApiError::InvalidParam(format!("{name} must be a positive integer")))
    };
    let method = match body.method.as_ref().map(|m| m.as_str()) {
        Some("crop") => Method::Crop,
        _ => Method::Scale,
    };
    let file = state
        .media_thumbnail(
            state.server_name().as_str(),
            &body.media_id,
            (
                dimension(body.width, "width")?,
                dimension(body.height, "height")?,
                method,
            ),
            body.timeout_ms,
            false,
        )
        .await?;
    Ok(multipart(file))
}

/// The multipart answer: metadata, then the file as a stream.
fn multipart(file: MediaFile) -> Response {
    let boundary = crate::service::random_string(32);
    let kind = content_type(file.content_type.as_deref());
    let disposition = content_disposition(&kind, file.filename.as_deref());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {kind}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + file.len + tail.len() as u64;
    let stream = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file_stream(file.file, 0, file.len))
        .chain(futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(Bytes::from(tail))
        }));
    let mut response = Response::new(Body::from_stream(stream));
    let content_type = format!("multipart/mixed; boundary={boundary}");
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}
