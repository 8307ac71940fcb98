//! Signed key objects as pure values: parsing uploaded JSON into canonical form, comparing the
//! signed part of two objects, reading and checking ed25519 signatures (ruma's signature
//! verification over the canonical JSON without `signatures` and `unsigned`). No IO.

use ruma::serde::Base64;
use ruma::signatures::{
    SigningKeyAlgorithm, to_canonical_json_string_for_signing, verify_canonical_json_bytes,
};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::value::RawValue as RawJsonValue;

use crate::service::{Error, Result};

/// A JSON object as canonical JSON, so that equal objects have equal text.
pub fn canonical_object(raw: &RawJsonValue, what: &str) -> Result<CanonicalJsonObject> {
    serde_json::from_str::<CanonicalJsonObject>(raw.get())
        .map_err(|e| Error::BadJson(format!("{what} is not a valid JSON object: {e}")))
}

/// Any JSON value as canonical JSON text (a one-time key may be a plain string).
pub fn canonical_text(raw: &RawJsonValue, what: &str) -> Result<String> {
    let value = serde_json::from_str::<CanonicalJsonValue>(raw.get())
        .map_err(|e| Error::BadJson(format!("{what} is not valid canonical JSON: {e}")))?;
    Ok(value.to_string())
}

/// The canonical JSON text of an object.
pub fn text_of(object: &CanonicalJsonObject) -> String {
    CanonicalJsonValue::Object(object.clone()).to_string()
}

/// The text a signature covers: the canonical JSON without `signatures` and `unsigned`.
pub fn signed_text(object: &CanonicalJsonObject) -> Result<String> {
    to_canonical_json_string_for_signing(object)
        .map_err(|e| Error::BadJson(format!("cannot canonicalise a signed object: {e}")))
}

/// Whether two objects are the same key, whatever signatures each carries.
pub fn same_signed_content(a: &CanonicalJsonObject, b: &CanonicalJsonObject) -> Result<bool> {
    Ok(signed_text(a)? == signed_text(b)?)
}

/// The signatures an object carries by `signer` (user id), as (key id, signature) pairs.
pub fn signatures_by(object: &CanonicalJsonObject, signer: &str) -> Vec<(String, String)> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_signer)) = signatures.get(signer) else {
        return Vec::new();
    };
    by_signer
        .iter()
        .filter_map(|(key_id, signature)| match signature {
            CanonicalJsonValue::String(s) => Some((key_id.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// Why a signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadSignature {
    /// The object carries no signature by that key.
    Missing,
    /// The signature (or the public key) is malformed or does not verify.
    Invalid,
}

impl BadSignature {
    /// The service error for a refused upload naming `what` was signed by `by`.
    pub fn error(&self, what: &str, by: &str) -> Error {
        match self {
            BadSignature::Missing => {
                Error::InvalidSignature(format!("{what} carries no signature by {by}"))
            }
            BadSignature::Invalid => {
                Error::InvalidSignature(format!("{what} has an invalid signature by {by}"))
            }
        }
    }
}

/// Checks the ed25519 signature of `signer`'s key `key_id` (`ed25519:<name>`) on `object`
/// against `public_key` (unpadded base64).
pub fn verify_signature(
    object: &CanonicalJsonObject,
    signer: &str,
    key_id: &str,
    public_key: &str,
) -> std::result::Result<(), BadSignature> {
    let signature = signatures_by(object, signer)
        .into_iter()
        .find(|(id, _)| id == key_id)
        .map(|(_, signature)| signature)
        .ok_or(BadSignature::Missing)?;
    verify_signature_value(object, &signature, public_key)
}

/// Checks one given ed25519 signature on `object` against `public_key`.
pub fn verify_signature_value(
    object: &CanonicalJsonObject,
    signature: &str,
    public_key: &str,
) -> std::result::Result<(), BadSignature> {
    let public_key = Base64::<ruma::serde::base64::Standard>::parse(public_key)
        .map_err(|_| BadSignature::Invalid)?;
    let signature = Base64::<ruma::serde::base64::Standard>::parse(signature)
        .map_err(|_| BadSignature::Invalid)?;
    let text = to_canonical_json_string_for_signing(object).map_err(|_| BadSignature::Invalid)?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        text.as_bytes(),
    )
    .map_err(|_| BadSignature::Invalid)
}

/// The string field `name` of an object.
pub fn string_field<'a>(object: &'a CanonicalJsonObject, name: &str) -> Option<&'a str> {
    match object.get(name) {
        Some(CanonicalJsonValue::String(s)) => Some(s),
        _ => None,
    }
}

/// The `keys` of a key object, as (key id, public key) pairs of strings.
pub fn keys_of(object: &CanonicalJsonObject) -> Vec<(String, String)> {
    let Some(CanonicalJsonValue::Object(keys)) = object.get("keys") else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|(id, key)| match key {
            CanonicalJsonValue::String(k) => Some((id.clone(), k.clone())),
            _ => None,
        })
        .collect()
}

/// Adds a signature to an object's `signatures`.
pub fn add_signature(
    object: &mut CanonicalJsonObject,
    signer: &str,
    key_id: &str,
    signature: &str,
) {
    let signatures = object
        .entry("signatures".to_owned())
        .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()));
    if !matches!(signatures, CanonicalJsonValue::Object(_)) {
        *signatures = CanonicalJsonValue::Object(CanonicalJsonObject::new());
    }
    if let CanonicalJsonValue::Object(signatures) = signatures {
        let by_signer = signatures
            .entry(signer.to_owned())
            .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()));
        if !matches!(by_signer, CanonicalJsonValue::Object(_)) {
            *by_signer = CanonicalJsonValue::Object(CanonicalJsonObject::new());
        }
        if let CanonicalJsonValue::Object(by_signer) = by_signer {
            by_signer.insert(
                key_id.to_owned(),
                CanonicalJsonValue::String(signature.to_owned()),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use ruma::serde::base64::Standard;
    use serde_json::json;

    use super::*;

    /// A test key pair with its unpadded base64 public key.
    pub(crate) struct TestKey {
        key: SigningKey,
        pub public: String,
    }

    impl TestKey {
        pub(crate) fn new(seed: u8) -> TestKey {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let public = Base64::<Standard>::new(key.verifying_key().to_bytes().to_vec()).encode();
            TestKey { key, public }
        }

        /// `value` signed by `signer`'s key `key_id`.
        pub(crate) fn sign(
            &self,
            value: serde_json::Value,
            signer: &str,
            key_id: &str,
        ) -> CanonicalJsonObject {
            let mut object: CanonicalJsonObject = serde_json::from_value(value).unwrap();
            let text = to_canonical_json_string_for_signing(&object).unwrap();
            let signature =
                Base64::<Standard>::new(self.key.sign(text.as_bytes()).to_bytes().to_vec())
                    .encode();
            add_signature(&mut object, signer, key_id, &signature);
            object
        }
    }

    #[test]
    fn a_signature_verifies_only_over_the_same_content_and_key() {
        let key = TestKey::new(1);
        let other = TestKey::new(2);
        let signed = key.sign(
            json!({"key": "abc", "unsigned": {"x": 1}}),
            "@a:x",
            "ed25519:D",
        );
        assert_eq!(
            verify_signature(&signed, "@a:x", "ed25519:D", &key.public),
            Ok(())
        );
        assert_eq!(
            verify_signature(&signed, "@a:x", "ed25519:D", &other.public),
            Err(BadSignature::Invalid)
        );
        assert_eq!(
            verify_signature(&signed, "@a:x", "ed25519:E", &key.public),
            Err(BadSignature::Missing)
        );
        let mut changed = signed.clone();
        changed.insert("key".into(), CanonicalJsonValue::String("abd".into()));
        assert_eq!(
            verify_signature(&changed, "@a:x", "ed25519:D", &key.public),
            Err(BadSignature::Invalid)
        );
        // `unsigned` and other signatures are outside what is signed.
        let mut resigned = other.sign(serde_json::to_value(&signed).unwrap(), "@b:x", "ed25519:O");
        resigned.insert(
            "unsigned".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        assert_eq!(
            verify_signature(&resigned, "@a:x", "ed25519:D", &key.public),
            Ok(())
        );
        assert!(same_signed_content(&signed, &resigned).unwrap());
        assert!(!same_signed_content(&signed, &changed).unwrap());
        assert_eq!(signatures_by(&resigned, "@b:x").len(), 1);
    }

    #[test]
    fn malformed_keys_and_signatures_are_invalid_not_errors() {
        let key = TestKey::new(3);
        let mut signed = key.sign(json!({"key": "abc"}), "@a:x", "ed25519:D");
        assert_eq!(
            verify_signature(&signed, "@a:x", "ed25519:D", "not base64!"),
            Err(BadSignature::Invalid)
        );
        add_signature(&mut signed, "@a:x", "ed25519:D", "%%%");
        assert_eq!(
            verify_signature(&signed, "@a:x", "ed25519:D", &key.public),
            Err(BadSignature::Invalid)
        );
    }
}
