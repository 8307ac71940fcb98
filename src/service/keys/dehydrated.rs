//! Dehydrated devices (MSC3814, unstable prefix `org.matrix.msc3814.v1`): a device a user keeps on
//! the server while none of their clients is online, so that others can still send it room keys.
//!
//! A user has at most one. It is a row of `devices` that never holds an access token, with its
//! keys published through the same checks and write as `/keys/upload` (`upload.rs`), and to-device
//! messages queued in its inbox like any device's. Creating one replaces (deletes, with its keys
//! and messages) the previous one, all in one write. The client that rehydrates it reads the
//! messages in batches through an opaque `next_batch`; reading deletes nothing (the MSC asks
//! this, so that an interrupted rehydration can start again): the messages go with the device.

use ruma::{DeviceId, OwnedDeviceId, UserId};
use serde_json::value::RawValue;
use serde_json::{Map, Value as JsonValue, json};

use super::KeysUpload;
use super::upload::{check_upload, write_upload};
use crate::service::{Error, Result, Services};
use crate::storage::{self, dehydrated_devices};

/// The most to-device messages one `/dehydrated_device/{deviceId}/events` answer carries.
const EVENTS_PER_BATCH: usize = 100;

/// The longest device id accepted (the length `devices` ids are held to elsewhere).
const MAX_DEVICE_ID_LEN: usize = 255;

/// `PUT /dehydrated_device`: the device, its data and its keys.
pub struct DehydratedDeviceUpload {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    /// The client's encrypted device, a JSON object with an `algorithm`.
    pub device_data: Box<RawValue>,
    pub keys: KeysUpload,
}

/// A stored dehydrated device, for `GET /dehydrated_device`.
pub struct DehydratedDevice {
    pub device_id: OwnedDeviceId,
    pub device_data: Box<RawValue>,
}

/// One batch of the dehydrated device's to-device messages.
pub struct DehydratedDeviceEvents {
    /// `{sender, type, content}` objects, as `/sync` carries them.
    pub events: Vec<Box<RawValue>>,
    /// Where the next batch starts; a batch after the last message is empty.
    pub next_batch: String,
}

impl Services {
    /// Creates `user`'s dehydrated device, replacing the previous one, and publishes its keys.
    pub async fn put_dehydrated_device(
        &self,
        user_id: &UserId,
        upload: DehydratedDeviceUpload,
    ) -> Result<OwnedDeviceId> {
        check_device_data(&upload.device_data)?;
        check_device_id(&upload.device_id)?;
        if upload.keys.device_keys.is_none() {
            return Err(Error::MissingParam(
                "a dehydrated device needs its device_keys".into(),
            ));
        }
        // The device is new: its keys are checked as a first upload.
        let checked = check_upload(user_id, &upload.device_id, None, &upload.keys)?;
        let (user, device) = (user_id.to_owned(), upload.device_id.clone());
        let (display_name, device_data) =
            (upload.display_name, upload.device_data.get().to_owned());
        let position = self
            .db
            .write("put_dehydrated_device", move |txn| {
                let previous = dehydrated_devices::get_dehydrated_device(txn, user.as_str())?;
                let replaces_itself = previous
                    .as_ref()
                    .is_some_and(|p| p.device_id == device.as_str());
                if !replaces_itself
                    && dehydrated_devices::device_exists(txn, user.as_str(), device.as_str())?
                {
                    return Ok(Err(Error::InvalidParam(format!(
                        "you have a device {device} already; a dehydrated device needs a new id"
                    ))));
                }
                dehydrated_devices::refusable_txn(txn, |txn| {
                    if let Some(previous) = &previous {
                        let previous = <&DeviceId>::from(previous.device_id.as_str());
                        storage::tokens::delete_device_txn(txn, &user, previous)?;
                    }
                    dehydrated_devices::create_dehydrated_device_txn(
                        txn,
                        user.as_str(),
                        device.as_str(),
                        display_name.as_deref(),
                        &device_data,
                    )?;
                    Ok(write_upload(txn, user.as_str(), device.as_str(), checked)?
                        .map(|written| written.device_list_position))
                })
            })
            .await??;
        match position {
            Some(position) => self.announce_device_list_change(user_id, position).await?,
            // Device keys are always published here; without them, a replaced device still left.
            None => self.device_list_changed(user_id).await?,
        }
        Ok(upload.device_id)
    }

    /// `user`'s dehydrated device, or `M_NOT_FOUND`.
    pub async fn dehydrated_device(&self, user_id: &UserId) -> Result<DehydratedDevice> {
        let user = user_id.to_string();
        let stored = self
            .db
            .read(move |c| dehydrated_devices::get_dehydrated_device(c, &user))
            .await?
            .ok_or_else(no_dehydrated_device)?;
        Ok(DehydratedDevice {
            device_id: stored.device_id.into(),
            device_data: RawValue::from_string(stored.device_data)
                .map_err(|e| Error::Internal(format!("stored device_data: {e}")))?,
        })
    }

    /// Deletes `user`'s dehydrated device with its keys and messages; answers its id, or
    /// `M_NOT_FOUND` when there is none.
    pub async fn delete_dehydrated_device(&self, user_id: &UserId) -> Result<OwnedDeviceId> {
        let user = user_id.to_owned();
        let deleted = self
            .db
            .write("delete_dehydrated_device", move |txn| {
                let Some(stored) = dehydrated_devices::get_dehydrated_device(txn, user.as_str())?
                else {
                    return Ok(None);
                };
                let device = OwnedDeviceId::from(stored.device_id);
                // The `devices_delete_e2e_keys` trigger records a change when the device had keys.
                let before = storage::e2e_keys::max_device_list_position(txn)?;
                storage::tokens::delete_device_txn(txn, &user, &device)?;
                let list_changed = storage::e2e_keys::max_device_list_position(txn)? > before;
                Ok(Some((device, list_changed)))
            })
            .await?;
        let (device, list_changed) = deleted.ok_or_else(no_dehydrated_device)?;
        if list_changed {
            self.device_list_changed(user_id).await?;
        }
        Ok(device)
    }

    /// A batch of the to-device messages of `user`'s dehydrated device `device_id`, from
    /// `next_batch` (the start when `None`). Another device's id is `M_FORBIDDEN`.
    pub async fn dehydrated_device_events(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        next_batch: Option<&str>,
    ) -> Result<DehydratedDeviceEvents> {
        let since = next_batch.map(parse_next_batch).transpose()?.unwrap_or(0);
        let (user, device) = (user_id.to_string(), device_id.to_string());
        let messages = self
            .db
            .read(move |c| {
                let Some(stored) = dehydrated_devices::get_dehydrated_device(c, &user)? else {
                    return Ok(Err(no_dehydrated_device()));
                };
                if stored.device_id != device {
                    return Ok(Err(Error::Forbidden(format!(
                        "{device} is not your dehydrated device"
                    ))));
                }
                Ok(Ok(storage::to_device::messages_after(
                    c,
                    &user,
                    &device,
                    since,
                    EVENTS_PER_BATCH,
                )?))
            })
            .await??;
        let position = messages.last().map_or(since, |m| m.stream_id);
        let events = messages
            .into_iter()
            .map(|m| {
                let event = json!({"sender": m.sender, "type": m.event_type, "content": m.content});
                serde_json::value::to_raw_value(&event)
                    .map_err(|e| Error::Internal(format!("to-device event: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(DehydratedDeviceEvents {
            events,
            next_batch: format_next_batch(position),
        })
    }
}

fn no_dehydrated_device() -> Error {
    Error::NotFound("you have no dehydrated device".into())
}

/// `device_data` is the client's, but it must be an object naming its `algorithm`.
fn check_device_data(raw: &RawValue) -> Result<()> {
    let object: Map<String, JsonValue> = serde_json::from_str(raw.get())
        .map_err(|_| Error::BadJson("device_data must be a JSON object".into()))?;
    match object.get("algorithm") {
        Some(JsonValue::String(_)) => Ok(()),
        Some(_) => Err(Error::BadJson(
            "device_data.algorithm must be a string".into(),
        )),
        None => Err(Error::MissingParam("device_data has no algorithm".into())),
    }
}

fn check_device_id(device_id: &DeviceId) -> Result<()> {
    let length = device_id.as_str().len();
    if length == 0 || length > MAX_DEVICE_ID_LEN {
        return Err(Error::InvalidParam(format!(
            "device_id must have 1 to {MAX_DEVICE_ID_LEN} bytes"
        )));
    }
    Ok(())
}

/// A `next_batch` is the to-device position of the last message handed out, behind a prefix so
/// that a token of another endpoint is recognised as foreign.
const NEXT_BATCH_PREFIX: &str = "dd";

fn format_next_batch(position: i64) -> String {
    format!("{NEXT_BATCH_PREFIX}{position}")
}

fn parse_next_batch(token: &str) -> Result<i64> {
    token
        .strip_prefix(NEXT_BATCH_PREFIX)
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            Error::InvalidParam(format!("{token:?} is not a next_batch of this endpoint"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn device_data_must_be_an_object_with_an_algorithm() {
        check_device_data(&raw(r#"{"algorithm":"org.matrix.msc3814.v2","x":1}"#)).unwrap();
        for (json, missing) in [
            (r#""a string""#, false),
            (r#"[1]"#, false),
            (r#"{"algorithm":5}"#, false),
            (r#"{"device_pickle":"p"}"#, true),
        ] {
            let error = check_device_data(&raw(json)).unwrap_err();
            if missing {
                assert!(matches!(error, Error::MissingParam(_)), "{json}: {error}");
            } else {
                assert!(matches!(error, Error::BadJson(_)), "{json}: {error}");
            }
        }
    }

    #[test]
    fn next_batch_tokens_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_next_batch(&format_next_batch(0)).unwrap(), 0);
        assert_eq!(parse_next_batch(&format_next_batch(42)).unwrap(), 42);
        for bad in ["", "42", "dd", "dd-1", "ddx", "s1_2"] {
            assert!(
                matches!(parse_next_batch(bad), Err(Error::InvalidParam(_))),
                "{bad}"
            );
        }
    }
}
