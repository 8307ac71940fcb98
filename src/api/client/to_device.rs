//! Send-to-device messaging: `PUT /sendToDevice/{eventType}/{txnId}`.

use axum::Router;
use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::to_device::ToDeviceMessage;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(send)
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send(
    state: AppState,
    request: Ruma<send_event_to_device::v3::Request>,
) -> ApiResult<send_event_to_device::v3::Response> {
    let body = request.body;
    let mut messages = Vec::new();
    for (user_id, devices) in body.messages {
        for (device, content) in devices {
            let device = match device {
                DeviceIdOrAllDevices::DeviceId(device_id) => Some(device_id),
                DeviceIdOrAllDevices::AllDevices => None,
            };
            messages.push(ToDeviceMessage::new(
                user_id.clone(),
                device,
                content.json().get(),
            )?);
        }
    }
    state
        .send_to_device(
            &request.identity,
            &body.event_type.to_string(),
            body.txn_id.as_str(),
            messages,
        )
        .await?;
    Ok(send_event_to_device::v3::Response::new())
}
