//! Joining and leaving rooms of this server from other servers: `make_join`, `send_join` (v2),
//! `make_leave`, `send_leave` (v2). The checks and the append are the room service's
//! (`Services::make_membership`, `send_join`, `send_leave`).
//!
//! `send_join` is answered as JSON built here rather than through ruma's response type, which
//! leaves out `origin` and a `false` `members_omitted`; its route still comes from ruma's
//! endpoint metadata.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use ruma::api::Metadata;
use ruma::api::federation::membership::{
    create_join_event, create_leave_event, prepare_join_event, prepare_leave_event,
};
use ruma::api::path_builder::PathBuilder;
use serde_json::value::to_raw_value;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let mut router = router
        .signed(make_join)
        .signed(make_leave)
        .signed(send_leave);
    let filter = MethodFilter::try_from(create_join_event::v2::Request::METHOD)
        .unwrap_or_else(|_| panic!("send_join has an unsupported method"));
    for path in create_join_event::v2::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, on(filter, send_join));
    }
    router
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
async fn make_join(
    state: AppState,
    request: Signed<prepare_join_event::v1::Request>,
) -> ApiResult<prepare_join_event::v1::Response> {
    let body = &request.body;
    let (version, event) = state
        .make_membership(
            &request.origin,
            &body.room_id,
            &body.user_id,
            "join",
            Some(&body.ver),
        )
        .await?;
    let event = to_raw_value(&event).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
async fn make_leave(
    state: AppState,
    request: Signed<prepare_leave_event::v1::Request>,
) -> ApiResult<prepare_leave_event::v1::Response> {
    let body = &request.body;
    let (version, event) = state
        .make_membership(&request.origin, &body.room_id, &body.user_id, "leave", None)
        .await?;
    let event = to_raw_value(&event).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
async fn send_join(
    State(state): State<AppState>,
    request: Signed<create_join_event::v2::Request>,
) -> Response {
    let body = &request.body;
    let joined = match state
        .send_join(&request.origin, &body.room_id, &body.event_id, &body.pdu)
        .await
    {
        Ok(joined) => joined,
        Err(e) => return ApiError::from(e).into_response(),
    };
    axum::Json(serde_json::json!({
        "origin": state.server_name(),
        "members_omitted": false,
        "servers_in_room": joined.servers_in_room,
        "state": joined.state,
        "auth_chain": joined.auth_chain,
        "event": joined.event,
    }))
    .into_response()
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
async fn send_leave(
    state: AppState,
    request: Signed<create_leave_event::v2::Request>,
) -> ApiResult<create_leave_event::v2::Response> {
    let body = &request.body;
    state
        .send_leave(&request.origin, &body.room_id, &body.event_id, &body.pdu)
        .await?;
    Ok(create_leave_event::v2::Response::new())
}
