//! The server's ed25519 signing key, generated on first start and kept in the data directory in
//! the one-line format other homeservers use: `ed25519 <version> <unpadded base64 seed>`.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::SigningKey as Ed25519Key;

/// The key and its version (the part after `ed25519:` in the key id), with the key pair ruma
/// signs with, derived once: deriving it (a PKCS#8 round trip and a public-key computation) on
/// every signature was about 3% of the server's CPU when sending messages.
pub struct SigningKey {
    pub version: String,
    pub key: Ed25519Key,
    pair: ruma::signatures::Ed25519KeyPair,
}

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read or write signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key file {path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
    #[error("cannot convert the signing key for event signing: {0}")]
    Convert(String),
}

impl SigningKey {
    pub fn new(version: impl Into<String>, key: Ed25519Key) -> Result<SigningKey, SigningKeyError> {
        let version = version.into();
        Ok(SigningKey {
            pair: to_pair(&key, &version)?,
            version,
            key,
        })
    }

    /// Loads the key at `path`, generating and saving a new one if the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<SigningKey, SigningKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text).map_err(|reason| SigningKeyError::Malformed {
                path: shown,
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let version = format!("a_{}", crate::service::random_string(4));
                let key = SigningKey::new(version, Ed25519Key::from_bytes(&seed))?;
                write_new(path, &key.to_line()).map_err(|source| SigningKeyError::Io {
                    path: shown,
                    source,
                })?;
                tracing::info!(key.id = %key.key_id(), "generated a new signing key");
                Ok(key)
            }
            Err(source) => Err(SigningKeyError::Io {
                path: shown,
                source,
            }),
        }
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The public half, unpadded base64, as published in `/_matrix/key/v2/server`.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// The key in the form ruma's event and request signing takes.
    pub fn keypair(&self) -> &ruma::signatures::Ed25519KeyPair {
        &self.pair
    }

    /// Another copy of [`Self::keypair`], for a holder that needs its own (ruma's key pair is not
    /// `Clone`).
    pub fn to_keypair(&self) -> Result<ruma::signatures::Ed25519KeyPair, SigningKeyError> {
        to_pair(&self.key, &self.version)
    }

    fn to_line(&self) -> String {
        format!(
            "ed25519 {} {}\n",
            self.version,
            STANDARD_NO_PAD.encode(self.key.to_bytes())
        )
    }
}

/// The conversion goes through a PKCS#8 document because that is the one constructor ruma offers
/// for a key pair.
fn to_pair(
    key: &Ed25519Key,
    version: &str,
) -> Result<ruma::signatures::Ed25519KeyPair, SigningKeyError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    let der = key
        .to_pkcs8_der()
        .map_err(|e| SigningKeyError::Convert(e.to_string()))?;
    ruma::signatures::Ed25519KeyPair::from_der(der.as_bytes(), version.to_owned())
        .map_err(|e| SigningKeyError::Convert(e.to_string()))
}

fn parse(text: &str) -> Result<SigningKey, String> {
    let mut parts = text.split_whitespace();
    let (Some("ed25519"), Some(version), Some(seed), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected one line: ed25519 <version> <base64 seed>".into());
    };
    let seed = STANDARD_NO_PAD
        .decode(seed.trim_end_matches('='))
        .map_err(|e| format!("seed is not base64: {e}"))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| "seed must be 32 bytes".to_string())?;
    SigningKey::new(version, Ed25519Key::from_bytes(&seed)).map_err(|e| e.to_string())
}

/// Writes a new file readable only by its owner; never overwrites an existing one.
fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_reloaded_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let second = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        assert!(first.key_id().starts_with("ed25519:a_"));
    }

    #[test]
    fn the_keypair_signs_what_the_public_key_verifies() {
        use ruma::CanonicalJsonObject;
        use ruma::serde::Base64;
        use ruma::signatures::{PublicKeyMap, sign_json, verify_json};

        let key = SigningKey::new("a_test", Ed25519Key::from_bytes(&[7u8; 32])).unwrap();
        let keypair = key.keypair();
        assert_eq!(keypair.version(), "a_test");

        let mut object: CanonicalJsonObject =
            serde_json::from_str(r#"{"hello": "world", "n": 1}"#).unwrap();
        sign_json("example.org", keypair, &mut object).unwrap();

        let public = Base64::parse(key.public_key_base64()).unwrap();
        let mut keys = PublicKeyMap::new();
        keys.insert(
            "example.org".into(),
            [(key.key_id(), public)].into_iter().collect(),
        );
        verify_json(&keys, &object).unwrap();
    }

    #[test]
    fn a_malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "rsa nope").unwrap();
        let err = SigningKey::load_or_generate(&path)
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("malformed"), "{err}");
    }
}
