//! Local users' devices and keys, for other servers: `GET /user/devices/{userId}` (the device
//! list with keys and its stream position), `POST /user/keys/query` and `POST /user/keys/claim`
//! (see `service::keys::federation`).

use axum::Router;
use ruma::UInt;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::federation::auth::{FederationRoutes, Signed};
use crate::service::Error;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(devices).signed(query_keys).signed(claim_keys)
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
    response.master_key = list.master_key;
    response.self_signing_key = list.self_signing_key;
    Ok(response)
}

/// `POST /_matrix/federation/v1/user/keys/query`
async fn query_keys(
    state: AppState,
    request: Signed<get_keys::v1::Request>,
) -> ApiResult<get_keys::v1::Response> {
    let users = request.body.device_keys;
    require_local(&state, users.keys())?;
    let answer = state.local_device_keys(None, users).await?;
    let mut response = get_keys::v1::Response::new(answer.device_keys);
    response.master_keys = answer.master_keys;
    response.self_signing_keys = answer.self_signing_keys;
    Ok(response)
}

/// `POST /_matrix/federation/v1/user/keys/claim`
async fn claim_keys(
    state: AppState,
    request: Signed<claim_keys::v1::Request>,
) -> ApiResult<claim_keys::v1::Response> {
    let claims = request.body.one_time_keys;
    require_local(&state, claims.keys())?;
    let keys = state.claim_local_one_time_keys(claims).await?;
    Ok(claim_keys::v1::Response::new(keys))
}

/// Other servers may only ask about this server's users.
fn require_local<'a>(
    state: &AppState,
    mut users: impl Iterator<Item = &'a ruma::OwnedUserId>,
) -> ApiResult<()> {
    match users.find(|user| user.server_name() != state.server_name()) {
        Some(user) => {
            Err(Error::InvalidParam(format!("{user} is not a user of this server")).into())
        }
        None => Ok(()),
    }
}
