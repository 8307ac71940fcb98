//! Membership: join (by id or alias), invite, leave, kick, ban, unban, knock and forget.

use axum::Router;
use ruma::api::client::knock::knock_room;
use ruma::api::client::membership::invite_user::v3::InvitationRecipient;
use ruma::api::client::membership::{
    ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias, kick_user,
    leave_room, unban_user,
};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(join_by_id)
        .ruma(join_by_id_or_alias)
        .ruma(invite)
        .ruma(leave)
        .ruma(kick)
        .ruma(ban)
        .ruma(unban)
        .ruma(forget)
        .ruma(knock)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join_by_id(
    state: AppState,
    request: Ruma<join_room_by_id::v3::Request>,
) -> ApiResult<join_room_by_id::v3::Response> {
    let body = request.body;
    let room_id = state
        .join(
            &request.identity,
            body.room_id.as_str(),
            body.reason.as_deref(),
        )
        .await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
async fn join_by_id_or_alias(
    state: AppState,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    let body = request.body;
    let room_id = state
        .join_via(
            &request.identity,
            body.room_id_or_alias.as_str(),
            body.reason.as_deref(),
            &body.via,
        )
        .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
async fn invite(
    state: AppState,
    request: Ruma<invite_user::v3::Request>,
) -> ApiResult<invite_user::v3::Response> {
    let body = request.body;
    let InvitationRecipient::UserId(recipient) = body.recipient else {
        return Err(ApiError::InvalidParam(
            "third-party invites are not supported".into(),
        ));
    };
    state
        .invite(
            &request.identity,
            &body.room_id,
            &recipient.user_id,
            recipient.reason.as_deref(),
            false,
        )
        .await?;
    Ok(invite_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
async fn leave(
    state: AppState,
    request: Ruma<leave_room::v3::Request>,
) -> ApiResult<leave_room::v3::Response> {
    state
        .leave(
            &request.identity,
            &request.body.room_id,
            request.body.reason.as_deref(),
        )
        .await?;
    Ok(leave_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
async fn kick(
    state: AppState,
    request: Ruma<kick_user::v3::Request>,
) -> ApiResult<kick_user::v3::Response> {
    let body = request.body;
    state
        .kick(
            &request.identity,
            &body.room_id,
            &body.user_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(kick_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
async fn ban(
    state: AppState,
    request: Ruma<ban_user::v3::Request>,
) -> ApiResult<ban_user::v3::Response> {
    let body = request.body;
    state
        .ban(
            &request.identity,
            &body.room_id,
            &body.user_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(ban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
async fn unban(
    state: AppState,
    request: Ruma<unban_user::v3::Request>,
) -> ApiResult<unban_user::v3::Response> {
    let body = request.body;
    state
        .unban(
            &request.identity,
            &body.room_id,
            &body.user_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(unban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
async fn forget(
    state: AppState,
    request: Ruma<forget_room::v3::Request>,
) -> ApiResult<forget_room::v3::Response> {
    state
        .forget(&request.identity, &request.body.room_id)
        .await?;
    Ok(forget_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
async fn knock(
    state: AppState,
    request: Ruma<knock_room::v3::Request>,
) -> ApiResult<knock_room::v3::Response> {
    let body = request.body;
    let room_id = state
        .knock_via(
            &request.identity,
            body.room_id_or_alias.as_str(),
            body.reason.as_deref(),
            &body.via,
        )
        .await?;
    Ok(knock_room::v3::Response::new(room_id))
}
