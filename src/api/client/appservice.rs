//! Endpoints only an application service calls with its `as_token`: the ping
//! (`/appservice/{appserviceId}/ping`) and the appservice room list
//! (`/directory/list/appservice/{networkId}/{roomId}`).

use axum::Router;
use ruma::api::client::appservice::{request_ping, set_room_visibility};
use ruma::api::client::room::Visibility;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::appservice::Assertion;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(ping).ruma(room_visibility)
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`
async fn ping(
    state: AppState,
    request: Ruma<request_ping::v1::Request>,
) -> ApiResult<request_ping::v1::Response> {
    let body = request.body;
    let took = state
        .ping_appservice(
            &request.identity,
            &body.appservice_id,
            body.transaction_id.as_ref().map(|t| t.as_str()),
        )
        .await?;
    Ok(request_ping::v1::Response::new(took))
}

/// `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`
async fn room_visibility(
    state: AppState,
    request: Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let registration = request.identity;
    let session = state
        .appservice_session(&registration, &Assertion::default())
        .await?;
    let body = request.body;
    let public = body.visibility == Visibility::Public;
    state
        .set_appservice_room_visibility(
            &session,
            &registration,
            &body.network_id,
            &body.room_id,
            public,
        )
        .await?;
    Ok(set_room_visibility::v3::Response::new())
}
