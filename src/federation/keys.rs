//! Server signing keys: publishing this server's key (`/_matrix/key/v2/server`, self-signed,
//! valid for 7 days), fetching and caching other servers' keys, answering notary queries, and the
//! key lookup every signature check uses: `Federation::verify_key(server, key_id, at_ts)`.
//!
//! A fetched key response is accepted only when every key in `verify_keys` signed it. Current keys
//! are kept with the lesser of their `valid_until_ts` and 7 days from the fetch (the spec's cap);
//! retired keys (`old_verify_keys`) with their `expired_ts`. A key is valid at time `t` when `t`
//! is before it expired, or, for a current key, not after its `valid_until_ts`: request
//! authentication asks about now, event checks will ask about the event's `origin_server_ts`.
//!
//! Keys are fetched directly from their server (no notary). Concurrent fetches for one server
//! share one request, and a server's keys are fetched at most once per `MIN_REFETCH_INTERVAL`, so
//! requests signed with unknown keys cannot make this server hammer the origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ruma::api::federation::discovery::{ServerSigningKeys, get_server_keys};
use ruma::serde::{Base64, Raw};
use ruma::signatures::{
    sign_json, to_canonical_json_string_for_signing, verify_canonical_json_bytes,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName,
    ServerName, ServerSigningKeyId, SigningKeyAlgorithm,
};

use super::Federation;
use super::client::SendError;
use crate::storage::StorageError;
use crate::storage::server_keys::{self, NewKey, StoredKey, StoredResponse};

/// How long this server's published key response is valid for.
const OWN_KEYS_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;
/// The longest a fetched key is trusted without fetching again (the spec's 7-day cap).
const MAX_KEY_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;
/// The least time between two fetches of one server's keys.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{server} has no key {key_id}{}", fetch_note(.fetch_error))]
    NotFound {
        server: OwnedServerName,
        key_id: String,
        fetch_error: Option<String>,
    },
    #[error("key {key_id} of {server} was not valid at {at_ts}")]
    NotValidAt {
        server: OwnedServerName,
        key_id: String,
        at_ts: i64,
    },
    #[error("the key response of {server} is invalid: {reason}")]
    InvalidResponse {
        server: OwnedServerName,
        reason: String,
    },
    /// A fetch of the server's keys failed moments ago; it is not tried again so soon.
    #[error("fetching the keys of {server} failed moments ago: {reason}")]
    RecentlyFailed {
        server: OwnedServerName,
        reason: String,
    },
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot sign a key response: {0}")]
    Signing(String),
}

fn fetch_note(fetch_error: &Option<String>) -> String {
    fetch_error
        .as_ref()
        .map(|e| format!(" (fetching its keys failed: {e})"))
        .unwrap_or_default()
}

/// Per server, the time and outcome of the last key fetch; the async mutex makes concurrent
/// fetches for one server wait for the first.
#[derive(Default)]
pub(super) struct KeyFetches(Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<LastFetch>>>>);

type LastFetch = Option<(Instant, Result<(), String>)>;

impl KeyFetches {
    fn slot(&self, server: &ServerName) -> Arc<tokio::sync::Mutex<LastFetch>> {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(server.to_owned()).or_default().clone()
    }
}

/// A key response that passed the checks, ready to store.
#[derive(Debug)]
pub struct CheckedResponse {
    pub keys: Vec<NewKey>,
    pub response: StoredResponse,
}

/// Whether a stored key was valid at `at_ts`.
pub fn valid_at(key: &StoredKey, at_ts: i64) -> bool {
    match key.expired_ts {
        Some(expired) => at_ts < expired,
        None => at_ts <= key.valid_until_ts,
    }
}

/// Checks a key response claimed to be `server`'s, fetched at `now_ms`: it names `server`, every
/// ed25519 key in `verify_keys` signed it, and its keys parse.
pub fn check_key_response(
    server: &ServerName,
    json: &str,
    now_ms: i64,
) -> Result<CheckedResponse, KeyError> {
    let invalid = |reason: String| KeyError::InvalidResponse {
        server: server.to_owned(),
        reason,
    };
    let object: CanonicalJsonObject =
        serde_json::from_str(json).map_err(|e| invalid(format!("not canonical JSON: {e}")))?;
    let typed: ServerSigningKeys =
        serde_json::from_str(json).map_err(|e| invalid(format!("malformed: {e}")))?;
    if typed.server_name != server {
        return Err(invalid(format!("it is for {}", typed.server_name)));
    }
    let canonical =
        to_canonical_json_string_for_signing(&object).map_err(|e| invalid(e.to_string()))?;
    let signatures = typed.signatures.get(server);
    let mut keys = Vec::new();
    for (key_id, verify_key) in &typed.verify_keys {
        if key_id.algorithm() != SigningKeyAlgorithm::Ed25519 {
            continue;
        }
        let signature = signatures
            .and_then(|by_key| by_key.get(key_id))
            .ok_or_else(|| invalid(format!("it is not signed by its key {key_id}")))?;
        let signature: Base64 = Base64::parse(signature)
            .map_err(|e| invalid(format!("the signature of {key_id} is not base64: {e}")))?;
        verify_canonical_json_bytes(
            &SigningKeyAlgorithm::Ed25519,
            verify_key.key.as_bytes(),
            signature.as_bytes(),
            canonical.as_bytes(),
        )
        .map_err(|e| invalid(format!("the signature of {key_id} does not verify: {e}")))?;
        keys.push(NewKey {
            key_id: key_id.to_string(),
            public_key: verify_key.key.encode(),
            valid_until_ts: millis(typed.valid_until_ts).min(now_ms + MAX_KEY_VALIDITY_MS),
            expired_ts: None,
        });
    }
    if keys.is_empty() {
        return Err(invalid("it has no ed25519 key".into()));
    }
    for (key_id, old) in &typed.old_verify_keys {
        if key_id.algorithm() != SigningKeyAlgorithm::Ed25519 {
            continue;
        }
        let expired = millis(old.expired_ts);
        keys.push(NewKey {
            key_id: key_id.to_string(),
            public_key: old.key.encode(),
            valid_until_ts: expired,
            expired_ts: Some(expired),
        });
    }
    let response = serde_json::to_string(&object).map_err(|e| invalid(e.to_string()))?;
    Ok(CheckedResponse {
        keys,
        response: StoredResponse {
            response,
            valid_until_ts: millis(typed.valid_until_ts),
            fetched_ts: now_ms,
        },
    })
}

/// Whether a notary should fetch again rather than serve a stored response: it is not valid long
/// enough for the asker, or more than half its lifetime has passed (the spec's advice).
pub fn notary_needs_refresh(
    stored: &StoredResponse,
    minimum_valid_until_ts: i64,
    now_ms: i64,
) -> bool {
    let half_life = stored.fetched_ts + (stored.valid_until_ts - stored.fetched_ts) / 2;
    stored.valid_until_ts < minimum_valid_until_ts || now_ms > half_life
}

fn millis(ts: MilliSecondsSinceUnixEpoch) -> i64 {
    i64::try_from(u64::from(ts.get())).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    millis(MilliSecondsSinceUnixEpoch::now())
}

impl Federation {
    /// This server's key response: its key, valid for 7 days, no old keys, self-signed.
    pub fn own_server_keys(&self) -> Result<Raw<ServerSigningKeys>, KeyError> {
        let valid_until = now_ms() + OWN_KEYS_VALIDITY_MS;
        let mut verify_keys = CanonicalJsonObject::new();
        let mut key = CanonicalJsonObject::new();
        key.insert(
            "key".into(),
            CanonicalJsonValue::String(self.public_key.encode()),
        );
        verify_keys.insert(self.key_id.clone(), CanonicalJsonValue::Object(key));
        let mut object = CanonicalJsonObject::new();
        object.insert(
            "server_name".into(),
            CanonicalJsonValue::String(self.server_name.to_string()),
        );
        object.insert(
            "verify_keys".into(),
            CanonicalJsonValue::Object(verify_keys),
        );
        object.insert(
            "old_verify_keys".into(),
            CanonicalJsonValue::Object(CanonicalJsonObject::new()),
        );
        object.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(valid_until.try_into().unwrap_or_default()),
        );
        self.signed_raw(object)
    }

    /// The public key `key_id` of `server` if it was valid at `at_ts` (milliseconds), fetching
    /// the server's keys when the stored ones do not answer.
    pub async fn verify_key(
        &self,
        server: &ServerName,
        key_id: &ServerSigningKeyId,
        at_ts: MilliSecondsSinceUnixEpoch,
    ) -> Result<Base64, KeyError> {
        let at_ts = millis(at_ts);
        if server == self.server_name {
            if key_id.as_str() == self.key_id {
                return Ok(self.public_key.clone());
            }
            return Err(KeyError::NotFound {
                server: server.to_owned(),
                key_id: key_id.to_string(),
                fetch_error: None,
            });
        }
        let stored = self.stored_key(server, key_id).await?;
        if let Some(key) = &stored
            && valid_at(key, at_ts)
        {
            return decode_key(server, key);
        }
        let fetch_error = self.refresh_keys(server).await.err().map(|e| e.to_string());
        match self.stored_key(server, key_id).await? {
            Some(key) if valid_at(&key, at_ts) => decode_key(server, &key),
            Some(_) => Err(KeyError::NotValidAt {
                server: server.to_owned(),
                key_id: key_id.to_string(),
                at_ts,
            }),
            None => Err(KeyError::NotFound {
                server: server.to_owned(),
                key_id: key_id.to_string(),
                fetch_error,
            }),
        }
    }

    /// The notary answer for `server`: its key response valid until at least
    /// `minimum_valid_until_ts` when one can be had (else the freshest known), with this server's
    /// signature added. `None` when nothing is known and the server cannot be reached.
    pub async fn notary_server_keys(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: MilliSecondsSinceUnixEpoch,
    ) -> Result<Option<Raw<ServerSigningKeys>>, KeyError> {
        if server == self.server_name {
            return self.own_server_keys().map(Some);
        }
        let minimum = millis(minimum_valid_until_ts);
        let stored = self.stored_response(server).await?;
        let fresh_enough = stored
            .as_ref()
            .is_some_and(|s| !notary_needs_refresh(s, minimum, now_ms()));
        let stored = if fresh_enough {
            stored
        } else {
            if let Err(e) = self.refresh_keys(server).await {
                tracing::info!(server.name = %server, error = %e, "notary: key fetch failed");
            }
            self.stored_response(server).await?
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        let object: CanonicalJsonObject = serde_json::from_str(&stored.response)
            .map_err(|e| KeyError::Signing(format!("stored response is not JSON: {e}")))?;
        self.signed_raw(object).map(Some)
    }

    /// Fetches `server`'s keys unless another fetch is running (then waits for it) or one ran in
    /// the last `MIN_REFETCH_INTERVAL` (then reports how that went).
    async fn refresh_keys(&self, server: &ServerName) -> Result<(), KeyError> {
        let slot = self.key_fetches.slot(server);
        let mut last = slot.lock().await;
        if let Some((at, outcome)) = &*last
            && at.elapsed() < MIN_REFETCH_INTERVAL
        {
            return outcome.clone().map_err(|reason| KeyError::RecentlyFailed {
                server: server.to_owned(),
                reason,
            });
        }
        let outcome = self.fetch_keys(server).await;
        *last = Some((
            Instant::now(),
            outcome.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        ));
        outcome
    }

    /// `GET /_matrix/key/v2/server` on `server`, checked and stored.
    async fn fetch_keys(&self, server: &ServerName) -> Result<(), KeyError> {
        tracing::debug!(server.name = %server, "fetching server keys");
        let response = self
            .send_with_timeout(
                server,
                get_server_keys::v2::Request::new(),
                KEY_FETCH_TIMEOUT,
            )
            .await?;
        let checked = check_key_response(server, response.server_key.json().get(), now_ms())?;
        let name = server.to_string();
        self.db
            .write("store_server_keys", move |txn| {
                server_keys::store_server_keys_txn(txn, &name, &checked.keys, &checked.response)
            })
            .await?;
        Ok(())
    }

    async fn stored_key(
        &self,
        server: &ServerName,
        key_id: &ServerSigningKeyId,
    ) -> Result<Option<StoredKey>, KeyError> {
        let (server, key_id) = (server.to_string(), key_id.to_string());
        Ok(self
            .db
            .read(move |c| server_keys::get_server_key(c, &server, &key_id))
            .await?)
    }

    async fn stored_response(
        &self,
        server: &ServerName,
    ) -> Result<Option<StoredResponse>, KeyError> {
        let server = server.to_string();
        Ok(self
            .db
            .read(move |c| server_keys::get_server_key_response(c, &server))
            .await?)
    }

    /// Adds this server's signature to `object` and wraps it for a ruma response.
    fn signed_raw(
        &self,
        mut object: CanonicalJsonObject,
    ) -> Result<Raw<ServerSigningKeys>, KeyError> {
        sign_json(self.server_name.as_str(), &self.keypair, &mut object)
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        let raw = serde_json::value::to_raw_value(&object)
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(Raw::from_json(raw))
    }
}

fn decode_key(server: &ServerName, key: &StoredKey) -> Result<Base64, KeyError> {
    Base64::parse(&key.public_key).map_err(|e| KeyError::InvalidResponse {
        server: server.to_owned(),
        reason: format!("a stored key is not base64: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::signing_key::SigningKey;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 24 * 3600 * 1000;

    fn key(seed: u8, version: &str) -> SigningKey {
        SigningKey::new(version, ed25519_dalek::SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn name(s: &str) -> &ServerName {
        s.try_into().unwrap()
    }

    /// A key response for `server` listing `current` (and one old key), signed by `signers`.
    fn response(
        server: &str,
        current: &SigningKey,
        signers: &[&SigningKey],
        valid_until: i64,
    ) -> String {
        let mut object: CanonicalJsonObject = serde_json::from_value(serde_json::json!({
            "server_name": server,
            "verify_keys": { current.key_id(): { "key": current.public_key_base64() } },
            "old_verify_keys": {
                "ed25519:old": { "key": key(9, "old").public_key_base64(), "expired_ts": NOW - DAY }
            },
            "valid_until_ts": valid_until,
        }))
        .unwrap();
        for signer in signers {
            sign_json(server, signer.keypair(), &mut object).unwrap();
        }
        serde_json::to_string(&object).unwrap()
    }

    #[test]
    fn a_self_signed_response_is_accepted_with_its_validity_capped() {
        let current = key(1, "a");
        let json = response("a.test", &current, &[&current], NOW + 30 * DAY);
        let checked = check_key_response(name("a.test"), &json, NOW).unwrap();
        let new = &checked.keys[0];
        assert_eq!(new.key_id, "ed25519:a");
        assert_eq!(new.public_key, current.public_key_base64());
        assert_eq!(new.valid_until_ts, NOW + 7 * DAY, "capped at 7 days");
        assert_eq!(new.expired_ts, None);
        let old = &checked.keys[1];
        assert_eq!(
            (old.key_id.as_str(), old.expired_ts),
            ("ed25519:old", Some(NOW - DAY))
        );
        assert_eq!(checked.response.valid_until_ts, NOW + 30 * DAY);

        let short = response("a.test", &current, &[&current], NOW + DAY);
        let checked = check_key_response(name("a.test"), &short, NOW).unwrap();
        assert_eq!(checked.keys[0].valid_until_ts, NOW + DAY);
    }

    #[test]
    fn unsigned_wrongly_signed_or_misnamed_responses_are_refused() {
        let current = key(1, "a");
        let cases = [
            (
                "unsigned",
                response("a.test", &current, &[], NOW + DAY),
                "a.test",
            ),
            (
                "signed by another key",
                response("a.test", &current, &[&key(2, "a")], NOW + DAY),
                "a.test",
            ),
            (
                "for another server",
                response("b.test", &current, &[&current], NOW + DAY),
                "a.test",
            ),
            ("not JSON", "{".to_string(), "a.test"),
        ];
        for (label, json, server) in cases {
            let err = check_key_response(name(server), &json, NOW).unwrap_err();
            assert!(
                matches!(err, KeyError::InvalidResponse { .. }),
                "{label}: {err}"
            );
        }
        // A tampered field breaks the signature.
        let json = response("a.test", &current, &[&current], NOW + DAY)
            .replace(&(NOW + DAY).to_string(), &(NOW + 2 * DAY).to_string());
        assert!(check_key_response(name("a.test"), &json, NOW).is_err());
    }

    #[test]
    fn keys_are_valid_until_their_validity_or_expiry() {
        let current = StoredKey {
            public_key: String::new(),
            valid_until_ts: NOW,
            expired_ts: None,
        };
        assert!(valid_at(&current, NOW - 1));
        assert!(valid_at(&current, NOW));
        assert!(!valid_at(&current, NOW + 1));
        let old = StoredKey {
            expired_ts: Some(NOW),
            ..current
        };
        assert!(
            valid_at(&old, NOW - 1),
            "events from before the expiry still verify"
        );
        assert!(!valid_at(&old, NOW));
    }

    #[test]
    fn a_notary_refetches_after_half_the_lifetime_or_when_asked_for_more() {
        let stored = StoredResponse {
            response: String::new(),
            fetched_ts: NOW,
            valid_until_ts: NOW + 2 * DAY,
        };
        assert!(!notary_needs_refresh(&stored, NOW, NOW + DAY / 2));
        assert!(notary_needs_refresh(&stored, NOW, NOW + DAY + 1));
        assert!(notary_needs_refresh(&stored, NOW + 3 * DAY, NOW));
    }
}
