//! Third-party networks (`/thirdparty/...`): protocols, locations and users of the networks the
//! registered bridges speak, answered by asking the bridges (`service/appservice/thirdparty.rs`).

use axum::Router;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
    get_user_for_protocol, get_user_for_user_id,
};
use serde::de::DeserializeOwned;
use serde_json::Value as JsonValue;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::{self, appservice::thirdparty::Entity};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(protocols)
        .ruma(protocol)
        .ruma(locations)
        .ruma(users)
        .ruma(locations_for_alias)
        .ruma(users_for_user_id)
}

/// `GET /_matrix/client/v3/thirdparty/protocols`
async fn protocols(
    state: AppState,
    _: Ruma<get_protocols::v3::Request>,
) -> ApiResult<get_protocols::v3::Response> {
    let mut protocols = std::collections::BTreeMap::new();
    for (name, value) in state.thirdparty_protocols().await {
        // A protocol an appservice described wrongly is left out rather than failing the list.
        if let Ok(protocol) = serde_json::from_value(value) {
            protocols.insert(name, protocol);
        }
    }
    Ok(get_protocols::v3::Response::new(protocols))
}

/// `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`
async fn protocol(
    state: AppState,
    request: Ruma<get_protocol::v3::Request>,
) -> ApiResult<get_protocol::v3::Response> {
    let name = request.body.protocol;
    let value = state.thirdparty_protocol(&name).await.ok_or_else(|| {
        service::Error::NotFound(format!("no bridge describes the protocol {name}"))
    })?;
    Ok(get_protocol::v3::Response::new(parse(value)?))
}

/// `GET /_matrix/client/v3/thirdparty/location/{protocol}`
async fn locations(
    state: AppState,
    request: Ruma<get_location_for_protocol::v3::Request>,
) -> ApiResult<get_location_for_protocol::v3::Response> {
    let body = request.body;
    let found = state
        .thirdparty_lookup(Entity::Location, &body.protocol, &body.fields)
        .await?;
    Ok(get_location_for_protocol::v3::Response::new(parse_each(
        found,
    )))
}

/// `GET /_matrix/client/v3/thirdparty/user/{protocol}`
async fn users(
    state: AppState,
    request: Ruma<get_user_for_protocol::v3::Request>,
) -> ApiResult<get_user_for_protocol::v3::Response> {
    let body = request.body;
    let found = state
        .thirdparty_lookup(Entity::User, &body.protocol, &body.fields)
        .await?;
    Ok(get_user_for_protocol::v3::Response::new(parse_each(found)))
}

/// `GET /_matrix/client/v3/thirdparty/location?alias=`
async fn locations_for_alias(
    state: AppState,
    request: Ruma<get_location_for_room_alias::v3::Request>,
) -> ApiResult<get_location_for_room_alias::v3::Response> {
    let found = state
        .thirdparty_locations_for_alias(&request.body.alias)
        .await;
    Ok(get_location_for_room_alias::v3::Response::new(parse_each(
        found,
    )))
}

/// `GET /_matrix/client/v3/thirdparty/user?userid=`
async fn users_for_user_id(
    state: AppState,
    request: Ruma<get_user_for_user_id::v3::Request>,
) -> ApiResult<get_user_for_user_id::v3::Response> {
    let found = state
        .thirdparty_users_for_user_id(&request.body.userid)
        .await;
    Ok(get_user_for_user_id::v3::Response::new(parse_each(found)))
}

/// A bridge's answer as the ruma type; a malformed one is the bridge's fault (502).
fn parse<T: DeserializeOwned>(value: JsonValue) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| {
        ApiError::from(service::Error::RemoteServer(format!(
            "a bridge answered a malformed third-party lookup: {e}"
        )))
    })
}

/// The entries of bridges' answers that have the shape the specification gives them.
fn parse_each<T: DeserializeOwned>(values: Vec<JsonValue>) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}
