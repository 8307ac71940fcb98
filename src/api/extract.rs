//! The request extractor: turns an HTTP request into a ruma request type plus the identity that
//! made it. Authentication follows the endpoint's declared scheme (ruma's metadata), so a handler
//! for an authenticated endpoint receives a non-optional `UserSession` and never checks tokens.
//! An appservice's `as_token` is accepted wherever an access token is, and `Ruma::appservice`
//! then names the appservice (for what only appservices may do, such as `?ts=`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::{ConnectInfo, FromRequest, RawPathParams, Request};
use http::request::Parts;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, AuthScheme,
    NoAccessToken, NoAuthentication,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt};

use super::AppState;
use super::error::ApiError;
use crate::service::appservice::{Assertion, Registration};
use crate::service::{Services, UserSession};

/// A parsed, authenticated request for endpoint `T`.
pub struct Ruma<T: IncomingRequest>
where
    T::Authentication: Authenticate,
{
    pub body: T,
    pub identity: <T::Authentication as Authenticate>::Identity,
    pub client_ip: IpAddr,
    /// The appservice whose `as_token` authenticated the request, if one did (the identity is
    /// then the user it acts as).
    pub appservice: Option<Arc<Registration>>,
}

/// What a request presents to authenticate: its token, its query string (an appservice's
/// `user_id` and `device_id`), and the client's address.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub query: Option<&'a str>,
    pub ip: IpAddr,
}

/// How each of ruma's authentication schemes is checked, and what identity it yields.
pub trait Authenticate: AuthScheme {
    type Identity: Send;

    /// The identity behind `credentials`, and the appservice whose `as_token` they hold.
    fn authenticate_request(
        services: &Services,
        credentials: Credentials<'_>,
    ) -> impl Future<Output = Result<(Self::Identity, Option<Arc<Registration>>), ApiError>> + Send;

    /// The identity behind a bare token (an appservice's acts as its own user).
    fn authenticate(
        services: &Services,
        token: Option<&str>,
        ip: IpAddr,
    ) -> impl Future<Output = Result<Self::Identity, ApiError>> + Send {
        async move {
            let credentials = Credentials {
                token,
                query: None,
                ip,
            };
            Ok(Self::authenticate_request(services, credentials).await?.0)
        }
    }
}

/// An access token, or an appservice's `as_token` (acting as its own user, or as the user its
/// `?user_id=` names; see `service/appservice/auth.rs`).
impl Authenticate for AccessToken {
    type Identity = UserSession;

    async fn authenticate_request(
        services: &Services,
        credentials: Credentials<'_>,
    ) -> Result<(UserSession, Option<Arc<Registration>>), ApiError> {
        let token = credentials.token.ok_or(ApiError::MissingToken)?;
        let (session, appservice) = match services.appservices.by_as_token(token) {
            Some(registration) => {
                let assertion = Assertion::from_query(credentials.query);
                let session = services
                    .appservice_session(registration, &assertion)
                    .await?;
                (session, Some(registration.clone()))
            }
            None => (services.authenticate(token, credentials.ip).await?, None),
        };
        tracing::Span::current().record("user.id", session.user_id.as_str());
        Ok((session, appservice))
    }
}

impl Authenticate for AccessTokenOptional {
    type Identity = Option<UserSession>;

    async fn authenticate_request(
        services: &Services,
        credentials: Credentials<'_>,
    ) -> Result<(Option<UserSession>, Option<Arc<Registration>>), ApiError> {
        match credentials.token {
            Some(_) => AccessToken::authenticate_request(services, credentials)
                .await
                .map(|(session, appservice)| (Some(session), appservice)),
            None => Ok((None, None)),
        }
    }
}

impl Authenticate for NoAuthentication {
    type Identity = ();

    async fn authenticate_request(
        _: &Services,
        _: Credentials<'_>,
    ) -> Result<((), Option<Arc<Registration>>), ApiError> {
        Ok(((), None))
    }
}

impl Authenticate for NoAccessToken {
    type Identity = ();

    async fn authenticate_request(
        _: &Services,
        _: Credentials<'_>,
    ) -> Result<((), Option<Arc<Registration>>), ApiError> {
        Ok(((), None))
    }
}

/// Endpoints only an appservice may call (ping, the appservice room list): its `as_token`, else
/// 401 for no or an unknown token and 403 for a user's access token.
impl Authenticate for AppserviceToken {
    type Identity = Arc<Registration>;

    async fn authenticate_request(
        services: &Services,
        credentials: Credentials<'_>,
    ) -> Result<(Arc<Registration>, Option<Arc<Registration>>), ApiError> {
        let token = credentials.token.ok_or(ApiError::MissingToken)?;
        match services.appservices.by_as_token(token) {
            Some(registration) => Ok((registration.clone(), Some(registration.clone()))),
            None => {
                services.authenticate(token, credentials.ip).await?;
                Err(ApiError::Forbidden(
                    "only an application service may call this endpoint".into(),
                ))
            }
        }
    }
}

/// `/login` and `/register` accept an application service's token, for bridges registering and
/// logging in their users. Any other token is ignored, as for unauthenticated endpoints: clients
/// routinely send their old access token when logging in again.
impl Authenticate for AppserviceTokenOptional {
    type Identity = Option<Arc<Registration>>;

    async fn authenticate_request(
        services: &Services,
        credentials: Credentials<'_>,
    ) -> Result<(Option<Arc<Registration>>, Option<Arc<Registration>>), ApiError> {
        let registration = credentials
            .token
            .and_then(|token| services.appservices.by_as_token(token))
            .cloned();
        Ok((registration.clone(), registration))
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
        let credentials = Credentials {
            token: token.as_deref(),
            query: parts.uri.query(),
            ip,
        };
        let (identity, appservice) =
            T::Authentication::authenticate_request(state, credentials).await?;
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
            appservice,
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
