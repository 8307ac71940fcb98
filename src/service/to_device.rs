//! Send-to-device messaging. A send (`PUT /sendToDevice/{eventType}/{txnId}`) is carried out in
//! one write: its transaction id is recorded for the sending device (a retry finds it and delivers
//! nothing), every message for a device of this server goes into that device's inbox with the next
//! position of the to-device stream, and the messages for each other server become one
//! `m.direct_to_device` EDU in that server's federation queue. After the commit the receiving
//! users' long-polls are woken; `/sync` (`sync/to_device.rs`) hands each device its messages in
//! order, and they are deleted once the device syncs with a token past them.
//!
//! `m.direct_to_device` EDUs from other servers are delivered the same way by
//! `receive_direct_to_device`, once per (origin, `message_id`).

use std::collections::{BTreeMap, HashMap};

use ruma::{DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Map, Value as JsonValue, json};

use super::{Error, Result, Services, UserSession, random_string};
use crate::storage::{self, Conn, now_ms};

/// One message of a send: its addressee (`device` `None` for all of the user's devices, the
/// specification's `*`) and its content as JSON text (an object).
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    pub user_id: OwnedUserId,
    pub device: Option<OwnedDeviceId>,
    pub content: String,
}

impl ToDeviceMessage {
    /// A message whose content must be a JSON object (`M_BAD_JSON` otherwise).
    pub fn new(user_id: OwnedUserId, device: Option<OwnedDeviceId>, content: &str) -> Result<Self> {
        if !content.trim_start().starts_with('{') {
            return Err(Error::BadJson(format!(
                "the message for {user_id} is not a JSON object"
            )));
        }
        Ok(ToDeviceMessage {
            user_id,
            device,
            content: content.to_owned(),
        })
    }
}

impl Services {
    /// `PUT /sendToDevice/{eventType}/{txnId}`: delivers `messages` from the caller's device,
    /// unless that device already carried out `txn_id`. Unknown users and devices of this server
    /// are skipped silently; messages for other servers' users are queued for them.
    pub async fn send_to_device(
        &self,
        session: &UserSession,
        event_type: &str,
        txn_id: &str,
        messages: Vec<ToDeviceMessage>,
    ) -> Result<()> {
        session.require_device("sending to-device messages")?;
        if event_type.is_empty() {
            return Err(Error::InvalidParam(
                "the event type must not be empty".into(),
            ));
        }
        let (local, remote): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|m| m.user_id.server_name() == self.server_name());
        let edus = if remote.is_empty() {
            Vec::new()
        } else if self.federation.is_enabled() {
            direct_to_device_edus(&session.user_id, event_type, remote)?
        } else {
            tracing::debug!(
                user.id = %session.user_id,
                "to-device messages for other servers dropped: federation is off"
            );
            Vec::new()
        };
        let queued_edus = !edus.is_empty();
        let (sender, device) = (session.user_id.to_string(), session.device_id.to_string());
        let (event_type, txn_id) = (event_type.to_owned(), txn_id.to_owned());
        let delivered = self
            .db
            .write("send_to_device", move |txn| {
                if !storage::to_device::record_txn_txn(txn, &sender, &device, &txn_id, now_ms())? {
                    return Ok(None);
                }
                let delivered = deliver_txn(txn, &sender, &event_type, &local)?;
                for (destination, edu) in &edus {
                    storage::federation_queue::enqueue_edu_txn(
                        txn,
                        &[destination.to_string()],
                        edu,
                    )?;
                }
                Ok(Some(delivered))
            })
            .await?;
        let Some(delivered) = delivered else {
            tracing::debug!(user.id = %session.user_id, "to-device send repeated; nothing delivered");
            return Ok(());
        };
        self.wake_receivers(delivered);
        if queued_edus {
            self.federation_wake.notify_one();
        }
        Ok(())
    }

    /// Applies the content of an `m.direct_to_device` EDU from `origin`: its messages for local
    /// users go to their devices as in `send_to_device`, once per (`origin`, `message_id`). EDUs
    /// whose sender is not of `origin`, or that are malformed, are ignored (an EDU has no answer).
    pub async fn receive_direct_to_device(&self, origin: &ServerName, content: &JsonValue) {
        let sender = content
            .get("sender")
            .and_then(JsonValue::as_str)
            .and_then(|s| UserId::parse(s).ok());
        let event_type = content.get("type").and_then(JsonValue::as_str);
        let message_id = content.get("message_id").and_then(JsonValue::as_str);
        let messages = content.get("messages").and_then(JsonValue::as_object);
        let (Some(sender), Some(event_type), Some(message_id), Some(messages)) =
            (sender, event_type, message_id, messages)
        else {
            tracing::debug!(server.name = %origin, "malformed m.direct_to_device EDU ignored");
            return;
        };
        if let Err(e) = self
            .deliver_remote_to_device(origin, &sender, event_type, message_id, messages)
            .await
        {
            tracing::warn!(server.name = %origin, error = %e, "m.direct_to_device EDU not delivered");
        }
    }

    /// Delivers the `messages` (`{userId: {deviceId | "*": content}}`) of a to-device EDU that
    /// `sender` of `origin` sent, unless the EDU `message_id` of `origin` was delivered already.
    /// Messages for users of other servers, with malformed addressees, or whose content is not an
    /// object are left out.
    pub async fn deliver_remote_to_device(
        &self,
        origin: &ServerName,
        sender: &UserId,
        event_type: &str,
        message_id: &str,
        messages: &Map<String, JsonValue>,
    ) -> Result<()> {
        if sender.server_name() != origin {
            return Err(Error::Forbidden(format!(
                "{origin} sent a to-device message as {sender}"
            )));
        }
        let mut local = Vec::new();
        for (user_id, devices) in messages {
            let Ok(user_id) = UserId::parse(user_id.as_str()) else {
                continue;
            };
            if user_id.server_name() != self.server_name() {
                continue;
            }
            for (device, content) in devices.as_object().into_iter().flatten() {
                if !content.is_object() || device.is_empty() {
                    continue;
                }
                let device = (device != "*").then(|| OwnedDeviceId::from(device.as_str()));
                local.push(ToDeviceMessage {
                    user_id: user_id.clone(),
                    device,
                    content: content.to_string(),
                });
            }
        }
        let (origin, sender, event_type, message_id) = (
            origin.to_string(),
            sender.to_string(),
            event_type.to_owned(),
            message_id.to_owned(),
        );
        let delivered = self
            .db
            .write("receive_to_device", move |txn| {
                if !storage::to_device::record_received_txn(txn, &origin, &message_id, now_ms())? {
                    return Ok(HashMap::new());
                }
                deliver_txn(txn, &sender, &event_type, &local)
            })
            .await?;
        self.wake_receivers(delivered);
        Ok(())
    }

    /// Deletes the messages of `device` up to `upto`, which its sync token acknowledged. Queued
    /// now and committed in the background: the sync answer does not wait for it, and a failure
    /// only leaves the messages for a later acknowledgement.
    pub(crate) fn delete_acknowledged_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        upto: i64,
    ) {
        let (user, device) = (user_id.to_string(), device_id.to_string());
        let write = self.db.submit("delete_acknowledged_to_device", move |txn| {
            storage::to_device::delete_messages_upto_txn(txn, &user, &device, upto)
        });
        let user_id = user_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = write.await {
                tracing::warn!(user.id = %user_id, error = %e, "cannot delete acknowledged to-device messages");
            }
        });
    }

    fn wake_receivers(&self, delivered: HashMap<OwnedUserId, i64>) {
        for (user_id, position) in delivered {
            self.notifier.user_changed(&user_id, position);
        }
    }
}

/// Puts each message into the inbox of every device it reaches (unknown users and devices reach
/// none); returns, per receiving user, the position of their last message.
fn deliver_txn(
    txn: &Conn,
    sender: &str,
    event_type: &str,
    messages: &[ToDeviceMessage],
) -> storage::Result<HashMap<OwnedUserId, i64>> {
    let mut delivered = HashMap::new();
    for message in messages {
        let user = message.user_id.as_str();
        let device = message.device.as_ref().map(|d| d.as_str());
        for device_id in storage::to_device::target_devices(txn, user, device)? {
            let position = storage::to_device::insert_message_txn(
                txn,
                user,
                &device_id,
                sender,
                event_type,
                &message.content,
            )?;
            delivered.insert(message.user_id.clone(), position);
        }
    }
    Ok(delivered)
}

/// One `m.direct_to_device` EDU per destination server for the messages to its users, each with a
/// fresh `message_id` by which the destination recognises a repeat.
fn direct_to_device_edus(
    sender: &UserId,
    event_type: &str,
    messages: Vec<ToDeviceMessage>,
) -> Result<Vec<(OwnedServerName, String)>> {
    let mut by_server: BTreeMap<OwnedServerName, Map<String, JsonValue>> = BTreeMap::new();
    for message in messages {
        let content: JsonValue = serde_json::from_str(&message.content)
            .map_err(|e| Error::BadJson(format!("a message content is not JSON: {e}")))?;
        let device = message
            .device
            .as_ref()
            .map_or("*", |d| d.as_str())
            .to_owned();
        let users = by_server
            .entry(message.user_id.server_name().to_owned())
            .or_default();
        let devices = users
            .entry(message.user_id.to_string())
            .or_insert_with(|| JsonValue::Object(Map::new()));
        if let JsonValue::Object(devices) = devices {
            devices.insert(device, content);
        }
    }
    Ok(by_server
        .into_iter()
        .map(|(server, messages)| {
            let edu = json!({
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": sender,
                    "type": event_type,
                    "message_id": random_string(32),
                    "messages": messages,
                },
            });
            (server, edu.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_for_other_servers_make_one_edu_per_server() {
        let sender: OwnedUserId = "@alice:here".try_into().unwrap();
        let message = |user: &str, device: Option<&str>, n: i64| {
            ToDeviceMessage::new(
                user.try_into().unwrap(),
                device.map(OwnedDeviceId::from),
                &json!({"n": n}).to_string(),
            )
            .unwrap()
        };
        let edus = direct_to_device_edus(
            &sender,
            "m.room_key_request",
            vec![
                message("@bob:hs2", Some("PHONE"), 1),
                message("@bob:hs2", None, 2),
                message("@carol:hs3", Some("X"), 3),
            ],
        )
        .unwrap();
        assert_eq!(edus.len(), 2);
        let (server, edu) = &edus[0];
        assert_eq!(server.as_str(), "hs2");
        let edu: JsonValue = serde_json::from_str(edu).unwrap();
        assert_eq!(edu["edu_type"], "m.direct_to_device");
        assert_eq!(edu["content"]["sender"], "@alice:here");
        assert_eq!(edu["content"]["type"], "m.room_key_request");
        assert_eq!(
            edu["content"]["messages"],
            json!({"@bob:hs2": {"PHONE": {"n": 1}, "*": {"n": 2}}})
        );
        let other: JsonValue = serde_json::from_str(&edus[1].1).unwrap();
        assert_ne!(edu["content"]["message_id"], other["content"]["message_id"]);
    }

    #[tokio::test]
    async fn an_edu_from_another_server_reaches_local_devices_once() {
        use crate::service::account_data::tests::services_with;
        use crate::storage::tokens::{NewTokens, upsert_device_with_tokens_txn};

        let bob: &UserId = "@bob:localhost".try_into().unwrap();
        let (_dir, services) = services_with(&[bob]).await;
        for (device, hash) in [("PHONE", [1u8; 32]), ("LAPTOP", [2u8; 32])] {
            let (user, device) = (bob.to_owned(), OwnedDeviceId::from(device));
            services
                .db
                .write("add_device", move |txn| {
                    let tokens = NewTokens {
                        access_hash: &hash,
                        expires_ts: None,
                        refresh_hash: None,
                    };
                    upsert_device_with_tokens_txn(txn, &user, &device, None, "::1", &tokens)
                })
                .await
                .unwrap();
        }
        let hs2: &ServerName = "hs2".try_into().unwrap();
        let edu = |message_id: &str, sender: &str| {
            json!({
                "sender": sender,
                "type": "m.room_key_request",
                "message_id": message_id,
                "messages": {
                    "@bob:localhost": {"PHONE": {"n": 1}, "*": {"n": 2}, "GONE": {"n": 3}},
                    "@carol:hs3": {"*": {"n": 4}},
                },
            })
        };
        let woken = services.notifier.subscribe_user(bob);
        services
            .receive_direct_to_device(hs2, &edu("m1", "@alice:hs2"))
            .await;
        assert!(woken.has_changed().unwrap());
        // A retried transaction, and a sender of another server, deliver nothing.
        services
            .receive_direct_to_device(hs2, &edu("m1", "@alice:hs2"))
            .await;
        services
            .receive_direct_to_device(hs2, &edu("m2", "@mallory:hs3"))
            .await;

        let read = |device: &'static str| {
            services.db.read(move |c| {
                storage::to_device::messages_after(c, "@bob:localhost", device, 0, 10)
            })
        };
        let numbers = |messages: Vec<storage::to_device::InboxMessage>| {
            messages
                .into_iter()
                .map(|m| {
                    assert_eq!(m.sender, "@alice:hs2");
                    assert_eq!(m.event_type, "m.room_key_request");
                    m.content["n"].as_i64().unwrap()
                })
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(numbers(read("PHONE").await.unwrap()), [1, 2].into());
        assert_eq!(numbers(read("LAPTOP").await.unwrap()), [2].into());
    }

    #[test]
    fn a_content_must_be_an_object() {
        let user: OwnedUserId = "@bob:x".try_into().unwrap();
        assert!(ToDeviceMessage::new(user.clone(), None, " {\"a\": 1}").is_ok());
        assert!(ToDeviceMessage::new(user.clone(), None, "[1]").is_err());
        assert!(ToDeviceMessage::new(user, None, "\"text\"").is_err());
    }
}
