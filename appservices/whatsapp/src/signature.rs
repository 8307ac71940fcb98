//! Meta's webhook signature (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body keyed
//! with the app secret>`), made by the simulator and checked by the bridge, and the constant-time
//! comparison both use for secrets.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `sha256=<hex HMAC-SHA256 of body keyed with the app secret>`, the `X-Hub-Signature-256` value.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(app_secret, body)))
}

/// HMAC-SHA256 of `message` keyed with `key` (also what the simulator's media URLs are signed with).
pub fn hmac(key: &str, message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `header` is a valid signature of `body`, compared in constant time.
pub fn verify(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Whether two secrets are equal, compared in time that depends only on their length.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex_of_the_raw_body() {
        // RFC 4231 test case 2.
        let signature = sign("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify("Jefe", b"what do ya want for nothing?", &signature));
        assert!(!verify("Jefe", b"what do ya want for nothing!", &signature));
        assert!(!verify(
            "other",
            b"what do ya want for nothing?",
            &signature
        ));
        assert!(!verify("Jefe", b"what do ya want for nothing?", "5bdcc146"));
    }

    #[test]
    fn signatures_are_checked_on_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = sign("s3cret", body);
        assert!(verify("s3cret", body, &good));
        assert!(!verify("other", body, &good));
        assert!(!verify("s3cret", b"{ \"object\":1}", &good));
        assert!(!verify("s3cret", body, ""));
        assert!(!verify("s3cret", body, "sha256=zz"));
        assert!(!verify("s3cret", body, good.trim_start_matches("sha256=")));
    }
}
