//! HTTP only: the routers (client and federation), the request extractors, error mapping, and one
//! file per spec section under `client/`, `federation/` and `admin/`. Handlers parse, call a service, answer: no SQL, no locks.

pub mod admin;
pub mod client;
pub mod error;
pub mod extract;
pub mod federation;
pub mod media;
mod observe;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::service::Services;
use error::ApiError;

/// What every handler receives.
pub type AppState = Arc<Services>;

/// The whole HTTP surface of the server.
pub fn router(services: AppState) -> Router {
    let mut router = client::routes(Router::new())
        .merge(admin::routes(Router::new()))
        .merge(media::routes(Router::new()));
    if services.config.metrics.enabled {
        router = router.route("/metrics", axum::routing::get(metrics));
    }
    router
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            services.clone(),
            observe::observe,
        ))
        .layer(cors())
        .with_state(services)
}

/// The Server-Server API, for the federation listeners: no client endpoints, no CORS.
pub fn federation_router(services: AppState) -> Router {
    media::federation_routes(federation::routes(Router::new()))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            services.clone(),
            observe::observe,
        ))
        .with_state(services)
}

/// CORS as the Client-Server API requires for web clients.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static("x-requested-with"),
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
        ])
        .max_age(Duration::from_secs(86_400))
}

/// Any path no endpoint owns.
async fn unrecognized() -> ApiError {
    ApiError::Unrecognized {
        status: StatusCode::NOT_FOUND,
    }
}

/// A known path asked with a method it does not take.
async fn method_not_allowed() -> ApiError {
    ApiError::Unrecognized {
        status: StatusCode::METHOD_NOT_ALLOWED,
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
