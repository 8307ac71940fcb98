//! Outgoing federation requests: one reqwest client (rustls with `ring`, the federation TLS
//! settings) whose DNS resolver knows what server discovery found, and the signing of every
//! request with the server's key (`X-Matrix`).
//!
//! A request goes to `https://<tls_name>:<port><path>` with an explicit `Host` header: the URL's
//! host is the name the certificate is checked against (and the SNI), its port the one discovery
//! chose, and the resolver maps that name to the discovered target (an SRV target host, or a
//! `[federation.resolve]` address). The mapping is kept per certificate name; two destinations
//! sharing a certificate name but not a target (a name both delegated by SRV and used with an
//! explicit port) would share the last mapping, which the spec's rules make very unlikely.
//!
//! Every request is built, signed and sent in one place (`start`); answers are then either read
//! whole (`send`: up to 128 MiB) or handed over as a stream of chunks
//! (`send_streaming`, for media, whose caller bounds what it reads).
//!
//! Nothing here checks whether federation is on or the destination allowed: `Federation::send`
//! does that before calling in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hickory_resolver::TokioResolver;
use hyper::body::Bytes;
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingBody, OutgoingRequest};
use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedServerName, ServerName};
use tracing::Instrument;

use super::discovery::{Destination, Discovery, InvalidServerName, Target};
use super::request;
use super::tls::{self, TlsError};
use crate::config::FederationConfig;

/// How long a request may take in all, unless the caller says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read; a room's full state can be large.
const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// Why an outgoing request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("federation is off on this server")]
    Disabled,
    #[error("{0} is not allowed to federate with this server")]
    Denied(OwnedServerName),
    #[error(transparent)]
    InvalidName(#[from] InvalidServerName),
    #[error("cannot build the request: {0}")]
    Build(String),
    #[error("{server} could not be reached: {reason}")]
    Unreachable {
        server: OwnedServerName,
        reason: String,
    },
    /// The server answered with an error status; `errcode` and `message` come from its Matrix
    /// error body when it sent one.
    #[error("{server} answered {status}: {errcode} {message}")]
    Remote {
        server: OwnedServerName,
        status: http::StatusCode,
        errcode: String,
        message: String,
    },
    #[error("{server} sent a response that cannot be read: {reason}")]
    BadResponse {
        server: OwnedServerName,
        reason: String,
    },
}

/// Where the resolver sends a certificate name.
#[derive(Debug, Clone)]
enum Route {
    Addr(IpAddr),
    Host(String),
}

/// The DNS resolver reqwest uses: discovered routes first, the system's resolver otherwise.
#[derive(Default)]
struct Routes(RwLock<HashMap<String, Route>>);

impl Routes {
    fn remember(&self, destination: &Destination) {
        let name = destination.tls_name.to_ascii_lowercase();
        let route = match &destination.target {
            Target::Addr(addr) => Some(Route::Addr(addr.ip())),
            Target::Host { host, .. } if !host.eq_ignore_ascii_case(&name) => {
                Some(Route::Host(host.clone()))
            }
            Target::Host { .. } => None,
        };
        let mut routes = self.0.write().unwrap_or_else(|e| e.into_inner());
        match route {
            Some(route) => routes.insert(name, route),
            None => routes.remove(&name),
        };
    }

    fn lookup(&self, name: &str) -> Option<Route> {
        let routes = self.0.read().unwrap_or_else(|e| e.into_inner());
        routes.get(&name.to_ascii_lowercase()).cloned()
    }
}

struct RouteResolver(Arc<Routes>);

impl reqwest::dns::Resolve for RouteResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let route = self.0.lookup(name.as_str());
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the URL's explicit port is used.
            let addrs: Vec<SocketAddr> = match route {
                Some(Route::Addr(ip)) => vec![SocketAddr::new(ip, 0)],
                Some(Route::Host(host)) => {
                    tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
                }
                None => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
            };
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The federation HTTP client of this server.
pub struct FederationClient {
    origin: OwnedServerName,
    keypair: Ed25519KeyPair,
    http: reqwest::Client,
    routes: Arc<Routes>,
    discovery: Discovery,
}

impl FederationClient {
    pub fn new(
        config: &FederationConfig,
        origin: OwnedServerName,
        keypair: Ed25519KeyPair,
    ) -> Result<FederationClient, TlsError> {
        let tls = tls::client_config(config)?;
        let user_agent = concat!("Plexus/", env!("CARGO_PKG_VERSION"));
        let routes = Arc::new(Routes::default());
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .dns_resolver(Arc::new(RouteResolver(routes.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .map_err(|e| tls_error(format!("cannot build the federation client: {e}")))?;
        // Well-known documents live on the plain web: ordinary DNS, redirects followed (a few).
        let well_known = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .map_err(|e| tls_error(format!("cannot build the well-known client: {e}")))?;
        let dns = match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
            Ok(dns) => Some(dns),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver configuration; SRV records are not used");
                None
            }
        };
        Ok(FederationClient {
            origin,
            keypair,
            http,
            routes,
            discovery: Discovery::new(config.resolve.clone(), dns, well_known),
        })
    }

    /// Sends ruma request `R` to `destination`, signed, and parses the answer. An error status
    /// becomes `SendError::Remote` with the server's `errcode`.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
        timeout: Duration,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        let destination_info = self.discovery.resolve(destination).await?;
        let http_request = request
            .try_into_http_request_inner(&destination_info.base_url(), ())
            .map_err(|e| SendError::Build(e.to_string()))?;
        let (parts, body) = http_request.into_parts();
        let content_type = body.content_type();
        let body: Vec<u8> = body
            .try_into_buf()
            .map_err(|e| SendError::Build(e.into().to_string()))?;
        let outgoing = Outgoing {
            method: parts.method,
            uri: parts.uri,
            body,
            content_type,
        };
        let response = self
            .execute(destination, &destination_info, outgoing, timeout)
            .await?;
        if !response.status().is_success() {
            return Err(remote_error(destination, &response));
        }
        let (parts, body) = response.into_parts();
        let response = http::Response::from_parts(parts, body.as_slice());
        R::IncomingResponse::try_from_http_response(response).map_err(|e| SendError::BadResponse {
            server: destination.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sends a signed request without a body (no ruma type: `path_and_query` as it goes on the
    /// wire) and returns as soon as the
    /// answer's head has arrived: the body is a stream of chunks for the caller to read and
    /// bound. `timeout` covers the whole exchange, the reading of the body included.
    pub async fn send_streaming(
        &self,
        destination: &ServerName,
        method: http::Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<http::Response<BodyStream>, SendError> {
        let destination_info = self.discovery.resolve(destination).await?;
        let outgoing = Outgoing::raw(&destination_info, method, path_and_query, Vec::new())?;
        let span = request_span(destination, &outgoing);
        let response = self
            .start(destination, &destination_info, outgoing, timeout)
            .instrument(span)
            .await?;
        Ok(into_streaming(destination, response))
    }

    /// Sends a request and reads its answer whole.
    async fn execute(
        &self,
        destination: &ServerName,
        destination_info: &Destination,
        outgoing: Outgoing,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, SendError> {
        let span = request_span(destination, &outgoing);
        async {
            let response = self
                .start(destination, destination_info, outgoing, timeout)
                .await?;
            collect(destination, into_streaming(destination, response)).await
        }
        .instrument(span)
        .await
    }

    /// Signs and sends a request; returns once the answer's head has arrived. Every outgoing
    /// request, buffered or streamed, is built here.
    async fn start(
        &self,
        destination: &ServerName,
        destination_info: &Destination,
        outgoing: Outgoing,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        let Outgoing {
            method,
            uri,
            body,
            content_type,
        } = outgoing;
        self.routes.remember(destination_info);
        let url = reqwest::Url::parse(&uri.to_string())
            .map_err(|e| SendError::Build(format!("bad URL: {e}")))?;
        // Signed over the path and query exactly as the URL will put them on the wire.
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let authorization = request::authorization(
            &method,
            &path_and_query,
            &body,
            &self.origin,
            destination,
            &self.keypair,
        )
        .map_err(|e| SendError::Build(e.to_string()))?;
        let mut builder = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(http::header::HOST, &destination_info.host_header)
            .header(http::header::AUTHORIZATION, authorization);
        if let Some(content_type) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| unreachable(destination, e))?;
        tracing::debug!(status = response.status().as_u16(), "federation response");
        Ok(response)
    }
}

/// The body of an answer, read as it arrives.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, SendError>> + Send>>;

/// The body of a reqwest response as a stream of chunks. (reqwest's own `bytes_stream` needs a
/// feature this crate does not enable.)
pub fn chunks(
    response: reqwest::Response,
) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Send {
    futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

fn into_streaming(
    destination: &ServerName,
    mut response: reqwest::Response,
) -> http::Response<BodyStream> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let server = destination.to_owned();
    let body: BodyStream =
        Box::pin(chunks(response).map(move |chunk| chunk.map_err(|e| unreachable(&server, e))));
    let mut streaming = http::Response::new(body);
    *streaming.status_mut() = status;
    *streaming.headers_mut() = headers;
    streaming
}

/// Reads a streamed answer whole, refusing more than `MAX_RESPONSE_BYTES`.
async fn collect(
    destination: &ServerName,
    response: http::Response<BodyStream>,
) -> Result<http::Response<Vec<u8>>, SendError> {
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(SendError::BadResponse {
                server: destination.to_owned(),
                reason: format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(http::Response::from_parts(parts, bytes))
}

fn request_span(destination: &ServerName, outgoing: &Outgoing) -> tracing::Span {
    tracing::debug_span!("federation.send", server.name = %destination,
        method = %outgoing.method, path = outgoing.uri.path())
}

fn unreachable(destination: &ServerName, e: reqwest::Error) -> SendError {
    SendError::Unreachable {
        server: destination.to_owned(),
        reason: error_chain(&e.without_url()),
    }
}

/// A request ready to sign and send.
struct Outgoing {
    method: http::Method,
    uri: http::Uri,
    body: Vec<u8>,
    content_type: Option<http::HeaderValue>,
}

impl Outgoing {
    /// A request outside ruma's endpoint types: `path_and_query` as it goes on the wire, `body`
    /// JSON or empty.
    fn raw(
        destination_info: &Destination,
        method: http::Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Outgoing, SendError> {
        let uri: http::Uri = format!("{}{path_and_query}", destination_info.base_url())
            .parse()
            .map_err(|e| SendError::Build(format!("bad path {path_and_query:?}: {e}")))?;
        let content_type =
            (!body.is_empty()).then(|| http::HeaderValue::from_static("application/json"));
        Ok(Outgoing {
            method,
            uri,
            body,
            content_type,
        })
    }
}

/// The Matrix error a server answered with, or its status alone.
fn remote_error(server: &ServerName, response: &http::Response<Vec<u8>>) -> SendError {
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    SendError::Remote {
        server: server.to_owned(),
        status: response.status(),
        errcode: text("errcode").unwrap_or_else(|| "M_UNKNOWN".into()),
        message: text("error").unwrap_or_default(),
    }
}

/// An error with its causes, which is where reqwest says what actually went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tls_error(message: String) -> TlsError {
    TlsError::from(message)
}
