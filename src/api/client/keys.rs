//! End-to-end encryption keys: upload, query, claim, changes, cross-signing keys and signatures.

use axum::Router;
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;
use crate::service::keys::{KeysUpload, SigningKeysUpload};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma(upload)
        .ruma(query)
        .ruma(claim)
        .ruma(changes)
        .ruma(upload_cross_signing_keys)
        .ruma(upload_cross_signing_signatures)
}

/// `POST /_matrix/client/v3/keys/upload`
async fn upload(
    state: AppState,
    request: Ruma<upload_keys::v3::Request>,
) -> ApiResult<upload_keys::v3::Response> {
    let body = request.body;
    let counts = state
        .upload_keys(
            &request.identity,
            KeysUpload {
                device_keys: body.device_keys,
                one_time_keys: body.one_time_keys,
                fallback_keys: body.fallback_keys,
            },
        )
        .await?;
    Ok(upload_keys::v3::Response::new(counts))
}

/// `POST /_matrix/client/v3/keys/query`
async fn query(
    state: AppState,
    request: Ruma<get_keys::v3::Request>,
) -> ApiResult<get_keys::v3::Response> {
    let answer = state
        .query_keys(
            &request.identity.user_id,
            request.body.device_keys,
            request.body.timeout,
        )
        .await?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = answer.device_keys;
    response.master_keys = answer.master_keys;
    response.self_signing_keys = answer.self_signing_keys;
    response.user_signing_keys = answer.user_signing_keys;
    response.failures = answer.failures;
    Ok(response)
}

/// `POST /_matrix/client/v3/keys/claim`
async fn claim(
    state: AppState,
    request: Ruma<claim_keys::v3::Request>,
) -> ApiResult<claim_keys::v3::Response> {
    let body = request.body;
    let (keys, failures) = state.claim_keys(body.one_time_keys, body.timeout).await?;
    let mut response = claim_keys::v3::Response::new(keys);
    response.failures = failures;
    Ok(response)
}

/// `GET /_matrix/client/v3/keys/changes`
async fn changes(
    state: AppState,
    request: Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let body = request.body;
    let (changed, left) = state
        .key_changes(&request.identity.user_id, &body.from, &body.to)
        .await?;
    Ok(get_key_changes::v3::Response::new(changed, left))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
async fn upload_cross_signing_keys(
    state: AppState,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> ApiResult<upload_signing_keys::v3::Response> {
    let body = request.body;
    state
        .upload_signing_keys(
            &request.identity,
            SigningKeysUpload {
                master_key: body.master_key,
                self_signing_key: body.self_signing_key,
                user_signing_key: body.user_signing_key,
            },
            body.auth,
        )
        .await?;
    Ok(upload_signing_keys::v3::Response::new())
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
async fn upload_cross_signing_signatures(
    state: AppState,
    request: Ruma<upload_signatures::v3::Request>,
) -> ApiResult<upload_signatures::v3::Response> {
    let failures = state
        .upload_signatures(&request.identity.user_id, request.body.signed_keys)
        .await?;
    let mut response = upload_signatures::v3::Response::new();
    for (user, failures) in failures {
        let failures = failures
            .into_iter()
            .map(|(key_id, failure)| {
                serde_json::from_value(failure)
                    .map(|failure| (key_id, failure))
                    .map_err(|e| ApiError::Service(crate::service::Error::Internal(e.to_string())))
            })
            .collect::<ApiResult<_>>()?;
        response.failures.insert(user, failures);
    }
    Ok(response)
}
