//! Keys across servers. Asking: `/keys/query` and `/keys/claim` for users of other servers go to
//! each of their servers at once (`/user/keys/query`, `/user/keys/claim`), within the client's
//! timeout; a server that does not answer in time, or refuses, is reported under `failures` by
//! name. Nothing is cached: every query asks again, so what a client gets is what the user's
//! own server says now.
//!
//! Answering: another server's `/user/keys/query`, `/user/keys/claim` and `/user/devices` get
//! what a local user's keys look like from outside (`local_device_keys` with no requester).
//!
//! Telling: after a local user's device list changes, the servers sharing a room with them get an
//! `m.device_list_update` EDU for the latest change (its device's keys, or `deleted`), whose
//! `prev_id` names the user's change before it; a server that missed one sees the gap and asks
//! `/user/devices` again. A change of cross-signing keys goes out as `m.signing_key_update`.
//! Receiving either EDU from a user's own server records a change of that user's device list
//! here, so that local users sharing a room with them see the user in `device_lists.changed`
//! and query the keys afresh.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use ruma::api::federation::device::get_devices::v1::UserDevice;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Value as JsonValue, json};

use super::KeysQueryAnswer;
use super::claim::Claims;
use crate::federation::client::SendError;
use crate::service::{Error, Result, Services};
use crate::storage::{self, e2e_keys};

/// How long a remote key query or claim may take when the client names no timeout, and at most.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The time other servers get to answer a key query or claim: what the client asked for, within
/// bounds.
pub(super) fn remote_timeout(asked: Option<Duration>) -> Duration {
    asked.unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
}

/// A local user's devices as another server sees them (`/user/devices`).
pub struct DeviceList {
    pub stream_id: u64,
    pub devices: Vec<UserDevice>,
    pub master_key: Option<ruma::serde::Raw<ruma::encryption::CrossSigningKey>>,
    pub self_signing_key: Option<ruma::serde::Raw<ruma::encryption::CrossSigningKey>>,
}

impl Services {
    /// Adds what the servers of `remote` users say about their keys to `answer`.
    pub(super) async fn query_remote_keys(
        &self,
        remote: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        timeout: Duration,
        answer: &mut KeysQueryAnswer,
    ) {
        let asks = by_server(remote)
            .into_iter()
            .map(|(server, users)| async move {
                let request = get_keys::v1::Request::new(users);
                let reply = self
                    .federation
                    .send_with_timeout(&server, request, timeout)
                    .await;
                (server, reply)
            });
        for (server, reply) in join_all(asks).await {
            match reply {
                Ok(response) => {
                    // Only what the server may speak for: its own users.
                    let own = |user: &OwnedUserId| user.server_name() == server;
                    answer
                        .device_keys
                        .extend(response.device_keys.into_iter().filter(|(u, _)| own(u)));
                    answer
                        .master_keys
                        .extend(response.master_keys.into_iter().filter(|(u, _)| own(u)));
                    answer.self_signing_keys.extend(
                        response
                            .self_signing_keys
                            .into_iter()
                            .filter(|(u, _)| own(u)),
                    );
                }
                Err(e) => {
                    answer
                        .failures
                        .insert(server.to_string(), failure(&server, &e));
                }
            }
        }
    }

    /// Claims one-time keys of `remote` users from their servers.
    pub(super) async fn claim_remote_keys(
        &self,
        remote: Claims,
        timeout: Duration,
    ) -> (
        BTreeMap<OwnedUserId, ruma::api::client::keys::claim_keys::v3::OneTimeKeys>,
        BTreeMap<String, JsonValue>,
    ) {
        let asks = by_server(remote)
            .into_iter()
            .map(|(server, claims)| async move {
                let request = claim_keys::v1::Request::new(claims);
                let reply = self
                    .federation
                    .send_with_timeout(&server, request, timeout)
                    .await;
                (server, reply)
            });
        let (mut keys, mut failures) = (BTreeMap::new(), BTreeMap::new());
        for (server, reply) in join_all(asks).await {
            match reply {
                Ok(response) => keys.extend(
                    response
                        .one_time_keys
                        .into_iter()
                        .filter(|(user, _)| user.server_name() == server),
                ),
                Err(e) => {
                    failures.insert(server.to_string(), failure(&server, &e));
                }
            }
        }
        (keys, failures)
    }

    /// `/user/devices/{userId}`: a local user's devices with their keys, the position of their
    /// latest device-list change, and their public cross-signing keys. `M_NOT_FOUND` for
    /// unknown, deactivated or remote users.
    pub async fn device_list_for_federation(&self, user_id: &UserId) -> Result<DeviceList> {
        self.require_local_user(user_id).await?;
        let owner = user_id.to_string();
        let stream_id = self
            .db
            .read(move |c| e2e_keys::latest_device_list_changes(c, &owner, 1))
            .await?
            .first()
            .map_or(0, |(stream_id, _)| *stream_id);
        let mut keys = self
            .local_device_keys(None, BTreeMap::from([(user_id.to_owned(), Vec::new())]))
            .await?;
        let devices = keys
            .device_keys
            .remove(user_id)
            .unwrap_or_default()
            .into_iter()
            .map(|(device_id, keys)| UserDevice::new(device_id, keys))
            .collect();
        Ok(DeviceList {
            stream_id: u64::try_from(stream_id).unwrap_or_default(),
            devices,
            master_key: keys.master_keys.remove(user_id),
            self_signing_key: keys.self_signing_keys.remove(user_id),
        })
    }

    /// Tells the servers sharing a room with local `user` about the latest change of their
    /// device list (see the module docs).
    pub(super) async fn federate_device_list_change(&self, user: &UserId) -> Result<()> {
        if user.server_name() != self.server_name() || !self.federation.is_enabled() {
            return Ok(());
        }
        let owner = user.to_string();
        let (servers, changes) = self
            .db
            .read(move |c| {
                Ok((
                    storage::room_servers::servers_sharing_a_room(c, &owner)?,
                    e2e_keys::latest_device_list_changes(c, &owner, 2)?,
                ))
            })
            .await?;
        let destinations: Vec<String> = servers
            .into_iter()
            .filter(|server| server != self.server_name().as_str())
            .collect();
        let Some((stream_id, device)) = changes.first().cloned() else {
            return Ok(());
        };
        if destinations.is_empty() {
            return Ok(());
        }
        let mut keys = self
            .local_device_keys(None, BTreeMap::from([(user.to_owned(), Vec::new())]))
            .await?;
        let (edu_type, content) = match device {
            Some(device) => {
                let device_id = OwnedDeviceId::from(device.as_str());
                let published = keys
                    .device_keys
                    .remove(user)
                    .and_then(|mut devices| devices.remove(&device_id));
                let prev_id: Vec<i64> = changes.get(1).map(|(id, _)| *id).into_iter().collect();
                let mut content = json!({
                    "user_id": user,
                    "device_id": device_id,
                    "stream_id": stream_id,
                    "prev_id": prev_id,
                });
                match published {
                    Some(device_keys) => content["keys"] = to_json(device_keys.json())?,
                    None => content["deleted"] = json!(true),
                }
                ("m.device_list_update", content)
            }
            None => {
                let mut content = json!({ "user_id": user });
                if let Some(master) = keys.master_keys.remove(user) {
                    content["master_key"] = to_json(master.json())?;
                }
                if let Some(self_signing) = keys.self_signing_keys.remove(user) {
                    content["self_signing_key"] = to_json(self_signing.json())?;
                }
                ("m.signing_key_update", content)
            }
        };
        self.queue_edu(destinations, edu_type, content).await;
        Ok(())
    }

    /// An `m.device_list_update` or `m.signing_key_update` EDU from `origin`: records a change
    /// of the user's device list (the user must belong to `origin`), waking local users who
    /// share a room with them. Malformed or foreign updates are ignored (an EDU has no answer).
    pub(crate) async fn receive_device_list_update(
        &self,
        origin: &ServerName,
        content: &JsonValue,
    ) {
        let Some(user) = content
            .get("user_id")
            .and_then(JsonValue::as_str)
            .and_then(|u| OwnedUserId::try_from(u).ok())
        else {
            tracing::debug!(server.name = %origin, "ignored a device list update without a user");
            return;
        };
        if user.server_name() != origin {
            tracing::info!(server.name = %origin, user.id = %user, "ignored a device list update for a user of another server");
            return;
        }
        let device = content
            .get("device_id")
            .and_then(JsonValue::as_str)
            .map(str::to_owned);
        let owner = user.to_string();
        let recorded = self
            .db
            .write("record_remote_device_list_change", move |txn| {
                e2e_keys::add_device_list_change_txn(txn, &owner, device.as_deref())
            })
            .await;
        let result = match recorded {
            Ok(position) => self.announce_device_list_change(&user, position).await,
            Err(e) => Err(Error::from(e)),
        };
        if let Err(e) = result {
            tracing::warn!(server.name = %origin, user.id = %user, error = %e, "cannot record a device list update");
        }
    }
}

/// The users of `asks` grouped by their server.
fn by_server<T>(
    asks: BTreeMap<OwnedUserId, T>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> {
    let mut servers: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user, ask) in asks {
        servers
            .entry(user.server_name().to_owned())
            .or_default()
            .insert(user, ask);
    }
    servers
}

/// What `failures` says about a server that could not be asked.
fn failure(server: &ServerName, error: &SendError) -> JsonValue {
    json!({ "status": 503, "message": format!("{server} could not be asked: {error}") })
}

fn to_json(raw: &serde_json::value::RawValue) -> Result<JsonValue> {
    serde_json::from_str(raw.get()).map_err(|e| Error::Internal(format!("stored keys: {e}")))
}
