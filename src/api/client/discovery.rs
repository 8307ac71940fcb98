//! Server discovery and capabilities: `/versions`, `/.well-known/matrix/*`, `/capabilities`.

use std::collections::BTreeMap;

use axum::Router;
use ruma::RoomVersionId;
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};
use ruma::api::federation::discovery::discover_homeserver as discover_federation;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service;

/// The specification versions this server speaks.
const SPEC_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16",
];

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(versions)
        .ruma(well_known_client)
        .ruma(well_known_server)
        .ruma(capabilities)
}

/// `GET /_matrix/client/versions`
async fn versions(
    _: AppState,
    _: Ruma<get_supported_versions::Request>,
) -> ApiResult<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(
        SPEC_VERSIONS.iter().map(|v| v.to_string()).collect(),
    );
    // Dehydrated devices, served under MSC3814's unstable prefix (spec/dehydrated-devices.md).
    response.unstable_features = BTreeMap::from([("org.matrix.msc3814".to_owned(), true)]);
    Ok(response)
}

/// `GET /.well-known/matrix/client`
async fn well_known_client(
    state: AppState,
    _: Ruma<discover_homeserver::Request>,
) -> ApiResult<discover_homeserver::Response> {
    Ok(discover_homeserver::Response::new(
        discover_homeserver::HomeserverInfo::new(state.config.client_base_url()),
    ))
}

/// `GET /.well-known/matrix/server`
async fn well_known_server(
    state: AppState,
    _: Ruma<discover_federation::Request>,
) -> ApiResult<discover_federation::Response> {
    let server = state.config.well_known.server.as_deref().ok_or_else(|| {
        ApiError::Service(service::Error::NotFound(
            "this server does not delegate federation; connect to the server name itself".into(),
        ))
    })?;
    let server = server
        .try_into()
        .map_err(|e| service::Error::Internal(format!("well_known.server is invalid: {e}")))?;
    Ok(discover_federation::Response::new(server))
}

/// `GET /_matrix/client/v3/capabilities`
async fn capabilities(
    _: AppState,
    _: Ruma<get_capabilities::v3::Request>,
) -> ApiResult<get_capabilities::v3::Response> {
    let mut capabilities = get_capabilities::v3::Capabilities::new();
    capabilities.change_password = get_capabilities::v3::ChangePasswordCapability::new(true);
    // The room versions rooms will be created in (issue 3 makes the default configurable).
    capabilities.room_versions = get_capabilities::v3::RoomVersionsCapability::new(
        RoomVersionId::V10,
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
            .into_iter()
            .map(|v| (v, get_capabilities::v3::RoomVersionStability::Stable))
            .collect(),
    );
    capabilities.profile_fields = Some(get_capabilities::v3::ProfileFieldsCapability::new(true));
    capabilities.thirdparty_id_changes =
        get_capabilities::v3::ThirdPartyIdChangesCapability::new(false);
    Ok(get_capabilities::v3::Response::new(capabilities))
}
