//! Questions the server asks appservices, and pings.
//!
//! An unknown local user or alias in an appservice's namespace may exist on the bridged side
//! before anyone on Matrix asked for it: the appservice is asked (`GET /_matrix/app/v1/users/
//! {userId}`, `GET /_matrix/app/v1/rooms/{roomAlias}`), and a 200 means it has created the user,
//! or the room and its alias, through the Client-Server API before answering; the caller then
//! looks again. Any other answer, or none within the query timeout, means "no such user/alias".
//!
//! A ping (`POST /_matrix/client/v1/appservice/{id}/ping`) sends `POST /_matrix/app/v1/ping`
//! and tells the appservice how long that took; a successful ping also ends the outbox's back-off
//! for it (`Services::appservice_reachable`).

use std::sync::Arc;
use std::time::Duration;

use ruma::{RoomAliasId, UserId};
use serde_json::json;

use super::Registration;
use super::client::{CallError, QUERY_TIMEOUT, encode_segment};
use crate::service::{Error, Result, Services};

/// How long a ping may take before it is answered `M_CONNECTION_TIMEOUT`.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

impl Services {
    /// Asks the appservices whose user namespace holds `user` (a local user not known here)
    /// about it; true when one answered 200, so the user now exists.
    pub async fn query_appservices_for_user(&self, user: &UserId) -> bool {
        if user.server_name() != self.server_name() {
            return false;
        }
        let path = format!("/_matrix/app/v1/users/{}", encode_segment(user.as_str()));
        let asked: Vec<Arc<Registration>> = self
            .appservices
            .interested_in_user(user)
            .filter(|r| r.url.is_some())
            .cloned()
            .collect();
        for registration in asked {
            match self
                .appservices
                .client
                .get_json(&registration, &path, QUERY_TIMEOUT)
                .await
            {
                Ok(_) => return true,
                Err(e) => query_failed(&registration, "user", &e),
            }
        }
        false
    }

    /// When `user` is a local user not known here in some appservice's user namespace, asks
    /// the appservices about it (they create it if it exists on their side).
    pub async fn ensure_appservice_user(&self, user: &UserId) -> Result<()> {
        if user.server_name() != self.server_name()
            || self.appservices.interested_in_user(user).next().is_none()
        {
            return Ok(());
        }
        let lookup = user.to_owned();
        let known = self
            .db
            .read(move |c| crate::storage::users::get_user(c, &lookup))
            .await?
            .is_some();
        if !known {
            self.query_appservices_for_user(user).await;
        }
        Ok(())
    }

    /// Asks the appservices whose alias namespace holds `alias` (a local alias not known here)
    /// about it; true when one answered 200, so the alias now points to a room.
    pub async fn query_appservices_for_alias(&self, alias: &RoomAliasId) -> bool {
        if alias.server_name() != self.server_name() {
            return false;
        }
        let path = format!("/_matrix/app/v1/rooms/{}", encode_segment(alias.as_str()));
        let asked: Vec<Arc<Registration>> = self
            .appservices
            .all()
            .iter()
            .filter(|r| r.url.is_some() && r.aliases.iter().any(|n| n.matches(alias.as_str())))
            .cloned()
            .collect();
        for registration in asked {
            match self
                .appservices
                .client
                .get_json(&registration, &path, QUERY_TIMEOUT)
                .await
            {
                Ok(_) => return true,
                Err(e) => query_failed(&registration, "alias", &e),
            }
        }
        false
    }

    /// Pings the appservice `id` on behalf of `registration` (the one whose `as_token` was
    /// used, which must be the same) and says how long it took to answer.
    pub async fn ping_appservice(
        &self,
        registration: &Arc<Registration>,
        id: &str,
        transaction_id: Option<&str>,
    ) -> Result<Duration> {
        if registration.id != id {
            return Err(Error::Forbidden(format!(
                "this as_token belongs to the application service {}, not {id}",
                registration.id
            )));
        }
        if registration.url.is_none() {
            return Err(Error::UrlNotSet(format!(
                "the application service {id} has no url to ping"
            )));
        }
        let body = match transaction_id {
            Some(txn) => json!({ "transaction_id": txn }),
            None => json!({}),
        };
        let answer = self
            .appservices
            .client
            .call_timed(
                registration,
                reqwest::Method::POST,
                "/_matrix/app/v1/ping",
                Some(&body),
                PING_TIMEOUT,
            )
            .await;
        match answer {
            Ok((_, took)) => {
                self.appservice_reachable(&registration.id);
                Ok(took)
            }
            Err(CallError::Status { status, body }) => Err(Error::BadStatus { status, body }),
            Err(CallError::Timeout(timeout)) => Err(Error::ConnectionTimeout(format!(
                "the application service did not answer the ping within {timeout:?}"
            ))),
            Err(CallError::NoUrl(_)) => Err(Error::UrlNotSet(format!(
                "the application service {id} has no url to ping"
            ))),
            Err(CallError::Connection(e)) => Err(Error::ConnectionFailed(format!(
                "the application service could not be reached: {e}"
            ))),
            // A 2xx answer whose body is not JSON is not an Application Service API answer.
            Err(CallError::BadAnswer(e)) => Err(Error::ConnectionFailed(format!(
                "the application service's ping answer is not JSON: {e}"
            ))),
        }
    }
}

fn query_failed(registration: &Registration, kind: &str, error: &CallError) {
    match error {
        CallError::Status { status: 404, .. } => {}
        other => tracing::warn!(appservice = %registration.id, error = %other,
            "appservice {kind} query failed"),
    }
}
