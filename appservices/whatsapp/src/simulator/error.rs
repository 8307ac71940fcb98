//! Graph API error objects, as the Cloud API answers them:
//! `{"error": {"message", "type": "OAuthException", "code", "error_subcode"?, "error_data"?,
//! "fbtrace_id"}}` with the HTTP status Meta's error-code table gives for the code, plus the
//! titles used in the `errors` arrays of webhooks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ids;

/// One Graph API error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: u32,
    pub subcode: Option<u32>,
    pub message: String,
    /// `error_data.details`, present on WhatsApp-specific (13xxxx) errors.
    pub details: Option<String>,
}

impl GraphError {
    /// An error with the status and message Meta uses for `code`.
    pub fn new(code: u32, details: impl Into<String>) -> Self {
        let details = details.into();
        Self {
            status: status_for(code),
            code,
            subcode: None,
            message: format!("(#{code}) {}", title(code)),
            details: (!details.is_empty()).then_some(details),
        }
    }

    /// The Graph API's generic parameter error, code 100 with its message naming the parameter
    /// (`(#100) The parameter to is required.`); it carries no `error_data`.
    pub fn param(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 100,
            subcode: None,
            message: format!("(#100) {}", message.into()),
            details: None,
        }
    }

    /// A bad, expired or unparseable access token: 401, code 190.
    pub fn invalid_token() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: 190,
            subcode: None,
            message: "Invalid OAuth access token - Cannot parse access token".into(),
            details: None,
        }
    }

    /// A request with no access token at all: Graph answers 400 with code 2500.
    pub fn missing_token() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 2500,
            subcode: None,
            message:
                "An active access token must be used to query information about the current user."
                    .into(),
            details: None,
        }
    }

    /// An object id that does not exist (or is not reachable with this token): code 100,
    /// subcode 33.
    pub fn unknown_object(method: &str, id: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 100,
            subcode: Some(33),
            message: format!(
                "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
            ),
            details: None,
        }
    }

    /// The JSON body of the answer, with a fresh `fbtrace_id`.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(details) = &self.details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
        }
        error["fbtrace_id"] = json!(ids::fbtrace_id());
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The HTTP status Meta's error-code table lists for a code: 401 for authorisation, 403 for
/// permissions and policy blocks, 5xx for Meta's own failures, 400 for everything else —
/// including the rate limits, which Graph answers with 400, not 429.
pub fn status_for(code: u32) -> StatusCode {
    match code {
        0 | 190 => StatusCode::UNAUTHORIZED,
        3 | 10 | 200..=299 | 368 | 131031 => StatusCode::FORBIDDEN,
        1 | 2 | 131000 => StatusCode::INTERNAL_SERVER_ERROR,
        131016 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The title of a code, as it appears in error messages and in webhook `errors[].title`.
pub fn title(code: u32) -> &'static str {
    match code {
        0 => "AuthException",
        4 => "API Too Many Calls",
        10 => "Permission Denied",
        100 => "Invalid parameter",
        190 => "Access token has expired",
        368 => "Temporarily blocked for policies violations",
        80007 => "Rate limit issues",
        130429 => "Rate limit hit",
        130472 => "User's number is part of an experiment",
        131000 => "Something went wrong",
        131005 => "Access denied",
        131008 => "Required parameter is missing",
        131009 => "Parameter value is not valid",
        131016 => "Service unavailable",
        131021 => "Recipient cannot be sender",
        131026 => "Message Undeliverable",
        131031 => "Account has been locked",
        131047 => "Re-engagement message",
        131048 => "Spam rate limit hit",
        131049 => "This message was not delivered to maintain healthy ecosystem engagement.",
        131050 => {
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."
        }
        131051 => "Unsupported message type",
        131052 => "Media download error",
        131053 => "Media upload error",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        132000 => "Number of parameters does not match the expected number of params",
        132001 => "Template name does not exist in the translation",
        132015 => "Template is Paused",
        132016 => "Template is Disabled",
        133010 => "Phone number not registered",
        _ => "Unknown error",
    }
}

/// The `errors[]` entry of a failed-status or out-of-band webhook for `code`.
pub fn webhook_error(code: u32, details: &str) -> Value {
    json!({
        "code": code,
        "title": title(code),
        "message": title(code),
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_errors_carry_error_data_and_a_trace_id() {
        let body = GraphError::new(131047, "Message failed to send because more than 24 hours have passed since the customer last replied to this number.").body();
        let error = &body["error"];
        assert_eq!(error["type"], "OAuthException");
        assert_eq!(error["code"], 131047);
        assert_eq!(error["message"], "(#131047) Re-engagement message");
        assert_eq!(error["error_data"]["messaging_product"], "whatsapp");
        assert!(
            error["error_data"]["details"]
                .as_str()
                .unwrap()
                .contains("24 hours")
        );
        assert_eq!(error["fbtrace_id"].as_str().unwrap().len(), 11);
        assert!(error.get("error_subcode").is_none());
    }

    #[test]
    fn statuses_follow_metas_table() {
        for (code, status) in [
            (190, 401),
            (0, 401),
            (10, 403),
            (100, 400),
            (130429, 400),
            (131056, 400),
            (131047, 400),
            (131000, 500),
            (131016, 503),
        ] {
            assert_eq!(status_for(code).as_u16(), status, "code {code}");
        }
    }

    #[test]
    fn token_and_object_errors() {
        let token = GraphError::invalid_token();
        assert_eq!(token.status, StatusCode::UNAUTHORIZED);
        assert_eq!(token.body()["error"]["code"], 190);
        let object = GraphError::unknown_object("get", "123").body();
        assert_eq!(object["error"]["code"], 100);
        assert_eq!(object["error"]["error_subcode"], 33);
        let param = GraphError::param("The parameter to is required.").body();
        assert_eq!(
            param["error"]["message"],
            "(#100) The parameter to is required."
        );
        assert!(param["error"].get("error_data").is_none());
    }

    #[test]
    fn webhook_errors_name_title_and_details() {
        let error = webhook_error(131026, "Receiver is incapable of receiving this message");
        assert_eq!(error["title"], "Message Undeliverable");
        assert_eq!(
            error["error_data"]["details"],
            "Receiver is incapable of receiving this message"
        );
    }
}
