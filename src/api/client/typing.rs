//! Typing notifications: `PUT /rooms/{roomId}/typing/{userId}`.

use axum::Router;
use ruma::api::client::typing::create_typing_event::v3::{self as typing, Typing};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(set_typing)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
async fn set_typing(
    state: AppState,
    request: Ruma<typing::Request>,
) -> ApiResult<typing::Response> {
    let body = request.body;
    let timeout = match body.state {
        Typing::Yes(info) => Some(info.timeout),
        Typing::No => None,
    };
    state
        .set_typing(
            &request.identity.user_id,
            &body.room_id,
            &body.user_id,
            timeout,
        )
        .await?;
    Ok(typing::Response::new())
}
