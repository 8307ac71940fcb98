//! Transactions: `PUT /_matrix/federation/v1/send/{txnId}`, the PDUs and EDUs another server
//! pushes to this one. The answer is 200 with a result per PDU even when PDUs fail; the work is
//! `Services::receive_transaction`'s.

use axum::Router;
use ruma::api::federation::transactions::send_transaction_message;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::federation::auth::{FederationRoutes, Signed};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.signed(send_transaction)
}

/// `PUT /_matrix/federation/v1/send/{txnId}`
async fn send_transaction(
    state: AppState,
    request: Signed<send_transaction_message::v1::Request>,
) -> ApiResult<send_transaction_message::v1::Response> {
    let body = request.body;
    if body.origin != request.origin {
        return Err(ApiError::Forbidden(format!(
            "the transaction claims to come from {}, but {} signed it",
            body.origin, request.origin
        )));
    }
    let edus: Vec<_> = body.edus.into_iter().map(|edu| edu.into_json()).collect();
    let pdus = state
        .receive_transaction(
            &request.origin,
            body.transaction_id.as_str(),
            &body.pdus,
            &edus,
        )
        .await?;
    Ok(send_transaction_message::v1::Response::new(pdus))
}
