//! `GET /_matrix/federation/v1/version`: the server's implementation name and version.

use axum::Router;
use ruma::api::federation::discovery::get_server_version;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(version)
}

/// `GET /_matrix/federation/v1/version`
async fn version(
    _state: AppState,
    _request: Ruma<get_server_version::v1::Request>,
) -> ApiResult<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Plexus".into());
    server.version = Some(env!("CARGO_PKG_VERSION").into());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}
