//! Reporting content: `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`.

use axum::Router;
use ruma::api::client::room::{report_content, report_room};
use ruma::api::error::DeserializationError;
use ruma::api::{IncomingRequest, Metadata};
use serde_json::Value as JsonValue;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Ruma;
use crate::api::route::RumaRoutes;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(report_event).ruma(report_whole_room)
}

/// ruma's event report request, which leaves out the `score` of the specification (it was
/// deprecated after v1.16), with that score as sent. The endpoint's path, method and
/// authentication are ruma's.
pub struct ReportEventRequest {
    request: report_content::v3::Request,
    score: Option<JsonValue>,
}

impl Metadata for ReportEventRequest {
    const METHOD: http::Method = report_content::v3::Request::METHOD;
    const RATE_LIMITED: bool = report_content::v3::Request::RATE_LIMITED;
    type Authentication = <report_content::v3::Request as Metadata>::Authentication;
    type PathBuilder = <report_content::v3::Request as Metadata>::PathBuilder;
    const PATH_BUILDER: Self::PathBuilder = report_content::v3::Request::PATH_BUILDER;
}

impl IncomingRequest for ReportEventRequest {
    type EndpointError = <report_content::v3::Request as IncomingRequest>::EndpointError;
    type OutgoingResponse = <report_content::v3::Request as IncomingRequest>::OutgoingResponse;

    fn try_from_http_request_inner(
        request: http::Request<&[u8]>,
        path_args: &[&str],
    ) -> Result<Self, DeserializationError> {
        let body: &[u8] = request.body();
        let mut fields: serde_json::Map<String, JsonValue> = if body.is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_slice(body)?
        };
        let score = fields.remove("score");
        let request = report_content::v3::Request::try_from_http_request_inner(request, path_args)?;
        Ok(ReportEventRequest { request, score })
    }
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`
async fn report_event(
    state: AppState,
    request: Ruma<ReportEventRequest>,
) -> ApiResult<report_content::v3::Response> {
    let ReportEventRequest {
        request: body,
        score,
    } = request.body;
    let score = match score {
        None | Some(JsonValue::Null) => None,
        Some(value) => Some(value.as_i64().ok_or_else(|| {
            ApiError::InvalidParam(format!("score must be an integer, not {value}"))
        })?),
    };
    state
        .report_event(
            &request.identity,
            &body.room_id,
            &body.event_id,
            body.reason,
            score,
        )
        .await?;
    Ok(report_content::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report`
async fn report_whole_room(
    state: AppState,
    request: Ruma<report_room::v3::Request>,
) -> ApiResult<report_room::v3::Response> {
    let body = request.body;
    state
        .report_room(&request.identity, &body.room_id, body.reason)
        .await?;
    Ok(report_room::v3::Response::new())
}
