//! Profiles across servers: asking another server for its user's profile
//! (`GET /_matrix/federation/v1/query/profile`), and answering that query for this server's users.
//! A remote refusal or absence keeps its meaning (403, 404); an unreachable server is a 502.

use ruma::UserId;
use ruma::api::federation::query::get_profile_information;
use ruma::profile::ProfileFieldName;
use serde_json::{Map, Value as JsonValue};

use super::{Error, Result, Services};
use crate::federation::client::SendError;

impl Services {
    /// The profile of a user of another server, or the one `field` of it.
    pub(super) async fn remote_profile(
        &self,
        user_id: &UserId,
        field: Option<&str>,
    ) -> Result<Map<String, JsonValue>> {
        let server = user_id.server_name();
        let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
        request.field = field.map(ProfileFieldName::from);
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(user_id, e))?;
        Ok(response.data.into_iter().collect())
    }

    /// The federation query's answer: the profile of a user of this server (all of it, or one
    /// field). Users of other servers are not this server's to answer for.
    pub async fn profile_for_federation(
        &self,
        user_id: &UserId,
        field: Option<&str>,
    ) -> Result<Map<String, JsonValue>> {
        self.require_local_user(user_id).await?;
        match field {
            None => self.get_profile(user_id).await,
            Some(field) => {
                let value = self.get_profile_field(user_id, field).await?;
                Ok([(field.to_owned(), value)].into_iter().collect())
            }
        }
    }
}

/// What a failed profile query means for the client that asked.
fn remote_error(user_id: &UserId, error: SendError) -> Error {
    match error {
        SendError::Disabled => Error::NotFound(format!(
            "{user_id} is a user of another server, and federation is off"
        )),
        SendError::Denied(server) => Error::Forbidden(format!(
            "{server} is not allowed to federate with this server"
        )),
        SendError::Remote {
            server,
            status,
            message,
            ..
        } if status == http::StatusCode::NOT_FOUND => {
            Error::NotFound(format!("{server} has no profile for {user_id}: {message}"))
        }
        SendError::Remote {
            server,
            status,
            message,
            ..
        } if status == http::StatusCode::FORBIDDEN => {
            Error::Forbidden(format!("{server} refused to share the profile: {message}"))
        }
        other => {
            // The details (addresses, TLS errors) are for the log, not for the client.
            tracing::info!(user.id = %user_id, error = %other, "remote profile query failed");
            Error::RemoteServer(format!(
                "the profile of {user_id} could not be fetched from {}",
                user_id.server_name()
            ))
        }
    }
}
