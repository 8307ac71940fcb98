//! Knocking on rooms of this server from other servers: `make_knock` and `send_knock` (v1). The
//! checks and the append are the room service's (`Services::make_membership`, `send_knock`;
//! see `service/rooms/remote_knock.rs`).

use axum::Router;
use ruma::api::federation::membership::{create_knock_event, prepare_knock_event};
use serde_json::value::to_raw_value;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(make_knock).signed(send_knock)
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
async fn make_knock(
    state: AppState,
    request: Signed<prepare_knock_event::v1::Request>,
) -> ApiResult<prepare_knock_event::v1::Response> {
    let body = &request.body;
    let (version, event) = state
        .make_membership(
            &request.origin,
            &body.room_id,
            &body.user_id,
            "knock",
            Some(&body.ver),
        )
        .await?;
    let event = to_raw_value(&event).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
async fn send_knock(
    state: AppState,
    request: Signed<create_knock_event::v1::Request>,
) -> ApiResult<create_knock_event::v1::Response> {
    let body = &request.body;
    let knock_room_state = state
        .send_knock(&request.origin, &body.room_id, &body.event_id, &body.pdu)
        .await?;
    Ok(create_knock_event::v1::Response::new(knock_room_state))
}
