//! `/keys/query` and `/keys/changes`: the published keys of users, with the signatures uploaded
//! for them, and whose keys changed between two sync tokens.
//!
//! Signatures on a device (by its user's self-signing key) and on a master key by its own user's
//! devices are shown to everyone; a signature by another user (their user-signing key on this
//! user's master key) only to that user, as the specification asks. A user-signing key is shown
//! only to its owner.

use std::collections::BTreeMap;
use std::time::Duration;

use ruma::encryption::{CrossSigningKey, DeviceKeys};
use ruma::serde::Raw;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value as JsonValue;

use super::federation::remote_timeout;
use super::signed::{add_signature, keys_of};
use crate::service::{Error, Result, Services};
use crate::storage::{Conn, e2e_keys};
use crate::sync::SyncToken;
use crate::sync::device_lists::changes_between;

/// The answer to a key query.
#[derive(Debug, Default)]
pub struct KeysQueryAnswer {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    /// Servers that could not be asked, by name.
    pub failures: BTreeMap<String, JsonValue>,
}

impl Services {
    /// `POST /keys/query` for `requester`: the devices asked for (all of a user's devices for an
    /// empty list) and the cross-signing keys of each user; other servers' users are asked from
    /// their servers within `timeout` (see `remote_timeout`).
    pub async fn query_keys(
        &self,
        requester: &UserId,
        users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        timeout: Option<Duration>,
    ) -> Result<KeysQueryAnswer> {
        let (local, remote): (BTreeMap<_, _>, BTreeMap<_, _>) = users
            .into_iter()
            .partition(|(user, _)| user.server_name() == self.server_name());
        let mut answer = self.local_device_keys(Some(requester), local).await?;
        if !remote.is_empty() {
            self.query_remote_keys(remote, remote_timeout(timeout), &mut answer)
                .await;
            self.add_own_signatures_on_remote_masters(requester, &mut answer)
                .await?;
        }
        Ok(answer)
    }

    /// Adds the signatures `requester` made (with their user-signing key) on the master keys of
    /// other servers' users, which are kept here and shown only to them.
    async fn add_own_signatures_on_remote_masters(
        &self,
        requester: &UserId,
        answer: &mut KeysQueryAnswer,
    ) -> Result<()> {
        let own = self.server_name().to_owned();
        let users: Vec<String> = answer
            .master_keys
            .keys()
            .filter(|user| user.server_name() != own)
            .map(|user| user.to_string())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        let signer = requester.to_string();
        let signatures = self
            .db
            .read(move |c| {
                let mut found = Vec::new();
                for user in users {
                    for s in e2e_keys::signatures_on_user(c, &user)? {
                        if s.signer_user_id == signer {
                            found.push((user.clone(), s));
                        }
                    }
                }
                Ok(found)
            })
            .await?;
        for (user, s) in signatures {
            let Ok(user) = OwnedUserId::try_from(user) else {
                continue;
            };
            let Some(master) = answer.master_keys.get_mut(&user) else {
                continue;
            };
            let mut object = parse(master.json().get())?;
            if keys_of(&object)
                .iter()
                .any(|(_, public)| *public == s.target_key)
            {
                add_signature(&mut object, &s.signer_user_id, &s.signer_key, &s.signature);
                *master = raw(&object)?;
            }
        }
        Ok(())
    }

    /// The published keys of local users, as `requester` (a local user; `None` for another
    /// server, which gets no user-signing keys, no signatures by other users and no device
    /// display names) may see them. Unknown users and devices are left out. This is also the
    /// answer to another server's `/user/keys/query`.
    pub async fn local_device_keys(
        &self,
        requester: Option<&UserId>,
        users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<KeysQueryAnswer> {
        let requester = requester.map(|r| r.as_str().to_owned());
        self.db
            .read(move |c| Ok(read_keys(c, requester.as_deref(), &users)))
            .await?
    }

    /// `GET /keys/changes`: users whose keys changed, and users who no longer share a room with
    /// `user`, between two sync tokens.
    pub async fn key_changes(
        &self,
        user: &UserId,
        from: &str,
        to: &str,
    ) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
        let from = SyncToken::parse(from)?;
        let to = SyncToken::parse(to)?;
        let user = user.to_owned();
        self.db
            .read(move |c| Ok(changes_between(c, &user, None, &from, Some(&to))))
            .await?
    }
}

fn read_keys(
    c: &Conn,
    requester: Option<&str>,
    users: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<KeysQueryAnswer> {
    let mut answer = KeysQueryAnswer::default();
    for (user, wanted) in users {
        let owner = user.as_str();
        let signatures = e2e_keys::signatures_on_user(c, owner)?;
        let visible = |signer: &str| signer == owner || Some(signer) == requester;
        let mut devices = BTreeMap::new();
        for row in e2e_keys::device_keys_of_user(c, owner)? {
            let device_id = OwnedDeviceId::from(row.device_id.as_str());
            if !wanted.is_empty() && !wanted.contains(&device_id) {
                continue;
            }
            let mut object = parse(&row.key_json)?;
            for s in signatures.iter().filter(|s| s.target_key == row.device_id) {
                if visible(&s.signer_user_id) {
                    add_signature(&mut object, &s.signer_user_id, &s.signer_key, &s.signature);
                }
            }
            if let (Some(name), Some(_)) = (&row.display_name, requester) {
                let unsigned = CanonicalJsonObject::from([(
                    "device_display_name".to_owned(),
                    CanonicalJsonValue::String(name.clone()),
                )]);
                object.insert("unsigned".to_owned(), CanonicalJsonValue::Object(unsigned));
            }
            devices.insert(device_id, raw(&object)?);
        }
        if !devices.is_empty() {
            answer.device_keys.insert(user.clone(), devices);
        }
        for key in e2e_keys::cross_signing_keys(c, owner)? {
            let mut object = parse(&key.key_json)?;
            match key.key_type.as_str() {
                "master" => {
                    for s in signatures.iter().filter(|s| s.target_key == key.public_key) {
                        if visible(&s.signer_user_id) {
                            add_signature(
                                &mut object,
                                &s.signer_user_id,
                                &s.signer_key,
                                &s.signature,
                            );
                        }
                    }
                    answer.master_keys.insert(user.clone(), raw(&object)?);
                }
                "self_signing" => {
                    answer.self_signing_keys.insert(user.clone(), raw(&object)?);
                }
                "user_signing" if requester == Some(owner) => {
                    answer.user_signing_keys.insert(user.clone(), raw(&object)?);
                }
                _ => {}
            }
        }
    }
    Ok(answer)
}

fn parse(json: &str) -> Result<CanonicalJsonObject> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored key JSON: {e}")))
}

fn raw<T>(object: &CanonicalJsonObject) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(object)
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(format!("cannot serialise keys: {e}")))
}
