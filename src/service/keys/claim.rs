//! `/keys/claim`: one one-time key per device asked for, the oldest first, or the device's fallback
//! key when none is left. All claims of a request run in one write transaction on the one writer
//! thread, so no key is ever handed out twice.

use std::collections::BTreeMap;

use ruma::api::client::keys::claim_keys::v3::OneTimeKeys;
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::federation::remote_timeout;
use crate::service::{Error, Result, Services};
use crate::storage::e2e_keys;

/// The most devices one request may claim keys of.
const MAX_CLAIMS: usize = 10_000;

/// What a claim asks for: per user, per device, one key of an algorithm.
pub type Claims = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>;

impl Services {
    /// `POST /keys/claim`: keys of local devices, and of other servers' devices from their
    /// servers within `timeout`; unknown users and devices and devices without keys are left
    /// out, servers that could not be asked are reported under the failures.
    pub async fn claim_keys(
        &self,
        claims: Claims,
        timeout: Option<std::time::Duration>,
    ) -> Result<(
        BTreeMap<OwnedUserId, OneTimeKeys>,
        BTreeMap<String, JsonValue>,
    )> {
        let (local, remote): (Claims, Claims) = claims
            .into_iter()
            .partition(|(user, _)| user.server_name() == self.server_name());
        let mut keys = self.claim_local_one_time_keys(local).await?;
        if remote.is_empty() {
            return Ok((keys, BTreeMap::new()));
        }
        let (remote_keys, failures) = self
            .claim_remote_keys(remote, remote_timeout(timeout))
            .await;
        keys.extend(remote_keys);
        Ok((keys, failures))
    }

    /// Claims one key per device of local users, atomically; also the answer to another
    /// server's `/user/keys/claim`. The owners of the devices are woken, since their key counts
    /// changed.
    pub async fn claim_local_one_time_keys(
        &self,
        claims: Claims,
    ) -> Result<BTreeMap<OwnedUserId, OneTimeKeys>> {
        let wanted: usize = claims.values().map(BTreeMap::len).sum();
        if wanted > MAX_CLAIMS {
            return Err(Error::InvalidParam(format!(
                "at most {MAX_CLAIMS} devices per claim"
            )));
        }
        if wanted == 0 {
            return Ok(BTreeMap::new());
        }
        let (claimed, position) = self
            .db
            .write("claim_one_time_keys", move |txn| {
                let mut claimed = Vec::new();
                for (user, devices) in &claims {
                    for (device, algorithm) in devices {
                        let (u, d, a) = (user.as_str(), device.as_str(), algorithm.as_str());
                        let key = match e2e_keys::claim_one_time_key_txn(txn, u, d, a)? {
                            Some(key) => Some(key),
                            None => e2e_keys::claim_fallback_key_txn(txn, u, d, a)?,
                        };
                        if let Some((name, json)) = key {
                            claimed.push((
                                user.clone(),
                                device.clone(),
                                algorithm.clone(),
                                name,
                                json,
                            ));
                        }
                    }
                }
                let position = e2e_keys::max_device_list_position(txn)?;
                Ok((claimed, position))
            })
            .await?;
        let mut answer: BTreeMap<OwnedUserId, OneTimeKeys> = BTreeMap::new();
        for (user, device, algorithm, name, json) in claimed {
            let id = OwnedOneTimeKeyId::try_from(format!("{algorithm}:{name}"))
                .map_err(|e| Error::Internal(format!("stored one-time key id: {e}")))?;
            let key = RawJsonValue::from_string(json)
                .map_err(|e| Error::Internal(format!("stored one-time key: {e}")))?;
            answer
                .entry(user)
                .or_default()
                .entry(device)
                .or_default()
                .insert(id, Raw::from_json(key));
        }
        for owner in answer.keys() {
            self.notifier.user_changed(owner, position);
        }
        Ok(answer)
    }
}
