//! Server keys: this server's own (`/_matrix/key/v2/server`) and the notary endpoints that
//! serve other servers' keys with this server's signature added (`/_matrix/key/v2/query`).

use std::collections::BTreeMap;

use axum::Router;
use axum::response::Response;
use futures_util::future::join_all;
use ruma::api::federation::discovery::{
    get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, render};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::federation::keys::KeyError;
use crate::service;

/// The most servers one notary query may ask about; each may cost a fetch.
const MAX_NOTARY_SERVERS: usize = 100;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(server_keys)
        // The key id in the path was dropped from the spec (v1.?); older servers still ask it,
        // and every key is in the one response anyway. ruma has no type for it.
        .route(
            "/_matrix/key/v2/server/{key_id}",
            axum::routing::get(legacy_server_keys),
        )
        .ruma(query_keys)
        .ruma(query_keys_batch)
}

/// `GET /_matrix/key/v2/server`
async fn server_keys(
    state: AppState,
    _request: Ruma<get_server_keys::v2::Request>,
) -> ApiResult<get_server_keys::v2::Response> {
    let keys = state.federation.own_server_keys().map_err(internal)?;
    Ok(get_server_keys::v2::Response::new(keys))
}

/// `GET /_matrix/key/v2/server/{keyId}` (deprecated form of the above)
async fn legacy_server_keys(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Response {
    match state.federation.own_server_keys() {
        Ok(keys) => render(get_server_keys::v2::Response::new(keys)),
        Err(e) => axum::response::IntoResponse::into_response(internal(e)),
    }
}

/// `GET /_matrix/key/v2/query/{serverName}`
async fn query_keys(
    state: AppState,
    request: Ruma<get_remote_server_keys::v2::Request>,
) -> ApiResult<get_remote_server_keys::v2::Response> {
    let request = request.body;
    let keys = state
        .federation
        .notary_server_keys(&request.server_name, request.minimum_valid_until_ts)
        .await
        .map_err(internal)?;
    Ok(get_remote_server_keys::v2::Response::new(
        keys.into_iter().collect(),
    ))
}

/// `POST /_matrix/key/v2/query`
async fn query_keys_batch(
    state: AppState,
    request: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> ApiResult<get_remote_server_keys_batch::v2::Response> {
    let servers = request.body.server_keys;
    if servers.len() > MAX_NOTARY_SERVERS {
        return Err(ApiError::InvalidParam(format!(
            "at most {MAX_NOTARY_SERVERS} servers may be queried at once"
        )));
    }
    let now = MilliSecondsSinceUnixEpoch::now();
    // Every key of a server comes in its one response, so the key ids asked for only matter
    // through the validity they ask for: the latest of them.
    let wanted: BTreeMap<OwnedServerName, MilliSecondsSinceUnixEpoch> = servers
        .into_iter()
        .map(|(server, criteria)| {
            let minimum = criteria
                .values()
                .filter_map(|c| c.minimum_valid_until_ts)
                .max()
                .unwrap_or(now);
            (server, minimum)
        })
        .collect();
    let lookups = wanted.iter().map(|(server, minimum)| {
        let state = state.clone();
        async move {
            let keys = state.federation.notary_server_keys(server, *minimum).await;
            if let Err(e) = &keys {
                tracing::warn!(server.name = %server, error = %e, "notary query failed");
            }
            keys.ok().flatten()
        }
    });
    let keys = join_all(lookups).await.into_iter().flatten().collect();
    Ok(get_remote_server_keys_batch::v2::Response::new(keys))
}

fn internal(error: KeyError) -> ApiError {
    ApiError::Service(service::Error::Internal(error.to_string()))
}
