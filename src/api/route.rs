//! Registering handlers for ruma endpoints. The paths and method come from the endpoint's ruma
//! metadata (every historical path: `r0`, `v3`, unstable prefixes), never from strings written
//! here.

use axum::Router;
use axum::extract::State;
use axum::middleware::map_request;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use ruma::api::IncomingRequest;
use ruma::api::path_builder::PathBuilder;

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

    /// Like `ruma`, for endpoints ending in `{state_key}`: also answers with the state key left
    /// out (`…/state/m.room.name` and `…/state/m.room.name/`), meaning the empty state key.
    fn ruma_state_key<T, H, F>(self, handler: H) -> Self
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
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, method_router(handler.clone()));
        }
        self
    }

    fn ruma_state_key<T, H, F>(mut self, handler: H) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: Authenticate,
        T::OutgoingResponse: Send,
        H: Fn(AppState, Ruma<T>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, method_router(handler.clone()));
            let Some(prefix) = path.strip_suffix("/{state_key}") else {
                continue;
            };
            for short in [prefix.to_owned(), format!("{prefix}/")] {
                let router =
                    method_router(handler.clone()).layer(map_request(mark_empty_state_key));
                self = self.route(&short, router);
            }
        }
        self
    }
}

/// Marks a request whose path ended before its (empty) state key.
#[derive(Clone, Copy)]
pub struct EmptyStateKey;

async fn mark_empty_state_key(mut request: axum::extract::Request) -> axum::extract::Request {
    request.extensions_mut().insert(EmptyStateKey);
    request
}

fn method_router<T, H, F>(handler: H) -> MethodRouter<AppState>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: Authenticate,
    T::OutgoingResponse: Send,
    H: Fn(AppState, Ruma<T>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
{
    let filter = MethodFilter::try_from(T::METHOD.clone())
        .unwrap_or_else(|_| panic!("ruma endpoint with unsupported method {}", T::METHOD));
    on(
        filter,
        move |State(state): State<AppState>, request: Ruma<T>| async move {
            match handler(state, request).await {
                Ok(response) => render(response),
                Err(error) => error.into_response(),
            }
        },
    )
}
