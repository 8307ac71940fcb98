//! Receipts and read markers: `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` and
//! `POST /rooms/{roomId}/read_markers`.

use axum::Router;
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt;

use crate::api::AppState;
use crate::api::error::ApiResult;
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(send_receipt).ruma(set_read_markers)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
async fn send_receipt(
    state: AppState,
    request: Ruma<create_receipt::v3::Request>,
) -> ApiResult<create_receipt::v3::Response> {
    let body = request.body;
    state
        .send_receipt(
            &request.identity.user_id,
            &body.room_id,
            body.receipt_type.as_str(),
            &body.event_id,
            &body.thread,
        )
        .await?;
    Ok(create_receipt::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
async fn set_read_markers(
    state: AppState,
    request: Ruma<set_read_marker::v3::Request>,
) -> ApiResult<set_read_marker::v3::Response> {
    let body = request.body;
    state
        .set_read_markers(
            &request.identity.user_id,
            &body.room_id,
            body.fully_read.as_deref(),
            body.read_receipt.as_deref(),
            body.private_read_receipt.as_deref(),
        )
        .await?;
    Ok(set_read_marker::v3::Response::new())
}
