//! Cross-signing: `/keys/device_signing/upload` (a user's master, self-signing and user-signing
//! keys, behind user-interactive auth except for the first upload and for an upload of the keys
//! already stored) and `/keys/signatures/upload` (the self-signing key signing the user's devices,
//! devices signing their user's master key, the user-signing key signing other users' master
//! keys). Every signature is verified before it is stored. A stored signature is a change of
//! the signed user's device list, so everyone sharing a room with them (the signer included)
//! fetches the keys again.

use std::collections::BTreeMap;

use ruma::api::client::keys::upload_signatures::v3::SignedKeys;
use ruma::api::client::uiaa::AuthData;
use ruma::encryption::CrossSigningKey;
use ruma::serde::Raw;
use ruma::{CanonicalJsonObject, OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

use super::signed::{self, canonical_object, keys_of, same_signed_content, signatures_by, text_of};
use crate::service::accounts::password_flows;
use crate::service::{Error, Result, Services, UserSession};
use crate::storage::{self, e2e_keys};

/// The cross-signing keys a user uploads.
#[derive(Default)]
pub struct SigningKeysUpload {
    pub master_key: Option<Raw<CrossSigningKey>>,
    pub self_signing_key: Option<Raw<CrossSigningKey>>,
    pub user_signing_key: Option<Raw<CrossSigningKey>>,
}

/// A checked cross-signing key.
#[derive(Debug, Clone)]
struct CrossKey {
    key_type: &'static str,
    public_key: String,
    object: CanonicalJsonObject,
}

const MASTER: &str = "master";
const SELF_SIGNING: &str = "self_signing";
const USER_SIGNING: &str = "user_signing";

impl Services {
    /// Sets the caller's cross-signing keys.
    pub async fn upload_signing_keys(
        &self,
        session: &UserSession,
        upload: SigningKeysUpload,
        auth: Option<AuthData>,
    ) -> Result<()> {
        let user = &session.user_id;
        let owner = user.clone();
        let (stored, devices) = self
            .db
            .read(move |c| {
                Ok((
                    e2e_keys::cross_signing_keys(c, owner.as_str())?,
                    storage::tokens::list_devices(c, &owner)?,
                ))
            })
            .await?;
        let stored: BTreeMap<String, (String, String)> = stored
            .into_iter()
            .map(|row| (row.key_type, (row.public_key, row.key_json)))
            .collect();
        let keys = check_signing_keys(user, &upload, stored.get(MASTER).map(|(p, _)| p.as_str()))?;
        for key in &keys {
            if devices
                .iter()
                .any(|d| d.device_id.as_str() == key.public_key)
            {
                return Err(Error::Forbidden(
                    "a cross-signing public key may not be one of your device ids".into(),
                ));
            }
        }
        let unchanged = keys.iter().all(|key| {
            stored
                .get(key.key_type)
                .is_some_and(|(_, json)| *json == text_of(&key.object))
        });
        if unchanged {
            return Ok(());
        }
        // The first upload needs no confirmation; replacing keys does.
        let stored_master = stored.get(MASTER).map(|(_, json)| json.clone());
        let uiaa = match stored_master {
            None => None,
            Some(_) => Some(
                self.uiaa("upload_signing_keys", Some(user), password_flows(), auth)
                    .await?,
            ),
        };
        let owner = user.to_string();
        let position = self
            .db
            .write("upload_signing_keys", move |txn| {
                let now = e2e_keys::cross_signing_keys(txn, &owner)?
                    .into_iter()
                    .find(|row| row.key_type == MASTER)
                    .map(|row| row.key_json);
                if now != stored_master {
                    return Ok(Err(Error::Forbidden(
                        "your cross-signing keys changed meanwhile; try again".into(),
                    )));
                }
                for key in &keys {
                    if let Some((old, _)) = stored.get(key.key_type)
                        && *old != key.public_key
                    {
                        e2e_keys::delete_signatures_on_txn(txn, &owner, old)?;
                    }
                    e2e_keys::set_cross_signing_key_txn(
                        txn,
                        &owner,
                        key.key_type,
                        &key.public_key,
                        &text_of(&key.object),
                    )?;
                }
                Ok(Ok(e2e_keys::add_device_list_change_txn(txn, &owner, None)?))
            })
            .await??;
        if let Some(uiaa) = uiaa {
            self.finish_uiaa(uiaa.session_id).await?;
        }
        self.announce_device_list_change(user, position).await
    }

    /// Stores the signatures the caller uploads, each verified; answers the failures per user
    /// and key id.
    pub async fn upload_signatures(
        &self,
        signer: &UserId,
        signed_keys: BTreeMap<OwnedUserId, SignedKeys>,
    ) -> Result<BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>>> {
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, JsonValue>> = BTreeMap::new();
        let mut accepted: Vec<NewSignature> = Vec::new();
        let local: Vec<String> = signed_keys
            .keys()
            .filter(|user| user.server_name() == self.server_name())
            .map(|user| user.to_string())
            .chain([signer.to_string()])
            .collect();
        let known = self
            .db
            .read(move |c| {
                let mut known = BTreeMap::new();
                for user in local {
                    let devices = e2e_keys::device_keys_of_user(c, &user)?;
                    let cross = e2e_keys::cross_signing_keys(c, &user)?;
                    known.insert(user, (devices, cross));
                }
                Ok(known)
            })
            .await?;
        // Other servers' users can only have their master key signed (by the signer's
        // user-signing key): it is asked of their server, and the signature kept here.
        let remote: BTreeMap<OwnedUserId, Vec<ruma::OwnedDeviceId>> = signed_keys
            .keys()
            .filter(|user| user.server_name() != self.server_name())
            .map(|user| (user.clone(), Vec::new()))
            .collect();
        let mut remote_masters: BTreeMap<OwnedUserId, (String, String)> = BTreeMap::new();
        if !remote.is_empty() {
            let mut answer = super::KeysQueryAnswer::default();
            self.query_remote_keys(remote, super::federation::remote_timeout(None), &mut answer)
                .await;
            for (user, raw) in answer.master_keys {
                if let Ok(object) = canonical_object(raw.json(), "a master key")
                    && let [(_, public)] = &keys_of(&object)[..]
                {
                    let json = serde_json::to_string(&object)
                        .map_err(|e| Error::Internal(format!("a master key: {e}")))?;
                    remote_masters.insert(user, (public.clone(), json));
                }
            }
        }
        let signer_keys = known.get(signer.as_str());
        let signer_cross = |key_type: &str| {
            signer_keys
                .and_then(|(_, cross)| cross.iter().find(|k| k.key_type == key_type))
                .map(|k| k.public_key.clone())
        };
        for (target, keys) in &signed_keys {
            for (key_id, raw) in keys.iter() {
                let target_keys = match known.get(target.as_str()) {
                    Some((devices, cross)) => Some((
                        devices.as_slice(),
                        cross
                            .iter()
                            .find(|k| k.key_type == MASTER)
                            .map(|k| (&k.public_key, &k.key_json)),
                    )),
                    None => remote_masters
                        .get(target)
                        .map(|(public, json)| (&[][..], Some((public, json)))),
                };
                let outcome = match target_keys {
                    None => Err(failure(
                        "M_NOT_FOUND",
                        "the keys of this user could not be had from their server",
                    )),
                    Some((devices, target_master)) => canonical_object(raw, "a signed key")
                        .map_err(|e| failure("M_BAD_JSON", &e.to_string()))
                        .and_then(|object| {
                            check_signature_upload(SignatureUpload {
                                signer,
                                target,
                                key_id,
                                object: &object,
                                target_devices: devices,
                                target_master,
                                signer_self_signing: signer_cross(SELF_SIGNING).as_deref(),
                                signer_user_signing: signer_cross(USER_SIGNING).as_deref(),
                            })
                        }),
                };
                match outcome {
                    Ok(mut new) => accepted.append(&mut new),
                    Err(error) => {
                        failures
                            .entry(target.clone())
                            .or_default()
                            .insert(key_id.to_owned(), error);
                    }
                }
            }
        }
        if accepted.is_empty() {
            return Ok(failures);
        }
        let changes = self
            .db
            .write("upload_signatures", move |txn| {
                let mut changes: BTreeMap<String, i64> = BTreeMap::new();
                for s in &accepted {
                    e2e_keys::set_signature_txn(
                        txn,
                        &s.target_user,
                        &s.target_key,
                        &s.signer_user,
                        &s.signer_key,
                        &s.signature,
                    )?;
                    let device = s.target_is_device.then_some(s.target_key.as_str());
                    let position =
                        e2e_keys::add_device_list_change_txn(txn, &s.target_user, device)?;
                    changes.insert(s.target_user.clone(), position);
                }
                Ok(changes)
            })
            .await?;
        for (user, position) in changes {
            if let Ok(user) = OwnedUserId::try_from(user) {
                self.announce_device_list_change(&user, position).await?;
            }
        }
        Ok(failures)
    }
}

/// A verified signature to store.
#[derive(Debug, Clone, PartialEq)]
struct NewSignature {
    target_user: String,
    target_key: String,
    target_is_device: bool,
    signer_user: String,
    signer_key: String,
    signature: String,
}

/// One signed object of `/keys/signatures/upload`, with what is known of the keys involved.
struct SignatureUpload<'a> {
    signer: &'a UserId,
    target: &'a UserId,
    key_id: &'a str,
    object: &'a CanonicalJsonObject,
    target_devices: &'a [e2e_keys::DeviceKeysRow],
    /// The target's master key: public key and stored JSON.
    target_master: Option<(&'a String, &'a String)>,
    signer_self_signing: Option<&'a str>,
    signer_user_signing: Option<&'a str>,
}

/// The signatures of one signed object that may be stored, or the failure to report for it.
fn check_signature_upload(
    upload: SignatureUpload<'_>,
) -> std::result::Result<Vec<NewSignature>, JsonValue> {
    let SignatureUpload {
        signer,
        target,
        key_id,
        object,
        ..
    } = upload;
    let stored_master = upload
        .target_master
        .filter(|(public, _)| public.as_str() == key_id);
    let stored_device = upload.target_devices.iter().find(|d| d.device_id == key_id);
    // Which stored object is signed, and by which of the signer's keys it may be.
    let (stored_json, target_is_device, allowed): (&str, bool, Vec<(String, String)>) =
        match (signer == target, stored_master, stored_device) {
            (true, None, Some(device)) => {
                let ssk = upload.signer_self_signing.ok_or_else(|| {
                    failure("M_INVALID_SIGNATURE", "you have no self-signing key")
                })?;
                (
                    &device.key_json,
                    true,
                    vec![(format!("ed25519:{ssk}"), ssk.to_owned())],
                )
            }
            (true, Some((_, master)), _) => {
                // Devices of the user sign their master key, each with its own ed25519 key.
                let allowed = upload
                    .target_devices
                    .iter()
                    .filter_map(|d| {
                        let keys = serde_json::from_str::<CanonicalJsonObject>(&d.key_json).ok()?;
                        let id = format!("ed25519:{}", d.device_id);
                        keys_of(&keys).into_iter().find(|(k, _)| *k == id)
                    })
                    .collect();
                (master.as_str(), false, allowed)
            }
            (false, Some((_, master)), _) => {
                let usk = upload.signer_user_signing.ok_or_else(|| {
                    failure("M_INVALID_SIGNATURE", "you have no user-signing key")
                })?;
                (
                    master.as_str(),
                    false,
                    vec![(format!("ed25519:{usk}"), usk.to_owned())],
                )
            }
            _ => return Err(failure("M_NOT_FOUND", "no such key")),
        };
    let stored: CanonicalJsonObject = serde_json::from_str(stored_json)
        .map_err(|_| failure("M_UNKNOWN", "the stored key cannot be read"))?;
    if !same_signed_content(&stored, object).unwrap_or(false) {
        return Err(failure(
            "M_INVALID_PARAM",
            "the signed object is not the key stored under that id",
        ));
    }
    let already = signatures_by(&stored, signer.as_str());
    let mut accepted = Vec::new();
    for (signer_key, signature) in signatures_by(object, signer.as_str()) {
        if already.contains(&(signer_key.clone(), signature.clone())) {
            continue;
        }
        // Signatures by other keys (the device's own, one by a replaced key the client saw in
        // `/keys/query`) are not what this upload adds.
        let Some((_, public)) = allowed.iter().find(|(id, _)| *id == signer_key) else {
            continue;
        };
        signed::verify_signature_value(object, &signature, public).map_err(|_| {
            failure(
                "M_INVALID_SIGNATURE",
                &format!("the signature by {signer_key} is invalid"),
            )
        })?;
        accepted.push(NewSignature {
            target_user: target.to_string(),
            target_key: key_id.to_owned(),
            target_is_device,
            signer_user: signer.to_string(),
            signer_key,
            signature,
        });
    }
    if accepted.is_empty() {
        return Err(failure(
            "M_INVALID_SIGNATURE",
            "no new signature of yours on this key",
        ));
    }
    Ok(accepted)
}

fn failure(errcode: &str, error: &str) -> JsonValue {
    json!({ "errcode": errcode, "error": error })
}

/// Checks the uploaded cross-signing keys: each of the caller, for its use, with one ed25519 key
/// named by its public key; the self-signing and user-signing keys signed by the master key (the
/// uploaded one, else `stored_master`).
fn check_signing_keys(
    user: &UserId,
    upload: &SigningKeysUpload,
    stored_master: Option<&str>,
) -> Result<Vec<CrossKey>> {
    let master = upload
        .master_key
        .as_ref()
        .map(|raw| check_cross_key(user, raw, MASTER))
        .transpose()?;
    let master_public = master
        .as_ref()
        .map(|m| m.public_key.clone())
        .or(stored_master.map(str::to_owned));
    let mut keys: Vec<CrossKey> = master.into_iter().collect();
    for (raw, key_type) in [
        (&upload.self_signing_key, SELF_SIGNING),
        (&upload.user_signing_key, USER_SIGNING),
    ] {
        let Some(raw) = raw else { continue };
        let key = check_cross_key(user, raw, key_type)?;
        let master_public = master_public
            .as_deref()
            .ok_or_else(|| Error::MissingParam("no master key is available".into()))?;
        let master_id = format!("ed25519:{master_public}");
        signed::verify_signature(&key.object, user.as_str(), &master_id, master_public)
            .map_err(|bad| bad.error(&format!("the {key_type} key"), "the master key"))?;
        keys.push(key);
    }
    if keys.is_empty() && master_public.is_none() {
        return Err(Error::MissingParam("no master key is available".into()));
    }
    Ok(keys)
}

fn check_cross_key(
    user: &UserId,
    raw: &Raw<CrossSigningKey>,
    key_type: &'static str,
) -> Result<CrossKey> {
    let typed: CrossSigningKey = raw
        .deserialize()
        .map_err(|e| Error::BadJson(format!("invalid {key_type} key: {e}")))?;
    if typed.user_id != user {
        return Err(Error::InvalidParam(format!(
            "the {key_type} key must be yours, not {}'s",
            typed.user_id
        )));
    }
    if !typed.usage.iter().any(|u| u.as_str() == key_type) {
        return Err(Error::InvalidParam(format!(
            "the {key_type} key must name {key_type} in its usage"
        )));
    }
    let object = canonical_object(raw.json(), &format!("the {key_type} key"))?;
    let keys = keys_of(&object);
    let [(id, public)] = keys.as_slice() else {
        return Err(Error::InvalidParam(format!(
            "the {key_type} key must have exactly one key"
        )));
    };
    if *id != format!("ed25519:{public}") {
        return Err(Error::InvalidParam(format!(
            "the {key_type} key's id must be ed25519:<its public key>"
        )));
    }
    Ok(CrossKey {
        key_type,
        public_key: public.clone(),
        object,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::value::to_raw_value;

    use super::*;
    use crate::service::keys::signed::tests::TestKey;

    const ALICE: &str = "@alice:x";

    fn alice() -> &'static UserId {
        <&UserId>::try_from(ALICE).unwrap()
    }

    fn cross_key(key: &TestKey, usage: &str, signed_by: Option<&TestKey>) -> Raw<CrossSigningKey> {
        let value = json!({
            "user_id": ALICE,
            "usage": [usage],
            "keys": { format!("ed25519:{}", key.public): key.public },
        });
        let object = match signed_by {
            Some(master) => master.sign(value, ALICE, &format!("ed25519:{}", master.public)),
            None => serde_json::from_value(value).unwrap(),
        };
        Raw::from_json(to_raw_value(&object).unwrap())
    }

    #[test]
    fn keys_must_be_signed_by_the_master_key_in_the_upload_or_stored() {
        let (master, ssk, usk, other) = (
            TestKey::new(1),
            TestKey::new(2),
            TestKey::new(3),
            TestKey::new(4),
        );
        let upload = SigningKeysUpload {
            master_key: Some(cross_key(&master, "master", None)),
            self_signing_key: Some(cross_key(&ssk, "self_signing", Some(&master))),
            user_signing_key: Some(cross_key(&usk, "user_signing", Some(&master))),
        };
        let keys = check_signing_keys(alice(), &upload, None).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[1].public_key, ssk.public);

        let only_ssk = SigningKeysUpload {
            self_signing_key: Some(cross_key(&ssk, "self_signing", Some(&master))),
            ..SigningKeysUpload::default()
        };
        assert!(check_signing_keys(alice(), &only_ssk, Some(&master.public)).is_ok());
        assert!(matches!(
            check_signing_keys(alice(), &only_ssk, None),
            Err(Error::MissingParam(_))
        ));
        assert!(matches!(
            check_signing_keys(alice(), &only_ssk, Some(&other.public)),
            Err(Error::InvalidSignature(_))
        ));
        let forged = SigningKeysUpload {
            master_key: Some(cross_key(&master, "master", None)),
            self_signing_key: Some(cross_key(&ssk, "self_signing", Some(&other))),
            ..SigningKeysUpload::default()
        };
        assert!(matches!(
            check_signing_keys(alice(), &forged, None),
            Err(Error::InvalidSignature(_))
        ));
        let wrong_usage = SigningKeysUpload {
            master_key: Some(cross_key(&master, "self_signing", None)),
            ..SigningKeysUpload::default()
        };
        assert!(matches!(
            check_signing_keys(alice(), &wrong_usage, None),
            Err(Error::InvalidParam(_))
        ));
        assert!(matches!(
            check_signing_keys(alice(), &SigningKeysUpload::default(), None),
            Err(Error::MissingParam(_))
        ));
    }

    #[test]
    fn a_device_signature_must_come_from_the_self_signing_key_over_the_stored_keys() {
        let (device_key, ssk, other) = (TestKey::new(5), TestKey::new(6), TestKey::new(7));
        let device = device_key.sign(
            json!({"user_id": ALICE, "device_id": "D", "algorithms": [],
                   "keys": {"ed25519:D": device_key.public}}),
            ALICE,
            "ed25519:D",
        );
        let rows = vec![e2e_keys::DeviceKeysRow {
            device_id: "D".into(),
            key_json: text_of(&device),
            display_name: None,
        }];
        let upload = |object: &CanonicalJsonObject, ssk_public: Option<&str>| {
            check_signature_upload(SignatureUpload {
                signer: alice(),
                target: alice(),
                key_id: "D",
                object,
                target_devices: &rows,
                target_master: None,
                signer_self_signing: ssk_public,
                signer_user_signing: None,
            })
        };
        let ssk_id = format!("ed25519:{}", ssk.public);
        let signed = ssk.sign(serde_json::to_value(&device).unwrap(), ALICE, &ssk_id);
        let accepted = upload(&signed, Some(&ssk.public)).unwrap();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].signer_key, ssk_id);
        assert!(accepted[0].target_is_device);

        let bad = other.sign(serde_json::to_value(&device).unwrap(), ALICE, &ssk_id);
        assert_eq!(
            upload(&bad, Some(&ssk.public)).unwrap_err()["errcode"],
            "M_INVALID_SIGNATURE"
        );
        assert_eq!(
            upload(&signed, None).unwrap_err()["errcode"],
            "M_INVALID_SIGNATURE"
        );
        let mut changed = signed.clone();
        changed.insert(
            "device_id".into(),
            ruma::CanonicalJsonValue::String("E".into()),
        );
        assert_eq!(
            upload(&changed, Some(&ssk.public)).unwrap_err()["errcode"],
            "M_INVALID_PARAM"
        );
    }
}
