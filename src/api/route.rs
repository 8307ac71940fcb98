//! Registering handlers for ruma endpoints. The paths and method come from the endpoint's ruma
//! metadata (every historical path: `r0`, `v3`, unstable prefixes), never from strings written
//! here.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, on};
use ruma::api::path_builder::PathBuilder;
use ruma::api::IncomingRequest;

use super::AppState;
use super::error::{ApiError, render};
use super::extract::{Authenticate, Ruma};

/// Adds `.ruma(handler)` to the router: the handler's request type names the endpoint.
pub trait RumaRoutes {
    fn ruma<T, H, F>(self, handler: H) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: Authenticate,
        T::OutgoingResponse: Send,
        H: Fn(AppState, Ruma<T>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;
}

impl RumaRoutes for Router<AppState> {
    fn ruma<T, H, F>(mut self, handler: H) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: Authenticate,
        T::OutgoingResponse: Send,
        H: Fn(AppState, Ruma<T>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        let filter = MethodFilter::try_from(T::METHOD.clone())
            .unwrap_or_else(|_| panic!("ruma endpoint with unsupported method {}", T::METHOD));
        for path in T::PATH_BUILDER.all_paths() {
            let handler = handler.clone();
            self = self.route(
                path,
                on(filter, move |State(state): State<AppState>, request: Ruma<T>| async move {
                    match handler(state, request).await {
                        Ok(response) => render(response),
                        Err(error) => error.into_response(),
                    }
                }),
            );
        }
        self
    }
}
