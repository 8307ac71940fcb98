//! Client config: account data of the user, global and per room.

use axum::Router;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};

use super::rooms::{raw_json, to_raw};
use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(set_global)
        .ruma(get_global)
        .ruma(set_room)
        .ruma(get_room)
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn set_global(
    state: AppState,
    request: Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<set_global_account_data::v3::Response> {
    let body = request.body;
    let content = raw_json(&body.data)?;
    state
        .set_account_data(
            &request.identity.user_id,
            &body.user_id,
            None,
            &body.event_type.to_string(),
            content,
        )
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn get_global(
    state: AppState,
    request: Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<get_global_account_data::v3::Response> {
    let body = request.body;
    let content = state
        .get_account_data(
            &request.identity.user_id,
            &body.user_id,
            None,
            &body.event_type.to_string(),
        )
        .await?;
    Ok(get_global_account_data::v3::Response::new(to_raw(
        &content,
    )?))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn set_room(
    state: AppState,
    request: Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<set_room_account_data::v3::Response> {
    let body = request.body;
    let content = raw_json(&body.data)?;
    state
        .set_account_data(
            &request.identity.user_id,
            &body.user_id,
            Some(&body.room_id),
            &body.event_type.to_string(),
            content,
        )
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn get_room(
    state: AppState,
    request: Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<get_room_account_data::v3::Response> {
    let body = request.body;
    let content = state
        .get_account_data(
            &request.identity.user_id,
            &body.user_id,
            Some(&body.room_id),
            &body.event_type.to_string(),
        )
        .await?;
    Ok(get_room_account_data::v3::Response::new(to_raw(&content)?))
}
