//! Server-side key backup (`/room_keys`): a user's backup versions (algorithm and `auth_data`,
//! both opaque to the server) and the encrypted room keys stored in them. Keys may only be stored
//! in the current version (the latest one not deleted): another existing version is refused with
//! `Error::WrongRoomKeysVersion` (403 `M_WRONG_ROOM_KEYS_VERSION` with `current_version`), an
//! unknown or deleted one with `M_NOT_FOUND`. A key replaces the stored key of its session only
//! if it is better: verified beats unverified, then a lower `first_message_index`, then a lower
//! `forwarded_count`. Every change to a version's keys changes its `etag`; answers carry the
//! `etag` and `count` after the change. Each request is one write or one read, so a bulk upload
//! is all or nothing.

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::{Error, Result, Services};
use crate::storage::key_backup::{BackupKey, BackupVersion};
use crate::storage::{self, Conn};

/// A version as clients see it.
#[derive(Debug, Clone)]
pub struct BackupInfo {
    pub version: String,
    pub algorithm: String,
    pub auth_data: JsonValue,
    pub etag: String,
    pub count: u64,
}

/// The state of a version's keys after a change.
#[derive(Debug, Clone)]
pub struct KeysSummary {
    pub etag: String,
    pub count: u64,
}

/// The key data a client uploads for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyData {
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    pub session_data: JsonValue,
}

impl KeyData {
    /// Parses a `KeyBackupData` object (`M_BAD_JSON` when a field is missing or of the wrong type).
    pub fn parse(value: &JsonValue) -> Result<KeyData> {
        let bad = |field: &str| Error::BadJson(format!("key data needs {field}"));
        let number = |field: &str| {
            value
                .get(field)
                .and_then(JsonValue::as_u64)
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| bad(&format!("a non-negative integer {field}")))
        };
        let session_data = value
            .get("session_data")
            .filter(|d| d.is_object())
            .ok_or_else(|| bad("an object session_data"))?;
        Ok(KeyData {
            first_message_index: number("first_message_index")?,
            forwarded_count: number("forwarded_count")?,
            is_verified: value
                .get("is_verified")
                .and_then(JsonValue::as_bool)
                .ok_or_else(|| bad("a boolean is_verified"))?,
            session_data: session_data.clone(),
        })
    }

    /// The key data as JSON, as clients get it back.
    pub fn to_json(&self) -> JsonValue {
        serde_json::json!({
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        })
    }

    /// Whether this key should replace `stored`: strictly better by the specification's order.
    fn is_better_than(&self, stored: &BackupKey) -> bool {
        let rank = |verified: bool, index: u64, forwarded: u64| (!verified, index, forwarded);
        rank(
            self.is_verified,
            self.first_message_index,
            self.forwarded_count,
        ) < rank(
            stored.is_verified,
            u64::try_from(stored.first_message_index).unwrap_or(u64::MAX),
            u64::try_from(stored.forwarded_count).unwrap_or(u64::MAX),
        )
    }
}

/// Which keys of a version a request is about.
#[derive(Debug, Clone, Default)]
pub struct KeySelection {
    pub room_id: Option<String>,
    pub session_id: Option<String>,
}

/// A version id from a client: ours are decimal numbers, so anything else names no version.
fn parse_version(version: &str) -> Option<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0)
}

fn not_found(version: &str) -> Error {
    Error::NotFound(format!("unknown backup version {version:?}"))
}

fn info_of(version: BackupVersion, count: i64) -> BackupInfo {
    BackupInfo {
        version: version.version.to_string(),
        algorithm: version.algorithm,
        auth_data: version.auth_data,
        etag: version.etag.to_string(),
        count: u64::try_from(count).unwrap_or(0),
    }
}

fn summary(txn: &Conn, user: &str, version: i64) -> storage::Result<KeysSummary> {
    let etag = storage::key_backup::get_version(txn, user, version)?.map_or(0, |v| v.etag);
    let count = storage::key_backup::count_keys(txn, user, version)?;
    Ok(KeysSummary {
        etag: etag.to_string(),
        count: u64::try_from(count).unwrap_or(0),
    })
}

/// Why a version may not be written to, decided inside the write.
enum Refusal {
    NotFound,
    WrongVersion(String),
}

/// The version `version` if it is the current one; otherwise why not.
fn writable_version(
    txn: &Conn,
    user: &str,
    version: &str,
) -> storage::Result<Result<i64, Refusal>> {
    let current = storage::key_backup::current_version(txn, user)?;
    let Some(current) = current else {
        return Ok(Err(Refusal::NotFound));
    };
    let Some(wanted) = parse_version(version) else {
        return Ok(Err(Refusal::NotFound));
    };
    if wanted == current.version {
        return Ok(Ok(wanted));
    }
    let exists = storage::key_backup::get_version(txn, user, wanted)?.is_some_and(|v| !v.deleted);
    Ok(Err(if exists {
        Refusal::WrongVersion(current.version.to_string())
    } else {
        Refusal::NotFound
    }))
}

impl Services {
    /// `POST /room_keys/version`: a new version, which becomes the current one.
    pub async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: JsonValue,
    ) -> Result<String> {
        validate_algorithm(algorithm, &auth_data)?;
        let (user, algorithm) = (user_id.to_string(), algorithm.to_owned());
        let version = self
            .db
            .write("create_backup_version", move |txn| {
                storage::key_backup::create_version_txn(txn, &user, &algorithm, &auth_data)
            })
            .await?;
        Ok(version.to_string())
    }

    /// `GET /room_keys/version[/{version}]`: the given version, or the current one for `None`.
    pub async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<&str>,
    ) -> Result<BackupInfo> {
        let wanted = match version {
            Some(v) => Some(parse_version(v).ok_or_else(|| not_found(v))?),
            None => None,
        };
        let user = user_id.to_string();
        let found = self
            .db
            .read(move |c| {
                let version = match wanted {
                    Some(v) => storage::key_backup::get_version(c, &user, v)?,
                    None => storage::key_backup::current_version(c, &user)?,
                };
                let Some(version) = version.filter(|v| !v.deleted) else {
                    return Ok(None);
                };
                let count = storage::key_backup::count_keys(c, &user, version.version)?;
                Ok(Some(info_of(version, count)))
            })
            .await?;
        found.ok_or_else(|| match version {
            Some(v) => not_found(v),
            None => Error::NotFound("no backup version".into()),
        })
    }

    /// `PUT /room_keys/version/{version}`: replaces the `auth_data` of a version; the algorithm
    /// cannot change, and a `version` in the body must be the one in the path.
    pub async fn update_backup_version(
        &self,
        user_id: &UserId,
        version: &str,
        body_version: Option<&str>,
        algorithm: &str,
        auth_data: JsonValue,
    ) -> Result<()> {
        if body_version.is_some_and(|v| v != version) {
            return Err(Error::InvalidParam(
                "the version in the body is not the one in the path".into(),
            ));
        }
        validate_algorithm(algorithm, &auth_data)?;
        let wanted = parse_version(version).ok_or_else(|| not_found(version))?;
        let (user, algorithm_owned) = (user_id.to_string(), algorithm.to_owned());
        let outcome = self
            .db
            .write("update_backup_version", move |txn| {
                let stored = storage::key_backup::get_version(txn, &user, wanted)?;
                let Some(stored) = stored.filter(|v| !v.deleted) else {
                    return Ok(Err(None));
                };
                if stored.algorithm != algorithm_owned {
                    return Ok(Err(Some(stored.algorithm)));
                }
                storage::key_backup::set_auth_data_txn(txn, &user, wanted, &auth_data)?;
                Ok(Ok(()))
            })
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(None) => Err(not_found(version)),
            Err(Some(stored)) => Err(Error::InvalidParam(format!(
                "the algorithm of a backup version cannot change (it is {stored}, not {algorithm})"
            ))),
        }
    }

    /// `DELETE /room_keys/version/{version}`: the version and its keys; deleting a deleted
    /// version again succeeds.
    pub async fn delete_backup_version(&self, user_id: &UserId, version: &str) -> Result<()> {
        let wanted = parse_version(version).ok_or_else(|| not_found(version))?;
        let user = user_id.to_string();
        let existed = self
            .db
            .write("delete_backup_version", move |txn| {
                let Some(stored) = storage::key_backup::get_version(txn, &user, wanted)? else {
                    return Ok(false);
                };
                if !stored.deleted {
                    storage::key_backup::delete_version_txn(txn, &user, wanted)?;
                }
                Ok(true)
            })
            .await?;
        if !existed {
            return Err(not_found(version));
        }
        Ok(())
    }

    /// `PUT /room_keys/keys[/{roomId}[/{sessionId}]]`: stores keys (`(room, session, data)`) in
    /// the current version, each only where it is better than the stored one; all in one write.
    pub async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        keys: Vec<(String, String, KeyData)>,
    ) -> Result<KeysSummary> {
        let (user, version_text) = (user_id.to_string(), version.to_owned());
        let outcome = self
            .db
            .write("put_backup_keys", move |txn| {
                let version = match writable_version(txn, &user, &version_text)? {
                    Ok(version) => version,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let mut changed = false;
                for (room_id, session_id, data) in keys {
                    let stored = storage::key_backup::get_keys(
                        txn,
                        &user,
                        version,
                        Some(&room_id),
                        Some(&session_id),
                    )?;
                    if stored.first().is_some_and(|s| !data.is_better_than(s)) {
                        continue;
                    }
                    let key = BackupKey {
                        room_id,
                        session_id,
                        first_message_index: i64::try_from(data.first_message_index)
                            .unwrap_or(i64::MAX),
                        forwarded_count: i64::try_from(data.forwarded_count).unwrap_or(i64::MAX),
                        is_verified: data.is_verified,
                        session_data: data.session_data,
                    };
                    storage::key_backup::put_key_txn(txn, &user, version, &key)?;
                    changed = true;
                }
                if changed {
                    storage::key_backup::bump_etag_txn(txn, &user, version)?;
                }
                summary(txn, &user, version).map(Ok)
            })
            .await?;
        match outcome {
            Ok(summary) => Ok(summary),
            Err(Refusal::NotFound) => Err(not_found(version)),
            Err(Refusal::WrongVersion(current_version)) => {
                Err(Error::WrongRoomKeysVersion { current_version })
            }
        }
    }

    /// `GET /room_keys/keys[/{roomId}[/{sessionId}]]`: the selected keys of a version, as
    /// `(room, session, data)`. A version that does not exist (or was deleted) is `M_NOT_FOUND`.
    pub async fn backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        selection: KeySelection,
    ) -> Result<Vec<(String, String, KeyData)>> {
        let wanted = parse_version(version).ok_or_else(|| not_found(version))?;
        let user = user_id.to_string();
        let keys = self
            .db
            .read(move |c| {
                let exists =
                    storage::key_backup::get_version(c, &user, wanted)?.is_some_and(|v| !v.deleted);
                if !exists {
                    return Ok(None);
                }
                storage::key_backup::get_keys(
                    c,
                    &user,
                    wanted,
                    selection.room_id.as_deref(),
                    selection.session_id.as_deref(),
                )
                .map(Some)
            })
            .await?
            .ok_or_else(|| not_found(version))?;
        Ok(keys
            .into_iter()
            .map(|k| {
                let data = KeyData {
                    first_message_index: u64::try_from(k.first_message_index).unwrap_or(0),
                    forwarded_count: u64::try_from(k.forwarded_count).unwrap_or(0),
                    is_verified: k.is_verified,
                    session_data: k.session_data,
                };
                (k.room_id, k.session_id, data)
            })
            .collect())
    }

    /// `DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`: deletes the selected keys of a
    /// version (which need not be the current one).
    pub async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        selection: KeySelection,
    ) -> Result<KeysSummary> {
        let wanted = parse_version(version).ok_or_else(|| not_found(version))?;
        let user = user_id.to_string();
        let outcome = self
            .db
            .write("delete_backup_keys", move |txn| {
                let exists = storage::key_backup::get_version(txn, &user, wanted)?
                    .is_some_and(|v| !v.deleted);
                if !exists {
                    return Ok(None);
                }
                let deleted = storage::key_backup::delete_keys_txn(
                    txn,
                    &user,
                    wanted,
                    selection.room_id.as_deref(),
                    selection.session_id.as_deref(),
                )?;
                if deleted > 0 {
                    storage::key_backup::bump_etag_txn(txn, &user, wanted)?;
                }
                summary(txn, &user, wanted).map(Some)
            })
            .await?;
        outcome.ok_or_else(|| not_found(version))
    }
}

/// A backup's algorithm is a non-empty name and its `auth_data` an object; both are otherwise
/// the clients' business.
fn validate_algorithm(algorithm: &str, auth_data: &JsonValue) -> Result<()> {
    if algorithm.is_empty() {
        return Err(Error::InvalidParam(
            "the backup algorithm must not be empty".into(),
        ));
    }
    if !auth_data.is_object() {
        return Err(Error::BadJson("auth_data must be an object".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(is_verified: bool, index: i64, forwarded: i64) -> BackupKey {
        BackupKey {
            room_id: "!r:x".into(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified,
            session_data: json!({}),
        }
    }

    fn new(is_verified: bool, index: u64, forwarded: u64) -> KeyData {
        KeyData {
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified,
            session_data: json!({}),
        }
    }

    #[test]
    fn a_key_replaces_the_stored_one_only_when_strictly_better() {
        // Verification first, then the first message index, then the forward count.
        assert!(new(true, 9, 9).is_better_than(&stored(false, 0, 0)));
        assert!(!new(false, 0, 0).is_better_than(&stored(true, 9, 9)));
        assert!(new(false, 1, 9).is_better_than(&stored(false, 2, 0)));
        assert!(!new(false, 3, 0).is_better_than(&stored(false, 2, 9)));
        assert!(new(true, 2, 0).is_better_than(&stored(true, 2, 1)));
        assert!(!new(true, 2, 1).is_better_than(&stored(true, 2, 1)));
    }

    #[test]
    fn key_data_needs_every_field_with_its_type() {
        let good = json!({"first_message_index": 1, "forwarded_count": 0, "is_verified": true,
                          "session_data": {"ciphertext": "c"}});
        assert_eq!(KeyData::parse(&good).unwrap().to_json(), good);
        for field in [
            "first_message_index",
            "forwarded_count",
            "is_verified",
            "session_data",
        ] {
            let mut bad = good.clone();
            bad.as_object_mut().unwrap().remove(field);
            assert!(KeyData::parse(&bad).is_err(), "{field} is required");
        }
        let mut bad = good.clone();
        bad["first_message_index"] = json!(-1);
        assert!(KeyData::parse(&bad).is_err());
        bad["first_message_index"] = json!(1);
        bad["session_data"] = json!("text");
        assert!(KeyData::parse(&bad).is_err());
    }

    #[test]
    fn only_positive_decimal_numbers_name_versions() {
        assert_eq!(parse_version("12"), Some(12));
        for bad in ["", "0", "-1", "abc", "1.5"] {
            assert_eq!(parse_version(bad), None);
        }
    }
}
