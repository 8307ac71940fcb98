//! Room history for other servers: `/event`, `/state`, `/state_ids`, `/event_auth`, `/backfill`
//! and `/get_missing_events`. Each answers only what the signing server may see
//! (`Services::federation_*`, through the server history-visibility rules).

use axum::Router;
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{
    get_event, get_missing_events, get_room_state, get_room_state_ids,
};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName};
use serde_json::value::RawValue as RawJsonValue;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::federation::auth::{FederationRoutes, Signed};
use crate::service::rooms::{FederationPdu, MissingEventsQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .signed(event)
        .signed(state)
        .signed(state_ids)
        .signed(event_auth)
        .signed(backfill)
        .signed(missing_events)
}

fn pdus(events: Vec<FederationPdu>) -> Vec<Box<RawJsonValue>> {
    events.into_iter().map(|pdu| pdu.json).collect()
}

fn own_name(state: &AppState) -> OwnedServerName {
    state.server_name().to_owned()
}

/// `GET /_matrix/federation/v1/event/{eventId}`
async fn event(
    state: AppState,
    request: Signed<get_event::v1::Request>,
) -> ApiResult<get_event::v1::Response> {
    let pdu = state
        .federation_pdu(&request.origin, &request.body.event_id)
        .await?;
    Ok(get_event::v1::Response::new(
        own_name(&state),
        MilliSecondsSinceUnixEpoch::now(),
        pdu.json,
    ))
}

/// `GET /_matrix/federation/v1/state/{roomId}`
async fn state(
    state: AppState,
    request: Signed<get_room_state::v1::Request>,
) -> ApiResult<get_room_state::v1::Response> {
    let body = request.body;
    let at = state
        .federation_state_at(&request.origin, &body.room_id, &body.event_id)
        .await?;
    Ok(get_room_state::v1::Response::new(
        pdus(at.auth_chain),
        pdus(at.state),
    ))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}`
async fn state_ids(
    state: AppState,
    request: Signed<get_room_state_ids::v1::Request>,
) -> ApiResult<get_room_state_ids::v1::Response> {
    let body = request.body;
    let at = state
        .federation_state_at(&request.origin, &body.room_id, &body.event_id)
        .await?;
    let ids = |events: Vec<FederationPdu>| events.into_iter().map(|e| e.event_id).collect();
    Ok(get_room_state_ids::v1::Response::new(
        ids(at.auth_chain),
        ids(at.state),
    ))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
async fn event_auth(
    state: AppState,
    request: Signed<get_event_authorization::v1::Request>,
) -> ApiResult<get_event_authorization::v1::Response> {
    let body = request.body;
    let chain = state
        .federation_event_auth(&request.origin, &body.room_id, &body.event_id)
        .await?;
    Ok(get_event_authorization::v1::Response::new(pdus(chain)))
}

/// `GET /_matrix/federation/v1/backfill/{roomId}`
async fn backfill(
    state: AppState,
    request: Signed<get_backfill::v1::Request>,
) -> ApiResult<get_backfill::v1::Response> {
    let body = request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let events = state
        .federation_backfill(&request.origin, &body.room_id, body.v, limit)
        .await?;
    Ok(get_backfill::v1::Response::new(
        own_name(&state),
        MilliSecondsSinceUnixEpoch::now(),
        pdus(events),
    ))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
async fn missing_events(
    state: AppState,
    request: Signed<get_missing_events::v1::Request>,
) -> ApiResult<get_missing_events::v1::Response> {
    let body = request.body;
    let query = MissingEventsQuery {
        earliest_events: body.earliest_events,
        latest_events: body.latest_events,
        limit: usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX),
        min_depth: i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX),
    };
    let events = state
        .federation_missing_events(&request.origin, &body.room_id, query)
        .await?;
    Ok(get_missing_events::v1::Response::new(pdus(events)))
}
