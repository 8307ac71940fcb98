//! The account itself: `whoami`, password change and deactivation.

use axum::Router;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::UserSession;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(whoami).ruma(change_password).ruma(deactivate)
}

/// `GET /_matrix/client/v3/account/whoami`
async fn whoami(
    _: AppState,
    request: Ruma<whoami::v3::Request>,
) -> ApiResult<whoami::v3::Response> {
    let mut response = whoami::v3::Response::new(request.identity.user_id, false);
    response.device_id = Some(request.identity.device_id);
    Ok(response)
}

/// Password change and deactivation without an access token belong to password reset by email,
/// which this server does not offer; both need a logged-in user.
fn logged_in(identity: Option<UserSession>) -> ApiResult<UserSession> {
    identity.ok_or(ApiError::MissingToken)
}

/// `POST /_matrix/client/v3/account/password`
async fn change_password(
    state: AppState,
    request: Ruma<change_password::v3::Request>,
) -> ApiResult<change_password::v3::Response> {
    let session = logged_in(request.identity)?;
    let body = request.body;
    state
        .change_password(&session, body.new_password, body.logout_devices, body.auth)
        .await?;
    Ok(change_password::v3::Response::new())
}

/// `POST /_matrix/client/v3/account/deactivate`
async fn deactivate(
    state: AppState,
    request: Ruma<deactivate::v3::Request>,
) -> ApiResult<deactivate::v3::Response> {
    let session = logged_in(request.identity)?;
    state
        .deactivate(&session, request.body.erase, request.body.auth)
        .await?;
    Ok(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    ))
}
