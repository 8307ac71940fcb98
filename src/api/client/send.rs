//! Sending events: messages and other message-like events, state, and redactions. An appservice
//! may set a message's or state event's `origin_server_ts` with `?ts=`.

use axum::Router;
use ruma::api::client::message::send_message_event;
use ruma::api::client::redact::redact_event;
use ruma::api::client::state::send_state_event;

use super::rooms::raw_json;
use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(send_message)
        .ruma_state_key(send_state)
        .ruma(redact)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
async fn send_message(
    state: AppState,
    request: Ruma<send_message_event::v3::Request>,
) -> ApiResult<send_message_event::v3::Response> {
    let body = request.body;
    let content = raw_json(&body.body)?;
    // `?ts=` is honoured for appservices only (timestamp massaging); ignored from anyone else.
    let ts = body.timestamp.filter(|_| request.appservice.is_some());
    let event_id = state
        .send_message_at(
            &request.identity,
            &body.room_id,
            &body.event_type.to_string(),
            body.txn_id.as_str(),
            content,
            ts,
        )
        .await?;
    Ok(send_message_event::v3::Response::new(event_id))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn send_state(
    state: AppState,
    request: Ruma<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    let body = request.body;
    let content = raw_json(&body.body)?;
    let ts = body.timestamp.filter(|_| request.appservice.is_some());
    let event_id = state
        .send_state_at(
            &request.identity,
            &body.room_id,
            &body.event_type.to_string(),
            &body.state_key,
            content,
            ts,
        )
        .await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
async fn redact(
    state: AppState,
    request: Ruma<redact_event::v3::Request>,
) -> ApiResult<redact_event::v3::Response> {
    let body = request.body;
    let event_id = state
        .redact(
            &request.identity,
            &body.room_id,
            &body.event_id,
            body.txn_id.as_str(),
            body.reason,
        )
        .await?;
    Ok(redact_event::v3::Response::new(event_id))
}
