//! Synapse-compatible shared-secret registration (`/_synapse/admin/v1/register`), the way tests
//! get an admin account.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::reply::Reply;
use crate::server::Server;
use crate::user::User;

const REGISTER_PATH: &str = "/_synapse/admin/v1/register";

/// The `mac` field: hex HMAC-SHA1 keyed with the shared secret over
/// `nonce \0 username \0 password \0 admin|notadmin`.
pub fn registration_mac(
    secret: &str,
    nonce: &str,
    username: &str,
    password: &str,
    admin: bool,
) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    let role = if admin { "admin" } else { "notadmin" };
    for (i, part) in [nonce, username, password, role].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

impl Server {
    /// Fetches a fresh nonce from `GET /_synapse/admin/v1/register`.
    pub async fn registration_nonce(&self) -> String {
        let reply = self.client().get(REGISTER_PATH).await;
        reply.ok()["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("no nonce in\n{reply}"))
            .to_owned()
    }

    /// The body of a shared-secret registration signed with this server's secret.
    pub fn shared_secret_body(
        &self,
        nonce: &str,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Value {
        json!({
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": registration_mac(self.shared_secret(), nonce, username, password, admin),
        })
    }

    /// Registers through the shared secret with a fresh nonce and a correct mac.
    pub async fn register_with_shared_secret(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Reply {
        let nonce = self.registration_nonce().await;
        let body = self.shared_secret_body(&nonce, username, password, admin);
        self.client().post(REGISTER_PATH, body).await
    }

    /// Registers a server admin through the shared secret.
    pub async fn register_admin(&self, localpart: &str) -> User {
        let password = Server::default_password(localpart);
        let reply = self
            .register_with_shared_secret(localpart, &password, true)
            .await;
        User::from_session(&self.client(), &password, &reply.ok())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mac_matches_an_independent_hmac_sha1() {
        // Computed with Python's hmac module over b"abc\0bob\0pw\0notadmin".
        assert_eq!(
            super::registration_mac("complement-shared-secret", "abc", "bob", "pw", false),
            "ddd495b35104cc1c4f3c5676ff3be9a4cb7e5171"
        );
    }
}
