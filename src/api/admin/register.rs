//! Shared-secret registration: `GET` and `POST /_synapse/admin/v1/register`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::JsonBody;
use crate::service::shared_secret::SharedSecretRegistration;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/_synapse/admin/v1/register", get(nonce).post(register))
}

/// `GET /_synapse/admin/v1/register`
async fn nonce(State(state): State<AppState>) -> ApiResult<Json<JsonValue>> {
    Ok(Json(json!({ "nonce": state.new_registration_nonce()? })))
}

#[derive(Deserialize)]
struct RegisterBody {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    displayname: Option<String>,
    mac: String,
}

/// `POST /_synapse/admin/v1/register`
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Json<JsonValue>> {
    let (user_id, device_id, tokens) = state
        .register_with_shared_secret(
            SharedSecretRegistration {
                nonce: body.nonce,
                username: body.username,
                password: body.password,
                admin: body.admin,
                user_type: body.user_type,
                displayname: body.displayname,
                mac: body.mac,
            },
            peer.ip(),
        )
        .await?;
    Ok(Json(json!({
        "user_id": user_id,
        "device_id": device_id,
        "access_token": tokens.access_token,
        "home_server": state.server_name(),
    })))
}
