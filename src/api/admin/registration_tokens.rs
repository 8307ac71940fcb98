//! Registration tokens: `/_synapse/admin/v1/registration_tokens[/new|/{token}]`, for admins.

use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::{Value as JsonValue, json};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Admin, JsonBody};
use crate::service::NewRegistrationToken;
use crate::storage::registration_tokens::RegistrationToken;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/registration_tokens", get(list))
        .route("/_synapse/admin/v1/registration_tokens/new", post(create))
        .route(
            "/_synapse/admin/v1/registration_tokens/{token}",
            get(show).put(update).delete(remove),
        )
}

/// `GET /_synapse/admin/v1/registration_tokens`
async fn list(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<JsonValue>> {
    let valid = match query_param(query.as_deref(), "valid").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::InvalidParam(format!(
                "valid must be true or false, not {other:?}"
            )));
        }
    };
    let tokens = state.list_registration_tokens(valid).await?;
    Ok(Json(json!({ "registration_tokens": tokens })))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /_synapse/admin/v1/registration_tokens/new`
async fn create(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<NewRegistrationToken>,
) -> ApiResult<Json<RegistrationToken>> {
    Ok(Json(state.create_registration_token(body).await?))
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`
async fn show(
    State(state): State<AppState>,
    _: Admin,
    Path(token): Path<String>,
) -> ApiResult<Json<RegistrationToken>> {
    Ok(Json(state.get_registration_token(&token).await?))
}

/// What an admin may change; a field given as `null` clears it, an absent one keeps it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    uses_allowed: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    expiry_time: Option<Option<i64>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`
async fn update(
    State(state): State<AppState>,
    _: Admin,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<RegistrationToken>> {
    Ok(Json(
        state
            .update_registration_token(&token, body.uses_allowed, body.expiry_time)
            .await?,
    ))
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`
async fn remove(
    State(state): State<AppState>,
    _: Admin,
    Path(token): Path<String>,
) -> ApiResult<Json<JsonValue>> {
    state.delete_registration_token(&token).await?;
    Ok(Json(json!({})))
}
