//! `POST /_matrix/client/v3/user/{userId}/openid/request_token`: an OpenID token a user hands to a
//! third party, which checks it at `/_matrix/federation/v1/openid/userinfo`.

use axum::Router;
use ruma::api::client::account::request_openid_token;
use ruma::authentication::TokenType;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(request_token)
}

/// `POST /_matrix/client/v3/user/{userId}/openid/request_token`
async fn request_token(
    state: AppState,
    request: Ruma<request_openid_token::v3::Request>,
) -> ApiResult<request_openid_token::v3::Response> {
    let (token, expires_in) = state
        .request_openid_token(&request.identity, &request.body.user_id)
        .await?;
    Ok(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        state.server_name().to_owned(),
        expires_in,
    ))
}
