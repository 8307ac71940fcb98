//! Device management: list, get, rename and delete (deletion behind user-interactive auth).

use axum::Router;
use ruma::MilliSecondsSinceUnixEpoch;
use ruma::api::client::device::{
    self, delete_device, delete_devices, get_device, get_devices, update_device,
};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::storage::tokens::DeviceRow;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(list)
        .ruma(get)
        .ruma(rename)
        .ruma(delete_one)
        .ruma(delete_many)
}

fn to_device(row: DeviceRow) -> device::Device {
    let mut device = device::Device::new(row.device_id);
    device.display_name = row.display_name;
    device.last_seen_ip = row.last_seen_ip;
    device.last_seen_ts = row
        .last_seen_ts
        .and_then(|ts| ruma::UInt::try_from(ts).ok())
        .map(MilliSecondsSinceUnixEpoch);
    device
}

/// `GET /_matrix/client/v3/devices`
async fn list(
    state: AppState,
    request: Ruma<get_devices::v3::Request>,
) -> ApiResult<get_devices::v3::Response> {
    let devices = state.list_devices(&request.identity.user_id).await?;
    Ok(get_devices::v3::Response::new(
        devices.into_iter().map(to_device).collect(),
    ))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
async fn get(
    state: AppState,
    request: Ruma<get_device::v3::Request>,
) -> ApiResult<get_device::v3::Response> {
    let row = state
        .get_device(&request.identity.user_id, &request.body.device_id)
        .await?;
    Ok(get_device::v3::Response::new(to_device(row)))
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
async fn rename(
    state: AppState,
    request: Ruma<update_device::v3::Request>,
) -> ApiResult<update_device::v3::Response> {
    let body = request.body;
    state
        .rename_device(
            &request.identity.user_id,
            &body.device_id,
            body.display_name,
        )
        .await?;
    Ok(update_device::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
async fn delete_one(
    state: AppState,
    request: Ruma<delete_device::v3::Request>,
) -> ApiResult<delete_device::v3::Response> {
    let body = request.body;
    state
        .get_device(&request.identity.user_id, &body.device_id)
        .await?;
    state
        .delete_devices_with_auth(&request.identity, vec![body.device_id], body.auth)
        .await?;
    Ok(delete_device::v3::Response::new())
}

/// `POST /_matrix/client/v3/delete_devices`
async fn delete_many(
    state: AppState,
    request: Ruma<delete_devices::v3::Request>,
) -> ApiResult<delete_devices::v3::Response> {
    let body = request.body;
    state
        .delete_devices_with_auth(&request.identity, body.devices, body.auth)
        .await?;
    Ok(delete_devices::v3::Response::new())
}
