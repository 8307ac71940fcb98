//! Filtering: uploading a filter definition and downloading it again by id.

use axum::Router;
use ruma::api::client::filter::{create_filter, get_filter};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(upload).ruma(download)
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
async fn upload(
    state: AppState,
    request: Ruma<create_filter::v3::Request>,
) -> ApiResult<create_filter::v3::Response> {
    let body = request.body;
    let filter_id = state
        .upload_filter(&request.identity.user_id, &body.user_id, &body.filter)
        .await?;
    Ok(create_filter::v3::Response::new(filter_id))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
async fn download(
    state: AppState,
    request: Ruma<get_filter::v3::Request>,
) -> ApiResult<get_filter::v3::Response> {
    let body = request.body;
    let filter = state
        .download_filter(&request.identity.user_id, &body.user_id, &body.filter_id)
        .await?;
    Ok(get_filter::v3::Response::new(filter))
}
