//! `GET /_matrix/federation/v1/openid/userinfo`: who an OpenID token belongs to. Authenticated by
//! the token itself (asked by third parties, not homeservers), so no `X-Matrix` signature.

use axum::Router;
use ruma::api::federation::openid::get_openid_userinfo;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(userinfo)
}

/// `GET /_matrix/federation/v1/openid/userinfo`
async fn userinfo(
    state: AppState,
    request: Ruma<get_openid_userinfo::v1::Request>,
) -> ApiResult<get_openid_userinfo::v1::Response> {
    let user_id = state.openid_userinfo(&request.body.access_token).await?;
    Ok(get_openid_userinfo::v1::Response::new(user_id))
}
