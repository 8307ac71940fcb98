//! URL previews: `GET /_matrix/client/v1/media/preview_url` (and the legacy
//! `/_matrix/media/v3/preview_url` when `[media] legacy_unauthenticated` is on). Off unless
//! `[media] url_preview`; the service refuses private addresses.

use axum::Router;
use axum::extract::State;
use axum::routing::on;
use http::Uri;
use ruma::api::client::authenticated_media::get_media_preview as preview_v1;
use ruma::api::client::media::get_media_preview as preview_v3;

use super::{Reply, Session, json, method_of, not_found, on_endpoint, query};
use crate::api::AppState;
use crate::api::error::ApiError;

// The legacy endpoints, deprecated since Matrix 1.11, are served on purpose (behind
// `[media] legacy_unauthenticated`).
#[allow(deprecated)]
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = on_endpoint::<preview_v1::v1::Request>(
        router,
        on(method_of::<preview_v1::v1::Request>(), preview),
    );
    on_endpoint::<preview_v3::v3::Request>(
        router,
        on(method_of::<preview_v3::v3::Request>(), legacy_preview),
    )
}

/// `GET /_matrix/client/v1/media/preview_url`
async fn preview(State(state): State<AppState>, Session(session): Session, uri: Uri) -> Reply {
    let url = query(&uri)
        .remove("url")
        .ok_or_else(|| ApiError::MissingParam("url is required".into()))?;
    let preview = state.preview_url(&session.user_id, &url).await?;
    Ok(json(serde_json::Value::Object(preview)))
}

/// `GET /_matrix/media/v3/preview_url` (legacy; authenticated, like it always was)
async fn legacy_preview(state: State<AppState>, session: Session, uri: Uri) -> Reply {
    if !state.media.config().legacy_unauthenticated {
        return Err(not_found());
    }
    preview(state, session, uri).await
}
