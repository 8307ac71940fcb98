//! Pushers: `GET /pushers` and `POST /pushers/set`.
//!
//! ruma reads a `/pushers/set` body without `kind` as `kind: null`, a deletion; the specification
//! requires `kind`. So before ruma parses the body, `require_fields` checks that the fields the
//! specification requires are present and answers `M_MISSING_PARAM` naming those that are not
//! (and `M_INVALID_PARAM` for an HTTP pusher without `data.url`).

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::map_request;
use ruma::api::client::push::{get_pushers, set_pusher};
use serde_json::{Map, Value as JsonValue};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Ruma, read_body};
use crate::api::route::RumaRoutes;

/// The largest `/pushers/set` body read for the field check; a pusher is a few hundred bytes.
const MAX_SET_BODY_BYTES: usize = 64 * 1024;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let set_route = Router::new()
        .ruma(set)
        .route_layer(map_request(require_fields));
    router.ruma(list).merge(set_route)
}

/// `GET /_matrix/client/v3/pushers`
async fn list(
    state: AppState,
    request: Ruma<get_pushers::v3::Request>,
) -> ApiResult<get_pushers::v3::Response> {
    Ok(get_pushers::v3::Response::new(
        state.pushers(&request.identity).await?,
    ))
}

/// `POST /_matrix/client/v3/pushers/set`
async fn set(
    state: AppState,
    request: Ruma<set_pusher::v3::Request>,
) -> ApiResult<set_pusher::v3::Response> {
    state
        .set_pusher(&request.identity, request.body.action)
        .await?;
    Ok(set_pusher::v3::Response::new())
}

/// Refuses a `/pushers/set` body that lacks a required field; anything else (including a body
/// that is not a JSON object) goes on to ruma's parsing unchanged.
async fn require_fields(request: Request) -> Result<Request, ApiError> {
    // A request without credentials goes straight on, to be refused by authentication first.
    let credentials = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || request
            .uri()
            .query()
            .is_some_and(|q| q.contains("access_token="));
    if !credentials {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(body, MAX_SET_BODY_BYTES).await?;
    if let Ok(JsonValue::Object(fields)) = serde_json::from_slice::<JsonValue>(&bytes) {
        let missing = missing_fields(&fields);
        if !missing.is_empty() {
            return Err(ApiError::MissingParam(format!(
                "missing parameters: {}",
                missing.join(", ")
            )));
        }
        let http = fields.get("kind").and_then(JsonValue::as_str) == Some("http");
        let data = fields.get("data").and_then(JsonValue::as_object);
        if http && data.is_some_and(|data| !data.contains_key("url")) {
            return Err(ApiError::InvalidParam(
                "an http pusher needs data.url, the URL of its push gateway".into(),
            ));
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The required fields a body lacks: `kind`, `app_id` and `pushkey` always, and what a pusher
/// needs unless `kind` is null (a deletion).
fn missing_fields(fields: &Map<String, JsonValue>) -> Vec<&'static str> {
    let mut required = vec!["kind", "app_id", "pushkey"];
    if fields.get("kind").is_some_and(|kind| !kind.is_null()) {
        required.extend(["app_display_name", "device_display_name", "lang", "data"]);
    }
    required
        .into_iter()
        .filter(|field| !fields.contains_key(*field))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn missing(body: JsonValue) -> Vec<&'static str> {
        missing_fields(body.as_object().unwrap())
    }

    #[test]
    fn a_deletion_needs_only_its_ids_and_a_pusher_needs_everything() {
        assert!(missing(json!({"kind": null, "app_id": "a", "pushkey": "k"})).is_empty());
        assert_eq!(
            missing(json!({"app_id": "a", "pushkey": "k"})),
            ["kind"],
            "a missing kind is not a deletion"
        );
        assert_eq!(
            missing(json!({"kind": "http", "app_id": "a", "lang": "en", "data": {}})),
            ["pushkey", "app_display_name", "device_display_name"]
        );
    }
}
