//! The service layer's error: what went wrong in domain terms. `api/error.rs` maps each variant to
//! a Matrix `errcode` and HTTP status.

use std::time::Duration;

use ruma::api::client::uiaa::UiaaInfo;

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    BadJson(String),
    /// A signed object whose signature is missing or does not verify (`M_INVALID_SIGNATURE`).
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("{0}")]
    UserInUse(String),
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    GuestAccessForbidden(String),
    /// A request the server understood but does not support (an unknown login type, say).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedRoomVersion(String),
    /// Another server cannot take part in a room of this version (HTTP 400, with the version).
    #[error("the room's version {0} is not among those the server supports")]
    IncompatibleRoomVersion(ruma::RoomVersionId),
    #[error("{0}")]
    RoomInUse(String),
    #[error("{0}")]
    BadAlias(String),
    #[error("{0}")]
    InvalidRoomState(String),
    /// Account data the server manages itself (`m.fully_read`, `m.push_rules`): HTTP 405 with
    /// `M_BAD_JSON`, as the specification asks.
    #[error("{0}")]
    ServerManaged(String),
    /// The thing to create exists already (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Room keys uploaded to a backup version that exists but is not the current one: 403
    /// `M_WRONG_ROOM_KEYS_VERSION`, naming the current version so the client can move to it.
    #[error("this is not the current backup version (the current one is {current_version})")]
    WrongRoomKeysVersion { current_version: String },
    #[error("this account has been deactivated")]
    UserDeactivated,
    #[error("{message}")]
    UnknownToken { soft_logout: bool, message: String },
    #[error("too many requests; retry in {} ms", retry_after.as_millis())]
    LimitExceeded { retry_after: Duration },
    /// User-interactive authentication goes on: the client must complete more stages.
    #[error("additional authentication is required")]
    AuthRequired(Box<UiaaInfo>),
    /// Another server could not be asked or gave no usable answer (HTTP 502).
    #[error("{0}")]
    RemoteServer(String),
    /// An id in a namespace an application service claims exclusively (`M_EXCLUSIVE`, 400).
    #[error("{0}")]
    Exclusive(String),
    /// A device that is not the user's (`M_UNKNOWN_DEVICE`, 400).
    #[error("{0}")]
    UnknownDevice(String),
    /// An application service has no `url` to ping (`M_URL_NOT_SET`, 400).
    #[error("{0}")]
    UrlNotSet(String),
    /// An application service answered a ping with an error (`M_BAD_STATUS`, 502).
    #[error("the application service answered {status}")]
    BadStatus { status: u16, body: String },
    /// An application service could not be reached (`M_CONNECTION_FAILED`, 502).
    #[error("{0}")]
    ConnectionFailed(String),
    /// An application service did not answer in time (`M_CONNECTION_TIMEOUT`, 504).
    #[error("{0}")]
    ConnectionTimeout(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
