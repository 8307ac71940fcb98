//! What a server answered: status, headers and the body parsed as JSON, with assertions that
//! print the whole exchange when they fail.

use std::fmt;

use reqwest::header::HeaderMap;
use serde_json::Value;

pub struct Reply {
    /// `METHOD /path`, for failure messages.
    pub request: String,
    pub status: u16,
    pub headers: HeaderMap,
    /// The body parsed as JSON, or `Value::Null` when it is empty or not JSON.
    pub body: Value,
    /// The body as text (for non-JSON answers such as `/metrics`).
    pub text: String,
}

impl Reply {
    pub(crate) async fn read(request: String, response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{request}: reading the response body failed: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            request,
            status,
            headers,
            body,
            text,
        }
    }

    /// Adds a note to the request description shown in failure messages, e.g. which case of a
    /// data-driven test this was.
    pub fn labelled(mut self, label: impl fmt::Display) -> Reply {
        self.request = format!("{} [{label}]", self.request);
        self
    }

    /// The `errcode` of a Matrix error body, if any.
    pub fn errcode(&self) -> Option<&str> {
        self.body["errcode"].as_str()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 200 and returns (a copy of) the JSON body.
    pub fn ok(&self) -> Value {
        assert!(self.status == 200, "expected 200 OK, got\n{self}");
        self.body.clone()
    }

    pub fn assert_status(&self, status: u16) -> &Self {
        assert!(
            self.status == status,
            "expected status {status}, got\n{self}"
        );
        self
    }

    /// Asserts a Matrix error with this status and `errcode`.
    pub fn assert_error(&self, status: u16, errcode: &str) -> &Self {
        assert!(
            self.status == status && self.errcode() == Some(errcode),
            "expected {status} {errcode}, got\n{self}"
        );
        self
    }

    /// Asserts a user-interactive-auth challenge: 401 with `flows` and a `session`, whose flows
    /// include a single-stage flow of `stage`. Returns the session.
    pub fn assert_uia_challenge(&self, stage: &str) -> String {
        assert!(
            self.status == 401,
            "expected a 401 UIA challenge, got\n{self}"
        );
        assert!(
            self.flows().iter().any(|flow| flow == &[stage]),
            "expected a UIA flow [{stage}], got\n{self}"
        );
        self.body["session"]
            .as_str()
            .unwrap_or_else(|| panic!("the UIA challenge has no session:\n{self}"))
            .to_owned()
    }

    /// The stages of each flow of a UIA challenge.
    pub fn flows(&self) -> Vec<Vec<String>> {
        let Some(flows) = self.body["flows"].as_array() else {
            return Vec::new();
        };
        flows
            .iter()
            .map(|flow| {
                let stages = flow["stages"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                stages
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .collect()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = if self.body.is_null() {
            self.text.clone()
        } else {
            serde_json::to_string_pretty(&self.body).unwrap_or_default()
        };
        write!(f, "{} -> {}\n{body}", self.request, self.status)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
