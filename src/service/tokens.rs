//! Access and refresh tokens: issuing them for a device, turning a presented access token into the
//! identity behind it, refreshing, and logging out. Tokens are random; only their SHA-256 hashes
//! are stored.
//!
//! Logging out deletes devices. A deleted device that had published keys changes its user's device
//! list (the database records the change itself, in the `devices_delete_e2e_keys` trigger), so
//! every path that deletes devices runs its deletion through `delete_devices_txn` and, after the
//! commit, `devices_deleted`, which wakes whoever shares a room with the user, once per request.

use std::net::IpAddr;
use std::time::Duration;

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use sha2::{Digest, Sha256};

use super::{Error, Result, Services, random_string, token_cache};
use crate::storage::{self, Conn, now_ms, tokens::NewTokens};

/// A device's last-seen time and address are written at most this often, so that authenticating
/// a request normally costs one indexed read and no write.
const LAST_SEEN_INTERVAL_MS: i64 = 60_000;

/// The identity behind an access token.
#[derive(Debug, Clone)]
pub struct UserSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    /// An appservice acting without naming a device: `device_id` is then a pseudo device that
    /// exists in no table, and what must belong to a device is refused (`require_device`).
    pub without_device: bool,
}

impl UserSession {
    /// `M_INVALID_PARAM` when the session has no real device (see `without_device`).
    pub fn require_device(&self, what: &str) -> Result<()> {
        if self.without_device {
            return Err(Error::InvalidParam(format!(
                "{what} needs a device: an appservice acts as one of its users' devices with                  `device_id` (device masquerading)"
            )));
        }
        Ok(())
    }
}

/// Tokens handed to a client after login, registration or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// Freshly generated tokens with the hashes that get stored.
pub(super) struct PreparedTokens {
    pub issued: IssuedTokens,
    access_hash: Vec<u8>,
    refresh_hash: Option<Vec<u8>>,
    expires_ts: Option<i64>,
}

impl PreparedTokens {
    pub fn as_new_tokens(&self) -> NewTokens<'_> {
        NewTokens {
            access_hash: &self.access_hash,
            expires_ts: self.expires_ts,
            refresh_hash: self.refresh_hash.as_deref(),
        }
    }
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new device id: ten upper-case letters, as other homeservers use.
pub fn new_device_id() -> OwnedDeviceId {
    const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let id: String = (0..10)
        .map(|_| LETTERS[rand::random_range(0..LETTERS.len())] as char)
        .collect();
    id.into()
}

impl Services {
    /// Generates an access token, and a refresh token when the client asked for one (its access
    /// token then expires after `auth.access_token_lifetime_secs`).
    pub(super) fn prepare_tokens(&self, with_refresh: bool) -> PreparedTokens {
        let access_token = format!("plx_at_{}", random_string(40));
        let access_hash = hash_token(&access_token);
        let (refresh_token, refresh_hash, expires_in) = if with_refresh {
            let token = format!("plx_rt_{}", random_string(40));
            let hash = hash_token(&token);
            let lifetime = Duration::from_secs(self.config.auth.access_token_lifetime_secs);
            (Some(token), Some(hash), Some(lifetime))
        } else {
            (None, None, None)
        };
        let expires_ts = expires_in.map(|d| now_ms() + d.as_millis() as i64);
        PreparedTokens {
            issued: IssuedTokens {
                access_token,
                refresh_token,
                expires_in,
            },
            access_hash,
            refresh_hash,
            expires_ts,
        }
    }

    /// Creates (or reuses) a device and gives it new tokens, invalidating any it held before.
    pub async fn open_device(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        with_refresh: bool,
        client_ip: IpAddr,
    ) -> Result<(OwnedDeviceId, IssuedTokens)> {
        let device_id = device_id.unwrap_or_else(new_device_id);
        // A dehydrated device is no session (the database refuses its tokens too).
        let (user, device) = (user_id.to_string(), device_id.to_string());
        let dehydrated = self
            .db
            .read(move |c| storage::dehydrated_devices::get_dehydrated_device(c, &user))
            .await?;
        if dehydrated.is_some_and(|d| d.device_id == device) {
            return Err(Error::Forbidden(format!(
                "{device_id} is a dehydrated device; nobody can log in as it"
            )));
        }
        let prepared = self.prepare_tokens(with_refresh);
        let (user, device, ip) = (user_id.to_owned(), device_id.clone(), client_ip.to_string());
        let prepared = self
            .db
            .write("open_device", move |txn| {
                storage::tokens::upsert_device_with_tokens_txn(
                    txn,
                    &user,
                    &device,
                    display_name.as_deref(),
                    &ip,
                    &prepared.as_new_tokens(),
                )?;
                Ok(prepared)
            })
            .await?;
        self.token_cache.invalidate();
        Ok((device_id, prepared.issued))
    }

    /// The identity behind `token`, or `M_UNKNOWN_TOKEN` (with `soft_logout` when it expired).
    pub async fn authenticate(&self, token: &str, client_ip: IpAddr) -> Result<UserSession> {
        let hash = hash_token(token);
        let now = now_ms();
        if let Some(cached) = self.token_cache.get(&hash) {
            if cached.expires_ts.is_some_and(|expires| expires <= now) {
                return Err(Error::UnknownToken {
                    soft_logout: true,
                    message: "access token has expired; refresh it or log in again".into(),
                });
            }
            if cached
                .last_seen_ts
                .is_none_or(|seen| now - seen > LAST_SEEN_INTERVAL_MS)
            {
                self.token_cache.set_last_seen(&hash, now);
                self.record_last_seen(&cached.session, client_ip);
            }
            return Ok(cached.session);
        }
        let generation = self.token_cache.generation();
        let lookup = hash.clone();
        let row = self
            .db
            .read(move |conn| storage::tokens::find_access_token(conn, &lookup))
            .await?
            .ok_or_else(|| Error::UnknownToken {
                soft_logout: false,
                message: "unknown or revoked access token".into(),
            })?;
        if row.expires_ts.is_some_and(|expires| expires <= now) {
            return Err(Error::UnknownToken {
                soft_logout: true,
                message: "access token has expired; refresh it or log in again".into(),
            });
        }
        let first_use = !row.used && row.refresh_token_hash.is_some();
        if !row.used
            && let Some(refresh_hash) = row.refresh_token_hash.clone()
        {
            let lookup_hash = hash.clone();
            self.db
                .write("retire_predecessor_tokens", move |txn| {
                    storage::tokens::retire_predecessor_txn(txn, &refresh_hash)?;
                    storage::tokens::mark_access_token_used_txn(txn, &lookup_hash)
                })
                .await?;
            self.token_cache.invalidate();
        }
        let session = UserSession {
            user_id: row.user_id,
            device_id: row.device_id,
            is_admin: row.is_admin,
            without_device: false,
        };
        let stale = row
            .last_seen_ts
            .is_none_or(|seen| now - seen > LAST_SEEN_INTERVAL_MS);
        if stale {
            self.record_last_seen(&session, client_ip);
        }
        let last_seen_ts = if stale { Some(now) } else { row.last_seen_ts };
        // A token's first use writes (it retires its predecessor); it is cached from its next use,
        // so that the entry is always one read under a known generation.
        if !first_use {
            let entry = token_cache::CachedToken {
                session: session.clone(),
                expires_ts: row.expires_ts,
                last_seen_ts,
            };
            self.token_cache.insert(generation, hash, entry);
        }
        Ok(session)
    }

    /// Records a device's last-seen time and address, without making the request wait.
    fn record_last_seen(&self, session: &UserSession, client_ip: IpAddr) {
        let (db, user, device, ip) = (
            self.db.clone(),
            session.user_id.clone(),
            session.device_id.clone(),
            client_ip.to_string(),
        );
        tokio::spawn(async move {
            let written = db
                .write("touch_device", move |txn| {
                    storage::tokens::touch_device_txn(txn, &user, &device, &ip)
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not record device last-seen");
            }
        });
    }

    /// Exchanges a refresh token for new tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let old = hash_token(refresh_token);
        let prepared = self.prepare_tokens(true);
        let lookup = old.clone();
        let row = self
            .db
            .read(move |conn| storage::tokens::find_refresh_token(conn, &lookup))
            .await?;
        if row.is_none() {
            return Err(Error::UnknownToken {
                soft_logout: false,
                message: "unknown or revoked refresh token".into(),
            });
        }
        let rotated = self
            .db
            .write("refresh_tokens", move |txn| {
                // The refresh token's own successor being used retires it, like an access token.
                storage::tokens::retire_predecessor_txn(txn, &old)?;
                let rotated = storage::tokens::rotate_refresh_token_txn(
                    txn,
                    &old,
                    &prepared.as_new_tokens(),
                )?;
                Ok(rotated.then_some(prepared))
            })
            .await?;
        self.token_cache.invalidate();
        rotated
            .map(|p| p.issued)
            .ok_or_else(|| Error::UnknownToken {
                soft_logout: false,
                message: "unknown or revoked refresh token".into(),
            })
    }

    /// Logs one device out: the device and its tokens are deleted.
    pub async fn logout(&self, session: &UserSession) -> Result<()> {
        let list_changed = self
            .delete_devices(&session.user_id, vec![session.device_id.clone()])
            .await?;
        self.devices_deleted(&session.user_id, list_changed).await
    }

    /// Logs every device of the user out.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        let user = user_id.to_owned();
        let list_changed = self
            .db
            .write("logout_all", move |txn| {
                delete_devices_txn(txn, |txn| {
                    storage::tokens::delete_other_devices_txn(txn, &user, None)
                })
            })
            .await?;
        self.devices_deleted(user_id, list_changed).await
    }

    /// Deletes the given devices of a user with their tokens; unknown ids are ignored. Answers
    /// whether the user's device list changed; the caller tells the users who care (see
    /// `devices_deleted`), once its request is done deleting.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        devices: Vec<OwnedDeviceId>,
    ) -> Result<bool> {
        let user = user_id.to_owned();
        let list_changed = self
            .db
            .write("delete_devices", move |txn| {
                delete_devices_txn(txn, |txn| {
                    for device in &devices {
                        storage::tokens::delete_device_txn(txn, &user, device)?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.token_cache.invalidate();
        Ok(list_changed)
    }

    /// Deletes every device but `keep`.
    pub async fn delete_other_devices(&self, user_id: &UserId, keep: &DeviceId) -> Result<()> {
        let (user, keep) = (user_id.to_owned(), keep.to_owned());
        let list_changed = self
            .db
            .write("delete_other_devices", move |txn| {
                delete_devices_txn(txn, |txn| {
                    storage::tokens::delete_other_devices_txn(txn, &user, Some(&keep))
                })
            })
            .await?;
        self.devices_deleted(user_id, list_changed).await
    }

    /// After a deletion of devices committed: their tokens are gone from the cache, and when the
    /// deletion changed the user's device list, the user and whoever shares a room with them are
    /// woken (and other servers told).
    pub(super) async fn devices_deleted(&self, user_id: &UserId, list_changed: bool) -> Result<()> {
        self.token_cache.invalidate();
        if list_changed {
            self.device_list_changed(user_id).await?;
        }
        Ok(())
    }
}

/// Runs `delete`, a deletion of devices, in a write and tells whether it changed the user's device
/// list: the `devices_delete_e2e_keys` trigger records a change for every deleted device that had
/// published keys, so the device-list stream moved exactly when one did.
pub(super) fn delete_devices_txn(
    txn: &Conn,
    delete: impl FnOnce(&Conn) -> storage::Result<()>,
) -> storage::Result<bool> {
    let before = storage::e2e_keys::max_device_list_position(txn)?;
    delete(txn)?;
    Ok(storage::e2e_keys::max_device_list_position(txn)? > before)
}
