//! `GET /_matrix/federation/v1/user/devices/{userId}`: a local user's device list, for servers
//! that share rooms with them (see `service::device_lists` for what it holds before end-to-end
//! encryption lands).

use axum::Router;
use ruma::UInt;
use ruma::api::federation::device::get_devices;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(devices)
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
async fn devices(
    state: AppState,
    request: Signed<get_devices::v1::Request>,
) -> ApiResult<get_devices::v1::Response> {
    let user_id = request.body.user_id;
    let list = state.device_list_for_federation(&user_id).await?;
    let mut response =
        get_devices::v1::Response::new(user_id, UInt::try_from(list.stream_id).unwrap_or_default());
    response.devices = list.devices;
    Ok(response)
}
