//! Room tagging: listing, adding and removing the caller's tags on a room.

use axum::Router;
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(list).ruma(add).ruma(remove)
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
async fn list(
    state: AppState,
    request: Ruma<get_tags::v3::Request>,
) -> ApiResult<get_tags::v3::Response> {
    let body = request.body;
    let tags = state
        .get_tags(&request.identity.user_id, &body.user_id, &body.room_id)
        .await?;
    Ok(get_tags::v3::Response::new(tags))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn add(
    state: AppState,
    request: Ruma<create_tag::v3::Request>,
) -> ApiResult<create_tag::v3::Response> {
    let body = request.body;
    state
        .set_tag(
            &request.identity.user_id,
            &body.user_id,
            &body.room_id,
            &body.tag,
            &body.tag_info,
        )
        .await?;
    Ok(create_tag::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn remove(
    state: AppState,
    request: Ruma<delete_tag::v3::Request>,
) -> ApiResult<delete_tag::v3::Response> {
    let body = request.body;
    state
        .delete_tag(
            &request.identity.user_id,
            &body.user_id,
            &body.room_id,
            &body.tag,
        )
        .await?;
    Ok(delete_tag::v3::Response::new())
}
