//! Queries: `GET /_matrix/federation/v1/query/profile`, the profile of a user of this server.

use axum::Router;
use ruma::api::federation::query::get_profile_information;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(profile)
}

/// `GET /_matrix/federation/v1/query/profile`
async fn profile(
    state: AppState,
    request: Signed<get_profile_information::v1::Request>,
) -> ApiResult<get_profile_information::v1::Response> {
    let field = request.body.field.as_ref().map(|f| f.as_str().to_owned());
    let profile = state
        .profile_for_federation(&request.body.user_id, field.as_deref())
        .await?;
    let mut response = get_profile_information::v1::Response::new();
    response.data = profile.into_iter().collect();
    Ok(response)
}
