//! Account registration: `/register` (also by appservices, `m.login.application_service` with
//! their `as_token`), `/register/available` and registration token validity.

use axum::Router;
use ruma::api::client::account::{
    check_registration_token_validity, get_username_availability, register,
};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::{self, accounts::Registration};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(register).ruma(available).ruma(token_validity)
}

/// `POST /_matrix/client/v3/register`
async fn register(
    state: AppState,
    request: Ruma<register::v3::Request>,
) -> ApiResult<register::v3::Response> {
    let body = request.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(service::Error::GuestAccessForbidden(
            "guest access is not enabled on this server".into(),
        )
        .into());
    }
    let by_appservice = body.login_type == Some(register::LoginType::ApplicationService);
    let registration = Registration {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        auth: body.auth,
        client_ip: request.client_ip,
    };
    let registered = match (by_appservice, &request.identity) {
        (true, Some(appservice)) => {
            state
                .register_appservice_user(appservice, registration)
                .await?
        }
        (true, None) => return Err(ApiError::MissingToken),
        (false, _) => state.register(registration).await?,
    };
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some((device_id, tokens)) = registered.device {
        response.device_id = Some(device_id);
        response.access_token = Some(tokens.access_token);
        response.refresh_token = tokens.refresh_token;
        response.expires_in = tokens.expires_in;
    }
    Ok(response)
}

/// `GET /_matrix/client/v3/register/available`
async fn available(
    state: AppState,
    request: Ruma<get_username_availability::v3::Request>,
) -> ApiResult<get_username_availability::v3::Response> {
    state
        .check_username_available(&request.body.username)
        .await?;
    Ok(get_username_availability::v3::Response::new(true))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
async fn token_validity(
    state: AppState,
    request: Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    let valid = state
        .registration_token_is_valid(&request.body.token)
        .await?;
    Ok(check_registration_token_validity::v1::Response::new(valid))
}
