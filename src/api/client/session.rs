//! Sessions: login (with a password, or by an appservice for its users), token refresh and
//! logout.

use axum::Router;
use ruma::api::client::session::{get_login_types, login, logout, logout_all, refresh_token};
use ruma::api::client::uiaa::UserIdentifier;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(login_types)
        .ruma(login)
        .ruma(refresh)
        .ruma(logout)
        .ruma(logout_all)
}

/// `GET /_matrix/client/v3/login`
async fn login_types(
    state: AppState,
    _: Ruma<get_login_types::v3::Request>,
) -> ApiResult<get_login_types::v3::Response> {
    use get_login_types::v3::{ApplicationServiceLoginType, LoginType, PasswordLoginType};
    let mut types = vec![LoginType::Password(PasswordLoginType::new())];
    if !state.appservices.is_empty() {
        types.push(LoginType::ApplicationService(
            ApplicationServiceLoginType::new(),
        ));
    }
    Ok(get_login_types::v3::Response::new(types))
}

/// `POST /_matrix/client/v3/login`
async fn login(
    state: AppState,
    request: Ruma<login::v3::Request>,
) -> ApiResult<login::v3::Response> {
    let body = request.body;
    let password = match body.login_info {
        login::v3::LoginInfo::Password(password) => password,
        login::v3::LoginInfo::ApplicationService(info) => {
            let appservice = request.identity.ok_or(ApiError::MissingToken)?;
            #[allow(deprecated)]
            let typed_user = typed_user(info.identifier.as_ref(), info.user.as_ref())?;
            let (user_id, device_id, tokens) = state
                .login_appservice_user(
                    &appservice,
                    &typed_user,
                    body.device_id,
                    body.initial_device_display_name,
                    body.refresh_token,
                    request.client_ip,
                )
                .await?;
            return Ok(login_response(&state, user_id, device_id, tokens));
        }
        other => {
            return Err(service::Error::Unsupported(format!(
                "login type {} is not supported; use m.login.password",
                other.login_type()
            ))
            .into());
        }
    };
    // Clients older than r0.4 send the bare `user` field instead of an identifier.
    #[allow(deprecated)]
    let typed_user = typed_user(password.identifier.as_ref(), password.user.as_ref())?;
    let (user_id, device_id, tokens) = state
        .login_with_password(
            &typed_user,
            &password.password,
            body.device_id,
            body.initial_device_display_name,
            body.refresh_token,
            request.client_ip,
        )
        .await?;
    Ok(login_response(&state, user_id, device_id, tokens))
}

/// The user named at login: an `m.id.user` identifier, or the bare `user` of clients older than
/// r0.4.
fn typed_user(
    identifier: Option<&UserIdentifier>,
    legacy_user: Option<&String>,
) -> ApiResult<String> {
    match (identifier, legacy_user) {
        (Some(UserIdentifier::Matrix(id)), _) => Ok(id.user.clone()),
        (None, Some(user)) => Ok(user.clone()),
        (Some(_), _) => Err(ApiError::InvalidParam(
            "only the m.id.user identifier is supported".into(),
        )),
        (None, None) => Err(ApiError::MissingParam("identifier is required".into())),
    }
}

fn login_response(
    state: &AppState,
    user_id: ruma::OwnedUserId,
    device_id: ruma::OwnedDeviceId,
    tokens: service::IssuedTokens,
) -> login::v3::Response {
    let mut response = login::v3::Response::new(user_id, tokens.access_token, device_id);
    response.refresh_token = tokens.refresh_token;
    response.expires_in = tokens.expires_in;
    response.well_known = Some(login::v3::DiscoveryInfo::new(
        login::v3::HomeserverInfo::new(state.config.client_base_url()),
    ));
    response
}

/// `POST /_matrix/client/v3/refresh`
async fn refresh(
    state: AppState,
    request: Ruma<refresh_token::v3::Request>,
) -> ApiResult<refresh_token::v3::Response> {
    let tokens = state.refresh(&request.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(tokens.access_token);
    response.refresh_token = tokens.refresh_token;
    response.expires_in_ms = tokens.expires_in;
    Ok(response)
}

/// `POST /_matrix/client/v3/logout`
async fn logout(
    state: AppState,
    request: Ruma<logout::v3::Request>,
) -> ApiResult<logout::v3::Response> {
    state.logout(&request.identity).await?;
    Ok(logout::v3::Response::new())
}

/// `POST /_matrix/client/v3/logout/all`
async fn logout_all(
    state: AppState,
    request: Ruma<logout_all::v3::Request>,
) -> ApiResult<logout_all::v3::Response> {
    state.logout_all(&request.identity.user_id).await?;
    Ok(logout_all::v3::Response::new())
}
