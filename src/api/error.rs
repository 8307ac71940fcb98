//! The API edge's error: a service error or a problem with the HTTP request itself, turned into a
//! Matrix error response (`errcode`, `error`, and the right HTTP status). Internal failures are
//! logged here, once, and reach the client only as "internal error".

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::client::uiaa::UiaaResponse;
use ruma::api::error::{
    BadStatusErrorData, ErrorBody, ErrorKind, IncompatibleRoomVersionErrorData,
    LimitExceededErrorData, RetryAfter, StandardErrorBody, UnknownTokenErrorData,
    WrongRoomKeysVersionErrorData,
};
use ruma::api::{OutgoingResponse, OutgoingResponseExt};

use crate::service;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error("missing access token")]
    MissingToken,
    #[error("{0}")]
    NotJson(String),
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("unrecognized request")]
    Unrecognized { status: StatusCode },
    #[error("{0}")]
    Forbidden(String),
    /// A federation request whose `X-Matrix` signature is missing or does not check out.
    #[error("{0}")]
    Unauthorized(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, ErrorKind) {
        use service::Error as S;
        match self {
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, ErrorKind::MissingToken),
            ApiError::NotJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::NotJson),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
            ApiError::MissingParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::MissingParam),
            ApiError::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
            ApiError::Unrecognized { status } => (*status, ErrorKind::Unrecognized),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized),
            ApiError::Service(error) => match error {
                S::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
                S::NotFound(_) => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
                S::InvalidParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
                S::MissingParam(_) => (StatusCode::BAD_REQUEST, ErrorKind::MissingParam),
                S::BadJson(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
                S::InvalidSignature(_) => (StatusCode::BAD_REQUEST, invalid_signature_kind()),
                S::InvalidUsername(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername),
                S::UserInUse(_) => (StatusCode::BAD_REQUEST, ErrorKind::UserInUse),
                S::WeakPassword(_) => (StatusCode::BAD_REQUEST, ErrorKind::WeakPassword),
                S::GuestAccessForbidden(_) => {
                    (StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden)
                }
                S::Unsupported(_) => (StatusCode::BAD_REQUEST, ErrorKind::Unknown),
                S::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
                S::UnsupportedRoomVersion(_) => {
                    (StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion)
                }
                S::IncompatibleRoomVersion(version) => (
                    StatusCode::BAD_REQUEST,
                    ErrorKind::IncompatibleRoomVersion(IncompatibleRoomVersionErrorData::new(
                        version.clone(),
                    )),
                ),
                S::RoomInUse(_) => (StatusCode::BAD_REQUEST, ErrorKind::RoomInUse),
                S::BadAlias(_) => (StatusCode::BAD_REQUEST, ErrorKind::BadAlias),
                S::InvalidRoomState(_) => (StatusCode::BAD_REQUEST, ErrorKind::InvalidRoomState),
                S::Conflict(_) => (StatusCode::CONFLICT, ErrorKind::Unknown),
                S::WrongRoomKeysVersion { current_version } => (
                    StatusCode::FORBIDDEN,
                    ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                        current_version.clone(),
                    )),
                ),
                S::ServerManaged(_) => (StatusCode::METHOD_NOT_ALLOWED, ErrorKind::BadJson),
                S::UserDeactivated => (StatusCode::FORBIDDEN, ErrorKind::UserDeactivated),
                S::UnknownToken { soft_logout, .. } => {
                    let mut data = UnknownTokenErrorData::new();
                    data.soft_logout = *soft_logout;
                    (StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(data))
                }
                S::LimitExceeded { retry_after } => {
                    let mut data = LimitExceededErrorData::new();
                    data.retry_after = Some(RetryAfter::Delay(*retry_after));
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorKind::LimitExceeded(data),
                    )
                }
                S::AuthRequired(_) => (StatusCode::UNAUTHORIZED, ErrorKind::Unknown),
                S::RemoteServer(_) => (StatusCode::BAD_GATEWAY, ErrorKind::Unknown),
                S::Exclusive(_) => (StatusCode::BAD_REQUEST, ErrorKind::Exclusive),
                S::UnknownDevice(_) => (StatusCode::BAD_REQUEST, ErrorKind::UnknownDevice),
                S::UrlNotSet(_) => (StatusCode::BAD_REQUEST, ErrorKind::UrlNotSet),
                S::BadStatus { status, body } => {
                    let mut data = BadStatusErrorData::new();
                    data.status = http::StatusCode::from_u16(*status).ok();
                    data.body = Some(body.clone());
                    (StatusCode::BAD_GATEWAY, ErrorKind::BadStatus(data))
                }
                S::ConnectionFailed(_) => (StatusCode::BAD_GATEWAY, ErrorKind::ConnectionFailed),
                S::ConnectionTimeout(_) => {
                    (StatusCode::GATEWAY_TIMEOUT, ErrorKind::ConnectionTimeout)
                }
                S::Storage(_) | S::Internal(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown)
                }
            },
        }
    }
}

/// `M_INVALID_SIGNATURE`, which ruma's `ErrorKind` has no variant for.
fn invalid_signature_kind() -> ErrorKind {
    serde_json::from_value(serde_json::json!({ "errcode": "M_INVALID_SIGNATURE" }))
        .unwrap_or(ErrorKind::Unknown)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Service(service::Error::AuthRequired(info)) = self {
            return render(UiaaResponse::AuthResponse(*info));
        }
        let (status, kind) = self.status_and_kind();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        let body = ErrorBody::Standard(StandardErrorBody::new(kind, message));
        render(ruma::api::error::Error::new(status, body))
    }
}

/// Serialises a ruma response (or error) into an axum response.
pub fn render(response: impl OutgoingResponse) -> Response {
    match response.try_into_http_response::<Vec<u8>>() {
        Ok(response) => response.map(axum::body::Body::from).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a response");
            let body = r#"{"errcode":"M_UNKNOWN","error":"internal error"}"#;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}
