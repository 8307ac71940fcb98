//! Servers that federate with each other on loopback, and the means to talk federation to them
//! directly.
//!
//! `Federation::new(["hs1.test", "hs2.test"])` reserves one loopback port per server name before
//! any server starts, and forwards it (plain TCP, so TLS passes through untouched) to that server's
//! federation listener once it is up. Every server of the federation gets a `[federation.resolve]`
//! table naming those ports, so each can reach the others although their own listeners are on
//! port 0 and their certificates self-signed (`verify_certificates = false`). A restarted server
//! is followed to its new port.
//!
//! `ServerKey` signs requests the way a homeserver does (`X-Matrix`), with a server's own key read
//! from its data directory or a key made up by the test; `verify_signature` checks signed JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::{Signer, Verifier};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::config::Toml;
use crate::server::{Server, ServerBuilder};

/// How long one federation request from a test may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The federation address of a server, shared between its forwarder and its `Server`.
#[derive(Clone, Default, Debug)]
pub(crate) struct FederationTarget(Arc<RwLock<Option<SocketAddr>>>);

impl FederationTarget {
    /// Points the forwarder at `url` (`https://ADDR`).
    pub(crate) fn set(&self, url: Option<&str>) {
        let addr = url
            .and_then(|u| u.strip_prefix("https://"))
            .and_then(|a| a.parse().ok());
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    fn get(&self) -> Option<SocketAddr> {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

struct Forwarder {
    addr: SocketAddr,
    target: FederationTarget,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// A forwarder on a fresh loopback port, pointing nowhere until its server starts.
    async fn bind() -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for federation");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let target = FederationTarget::default();
        let task = tokio::spawn(forward(listener, target.clone()));
        Forwarder { addr, target, task }
    }
}

/// A set of server names that federate with each other; see the module docs.
pub struct Federation {
    forwarders: BTreeMap<String, Forwarder>,
}

impl Federation {
    pub async fn new<const N: usize>(names: [&str; N]) -> Federation {
        let mut forwarders = BTreeMap::new();
        for name in names {
            let forwarder = Forwarder::bind().await;
            forwarders.insert(name.to_owned(), forwarder);
        }
        Federation { forwarders }
    }

    /// `count` servers each named by its own forwarder's address, `127.0.0.1:PORT`: an IP
    /// literal with a port, which any homeserver (Synapse too) connects to directly, with no
    /// resolve table or DNS. [`Federation::names`] gives the names (by port).
    pub async fn loopback(count: usize) -> Federation {
        let mut forwarders = BTreeMap::new();
        for _ in 0..count {
            let forwarder = Forwarder::bind().await;
            forwarders.insert(forwarder.addr.to_string(), forwarder);
        }
        Federation { forwarders }
    }

    /// The server names of this federation.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<(u16, String)> = self
            .forwarders
            .iter()
            .map(|(name, f)| (f.addr.port(), name.clone()))
            .collect();
        names.sort();
        names.into_iter().map(|(_, name)| name).collect()
    }

    /// The `[federation.resolve]` entries of this federation's servers (name to forwarder), to
    /// combine with others (a `FederationPeer`'s `resolve_entry`).
    pub fn resolve_entries(&self) -> Vec<(String, Toml)> {
        self.forwarders
            .iter()
            .map(|(name, f)| (name.clone(), Toml::from(f.addr.to_string())))
            .collect()
    }

    /// A builder for the server named `name`: that server name, a federation listener on port
    /// 0, certificate checks off, and every server of this federation in `[federation.resolve]`.
    pub fn server(&self, name: &str) -> ServerBuilder {
        let forwarder = self
            .forwarders
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a server of this federation"));
        let resolve = Toml::table(
            self.forwarders
                .iter()
                .map(|(name, f)| (name.clone(), Toml::from(f.addr.to_string()))),
        );
        Server::builder()
            .server_name(name)
            .config("federation.listen", vec!["127.0.0.1:0"])
            .config("federation.verify_certificates", false)
            .config("federation.resolve", resolve)
            .forward_federation(forwarder.target.clone())
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for forwarder in self.forwarders.values() {
            forwarder.task.abort();
        }
    }
}

/// Accepts connections on `listener` and splices each to the target's current address.
async fn forward(listener: TcpListener, target: FederationTarget) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let Some(addr) = target.get() else {
            // The server is not up (yet, or any more): refuse like a closed port would.
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(addr).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// An HTTPS client for federation listeners, which have self-signed certificates.
pub(crate) fn federation_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .danger_accept_invalid_certs(true)
        .build()
        .expect("building the federation HTTP client")
}

impl Server {
    /// A client of this server's federation listener (no access token; add an `X-Matrix`
    /// `Authorization` header with [`ServerKey::authorization`] for signed endpoints).
    pub fn federation_client(&self) -> Client {
        Client::new(federation_http_client(), self.federation_endpoint())
    }
}

/// A server's ed25519 signing key, to sign requests as that server would.
pub struct ServerKey {
    pub server_name: String,
    /// `ed25519:<version>`.
    pub key_id: String,
    key: ed25519_dalek::SigningKey,
}

impl ServerKey {
    /// The key `server` signs with, read from its data directory.
    pub fn of(server: &Server) -> ServerKey {
        let path = server.data_dir().join("signing.key");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [_, version, seed] = parts[..] else {
            panic!("{} is not `ed25519 <version> <seed>`", path.display());
        };
        let seed = STANDARD_NO_PAD
            .decode(seed.trim_end_matches('='))
            .expect("the seed is base64");
        let seed: [u8; 32] = seed.try_into().expect("the seed is 32 bytes");
        ServerKey {
            server_name: server.server_name().to_owned(),
            key_id: format!("ed25519:{version}"),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A key no server published, claiming to be `server_name`'s.
    pub fn made_up(server_name: &str, version: &str, seed: u8) -> ServerKey {
        ServerKey {
            server_name: server_name.to_owned(),
            key_id: format!("ed25519:{version}"),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        }
    }

    /// The public key, unpadded base64, as servers publish it.
    pub fn public_key(&self) -> String {
        STANDARD_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// The `Authorization` header for `method uri` (path and query as sent) to `destination`.
    pub fn authorization(
        &self,
        method: &str,
        uri: &str,
        destination: &str,
        content: Option<&Value>,
    ) -> String {
        let mut object = json!({
            "method": method,
            "uri": uri,
            "origin": self.server_name,
            "destination": destination,
        });
        if let Some(content) = content {
            object["content"] = content.clone();
        }
        let signature = self.key.sign(canonical_json(&object).as_bytes());
        format!(
            "X-Matrix origin=\"{}\",destination=\"{destination}\",key=\"{}\",sig=\"{}\"",
            self.server_name,
            self.key_id,
            STANDARD_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Canonical JSON: keys sorted, no insignificant whitespace (numbers and strings as serde_json
/// writes them, which is canonical for the integers and text these tests sign).
pub fn canonical_json(value: &Value) -> String {
    // serde_json's `Map` keeps keys sorted (no `preserve_order` in this workspace).
    serde_json::to_string(value).expect("JSON values serialise")
}

/// Checks the signature `signer`/`key_id` on a signed JSON object with `public_key` (unpadded
/// base64), the way the spec signs JSON: without `signatures` and `unsigned`.
pub fn verify_signature(
    object: &Value,
    signer: &str,
    key_id: &str,
    public_key: &str,
) -> Result<(), String> {
    let signature = object["signatures"][signer][key_id]
        .as_str()
        .ok_or_else(|| format!("no signature by {signer} {key_id}"))?;
    let signature = STANDARD_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    let signature = ed25519_dalek::Signature::from_slice(&signature)
        .map_err(|e| format!("not an ed25519 signature: {e}"))?;
    let key: [u8; 32] = STANDARD_NO_PAD
        .decode(public_key.trim_end_matches('='))
        .map_err(|e| format!("the key is not base64: {e}"))?
        .try_into()
        .map_err(|_| "the key is not 32 bytes".to_string())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| e.to_string())?;
    let mut unsigned = object.clone();
    if let Some(map) = unsigned.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    key.verify(canonical_json(&unsigned).as_bytes(), &signature)
        .map_err(|e| format!("the signature of {signer} {key_id} does not verify: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_object_verifies_and_a_changed_one_does_not() {
        let key = ServerKey::made_up("a.test", "1", 3);
        let mut object = json!({"b": 1, "a": "x"});
        let signature = key.key.sign(canonical_json(&object).as_bytes());
        object["signatures"] =
            json!({"a.test": {"ed25519:1": STANDARD_NO_PAD.encode(signature.to_bytes())}});
        verify_signature(&object, "a.test", "ed25519:1", &key.public_key()).unwrap();
        object["b"] = json!(2);
        assert!(verify_signature(&object, "a.test", "ed25519:1", &key.public_key()).is_err());
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": [1, {"d": 0, "c": 0}]})),
            r#"{"a":[1,{"c":0,"d":0}],"b":1}"#
        );
    }
}
