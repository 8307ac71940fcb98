//! Server-side key backup: backup versions (`/room_keys/version`) and the keys stored in them
//! (`/room_keys/keys`, per room, per session). Handlers parse, call the key backup service and
//! answer; an upload to a version that is not the current one comes back from the service as
//! `Error::WrongRoomKeysVersion`, which the API edge answers with 403
//! `M_WRONG_ROOM_KEYS_VERSION` and `current_version`.

use std::collections::BTreeMap;

use axum::Router;
use ruma::api::client::backup::{
    KeyBackupData, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room,
    add_backup_keys_for_session, create_backup_version, delete_backup_keys,
    delete_backup_keys_for_room, delete_backup_keys_for_session, delete_backup_version,
    get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use serde_json::{Value as JsonValue, json};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::key_backup::{BackupInfo, KeyData, KeySelection, KeysSummary};
use crate::service::{self, UserSession};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(create_version)
        .ruma(latest_version)
        .ruma(get_version)
        .ruma(update_version)
        .ruma(delete_version)
        .ruma(put_keys)
        .ruma(put_room_keys)
        .ruma(put_session_key)
        .ruma(get_keys)
        .ruma(get_room_keys)
        .ruma(get_session_key)
        .ruma(delete_keys)
        .ruma(delete_room_keys)
        .ruma(delete_session_key)
}

/// `POST /_matrix/client/v3/room_keys/version`
async fn create_version(
    state: AppState,
    request: Ruma<create_backup_version::v3::Request>,
) -> ApiResult<create_backup_version::v3::Response> {
    let body = parse_object(request.body.algorithm.json().get())?;
    let (algorithm, auth_data) = algorithm_of(&body)?;
    let version = state
        .create_backup_version(&request.identity.user_id, algorithm, auth_data)
        .await?;
    Ok(create_backup_version::v3::Response::new(version))
}

/// `GET /_matrix/client/v3/room_keys/version`
async fn latest_version(
    state: AppState,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> ApiResult<get_latest_backup_info::v3::Response> {
    let info = state
        .backup_version(&request.identity.user_id, None)
        .await?;
    let (algorithm, count) = algorithm_and_count(&info)?;
    Ok(get_latest_backup_info::v3::Response::new(
        algorithm,
        count,
        info.etag,
        info.version,
    ))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
async fn get_version(
    state: AppState,
    request: Ruma<get_backup_info::v3::Request>,
) -> ApiResult<get_backup_info::v3::Response> {
    let info = state
        .backup_version(&request.identity.user_id, Some(&request.body.version))
        .await?;
    let (algorithm, count) = algorithm_and_count(&info)?;
    Ok(get_backup_info::v3::Response::new(
        algorithm,
        count,
        info.etag,
        info.version,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
async fn update_version(
    state: AppState,
    request: Ruma<update_backup_version::v3::Request>,
) -> ApiResult<update_backup_version::v3::Response> {
    let body = parse_object(request.body.algorithm.json().get())?;
    let (algorithm, auth_data) = algorithm_of(&body)?;
    let body_version = match body.get("version") {
        None | Some(JsonValue::Null) => None,
        Some(JsonValue::String(v)) => Some(v.as_str()),
        Some(_) => return Err(ApiError::BadJson("version must be a string".into())),
    };
    state
        .update_backup_version(
            &request.identity.user_id,
            &request.body.version,
            body_version,
            algorithm,
            auth_data,
        )
        .await?;
    Ok(update_backup_version::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
async fn delete_version(
    state: AppState,
    request: Ruma<delete_backup_version::v3::Request>,
) -> ApiResult<delete_backup_version::v3::Response> {
    state
        .delete_backup_version(&request.identity.user_id, &request.body.version)
        .await?;
    Ok(delete_backup_version::v3::Response::new())
}

/// `PUT /_matrix/client/v3/room_keys/keys`
async fn put_keys(
    state: AppState,
    request: Ruma<add_backup_keys::v3::Request>,
) -> ApiResult<add_backup_keys::v3::Response> {
    let body = request.body;
    let mut keys = Vec::new();
    for (room_id, room) in body.rooms {
        for (session_id, data) in room.sessions {
            keys.push((room_id.to_string(), session_id, key_data(&data)?));
        }
    }
    let summary = state
        .put_backup_keys(&request.identity.user_id, &body.version, keys)
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(add_backup_keys::v3::Response::new(etag, count))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
async fn put_room_keys(
    state: AppState,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> ApiResult<add_backup_keys_for_room::v3::Response> {
    let body = request.body;
    let mut keys = Vec::new();
    for (session_id, data) in body.sessions {
        keys.push((body.room_id.to_string(), session_id, key_data(&data)?));
    }
    let summary = state
        .put_backup_keys(&request.identity.user_id, &body.version, keys)
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn put_session_key(
    state: AppState,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> ApiResult<add_backup_keys_for_session::v3::Response> {
    let body = request.body;
    let keys = vec![(
        body.room_id.to_string(),
        body.session_id,
        key_data(&body.session_data)?,
    )];
    let summary = state
        .put_backup_keys(&request.identity.user_id, &body.version, keys)
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count))
}

/// `GET /_matrix/client/v3/room_keys/keys`
async fn get_keys(
    state: AppState,
    request: Ruma<get_backup_keys::v3::Request>,
) -> ApiResult<get_backup_keys::v3::Response> {
    let keys = read_keys(&state, &request.identity, &request.body.version, None, None).await?;
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> = BTreeMap::new();
    for (room_id, session_id, data) in keys {
        let Ok(room_id) = OwnedRoomId::try_from(room_id) else {
            continue;
        };
        rooms
            .entry(room_id)
            .or_default()
            .insert(session_id, raw_key(&data)?);
    }
    let rooms = rooms
        .into_iter()
        .map(|(room, sessions)| (room, RoomKeyBackup::new(sessions)))
        .collect();
    Ok(get_backup_keys::v3::Response::new(rooms))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
async fn get_room_keys(
    state: AppState,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> ApiResult<get_backup_keys_for_room::v3::Response> {
    let body = request.body;
    let keys = read_keys(
        &state,
        &request.identity,
        &body.version,
        Some(body.room_id.to_string()),
        None,
    )
    .await?;
    let sessions = keys
        .into_iter()
        .map(|(_, session_id, data)| Ok((session_id, raw_key(&data)?)))
        .collect::<ApiResult<_>>()?;
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn get_session_key(
    state: AppState,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> ApiResult<get_backup_keys_for_session::v3::Response> {
    let body = request.body;
    let keys = read_keys(
        &state,
        &request.identity,
        &body.version,
        Some(body.room_id.to_string()),
        Some(body.session_id.clone()),
    )
    .await?;
    let Some((_, _, data)) = keys.into_iter().next() else {
        return Err(service::Error::NotFound(format!(
            "no key for session {} of {} in this backup",
            body.session_id, body.room_id
        ))
        .into());
    };
    Ok(get_backup_keys_for_session::v3::Response::new(raw_key(
        &data,
    )?))
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
async fn delete_keys(
    state: AppState,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> ApiResult<delete_backup_keys::v3::Response> {
    let summary = state
        .delete_backup_keys(
            &request.identity.user_id,
            &request.body.version,
            KeySelection::default(),
        )
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(delete_backup_keys::v3::Response::new(etag, count))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
async fn delete_room_keys(
    state: AppState,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> ApiResult<delete_backup_keys_for_room::v3::Response> {
    let body = request.body;
    let selection = KeySelection {
        room_id: Some(body.room_id.to_string()),
        session_id: None,
    };
    let summary = state
        .delete_backup_keys(&request.identity.user_id, &body.version, selection)
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
async fn delete_session_key(
    state: AppState,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<delete_backup_keys_for_session::v3::Response> {
    let body = request.body;
    let selection = KeySelection {
        room_id: Some(body.room_id.to_string()),
        session_id: Some(body.session_id),
    };
    let summary = state
        .delete_backup_keys(&request.identity.user_id, &body.version, selection)
        .await?;
    let (etag, count) = etag_and_count(summary);
    Ok(delete_backup_keys_for_session::v3::Response::new(
        etag, count,
    ))
}

async fn read_keys(
    state: &AppState,
    session: &UserSession,
    version: &str,
    room_id: Option<String>,
    session_id: Option<String>,
) -> ApiResult<Vec<(String, String, KeyData)>> {
    let selection = KeySelection {
        room_id,
        session_id,
    };
    Ok(state
        .backup_keys(&session.user_id, version, selection)
        .await?)
}

/// A request body that must be a JSON object.
fn parse_object(text: &str) -> ApiResult<serde_json::Map<String, JsonValue>> {
    match serde_json::from_str::<JsonValue>(text) {
        Ok(JsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::BadJson("the body must be a JSON object".into())),
        Err(e) => Err(ApiError::NotJson(format!("the body is not JSON: {e}"))),
    }
}

/// The `algorithm` and `auth_data` of a backup version's body.
fn algorithm_of(body: &serde_json::Map<String, JsonValue>) -> ApiResult<(&str, JsonValue)> {
    let algorithm = body
        .get("algorithm")
        .and_then(JsonValue::as_str)
        .ok_or_else(|| ApiError::BadJson("algorithm must be a string".into()))?;
    let auth_data = body
        .get("auth_data")
        .filter(|a| a.is_object())
        .cloned()
        .ok_or_else(|| ApiError::BadJson("auth_data must be an object".into()))?;
    Ok((algorithm, auth_data))
}

fn algorithm_and_count(
    info: &BackupInfo,
) -> ApiResult<(Raw<ruma::api::client::backup::BackupAlgorithm>, UInt)> {
    let value = json!({"algorithm": info.algorithm, "auth_data": info.auth_data});
    let raw = serde_json::value::to_raw_value(&value)
        .map_err(|e| service::Error::Internal(format!("cannot serialise a backup version: {e}")))?;
    Ok((Raw::from_json(raw), uint(info.count)))
}

fn key_data(raw: &Raw<KeyBackupData>) -> ApiResult<KeyData> {
    let value: JsonValue = serde_json::from_str(raw.json().get())
        .map_err(|e| ApiError::BadJson(format!("key data is not JSON: {e}")))?;
    Ok(KeyData::parse(&value)?)
}

fn raw_key(data: &KeyData) -> ApiResult<Raw<KeyBackupData>> {
    let raw = serde_json::value::to_raw_value(&data.to_json())
        .map_err(|e| service::Error::Internal(format!("cannot serialise a backup key: {e}")))?;
    Ok(Raw::from_json(raw))
}

fn etag_and_count(summary: KeysSummary) -> (String, UInt) {
    (summary.etag, uint(summary.count))
}

fn uint(n: u64) -> UInt {
    UInt::new_saturating(n)
}
