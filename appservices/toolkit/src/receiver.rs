//! The homeserver → bridge side of the Application Service API, as an axum router:
//! `PUT /_matrix/app/v1/transactions/{txnId}`, `GET /_matrix/app/v1/users/{userId}`,
//! `GET /_matrix/app/v1/rooms/{roomAlias}`, `POST /_matrix/app/v1/ping`, and the legacy paths
//! without the `/_matrix/app/v1` prefix.
//!
//! Every request must carry `Authorization: Bearer <hs_token>` (or the legacy `?access_token=`):
//! none is 401 `M_UNAUTHORIZED`, a wrong one 403 `M_FORBIDDEN`. Unknown paths are 404 and wrong
//! methods 405, both `M_UNRECOGNIZED`.
//!
//! Transactions are handled one at a time. Their events, then their ephemeral events, go to the
//! [`Bridge`] in order; the answer is 200 `{}` only once all were handled, so a failure makes
//! the homeserver send the same transaction again. How far a transaction got is kept in the
//! [`Store`]: a completed transaction id is answered 200 without handing anything over (also
//! after a restart), and a retried one resumes after the last event handled successfully. A
//! bridge that crashes in the middle of a transaction sees its first events again after the
//! restart; the message claims of the store make that harmless.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::store::{Store, TransactionProgress};
use crate::{Bridge, EphemeralEvent, MatrixEvent};

/// Transactions hold at most 100 events of at most 64 KiB each, plus ephemeral data.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

struct Receiver<B> {
    bridge: Arc<B>,
    hs_token: String,
    store: Store,
    /// Held while a transaction is handled, so transactions never interleave.
    turn: Mutex<()>,
}

/// The router a bridge serves at its registration's `url`.
pub fn router<B: Bridge>(bridge: Arc<B>, hs_token: &str, store: Store) -> Router {
    let receiver = Arc::new(Receiver {
        bridge,
        hs_token: hs_token.to_owned(),
        store,
        turn: Mutex::new(()),
    });
    let routes = Router::new()
        .route(
            "/_matrix/app/v1/transactions/{txn_id}",
            put(transaction::<B>),
        )
        .route("/transactions/{txn_id}", put(transaction::<B>))
        .route("/_matrix/app/v1/users/{user_id}", get(query_user::<B>))
        .route("/users/{user_id}", get(query_user::<B>))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias::<B>))
        .route("/rooms/{alias}", get(query_alias::<B>))
        .route("/_matrix/app/v1/ping", post(ping))
        .route_layer(middleware::from_fn_with_state(
            receiver.clone(),
            authenticate::<B>,
        ));
    routes
        .fallback(|| async {
            matrix_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unknown path")
        })
        .method_not_allowed_fallback(|| async {
            matrix_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "M_UNRECOGNIZED",
                "Method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver)
}

fn matrix_error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"errcode": errcode, "error": message})),
    )
        .into_response()
}

fn ok() -> Response {
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}

async fn authenticate<B: Bridge>(
    State(receiver): State<Arc<Receiver<B>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let legacy = query.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
            .map(str::to_owned)
    });
    match bearer.or(legacy) {
        None => matrix_error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "Missing hs_token",
        ),
        Some(token) if !same_secret(&token, &receiver.hs_token) => {
            matrix_error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Wrong hs_token")
        }
        Some(_) => next.run(request).await,
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `PUT /_matrix/app/v1/transactions/{txnId}`
async fn transaction<B: Bridge>(
    State(receiver): State<Arc<Receiver<B>>>,
    Path(txn_id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return matrix_error(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Body is not JSON");
    };
    let _turn = receiver.turn.lock().await;
    let mut progress = match receiver.store.transaction_progress(&txn_id) {
        Ok(progress) => progress.unwrap_or_default(),
        Err(e) => {
            tracing::error!(txn.id = %txn_id, error = %e, "cannot read the transaction store");
            return matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "Store error",
            );
        }
    };
    if progress.completed {
        tracing::debug!(txn.id = %txn_id, "transaction handled already");
        return ok();
    }
    let list = |key: &str| body.get(key).and_then(Value::as_array).cloned();
    let events = list("events").unwrap_or_default();
    let ephemeral = list("ephemeral")
        .or_else(|| list("de.sorunome.msc2409.ephemeral"))
        .unwrap_or_default();

    for (i, json) in events.into_iter().enumerate().skip(progress.events_done) {
        match MatrixEvent::from_json(json) {
            Some(event) => {
                let event_id = event.event_id.clone();
                if let Err(e) = receiver.bridge.handle_event(event).await {
                    tracing::warn!(txn.id = %txn_id, event.id = %event_id, error = %e,
                        "the bridge failed an event; the homeserver will retry");
                    return failed(&receiver.store, &txn_id, progress);
                }
            }
            None => tracing::warn!(txn.id = %txn_id, "skipping an event without valid ids"),
        }
        progress.events_done = i + 1;
    }
    for (i, json) in ephemeral
        .into_iter()
        .enumerate()
        .skip(progress.ephemeral_done)
    {
        if let Some(event) = EphemeralEvent::from_json(json)
            && let Err(e) = receiver.bridge.handle_ephemeral(event).await
        {
            tracing::warn!(txn.id = %txn_id, error = %e,
                "the bridge failed an ephemeral event; the homeserver will retry");
            return failed(&receiver.store, &txn_id, progress);
        }
        progress.ephemeral_done = i + 1;
    }
    progress.completed = true;
    if let Err(e) = receiver.store.set_transaction_progress(&txn_id, progress) {
        tracing::error!(txn.id = %txn_id, error = %e, "cannot record a handled transaction");
        return matrix_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "Store error",
        );
    }
    ok()
}

/// Keeps how far a failed transaction got, so its retry resumes there, and answers 500.
fn failed(store: &Store, txn_id: &str, progress: TransactionProgress) -> Response {
    if let Err(e) = store.set_transaction_progress(txn_id, progress) {
        tracing::error!(txn.id = %txn_id, error = %e, "cannot record transaction progress");
    }
    matrix_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "M_UNKNOWN",
        "The bridge could not handle the transaction",
    )
}

/// `GET /_matrix/app/v1/users/{userId}`
async fn query_user<B: Bridge>(
    State(receiver): State<Arc<Receiver<B>>>,
    Path(user_id): Path<String>,
) -> Response {
    let Ok(user_id) = user_id.try_into() else {
        return matrix_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "Not a user id");
    };
    answer_query(receiver.bridge.query_user(user_id).await)
}

/// `GET /_matrix/app/v1/rooms/{roomAlias}`
async fn query_alias<B: Bridge>(
    State(receiver): State<Arc<Receiver<B>>>,
    Path(alias): Path<String>,
) -> Response {
    let Ok(alias) = alias.try_into() else {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "Not a room alias",
        );
    };
    answer_query(receiver.bridge.query_alias(alias).await)
}

fn answer_query(known: Result<bool, crate::Error>) -> Response {
    match known {
        Ok(true) => ok(),
        Ok(false) => matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "Not known here"),
        Err(e) => {
            tracing::warn!(error = %e, "the bridge failed a query");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "Query failed",
            )
        }
    }
}

/// `POST /_matrix/app/v1/ping`
async fn ping() -> Response {
    ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
