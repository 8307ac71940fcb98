//! Shared-secret registration (`/_synapse/admin/v1/register`), the way existing tooling creates
//! accounts: a single-use nonce, and an HMAC-SHA1 over the request keyed by the configured secret.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use ruma::{OwnedDeviceId, OwnedUserId};
use sha1::Sha1;

use super::tokens::IssuedTokens;
use super::{Error, Result, Services, random_string};

/// How long a nonce can be used after it was handed out.
const NONCE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Nonces(HashMap<String, Instant>);

/// A shared-secret registration request.
pub struct SharedSecretRegistration {
    pub nonce: String,
    pub username: String,
    pub password: String,
    pub admin: bool,
    pub user_type: Option<String>,
    pub displayname: Option<String>,
    /// Hex HMAC-SHA1 of nonce, username, password, "admin"/"notadmin" (and user type), each
    /// separated by a NUL byte.
    pub mac: String,
}

impl Services {
    fn shared_secret(&self) -> Result<&str> {
        self.config
            .registration
            .shared_secret
            .as_deref()
            .ok_or_else(|| {
                Error::Forbidden("shared-secret registration is not enabled on this server".into())
            })
    }

    pub fn new_registration_nonce(&self) -> Result<String> {
        self.shared_secret()?;
        let nonce = random_string(32);
        let mut nonces = self
            .shared_secret_nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        nonces
            .0
            .retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
        nonces.0.insert(nonce.clone(), now);
        Ok(nonce)
    }

    pub async fn register_with_shared_secret(
        &self,
        request: SharedSecretRegistration,
        client_ip: std::net::IpAddr,
    ) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
        let secret = self.shared_secret()?;
        let issued = self
            .shared_secret_nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .remove(&request.nonce);
        if issued.is_none_or(|at| at.elapsed() >= NONCE_LIFETIME) {
            return Err(Error::InvalidParam("unrecognised or expired nonce".into()));
        }
        let given = decode_hex(&request.mac)
            .ok_or_else(|| Error::InvalidParam("mac must be hexadecimal".into()))?;
        // `verify_slice` compares in constant time.
        let mut check = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
            .map_err(|e| Error::Internal(e.to_string()))?;
        check.update(&registration_message(&request));
        if check.verify_slice(&given).is_err() {
            return Err(Error::Forbidden("HMAC incorrect".into()));
        }
        let user_id = self
            .create_user(&request.username, &request.password, request.admin)
            .await?;
        if let Some(name) = request.displayname {
            self.set_profile_field(&user_id, &user_id, "displayname", name.into())
                .await?;
        }
        let (device_id, tokens) = self
            .open_device(&user_id, None, None, false, client_ip)
            .await?;
        Ok((user_id, device_id, tokens))
    }
}

fn registration_message(request: &SharedSecretRegistration) -> Vec<u8> {
    let mut message = Vec::new();
    for (i, part) in [
        request.nonce.as_str(),
        request.username.as_str(),
        request.password.as_str(),
        if request.admin { "admin" } else { "notadmin" },
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            message.push(0);
        }
        message.extend_from_slice(part.as_bytes());
    }
    if let Some(user_type) = &request.user_type {
        message.push(0);
        message.extend_from_slice(user_type.as_bytes());
    }
    message
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
