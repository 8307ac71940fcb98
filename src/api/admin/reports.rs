//! Abuse reports for operators, shaped like Synapse's admin API: `/_synapse/admin/v1/event_reports`
//! (list, show one with the reported event, close) and `/_synapse/admin/v1/room_reports` (list).

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value as JsonValue, json};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::Admin;
use crate::service::rooms::ReportFilter;
use crate::storage::reports::Report;

/// Reports per page when the operator gives no limit (Synapse's default).
const DEFAULT_LIMIT: i64 = 100;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/event_reports", get(list_event_reports))
        .route(
            "/_synapse/admin/v1/event_reports/{report_id}",
            get(show_event_report).delete(close_event_report),
        )
        .route("/_synapse/admin/v1/room_reports", get(list_room_reports))
}

/// `GET /_synapse/admin/v1/event_reports`
async fn list_event_reports(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<JsonValue>> {
    list(&state, query.as_deref(), true).await
}

/// `GET /_synapse/admin/v1/room_reports`
async fn list_room_reports(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<JsonValue>> {
    list(&state, query.as_deref(), false).await
}

/// A page of reports: `from` (an offset), `limit`, `dir` (`b`, newest first, by default; or
/// `f`), and the filters `user_id` (the reporter), `room_id` and, for event reports,
/// `event_sender_user_id`. `next_token` is there while more reports follow.
async fn list(state: &AppState, query: Option<&str>, events: bool) -> ApiResult<Json<JsonValue>> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let offset = non_negative(param("from"), "from")?.unwrap_or(0);
    let limit = non_negative(param("limit"), "limit")?.unwrap_or(DEFAULT_LIMIT);
    let newest_first = match param("dir").as_deref() {
        None | Some("b") => true,
        Some("f") => false,
        Some(other) => {
            return Err(ApiError::InvalidParam(format!(
                "dir must be f or b, not {other:?}"
            )));
        }
    };
    let (reports, total) = state
        .list_reports(ReportFilter {
            events,
            newest_first,
            offset,
            limit,
            user_id: param("user_id"),
            room_id: param("room_id"),
            event_sender: if events {
                param("event_sender_user_id")
            } else {
                None
            },
        })
        .await?;
    let shown = offset + reports.len() as i64;
    let key = if events {
        "event_reports"
    } else {
        "room_reports"
    };
    let mut body = json!({
        key: reports.iter().map(|r| report_json(r, events)).collect::<Vec<_>>(),
        "total": total,
    });
    if shown < total {
        body["next_token"] = json!(shown);
    }
    Ok(Json(body))
}

fn non_negative(value: Option<String>, name: &str) -> ApiResult<Option<i64>> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::InvalidParam(format!(
            "{name} must be a non-negative integer, not {value:?}"
        ))),
    }
}

fn report_id(text: &str) -> ApiResult<i64> {
    non_negative(Some(text.to_owned()), "the report id")?
        .ok_or_else(|| ApiError::InvalidParam("missing report id".into()))
}

fn report_json(report: &Report, events: bool) -> JsonValue {
    let mut body = json!({
        "id": report.id,
        "received_ts": report.received_ts,
        "room_id": report.room_id,
        "name": report.name,
        "canonical_alias": report.canonical_alias,
        "user_id": report.user_id,
        "reason": report.reason,
    });
    if events {
        body["event_id"] = json!(report.event_id);
        body["score"] = json!(report.score);
        body["sender"] = json!(report.sender);
    }
    body
}

/// `GET /_synapse/admin/v1/event_reports/{report_id}`
async fn show_event_report(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<JsonValue>> {
    let id = report_id(&id)?;
    let report = state.get_report(id).await?;
    if report.event_id.is_none() {
        return Err(
            crate::service::Error::NotFound(format!("there is no event report {id}")).into(),
        );
    }
    let mut body = report_json(&report, true);
    body["event_json"] = report.event_json.clone().unwrap_or(JsonValue::Null);
    Ok(Json(body))
}

/// `DELETE /_synapse/admin/v1/event_reports/{report_id}`
async fn close_event_report(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<JsonValue>> {
    state.delete_report(report_id(&id)?).await?;
    Ok(Json(json!({})))
}
