//! Profiles: the whole profile and single fields (`displayname`, `avatar_url`, `m.tz`, custom).

use axum::Router;
use ruma::api::client::profile::{
    delete_profile_field, get_profile, get_profile_field, set_profile_field,
};
use ruma::profile::ProfileFieldValue;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(get_all)
        .ruma(get_field)
        .ruma(set_field)
        .ruma(delete_field)
}

/// `GET /_matrix/client/v3/profile/{userId}`
async fn get_all(
    state: AppState,
    request: Ruma<get_profile::v3::Request>,
) -> ApiResult<get_profile::v3::Response> {
    let profile = state.get_profile(&request.body.user_id).await?;
    Ok(profile.into_iter().collect())
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
async fn get_field(
    state: AppState,
    request: Ruma<get_profile_field::v3::Request>,
) -> ApiResult<get_profile_field::v3::Response> {
    let field = request.body.field.to_string();
    let value = state
        .get_profile_field(&request.body.user_id, &field)
        .await?;
    let value = ProfileFieldValue::new(&field, value).map_err(|e| {
        ApiError::BadJson(format!("stored profile field {field} is malformed: {e}"))
    })?;
    Ok(get_profile_field::v3::Response::new(value))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
async fn set_field(
    state: AppState,
    request: Ruma<set_profile_field::v3::Request>,
) -> ApiResult<set_profile_field::v3::Response> {
    let value = request.body.value;
    let field = value.field_name().to_string();
    state
        .set_profile_field(
            &request.identity.user_id,
            &request.body.user_id,
            &field,
            value.value().into_owned(),
        )
        .await?;
    Ok(set_profile_field::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
async fn delete_field(
    state: AppState,
    request: Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<delete_profile_field::v3::Response> {
    let field = request.body.field.to_string();
    state
        .delete_profile_field(&request.identity.user_id, &request.body.user_id, &field)
        .await?;
    Ok(delete_profile_field::v3::Response::new())
}
