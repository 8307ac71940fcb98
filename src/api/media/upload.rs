//! Uploads: `POST /upload`, `POST /create` with `PUT /upload/{serverName}/{mediaId}` for
//! asynchronous uploads, and the limits in `/config`. Bodies stream to disk; a declared length
//! over the limit is refused before a byte is read.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::on;
use http::{HeaderMap, Uri};
use ruma::api::client::authenticated_media::get_media_config as config_v1;
use ruma::api::client::media::{
    create_content, create_content_async, create_mxc_uri, get_media_config as config_v3,
};
use serde_json::json;

use super::{Failure, Reply, Session, json, method_of, on_endpoint, query};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::service::media::MediaError;

// The legacy endpoints, deprecated since Matrix 1.11, are served on purpose (behind
// `[media] legacy_unauthenticated`).
#[allow(deprecated)]
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = on_endpoint::<create_content::v3::Request>(
        router,
        on(method_of::<create_content::v3::Request>(), upload),
    );
    let router = on_endpoint::<create_mxc_uri::v1::Request>(
        router,
        on(method_of::<create_mxc_uri::v1::Request>(), create),
    );
    let router = on_endpoint::<create_content_async::v3::Request>(
        router,
        on(
            method_of::<create_content_async::v3::Request>(),
            upload_async,
        ),
    );
    let router = on_endpoint::<config_v1::v1::Request>(
        router,
        on(method_of::<config_v1::v1::Request>(), config),
    );
    on_endpoint::<config_v3::v3::Request>(
        router,
        on(method_of::<config_v3::v3::Request>(), legacy_config),
    )
}

/// The upload's declared type and file name, and its declared length checked against the limit.
fn describe(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<Upload, Failure> {
    let limit = state.media.config().max_upload_size;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge(format!(
            "the file is larger than the limit of {limit} bytes"
        ))
        .into());
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Upload {
        content_type,
        filename: query(uri).remove("filename"),
    })
}

struct Upload {
    content_type: Option<String>,
    filename: Option<String>,
}

/// `POST /_matrix/media/v3/upload`
async fn upload(
    State(state): State<AppState>,
    Session(session): Session,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let upload = describe(&state, &uri, &headers)?;
    let uri = state
        .upload_media(
            &session.user_id,
            upload.content_type.as_deref(),
            upload.filename.as_deref(),
            body.into_data_stream(),
        )
        .await?;
    Ok(json(json!({ "content_uri": uri })))
}

/// `POST /_matrix/media/v1/create`
async fn create(State(state): State<AppState>, Session(session): Session) -> Reply {
    let (uri, expires) = state.create_pending_media(&session.user_id).await?;
    Ok(json(
        json!({ "content_uri": uri, "unused_expires_at": expires }),
    ))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
async fn upload_async(
    State(state): State<AppState>,
    Session(session): Session,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let Ok(Path((server_name, media_id))) = path else {
        return Err(
            MediaError::Service(crate::service::Error::NotFound("no such media".into())).into(),
        );
    };
    let upload = describe(&state, &uri, &headers)?;
    state
        .upload_pending_media(
            &session.user_id,
            &server_name,
            &media_id,
            upload.content_type.as_deref(),
            upload.filename.as_deref(),
            body.into_data_stream(),
        )
        .await?;
    Ok(json(json!({})))
}

/// `GET /_matrix/client/v1/media/config`
async fn config(State(state): State<AppState>, _: Session) -> Response {
    json(json!({ "m.upload.size": state.media.config().max_upload_size }))
}

/// `GET /_matrix/media/v3/config` (legacy; see `[media] legacy_unauthenticated`)
async fn legacy_config(State(state): State<AppState>) -> Reply {
    if !state.media.config().legacy_unauthenticated {
        return Err(super::not_found());
    }
    Ok(json(
        json!({ "m.upload.size": state.media.config().max_upload_size }),
    ))
}
