//! Authentication of federation requests: `Signed<T>`, the extractor for endpoints whose ruma
//! auth scheme is `ServerSignatures`, and `.signed(handler)` to route them. The handler receives
//! the parsed request and its verified `origin`, and never sees an unauthenticated request.
//!
//! A missing, malformed or wrongly signed `X-Matrix` header is 401 `M_UNAUTHORIZED` with a
//! message saying which; an origin refused by `[federation] allow`/`deny` is 403 `M_FORBIDDEN`.

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use ruma::OwnedServerName;
use ruma::api::federation::authentication::{ServerSignatures, XMatrix};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingRequest, IncomingRequestExt};

use crate::api::AppState;
use crate::api::error::{ApiError, render};
use crate::api::extract::{read_body, request_error};
use crate::federation::AuthError;

/// The largest federation request body: a transaction holds up to 50 PDUs of at most 64 KiB and
/// 100 EDUs, so a few MiB, with room to spare.
const MAX_FEDERATION_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A federation request for endpoint `T`, signed by `origin` and verified.
pub struct Signed<T> {
    pub body: T,
    /// The server that signed the request.
    pub origin: OwnedServerName,
}

impl<T> FromRequest<AppState> for Signed<T>
where
    T: IncomingRequest<Authentication = ServerSignatures> + Send,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let path_args: Vec<String> = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| ApiError::InvalidParam(format!("invalid path parameter: {e}")))?
            .iter()
            .map(|(_, value)| value.to_owned())
            .collect();
        let header = XMatrix::extract_from_http_headers(&parts.headers).map_err(|e| {
            ApiError::Unauthorized(format!("this endpoint needs an X-Matrix signature: {e}"))
        })?;
        let bytes = read_body(body, MAX_FEDERATION_BODY_BYTES).await?;
        let uri = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str());
        let origin = state
            .federation
            .authenticate(&header, &parts.method, uri, &bytes)
            .await
            .map_err(|e| match e {
                AuthError::Denied(_) => ApiError::Forbidden(e.to_string()),
                AuthError::Unauthorized(message) => ApiError::Unauthorized(message),
            })?;
        tracing::Span::current().record("server.name", origin.as_str());
        state.heard_from(&origin);

        let bytes = if bytes.is_empty() && parts.method != http::Method::GET {
            axum::body::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let mut builder = http::Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone());
        if let Some(headers) = builder.headers_mut() {
            *headers = parts.headers.clone();
        }
        let http_request = builder
            .body(&bytes[..])
            .map_err(|e| ApiError::BadJson(format!("malformed request: {e}")))?;
        let path_refs: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let body = T::try_from_http_request(http_request, &path_refs).map_err(request_error)?;
        Ok(Signed { body, origin })
    }
}

/// Adds `.signed(handler)` to the router: the handler's request type names the endpoint, whose
/// paths and method come from ruma's metadata.
pub trait FederationRoutes {
    fn signed<T, H, F>(self, handler: H) -> Self
    where
        T: IncomingRequest<Authentication = ServerSignatures> + Send + 'static,
        T::OutgoingResponse: Send,
        H: Fn(AppState, Signed<T>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static;
}

impl FederationRoutes for Router<AppState> {
    fn signed<T, H, F>(mut self, handler: H) -> Self
    where
        T: IncomingRequest<Authentication = ServerSignatures> + Send + 'static,
        T::OutgoingResponse: Send,
        H: Fn(AppState, Signed<T>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
    {
        for path in T::PATH_BUILDER.all_paths() {
            self = self.route(path, method_router(handler.clone()));
        }
        self
    }
}

fn method_router<T, H, F>(handler: H) -> MethodRouter<AppState>
where
    T: IncomingRequest<Authentication = ServerSignatures> + Send + 'static,
    T::OutgoingResponse: Send,
    H: Fn(AppState, Signed<T>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<T::OutgoingResponse, ApiError>> + Send + 'static,
{
    let filter = MethodFilter::try_from(T::METHOD.clone())
        .unwrap_or_else(|_| panic!("ruma endpoint with unsupported method {}", T::METHOD));
    on(
        filter,
        move |State(state): State<AppState>, request: Signed<T>| async move {
            match handler(state, request).await {
                Ok(response) => render(response),
                Err(error) => error.into_response(),
            }
        },
    )
}
