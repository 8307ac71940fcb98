//! Room aliases: `/directory/room/{roomAlias}` and `/rooms/{roomId}/aliases`.

use axum::Router;
use ruma::OwnedRoomAliasId;
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::room::aliases;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(put_alias)
        .ruma(get_alias_room)
        .ruma(remove_alias)
        .ruma(room_aliases)
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
async fn put_alias(
    state: AppState,
    request: Ruma<create_alias::v3::Request>,
) -> ApiResult<create_alias::v3::Response> {
    let body = request.body;
    // An alias in an appservice's exclusive namespace is that appservice's to create.
    state.check_alias_namespace(&body.room_alias, request.appservice.as_ref())?;
    state
        .create_alias(&request.identity, &body.room_alias, &body.room_id)
        .await?;
    Ok(create_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get_alias_room(
    state: AppState,
    request: Ruma<get_alias::v3::Request>,
) -> ApiResult<get_alias::v3::Response> {
    let room_id = state.resolve_alias(&request.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(
        room_id,
        vec![state.server_name().to_owned()],
    ))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn remove_alias(
    state: AppState,
    request: Ruma<delete_alias::v3::Request>,
) -> ApiResult<delete_alias::v3::Response> {
    state
        .delete_alias(&request.identity, &request.body.room_alias)
        .await?;
    Ok(delete_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn room_aliases(
    state: AppState,
    request: Ruma<aliases::v3::Request>,
) -> ApiResult<aliases::v3::Response> {
    let aliases = state
        .room_aliases(&request.identity, &request.body.room_id)
        .await?;
    Ok(aliases::v3::Response::new(
        aliases
            .into_iter()
            .filter_map(|a| OwnedRoomAliasId::try_from(a).ok())
            .collect(),
    ))
}
