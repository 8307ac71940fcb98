//! Jumping to a date: `GET /rooms/{roomId}/timestamp_to_event`.

use axum::Router;
use ruma::api::Direction;
use ruma::api::client::room::get_event_by_timestamp;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(timestamp_to_event)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
async fn timestamp_to_event(
    state: AppState,
    request: Ruma<get_event_by_timestamp::v1::Request>,
) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let body = request.body;
    let (event_id, origin_server_ts) = state
        .event_at_timestamp(
            &request.identity,
            &body.room_id,
            body.ts,
            body.dir == Direction::Backward,
        )
        .await?;
    Ok(get_event_by_timestamp::v1::Response::new(
        event_id,
        origin_server_ts,
    ))
}
