//! An HTTP client bound to one server, optionally carrying an access token. Paths are given
//! relative to the server's base URL (`/_matrix/client/v3/...`), so a client keeps working when
//! the server restarts on a different port.

use std::fmt::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::reply::Reply;

/// How long one request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's current base URL, shared by every client of that server and updated on restart.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint(Arc<RwLock<String>>);

impl Endpoint {
    pub(crate) fn new(base_url: String) -> Endpoint {
        Endpoint(Arc::new(RwLock::new(base_url)))
    }

    pub(crate) fn get(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, base_url: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = base_url;
    }
}

pub(crate) fn http_client() -> reqwest::Client {
    // The workspace builds reqwest's rustls without a built-in provider (the server picks ring);
    // the tests use the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("building the HTTP client")
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, endpoint: Endpoint) -> Client {
        Client {
            http,
            endpoint,
            token: None,
        }
    }

    /// The same server, authenticating with `token` (sent as `Authorization: Bearer`).
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same server without any access token.
    pub fn anonymous(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> String {
        self.endpoint.get()
    }

    /// A request to build further (raw bodies, extra headers, other methods).
    pub fn request(&self, method: Method, path: &str) -> Request {
        let description = format!("{method} {path}");
        let mut inner = self
            .http
            .request(method, format!("{}{path}", self.endpoint.get()));
        if let Some(token) = &self.token {
            inner = inner.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        Request { inner, description }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path).send().await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path).json(&body).send().await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PUT, path).json(&body).send().await
    }

    pub async fn delete(&self, path: &str, body: Value) -> Reply {
        self.request(Method::DELETE, path).json(&body).send().await
    }

    /// Runs `POST /register` through the `m.login.dummy` stage: the first request (without
    /// `auth`) must be answered 401 with a `session`; then the request is repeated with dummy
    /// auth. Any other first answer (an error, or a 200) is returned as is.
    pub async fn register_dummy(&self, body: Value) -> Reply {
        self.register_with_stage(
            body,
            |session| json!({"type": "m.login.dummy", "session": session}),
        )
        .await
    }

    /// Like [`Client::register_dummy`], completing the `m.login.registration_token` stage.
    pub async fn register_with_token(&self, body: Value, token: &str) -> Reply {
        self.register_with_stage(body, |session| {
            json!({"type": "m.login.registration_token", "token": token, "session": session})
        })
        .await
    }

    async fn register_with_stage(
        &self,
        mut body: Value,
        auth: impl FnOnce(&str) -> Value,
    ) -> Reply {
        let first = self.post("/_matrix/client/v3/register", body.clone()).await;
        if first.status != 401 {
            return first;
        }
        let session = first.body["session"]
            .as_str()
            .unwrap_or_else(|| panic!("the registration challenge has no session:\n{first}"));
        body["auth"] = auth(session);
        self.post("/_matrix/client/v3/register", body).await
    }
}

pub struct Request {
    inner: reqwest::RequestBuilder,
    description: String,
}

impl Request {
    pub fn header(self, name: &str, value: &str) -> Request {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = HeaderValue::from_str(value).expect("valid header value");
        Request {
            inner: self.inner.header(name, value),
            ..self
        }
    }

    pub fn json(self, body: &Value) -> Request {
        Request {
            inner: self.inner.json(body),
            ..self
        }
    }

    /// A body sent byte for byte, labelled `application/json` (for malformed-JSON tests).
    pub fn raw_json(self, body: impl Into<Vec<u8>>) -> Request {
        let inner = self
            .inner
            .header(CONTENT_TYPE, "application/json")
            .body(body.into());
        Request { inner, ..self }
    }

    pub async fn send(self) -> Reply {
        let response = self
            .inner
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} failed at the HTTP level: {e}", self.description));
        Reply::read(self.description, response).await
    }
}

/// Percent-encodes one path segment or query value (user IDs contain `@` and `:`).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            write!(out, "%{byte:02X}").unwrap();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_escapes_matrix_sigils() {
        assert_eq!(
            super::encode("@alice:hs1.localhost"),
            "%40alice%3Ahs1.localhost"
        );
        assert_eq!(super::encode("a b/c"), "a%20b%2Fc");
    }
}
