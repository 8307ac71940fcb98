//! TLS for federation, always with rustls' `ring` provider: the server side (the certificate on
//! the federation listeners, loaded from `tls_certificate`/`tls_private_key` or generated
//! self-signed for the server name and kept under `data_dir`) and the client side (the public web
//! roots plus `trusted_ca`, or no verification at all when `verify_certificates = false`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName as TlsServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::FederationConfig;

/// File names of the generated self-signed pair inside `data_dir`.
const GENERATED_CERTIFICATE: &str = "federation-tls.crt";
const GENERATED_PRIVATE_KEY: &str = "federation-tls.key";

/// A TLS setting that cannot be used; the message names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl From<String> for TlsError {
    fn from(message: String) -> Self {
        TlsError(message)
    }
}

/// The one crypto provider of federation TLS.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The configuration of the federation listeners. Without a configured certificate, a
/// self-signed one for the server's hostname is generated on first use and reused afterwards.
pub fn server_config(
    config: &FederationConfig,
    server_name: &ruma::ServerName,
    data_dir: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (&config.tls_certificate, &config.tls_private_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => generated_pair(server_name, data_dir)?,
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificates from {}: {e}",
                cert_path.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e}",
            key_path.display()
        ))
    })?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError(format!(
                "{} and {} do not make a usable certificate: {e}",
                cert_path.display(),
                key_path.display()
            ))
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The paths of the generated pair, generating it when missing.
fn generated_pair(
    server_name: &ruma::ServerName,
    data_dir: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = data_dir.join(GENERATED_CERTIFICATE);
    let key_path = data_dir.join(GENERATED_PRIVATE_KEY);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let host = server_name
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()])
        .map_err(|e| TlsError(format!("cannot generate a certificate for {host}: {e}")))?;
    write_private(&key_path, &generated.signing_key.serialize_pem())
        .map_err(|e| TlsError(format!("cannot write {}: {e}", key_path.display())))?;
    std::fs::write(&cert_path, generated.cert.pem())
        .map_err(|e| TlsError(format!("cannot write {}: {e}", cert_path.display())))?;
    tracing::info!(server.name = %server_name, path = %cert_path.display(),
        "generated a self-signed federation certificate");
    Ok((cert_path, key_path))
}

/// Writes a file readable only by its owner, replacing a partial one from an interrupted start.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// The configuration of outgoing federation connections.
pub fn client_config(config: &FederationConfig) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up failed: {e}")))?;
    let mut client = if config.verify_certificates {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &config.trusted_ca {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError(format!("federation.trusted_ca {}: {e}", path.display())))?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError(format!(
                    "federation.trusted_ca {}: no usable CA certificate ({ignored} ignored)",
                    path.display()
                )));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let algorithms = provider().signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(algorithms)))
            .with_no_client_auth()
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(client)
}

/// Accepts any certificate (`verify_certificates = false`), while still checking that the peer
/// holds the key of the certificate it presented.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &TlsServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let name: &ruma::ServerName = "hs1.test".try_into().unwrap();
        let config = FederationConfig::default();
        server_config(&config, name, dir.path()).unwrap();
        let first = std::fs::read(dir.path().join(GENERATED_CERTIFICATE)).unwrap();
        server_config(&config, name, dir.path()).unwrap();
        let second = std::fs::read(dir.path().join(GENERATED_CERTIFICATE)).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_configured_pair_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["hs1.test".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let config = FederationConfig {
            tls_certificate: Some(cert),
            tls_private_key: Some(key),
            ..FederationConfig::default()
        };
        let name: &ruma::ServerName = "hs1.test".try_into().unwrap();
        server_config(&config, name, dir.path()).unwrap();
        assert!(!dir.path().join(GENERATED_CERTIFICATE).exists());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let name: &ruma::ServerName = "hs1.test".try_into().unwrap();
        let missing = dir.path().join("missing.pem");
        let config = FederationConfig {
            tls_certificate: Some(missing.clone()),
            tls_private_key: Some(missing.clone()),
            ..FederationConfig::default()
        };
        let err = server_config(&config, name, dir.path()).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let config = FederationConfig {
            trusted_ca: Some(missing),
            ..FederationConfig::default()
        };
        let err = client_config(&config).unwrap_err();
        assert!(err.to_string().contains("trusted_ca"), "{err}");
        let unverified = FederationConfig {
            verify_certificates: false,
            ..FederationConfig::default()
        };
        client_config(&unverified).unwrap();
    }
}
