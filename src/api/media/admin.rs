//! Operators' media endpoints, shaped like Synapse's admin API where it has one:
//! quarantine one medium (`POST /_synapse/admin/v1/media/quarantine/{server}/{id}`, and
//! `unquarantine`), all media of a room (`POST /_synapse/admin/v1/room/{roomId}/media/quarantine`)
//! or of a user (`POST /_synapse/admin/v1/user/{userId}/media/quarantine`); list a room's media
//! (`GET /_synapse/admin/v1/room/{roomId}/media`); delete one medium
//! (`DELETE /_synapse/admin/v1/media/{server}/{id}`), a user's media
//! (`DELETE /_synapse/admin/v1/users/{userId}/media`) and, a Plexus addition, a room's media
//! (`DELETE /_synapse/admin/v1/room/{roomId}/media`).

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::json;

use super::{Reply, json};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::Admin;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route(
            "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
            post(quarantine),
        )
        .route(
            "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}",
            post(unquarantine),
        )
        .route(
            "/_synapse/admin/v1/media/{server_name}/{media_id}",
            axum::routing::delete(delete),
        )
        .route(
            "/_synapse/admin/v1/room/{room_id}/media/quarantine",
            post(quarantine_room),
        )
        .route(
            "/_synapse/admin/v1/room/{room_id}/media",
            get(list_room).delete(delete_room),
        )
        .route(
            "/_synapse/admin/v1/user/{user_id}/media/quarantine",
            post(quarantine_user),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/media",
            axum::routing::delete(delete_user),
        )
}

fn room_id(text: &str) -> Result<OwnedRoomId, ApiError> {
    OwnedRoomId::try_from(text).map_err(|e| ApiError::InvalidParam(format!("bad room id: {e}")))
}

fn user_id(text: &str) -> Result<OwnedUserId, ApiError> {
    OwnedUserId::try_from(text).map_err(|e| ApiError::InvalidParam(format!("bad user id: {e}")))
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`
async fn quarantine(
    State(state): State<AppState>,
    _: Admin,
    Path((server_name, media_id)): Path<(String, String)>,
) -> Reply {
    state
        .quarantine_media(&server_name, &media_id, true)
        .await?;
    Ok(json(json!({})))
}

/// `POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}`
async fn unquarantine(
    State(state): State<AppState>,
    _: Admin,
    Path((server_name, media_id)): Path<(String, String)>,
) -> Reply {
    state
        .quarantine_media(&server_name, &media_id, false)
        .await?;
    Ok(json(json!({})))
}

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
async fn delete(
    State(state): State<AppState>,
    _: Admin,
    Path((server_name, media_id)): Path<(String, String)>,
) -> Reply {
    state.delete_media(&server_name, &media_id).await?;
    Ok(json(json!({ "deleted_media": [media_id], "total": 1 })))
}

/// `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`
async fn quarantine_room(
    State(state): State<AppState>,
    _: Admin,
    Path(room): Path<String>,
) -> Reply {
    let count = state.quarantine_room_media(&room_id(&room)?).await?;
    Ok(json(json!({ "num_quarantined": count })))
}

/// `GET /_synapse/admin/v1/room/{roomId}/media`
async fn list_room(State(state): State<AppState>, _: Admin, Path(room): Path<String>) -> Reply {
    let media = state.room_media(&room_id(&room)?).await?;
    let local_server = state.server_name().to_string();
    let (local, remote): (Vec<_>, Vec<_>) = media
        .into_iter()
        .map(|(server, id)| (server.clone(), format!("mxc://{server}/{id}")))
        .partition(|(server, _)| *server == local_server);
    let uris =
        |list: Vec<(String, String)>| list.into_iter().map(|(_, uri)| uri).collect::<Vec<_>>();
    Ok(json(
        json!({ "local": uris(local), "remote": uris(remote) }),
    ))
}

/// `DELETE /_synapse/admin/v1/room/{roomId}/media`
async fn delete_room(State(state): State<AppState>, _: Admin, Path(room): Path<String>) -> Reply {
    let deleted = state.delete_room_media(&room_id(&room)?).await?;
    Ok(json(
        json!({ "total": deleted.len(), "deleted_media": deleted }),
    ))
}

/// `POST /_synapse/admin/v1/user/{userId}/media/quarantine`
async fn quarantine_user(
    State(state): State<AppState>,
    _: Admin,
    Path(user): Path<String>,
) -> Reply {
    let count = state.quarantine_user_media(&user_id(&user)?).await?;
    Ok(json(json!({ "num_quarantined": count })))
}

/// `DELETE /_synapse/admin/v1/users/{userId}/media`
async fn delete_user(State(state): State<AppState>, _: Admin, Path(user): Path<String>) -> Reply {
    let deleted = state.delete_user_media(&user_id(&user)?).await?;
    Ok(json(
        json!({ "total": deleted.len(), "deleted_media": deleted }),
    ))
}
