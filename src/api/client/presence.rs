//! Presence: `PUT` and `GET /presence/{userId}/status`.

use axum::Router;
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::presence::PresenceState;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(set_status).ruma(get_status)
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`
async fn set_status(
    state: AppState,
    request: Ruma<set_presence::v3::Request>,
) -> ApiResult<set_presence::v3::Response> {
    let body = request.body;
    state
        .set_presence(
            &request.identity.user_id,
            &body.user_id,
            &body.presence,
            body.status_msg,
        )
        .await?;
    Ok(set_presence::v3::Response::new())
}

/// `GET /_matrix/client/v3/presence/{userId}/status`
async fn get_status(
    state: AppState,
    request: Ruma<get_presence::v3::Request>,
) -> ApiResult<get_presence::v3::Response> {
    let body = request.body;
    let view = state
        .get_presence(&request.identity.user_id, &body.user_id)
        .await?;
    let mut response = get_presence::v3::Response::new(PresenceState::from(view.state.as_str()));
    response.status_msg = view.status_msg;
    response.last_active_ago = view.last_active_ago;
    response.currently_active = view.currently_active;
    Ok(response)
}
