//! The media repository's HTTP side: uploads (`client.rs` upload, create, async upload, config),
//! downloads and thumbnails (`download.rs`: authenticated, and the legacy unauthenticated ones
//! behind `[media] legacy_unauthenticated`), URL previews (`preview.rs`), the federation media
//! endpoints (`federation.rs`, multipart answers) and the operators' quarantine and deletion
//! (`admin.rs`).
//!
//! Paths and methods come from ruma's endpoint metadata, but these handlers take the raw body and
//! answer raw bodies: a file streams from the socket to disk and back, never whole in memory,
//! which ruma's request and response types (holding `Vec<u8>`) cannot do.

mod admin;
mod download;
mod federation;
pub mod headers;
mod preview;
mod upload;

use std::collections::HashMap;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use http::StatusCode;
use http::request::Parts;
use ruma::api::Metadata;
use ruma::api::auth_scheme::AccessToken;
use ruma::api::error::{ErrorBody, ErrorKind, StandardErrorBody};
use ruma::api::path_builder::PathBuilder;

use super::AppState;
use super::error::{ApiError, render};
use super::extract::{Authenticate, access_token, client_ip};
use crate::service::UserSession;
use crate::service::media::MediaError;

/// The client-side media routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = upload::routes(router);
    let router = download::routes(router);
    let router = preview::routes(router);
    admin::routes(router)
}

/// The federation media routes, for the federation listeners (and the legacy unauthenticated
/// download and thumbnail, which older servers ask there, when they are switched on).
pub fn federation_routes(router: Router<AppState>) -> Router<AppState> {
    download::legacy_routes(federation::routes(router))
}

/// Registers `handler` on every path of ruma endpoint `T`, for `T`'s method.
fn on_endpoint<T: Metadata>(
    mut router: Router<AppState>,
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    for path in T::PATH_BUILDER.all_paths() {
        router = router.route(path, handler.clone());
    }
    router
}

/// The method filter of ruma endpoint `T`.
fn method_of<T: Metadata>() -> MethodFilter {
    MethodFilter::try_from(T::METHOD.clone())
        .unwrap_or_else(|_| panic!("ruma endpoint with unsupported method {}", T::METHOD))
}

/// A request made with a valid access token.
pub struct Session(pub UserSession);

impl FromRequestParts<AppState> for Session {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Failure> {
        let token = access_token(parts);
        let session = AccessToken::authenticate(state, token.as_deref(), client_ip(parts)).await?;
        Ok(Session(session))
    }
}

/// The query string as name → value (the last of a repeated name wins).
fn query(parts: &http::Uri) -> HashMap<String, String> {
    form_urlencoded::parse(parts.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Any failure of a media handler, as a Matrix error response.
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    Media(MediaError),
}

pub type Reply = Result<Response, Failure>;

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<MediaError> for Failure {
    fn from(e: MediaError) -> Self {
        Failure::Media(e)
    }
}

impl From<crate::service::Error> for Failure {
    fn from(e: crate::service::Error) -> Self {
        Failure::Api(ApiError::Service(e))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => e.into_response(),
            Failure::Media(MediaError::Service(e)) => ApiError::Service(e).into_response(),
            Failure::Media(e @ MediaError::CannotOverwrite) => matrix_error(
                StatusCode::CONFLICT,
                ErrorKind::CannotOverwriteMedia,
                e.to_string(),
            ),
            Failure::Media(e @ MediaError::NotYetUploaded) => matrix_error(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::NotYetUploaded,
                e.to_string(),
            ),
            Failure::Media(e @ MediaError::RemoteTooLarge(_)) => {
                matrix_error(StatusCode::BAD_GATEWAY, ErrorKind::TooLarge, e.to_string())
            }
        }
    }
}

fn matrix_error(status: StatusCode, kind: ErrorKind, message: String) -> Response {
    let body = ErrorBody::Standard(StandardErrorBody::new(kind, message));
    render(ruma::api::error::Error::new(status, body))
}

fn not_found() -> Failure {
    Failure::Api(ApiError::Service(crate::service::Error::NotFound(
        "no such media".into(),
    )))
}

/// A JSON answer.
fn json(value: serde_json::Value) -> Response {
    axum::Json(value).into_response()
}
