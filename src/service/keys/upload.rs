//! `/keys/upload`: a device publishes its identity keys, one-time keys and fallback keys.
//!
//! Everything is checked before anything is written, and written in one transaction: identity
//! keys must be the caller's own device's and carry its self-signature, and once published they
//! never change (a device with new identity keys is a new device); signed one-time and fallback
//! keys must carry the device's signature; a one-time key id uploaded again must come with the
//! same key (a retried upload), and a claimed key is never put back.

use std::collections::BTreeMap;

use ruma::encryption::{DeviceKeys, OneTimeKey};
use ruma::serde::Raw;
use ruma::{CanonicalJsonObject, DeviceId, OneTimeKeyAlgorithm, OwnedOneTimeKeyId, UInt, UserId};

use super::signed::{self, canonical_object, canonical_text, keys_of, string_field, text_of};
use crate::service::{Error, Result, Services, UserSession};
use crate::storage::{self, e2e_keys};

/// What a device uploads.
#[derive(Default)]
pub struct KeysUpload {
    pub device_keys: Option<Raw<DeviceKeys>>,
    pub one_time_keys: BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    pub fallback_keys: BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
}

/// An upload that passed every check that needs no database.
#[derive(Debug)]
pub(super) struct Checked {
    /// Canonical JSON of the device keys, without `unsigned`.
    device_keys: Option<CanonicalJsonObject>,
    one_time_keys: Vec<NewKey>,
    fallback_keys: Vec<NewKey>,
}

#[derive(Debug)]
struct NewKey {
    algorithm: String,
    name: String,
    json: String,
}

/// What the write did.
pub(super) struct Written {
    /// The device-list position, when the device's identity keys were published or changed.
    pub(super) device_list_position: Option<i64>,
    counts: Vec<(String, u64)>,
    keys_changed: bool,
}

impl Services {
    /// Publishes keys of the caller's device and answers how many one-time keys it has left.
    pub async fn upload_keys(
        &self,
        session: &UserSession,
        upload: KeysUpload,
    ) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        session.require_device("uploading keys")?;
        let (user, device) = (session.user_id.to_string(), session.device_id.to_string());
        let stored = self
            .db
            .read(move |c| e2e_keys::get_device_keys(c, &user, &device))
            .await?
            .map(|json| parse_stored(&json))
            .transpose()?;
        let checked = check_upload(
            &session.user_id,
            &session.device_id,
            stored.as_ref(),
            &upload,
        )?;
        let (user, device) = (session.user_id.to_string(), session.device_id.to_string());
        let written = self
            .db
            .write("upload_keys", move |txn| {
                write_upload(txn, &user, &device, checked)
            })
            .await??;
        if let Some(position) = written.device_list_position {
            self.announce_device_list_change(&session.user_id, position)
                .await?;
        } else if written.keys_changed {
            // The device's key counts changed: its own /sync must take a full pass to tell it.
            let position = self.device_list_position().await?;
            self.notifier.user_changed(&session.user_id, position);
        }
        Ok(one_time_key_counts(&written.counts))
    }
}

/// The counts a client expects: every algorithm with keys left, and `signed_curve25519` always.
pub(crate) fn one_time_key_counts(counts: &[(String, u64)]) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    let mut answer = BTreeMap::from([(OneTimeKeyAlgorithm::SignedCurve25519, UInt::MIN)]);
    for (algorithm, count) in counts {
        answer.insert(
            OneTimeKeyAlgorithm::from(algorithm.as_str()),
            UInt::try_from(*count).unwrap_or(UInt::MAX),
        );
    }
    answer
}

fn parse_stored(json: &str) -> Result<CanonicalJsonObject> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("stored device keys: {e}")))
}

/// Checks an upload against the device's published identity keys (`stored`; `None` for a device
/// that published none, such as a dehydrated device being created).
pub(super) fn check_upload(
    user: &UserId,
    device: &DeviceId,
    stored: Option<&CanonicalJsonObject>,
    upload: &KeysUpload,
) -> Result<Checked> {
    let device_keys = upload
        .device_keys
        .as_ref()
        .map(|raw| check_device_keys(user, device, stored, raw))
        .transpose()?;
    // Signed keys are checked against the identity key being published, else the published one.
    let signing_key = device_keys
        .as_ref()
        .or(stored)
        .and_then(|keys| ed25519_of(keys, device));
    let one_time_keys = upload
        .one_time_keys
        .iter()
        .map(|(id, raw)| check_key(user, device, signing_key.as_deref(), id, raw.json()))
        .collect::<Result<Vec<_>>>()?;
    let fallback_keys = upload
        .fallback_keys
        .iter()
        .map(|(id, raw)| check_key(user, device, signing_key.as_deref(), id, raw.json()))
        .collect::<Result<Vec<_>>>()?;
    for (i, key) in fallback_keys.iter().enumerate() {
        if fallback_keys[..i]
            .iter()
            .any(|k| k.algorithm == key.algorithm)
        {
            return Err(Error::InvalidParam(format!(
                "at most one fallback key per algorithm; {} has several",
                key.algorithm
            )));
        }
    }
    Ok(Checked {
        device_keys,
        one_time_keys,
        fallback_keys,
    })
}

fn check_device_keys(
    user: &UserId,
    device: &DeviceId,
    stored: Option<&CanonicalJsonObject>,
    raw: &Raw<DeviceKeys>,
) -> Result<CanonicalJsonObject> {
    let typed: DeviceKeys = raw
        .deserialize()
        .map_err(|e| Error::BadJson(format!("invalid device_keys: {e}")))?;
    if typed.user_id != user || typed.device_id != device {
        return Err(Error::InvalidParam(format!(
            "device_keys must be those of your own device {device} of {user}, not of device {} of {}",
            typed.device_id, typed.user_id
        )));
    }
    let mut object = canonical_object(raw.json(), "device_keys")?;
    object.remove("unsigned");
    let ed25519 = ed25519_of(&object, device)
        .ok_or_else(|| Error::InvalidParam(format!("device_keys has no key ed25519:{device}")))?;
    signed::verify_signature(
        &object,
        user.as_str(),
        &format!("ed25519:{device}"),
        &ed25519,
    )
    .map_err(|bad| bad.error("device_keys", &format!("ed25519:{device}")))?;
    if let Some(stored) = stored {
        identity_unchanged(stored, &object)?;
    }
    Ok(object)
}

/// Published identity keys never change.
fn identity_unchanged(stored: &CanonicalJsonObject, new: &CanonicalJsonObject) -> Result<()> {
    if keys_of(stored) != keys_of(new) {
        return Err(Error::InvalidParam(
            "this device has published other identity keys already; they cannot change \
             (log in as a new device instead)"
                .into(),
        ));
    }
    Ok(())
}

/// The device's ed25519 public key in a device-keys object.
fn ed25519_of(object: &CanonicalJsonObject, device: &DeviceId) -> Option<String> {
    let id = format!("ed25519:{device}");
    keys_of(object)
        .into_iter()
        .find(|(key_id, _)| *key_id == id)
        .map(|(_, key)| key)
}

/// Checks one one-time or fallback key: signed algorithms (`signed_*`) need an object with a
/// `key` and the device's signature.
fn check_key(
    user: &UserId,
    device: &DeviceId,
    signing_key: Option<&str>,
    id: &OwnedOneTimeKeyId,
    raw: &serde_json::value::RawValue,
) -> Result<NewKey> {
    let algorithm = id.algorithm().as_str().to_owned();
    let json = canonical_text(raw, &format!("key {id}"))?;
    if algorithm.starts_with("signed_") {
        let object = canonical_object(raw, &format!("key {id}"))?;
        if string_field(&object, "key").is_none() {
            return Err(Error::BadJson(format!("key {id} has no key")));
        }
        let signing_key = signing_key.ok_or_else(|| {
            Error::InvalidParam(format!(
                "key {id} is signed by a device whose identity keys are not published; \
                 upload device_keys first or with it"
            ))
        })?;
        signed::verify_signature(
            &object,
            user.as_str(),
            &format!("ed25519:{device}"),
            signing_key,
        )
        .map_err(|bad| bad.error(&format!("key {id}"), &format!("ed25519:{device}")))?;
    }
    Ok(NewKey {
        algorithm,
        name: id.key_name().as_str().to_owned(),
        json,
    })
}

/// Writes a checked upload. Refusals (a changed identity, a reused key id) are found before
/// anything is written and come back as the inner error, so nothing is written. Also used by
/// `dehydrated.rs`, inside the write that creates the dehydrated device.
pub(super) fn write_upload(
    txn: &storage::Conn,
    user: &str,
    device: &str,
    checked: Checked,
) -> storage::Result<Result<Written>> {
    let mut device_list_position = None;
    let mut keys_changed = false;
    let stored = e2e_keys::get_device_keys(txn, user, device)?;
    let device_keys = match (&checked.device_keys, &stored) {
        (Some(new), Some(stored_json)) => {
            // Checked against a read before this transaction; a concurrent first upload may
            // have published other keys since.
            if let Err(refused) =
                parse_stored(stored_json).and_then(|s| identity_unchanged(&s, new))
            {
                return Ok(Err(refused));
            }
            let text = text_of(new);
            (text != *stored_json).then_some(text)
        }
        (Some(new), None) => Some(text_of(new)),
        (None, _) => None,
    };
    let mut new_one_time_keys = Vec::new();
    for key in &checked.one_time_keys {
        match e2e_keys::get_one_time_key(txn, user, device, &key.algorithm, &key.name)? {
            Some(existing) if existing == key.json => {}
            Some(_) => {
                return Ok(Err(Error::InvalidParam(format!(
                    "one-time key {}:{} was uploaded before with another value",
                    key.algorithm, key.name
                ))));
            }
            None => new_one_time_keys.push(key),
        }
    }
    if let Some(text) = device_keys {
        e2e_keys::set_device_keys_txn(txn, user, device, &text)?;
        device_list_position = Some(e2e_keys::add_device_list_change_txn(
            txn,
            user,
            Some(device),
        )?);
    }
    for key in new_one_time_keys {
        e2e_keys::insert_one_time_key_txn(txn, user, device, &key.algorithm, &key.name, &key.json)?;
        keys_changed = true;
    }
    for key in &checked.fallback_keys {
        let existing = e2e_keys::get_fallback_key(txn, user, device, &key.algorithm)?;
        // The same key again keeps whether it was used.
        if existing.is_some_and(|e| e.key_name == key.name && e.key_json == key.json) {
            continue;
        }
        e2e_keys::set_fallback_key_txn(txn, user, device, &key.algorithm, &key.name, &key.json)?;
        keys_changed = true;
    }
    let counts = e2e_keys::count_one_time_keys(txn, user, device)?;
    Ok(Ok(Written {
        device_list_position,
        counts,
        keys_changed,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, value::to_raw_value};

    use super::*;
    use crate::service::keys::signed::tests::TestKey;

    const USER: &str = "@alice:x";
    const DEVICE: &str = "PHONE";

    fn user() -> &'static UserId {
        <&UserId>::try_from(USER).unwrap()
    }

    fn device() -> &'static DeviceId {
        DEVICE.into()
    }

    fn device_keys(key: &TestKey, user: &str, device: &str) -> Raw<DeviceKeys> {
        let object = key.sign(
            json!({
                "user_id": user,
                "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": {
                    format!("curve25519:{device}"): "curvecurve",
                    format!("ed25519:{device}"): key.public,
                },
            }),
            user,
            &format!("ed25519:{device}"),
        );
        Raw::from_json(to_raw_value(&object).unwrap())
    }

    fn signed_key(key: &TestKey, value: &str) -> Raw<OneTimeKey> {
        let object = key.sign(json!({ "key": value }), USER, &format!("ed25519:{DEVICE}"));
        Raw::from_json(to_raw_value(&object).unwrap())
    }

    fn id(id: &str) -> OwnedOneTimeKeyId {
        id.try_into().unwrap()
    }

    #[test]
    fn a_self_signed_upload_of_the_own_device_passes() {
        let key = TestKey::new(7);
        let upload = KeysUpload {
            device_keys: Some(device_keys(&key, USER, DEVICE)),
            one_time_keys: BTreeMap::from([(id("signed_curve25519:AAAA"), signed_key(&key, "k1"))]),
            fallback_keys: BTreeMap::from([(id("signed_curve25519:BBBB"), signed_key(&key, "f1"))]),
        };
        let checked = check_upload(user(), device(), None, &upload).unwrap();
        assert!(checked.device_keys.is_some());
        assert_eq!(checked.one_time_keys[0].name, "AAAA");
        assert_eq!(checked.fallback_keys[0].algorithm, "signed_curve25519");
        // Later one-time keys are checked against the published identity key.
        let later = KeysUpload {
            one_time_keys: BTreeMap::from([(id("signed_curve25519:CCCC"), signed_key(&key, "k2"))]),
            ..KeysUpload::default()
        };
        check_upload(user(), device(), checked.device_keys.as_ref(), &later).unwrap();
    }

    #[test]
    fn keys_of_another_device_a_bad_signature_or_new_identity_keys_are_refused() {
        let key = TestKey::new(7);
        let other = TestKey::new(8);
        let upload = |raw| KeysUpload {
            device_keys: Some(raw),
            ..KeysUpload::default()
        };
        let refused = |upload: KeysUpload, stored: Option<&CanonicalJsonObject>| {
            check_upload(user(), device(), stored, &upload).unwrap_err()
        };
        assert!(matches!(
            refused(upload(device_keys(&key, USER, "LAPTOP")), None),
            Error::InvalidParam(_)
        ));
        assert!(matches!(
            refused(upload(device_keys(&key, "@bob:x", DEVICE)), None),
            Error::InvalidParam(_)
        ));
        let mut forged: CanonicalJsonObject =
            serde_json::from_str(device_keys(&key, USER, DEVICE).json().get()).unwrap();
        forged.insert(
            "keys".into(),
            serde_json::from_value(json!({ "ed25519:PHONE": other.public })).unwrap(),
        );
        let forged = Raw::from_json(to_raw_value(&forged).unwrap());
        assert!(matches!(
            refused(upload(forged), None),
            Error::InvalidSignature(_)
        ));
        let published = check_upload(
            user(),
            device(),
            None,
            &upload(device_keys(&key, USER, DEVICE)),
        )
        .unwrap()
        .device_keys
        .unwrap();
        assert!(matches!(
            refused(upload(device_keys(&other, USER, DEVICE)), Some(&published)),
            Error::InvalidParam(_)
        ));
        // The same identity keys again are fine.
        check_upload(
            user(),
            device(),
            Some(&published),
            &upload(device_keys(&key, USER, DEVICE)),
        )
        .unwrap();
    }

    #[test]
    fn signed_keys_need_the_devices_signature_and_one_fallback_key_per_algorithm() {
        let key = TestKey::new(7);
        let other = TestKey::new(8);
        let published = check_upload(
            user(),
            device(),
            None,
            &KeysUpload {
                device_keys: Some(device_keys(&key, USER, DEVICE)),
                ..KeysUpload::default()
            },
        )
        .unwrap()
        .device_keys;
        let with_otk = |raw| KeysUpload {
            one_time_keys: BTreeMap::from([(id("signed_curve25519:AAAA"), raw)]),
            ..KeysUpload::default()
        };
        let error = check_upload(
            user(),
            device(),
            published.as_ref(),
            &with_otk(signed_key(&other, "k")),
        )
        .unwrap_err();
        assert!(matches!(error, Error::InvalidSignature(_)), "{error}");
        let error =
            check_upload(user(), device(), None, &with_otk(signed_key(&key, "k"))).unwrap_err();
        assert!(matches!(error, Error::InvalidParam(_)), "{error}");
        let unsigned = Raw::from_json(to_raw_value(&json!({"key": "k"})).unwrap());
        assert!(check_upload(user(), device(), published.as_ref(), &with_otk(unsigned)).is_err());

        let two_fallbacks = KeysUpload {
            fallback_keys: BTreeMap::from([
                (id("signed_curve25519:F1"), signed_key(&key, "a")),
                (id("signed_curve25519:F2"), signed_key(&key, "b")),
            ]),
            ..KeysUpload::default()
        };
        let error = check_upload(user(), device(), published.as_ref(), &two_fallbacks).unwrap_err();
        assert!(matches!(error, Error::InvalidParam(_)), "{error}");
    }

    #[test]
    fn counts_always_name_signed_curve25519() {
        let counts = one_time_key_counts(&[]);
        assert_eq!(counts[&OneTimeKeyAlgorithm::SignedCurve25519], UInt::MIN);
        let counts = one_time_key_counts(&[("signed_curve25519".into(), 5)]);
        assert_eq!(
            counts[&OneTimeKeyAlgorithm::SignedCurve25519],
            UInt::from(5u32)
        );
    }
}
