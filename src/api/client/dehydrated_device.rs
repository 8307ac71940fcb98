//! Dehydrated devices (MSC3814): `PUT`, `GET` and `DELETE /dehydrated_device` and
//! `POST /dehydrated_device/{deviceId}/events`, under the unstable prefix
//! `/_matrix/client/unstable/org.matrix.msc3814.v1` (paths from ruma's metadata).

use axum::Router;
use ruma::api::client::dehydrated_device::{
    delete_dehydrated_device, get_dehydrated_device, get_events, put_dehydrated_device,
};
use ruma::serde::Raw;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::keys::{DehydratedDeviceUpload, KeysUpload};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(put).ruma(get).ruma(delete).ruma(events)
}

/// `PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
async fn put(
    state: AppState,
    request: Ruma<put_dehydrated_device::unstable::Request>,
) -> ApiResult<put_dehydrated_device::unstable::Response> {
    let body = request.body;
    let device_id = state
        .put_dehydrated_device(
            &request.identity.user_id,
            DehydratedDeviceUpload {
                device_id: body.device_id,
                display_name: body.initial_device_display_name,
                device_data: body.device_data.into_json(),
                keys: KeysUpload {
                    device_keys: Some(body.device_keys),
                    one_time_keys: body.one_time_keys,
                    fallback_keys: body.fallback_keys,
                },
            },
        )
        .await?;
    Ok(put_dehydrated_device::unstable::Response::new(device_id))
}

/// `GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
async fn get(
    state: AppState,
    request: Ruma<get_dehydrated_device::unstable::Request>,
) -> ApiResult<get_dehydrated_device::unstable::Response> {
    let device = state.dehydrated_device(&request.identity.user_id).await?;
    Ok(get_dehydrated_device::unstable::Response::new(
        device.device_id,
        Raw::from_json(device.device_data),
    ))
}

/// `DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device`
async fn delete(
    state: AppState,
    request: Ruma<delete_dehydrated_device::unstable::Request>,
) -> ApiResult<delete_dehydrated_device::unstable::Response> {
    let device_id = state
        .delete_dehydrated_device(&request.identity.user_id)
        .await?;
    Ok(delete_dehydrated_device::unstable::Response::new(device_id))
}

/// `POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events`
async fn events(
    state: AppState,
    request: Ruma<get_events::unstable::Request>,
) -> ApiResult<get_events::unstable::Response> {
    let batch = state
        .dehydrated_device_events(
            &request.identity.user_id,
            &request.body.device_id,
            request.body.next_batch.as_deref(),
        )
        .await?;
    let mut response =
        get_events::unstable::Response::new(batch.events.into_iter().map(Raw::from_json).collect());
    response.next_batch = Some(batch.next_batch);
    Ok(response)
}
