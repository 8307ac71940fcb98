//! The request extractor: turns an HTTP request into a ruma request type plus the identity that
//! made it. Authentication follows the endpoint's declared scheme (ruma's metadata), so a handler
//! for an authenticated endpoint receives a non-optional `UserSession` and never checks tokens.

use std::net::{IpAddr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::extract::{ConnectInfo, FromRequest, RawPathParams, Request};
use http::request::Parts;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceTokenOptional, AuthScheme, NoAccessToken,
    NoAuthentication,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt};

use super::AppState;
use super::error::ApiError;
use crate::service::{Services, UserSession};

/// A parsed, authenticated request for endpoint `T`.
pub struct Ruma<T: IncomingRequest>
where
    T::Authentication: Authenticate,
{
    pub body: T,
    pub identity: <T::Authentication as Authenticate>::Identity,
    pub client_ip: IpAddr,
}

/// How each of ruma's authentication schemes is checked, and what identity it yields.
pub trait Authenticate: AuthScheme {
    type Identity: Send;

    fn authenticate(
        services: &Services,
        token: Option<&str>,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Self::Identity, ApiError>> + Send;
}

impl Authenticate for AccessToken {
    type Identity = UserSession;

    async fn authenticate(
        services: &Services,
        token: Option<&str>,
        ip: IpAddr,
    ) -> Result<UserSession, ApiError> {
        let token = token.ok_or(ApiError::MissingToken)?;
        let session = services.authenticate(token, ip).await?;
        tracing::Span::current().record("user.id", session.user_id.as_str());
        Ok(session)
    }
}

impl Authenticate for AccessTokenOptional {
    type Identity = Option<UserSession>;

    async fn authenticate(
        services: &Services,
        token: Option<&str>,
        ip: IpAddr,
    ) -> Result<Option<UserSession>, ApiError> {
        match token {
            Some(_) => AccessToken::authenticate(services, token, ip)
                .await
                .map(Some),
            None => Ok(None),
        }
    }
}

impl Authenticate for NoAuthentication {
    type Identity = ();

    async fn authenticate(_: &Services, _: Option<&str>, _: IpAddr) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Authenticate for NoAccessToken {
    type Identity = ();

    async fn authenticate(_: &Services, _: Option<&str>, _: IpAddr) -> Result<(), ApiError> {
        Ok(())
    }
}

/// `/login` and `/register` accept an application service's token, for bridges acting as their
/// users. Until the Application Service API lands no token is an appservice token, so any token is
/// ignored, as for unauthenticated endpoints: clients routinely send their old access token when
/// logging in again. The `m.login.application_service` login type is refused by the handler.
impl Authenticate for AppserviceTokenOptional {
    type Identity = ();

    async fn authenticate(_: &Services, _: Option<&str>, _: IpAddr) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The access token of a request: the `Authorization: Bearer` header, or the deprecated
/// `access_token` query parameter.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(token) = text.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "access_token")
        .map(|(_, value)| value.into_owned())
}

/// The client's address, from the connection.
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
}

/// Reads the whole body, refusing bodies over the configured limit with `M_TOO_LARGE`.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::TooLarge(format!("the request body is larger than {limit} bytes"))
        } else {
            ApiError::BadJson(format!("could not read the request body: {e}"))
        }
    })
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: Authenticate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let mut path_args: Vec<String> =
            match RawPathParams::from_request_parts(&mut parts, state).await {
                Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
                Err(e) => {
                    return Err(ApiError::InvalidParam(format!(
                        "invalid path parameter: {e}"
                    )));
                }
            };
        if parts
            .extensions
            .get::<super::route::EmptyStateKey>()
            .is_some()
        {
            path_args.push(String::new());
        }
        let ip = client_ip(&parts);
        let token = access_token(&parts);
        let mut bytes = read_body(body, state.config.limits.max_request_bytes).await?;
        let identity = T::Authentication::authenticate(state, token.as_deref(), ip).await?;
        if bytes.is_empty() && parts.method != http::Method::GET {
            bytes = axum::body::Bytes::from_static(b"{}");
        }
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
        Ok(Ruma {
            body,
            identity,
            client_ip: ip,
        })
    }
}

/// Maps a failure to parse the request onto the Matrix error a client expects.
pub(super) fn request_error(error: FromHttpRequestError) -> ApiError {
    match error {
        FromHttpRequestError::MethodMismatch { .. } => ApiError::Unrecognized {
            status: http::StatusCode::METHOD_NOT_ALLOWED,
        },
        FromHttpRequestError::Deserialization(error) => match error {
            DeserializationError::Json(e) if e.is_syntax() || e.is_eof() => {
                ApiError::NotJson(format!("the request body is not valid JSON: {e}"))
            }
            DeserializationError::Json(e) => {
                ApiError::BadJson(format!("invalid request body: {e}"))
            }
            DeserializationError::Query(e) if e.to_string().contains("missing field") => {
                ApiError::MissingParam(format!("missing query parameter: {e}"))
            }
            DeserializationError::Query(e) => {
                ApiError::InvalidParam(format!("invalid query parameter: {e}"))
            }
            DeserializationError::Ident(e) => {
                ApiError::InvalidParam(format!("invalid identifier: {e}"))
            }
            other => ApiError::BadJson(format!("invalid request: {other}")),
        },
        _ => ApiError::BadJson("invalid request".into()),
    }
}

/// A JSON body for endpoints outside ruma (the admin API), with Matrix errors for bad input.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request.into_body(), state.config.limits.max_request_bytes).await?;
        let bytes = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map(JsonBody).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::NotJson(format!("the request body is not valid JSON: {e}"))
            } else {
                ApiError::BadJson(format!("invalid request body: {e}"))
            }
        })
    }
}

/// An authenticated server admin, for the admin API.
pub struct Admin(pub UserSession);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = access_token(parts);
        let session = AccessToken::authenticate(state, token.as_deref(), client_ip(parts)).await?;
        if !session.is_admin {
            return Err(ApiError::Forbidden("you are not a server admin".into()));
        }
        Ok(Admin(session))
    }
}
