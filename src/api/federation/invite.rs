//! Invites of local users by users of other servers: `PUT /_matrix/federation/v2/invite`. The
//! checks, the signature and keeping the invite are the room service's
//! (`Services::receive_invite`).

use axum::Router;
use ruma::api::federation::membership::create_invite;
use serde_json::value::to_raw_value;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(invite)
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
async fn invite(
    state: AppState,
    request: Signed<create_invite::v2::Request>,
) -> ApiResult<create_invite::v2::Response> {
    let body = &request.body;
    let event = state
        .receive_invite(
            &request.origin,
            &body.room_id,
            &body.event_id,
            &body.room_version,
            &body.event,
            &body.invite_room_state,
        )
        .await?;
    let event = to_raw_value(&event).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(create_invite::v2::Response::new(event))
}
