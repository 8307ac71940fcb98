//! Third-party networks: the client's `/thirdparty/...` lookups, forwarded to the appservices
//! whose registration lists the protocol (`GET /_matrix/app/v1/thirdparty/...`), and the
//! appservice room list (`PUT /directory/list/appservice/{networkId}/{roomId}`).
//!
//! An appservice that fails or answers something unusable is left out (and logged), as Synapse
//! does: one broken bridge does not hide the others. A protocol's instances from several
//! appservices are joined; each instance gets an `instance_id` (the spec requires it of the
//! homeserver) made of the appservice id and its `network_id`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::{RoomAliasId, RoomId, UserId};
use serde_json::Value as JsonValue;

use super::Registration;
use super::client::{QUERY_TIMEOUT, encode_segment};
use crate::service::{Error, Result, Services, UserSession};
use crate::storage;

/// The kind of third-party entity a lookup is about.
#[derive(Debug, Clone, Copy)]
pub enum Entity {
    Location,
    User,
}

impl Entity {
    fn path(self) -> &'static str {
        match self {
            Entity::Location => "location",
            Entity::User => "user",
        }
    }
}

impl Services {
    /// Every protocol some appservice lists, with its metadata and joined instances.
    pub async fn thirdparty_protocols(&self) -> BTreeMap<String, JsonValue> {
        let mut protocols = BTreeMap::new();
        let names: std::collections::BTreeSet<String> = self
            .appservices
            .all()
            .iter()
            .flat_map(|r| r.protocols.iter().cloned())
            .collect();
        for name in names {
            if let Some(protocol) = self.thirdparty_protocol(&name).await {
                protocols.insert(name, protocol);
            }
        }
        protocols
    }

    /// One protocol's metadata: the first appservice's answer, with every appservice's
    /// instances. `None` when no appservice lists it or none answered.
    pub async fn thirdparty_protocol(&self, protocol: &str) -> Option<JsonValue> {
        let path = format!(
            "/_matrix/app/v1/thirdparty/protocol/{}",
            encode_segment(protocol)
        );
        let mut merged: Option<JsonValue> = None;
        for registration in self.with_protocol(protocol) {
            let Some(JsonValue::Object(mut answer)) = self.ask(&registration, &path).await else {
                continue;
            };
            let mut instances = match answer.remove("instances") {
                Some(JsonValue::Array(instances)) => instances,
                _ => Vec::new(),
            };
            for instance in &mut instances {
                if let JsonValue::Object(instance) = instance
                    && !instance.contains_key("instance_id")
                {
                    let network = instance
                        .get("network_id")
                        .and_then(JsonValue::as_str)
                        .unwrap_or_default();
                    let id = format!("{}|{network}", registration.id);
                    instance.insert("instance_id".into(), JsonValue::String(id));
                }
            }
            match &mut merged {
                None => {
                    answer.insert("instances".into(), JsonValue::Array(instances));
                    merged = Some(JsonValue::Object(answer));
                }
                Some(first) => {
                    if let Some(JsonValue::Array(all)) = first.get_mut("instances") {
                        all.extend(instances);
                    }
                }
            }
        }
        merged
    }

    /// Third-party locations or users of `protocol` matching `fields`, from every appservice
    /// listing the protocol.
    pub async fn thirdparty_lookup(
        &self,
        entity: Entity,
        protocol: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<Vec<JsonValue>> {
        let asked = self.with_protocol(protocol);
        if asked.is_empty() {
            return Err(Error::NotFound(format!(
                "no bridge speaks the protocol {protocol}"
            )));
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().filter(|(k, _)| !is_auth_param(k)))
            .finish();
        let mut path = format!(
            "/_matrix/app/v1/thirdparty/{}/{}",
            entity.path(),
            encode_segment(protocol)
        );
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        Ok(self.gather(asked, &path).await)
    }

    /// Third-party locations bridged to the Matrix room `alias`.
    pub async fn thirdparty_locations_for_alias(&self, alias: &RoomAliasId) -> Vec<JsonValue> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("alias", alias.as_str())
            .finish();
        let path = format!("/_matrix/app/v1/thirdparty/location?{query}");
        self.gather(self.with_any_protocol(), &path).await
    }

    /// Third-party users bridged as the Matrix user `user`.
    pub async fn thirdparty_users_for_user_id(&self, user: &UserId) -> Vec<JsonValue> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("userid", user.as_str())
            .finish();
        let path = format!("/_matrix/app/v1/thirdparty/user?{query}");
        self.gather(self.with_any_protocol(), &path).await
    }

    /// `PUT /directory/list/appservice/{networkId}/{roomId}`: an appservice publishes a room
    /// (or takes it out). The room goes into the one public room list; per-network lists are
    /// not kept apart.
    pub async fn set_appservice_room_visibility(
        &self,
        session: &UserSession,
        registration: &Registration,
        network_id: &str,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        self.room_directory_visibility(room_id).await?;
        let room = room_id.to_string();
        self.db
            .write("set_room_published", move |c| {
                storage::events::set_room_published_txn(c, &room, public)
            })
            .await?;
        tracing::info!(appservice = %registration.id, user.id = %session.user_id,
            room.id = %room_id, network = network_id, public, "appservice room list changed");
        Ok(())
    }

    fn with_protocol(&self, protocol: &str) -> Vec<Arc<Registration>> {
        self.appservices
            .all()
            .iter()
            .filter(|r| r.url.is_some() && r.protocols.iter().any(|p| p == protocol))
            .cloned()
            .collect()
    }

    fn with_any_protocol(&self) -> Vec<Arc<Registration>> {
        self.appservices
            .all()
            .iter()
            .filter(|r| r.url.is_some() && !r.protocols.is_empty())
            .cloned()
            .collect()
    }

    /// The arrays the appservices answer `path` with, joined.
    async fn gather(&self, asked: Vec<Arc<Registration>>, path: &str) -> Vec<JsonValue> {
        let mut all = Vec::new();
        for registration in asked {
            if let Some(JsonValue::Array(items)) = self.ask(&registration, path).await {
                all.extend(items.into_iter().filter(JsonValue::is_object));
            }
        }
        all
    }

    async fn ask(&self, registration: &Arc<Registration>, path: &str) -> Option<JsonValue> {
        match self
            .appservices
            .client
            .get_json(registration, path, QUERY_TIMEOUT)
            .await
        {
            Ok(answer) => Some(answer),
            Err(e) => {
                tracing::warn!(appservice = %registration.id, error = %e,
                    "third-party lookup failed");
                None
            }
        }
    }
}

/// Query parameters of the client's request that are not lookup fields.
fn is_auth_param(key: &str) -> bool {
    matches!(key, "access_token" | "user_id")
}
