//! Sending: message-like events (idempotent per device and transaction id), state events, and
//! redactions (which also redact the stored copy of their target in the same transaction).

use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomAliasId, RoomId};
use serde_json::{Value as JsonValue, json};

use super::super::client_txns::TxnKey;
use super::super::rate_limit::Action;
use super::super::{Error, Result, Services, UserSession};
use super::append::{AppendOptions, pdu_from_row};
use crate::room::PduTemplate;
use crate::storage;

impl Services {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.
    pub async fn send_message(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        kind: &str,
        txn_id: &str,
        content: JsonValue,
    ) -> Result<OwnedEventId> {
        self.send_message_at(session, room_id, kind, txn_id, content, None)
            .await
    }

    /// Like [`Services::send_message`], with the `origin_server_ts` an appservice asked for.
    pub async fn send_message_at(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        kind: &str,
        txn_id: &str,
        content: JsonValue,
        origin_server_ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId> {
        if let Some(existing) = self.txn_event(session, room_id, txn_id).await? {
            return Ok(existing);
        }
        require_object(&content)?;
        self.rate_limiter
            .check(Action::Message, session.user_id.as_str())?;
        let template = PduTemplate {
            origin_server_ts,
            ..PduTemplate::message(kind.into(), content)
        };
        let options = AppendOptions {
            txn: Some((session.device_id.as_str(), txn_id)),
            ..Default::default()
        };
        let pdu = self
            .append_event(room_id, &session.user_id, template, options)
            .await?;
        Ok(pdu.event_id.clone())
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: JsonValue,
    ) -> Result<OwnedEventId> {
        self.send_state_at(session, room_id, kind, state_key, content, None)
            .await
    }

    /// Like [`Services::send_state`], with the `origin_server_ts` an appservice asked for.
    pub async fn send_state_at(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: JsonValue,
        origin_server_ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId> {
        require_object(&content)?;
        if kind == "m.room.canonical_alias" {
            self.check_canonical_alias(room_id, &content).await?;
        }
        let template = PduTemplate {
            origin_server_ts,
            ..PduTemplate::state(kind.into(), state_key, content)
        };
        let pdu = self
            .append_event(
                room_id,
                &session.user_id,
                template,
                AppendOptions::default(),
            )
            .await?;
        Ok(pdu.event_id.clone())
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.
    pub async fn redact(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        event_id: &EventId,
        txn_id: &str,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        if let Some(existing) = self.txn_event(session, room_id, txn_id).await? {
            return Ok(existing);
        }
        let id = event_id.to_string();
        let target = self
            .db
            .read(move |c| storage::events::get_event(c, &id))
            .await?
            .filter(|row| row.room_id == room_id.as_str())
            .ok_or_else(|| Error::NotFound(format!("no event {event_id} in {room_id}")))?;
        let target = pdu_from_row(&target)?;
        if target.sender != session.user_id && !self.has_power_to_redact(room_id, session).await? {
            return Err(Error::Forbidden(
                "you may only redact your own events without the redact power level".into(),
            ));
        }
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let template = PduTemplate::redaction(event_id.to_owned(), content);
        let options = AppendOptions {
            txn: Some((session.device_id.as_str(), txn_id)),
            redact_target: Some(target),
        };
        let pdu = self
            .append_event(room_id, &session.user_id, template, options)
            .await?;
        Ok(pdu.event_id.clone())
    }

    /// The event this device already sent into the room with `txn_id`, if it did (a retry).
    async fn txn_event(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>> {
        let key = TxnKey::new(
            room_id,
            &session.user_id,
            session.device_id.as_str(),
            txn_id,
        );
        self.client_txns.find(key).await
    }

    /// Whether the user's power level reaches the room's `redact` level.
    async fn has_power_to_redact(&self, room_id: &RoomId, session: &UserSession) -> Result<bool> {
        let levels = self.power_levels(room_id).await?;
        let needed = levels
            .get("redact")
            .and_then(JsonValue::as_i64)
            .unwrap_or(50);
        Ok(self.user_power(room_id, &levels, &session.user_id).await? >= needed)
    }

    /// The current `m.room.power_levels` content (empty when the room has none).
    pub(crate) async fn power_levels(&self, room_id: &RoomId) -> Result<JsonValue> {
        let state = self
            .current_state_events(
                room_id,
                vec![(ruma::events::StateEventType::RoomPowerLevels, String::new())],
            )
            .await?;
        let pdu = state.get(&(ruma::events::StateEventType::RoomPowerLevels, String::new()));
        Ok(pdu
            .and_then(|p| serde_json::from_str(p.content.get()).ok())
            .unwrap_or_else(|| json!({})))
    }

    /// A user's power level; room creators of versions that privilege them rank above everyone.
    pub(super) async fn user_power(
        &self,
        room_id: &RoomId,
        levels: &JsonValue,
        user: &ruma::UserId,
    ) -> Result<i64> {
        let (_, rules) = self.room_rules(room_id).await?;
        if rules.authorization.explicitly_privilege_room_creators
            && self.room_creators(room_id).await?.iter().any(|c| c == user)
        {
            return Ok(i64::MAX);
        }
        Ok(levels
            .get("users")
            .and_then(|u| u.get(user.as_str()))
            .or_else(|| levels.get("users_default"))
            .and_then(JsonValue::as_i64)
            .unwrap_or(0))
    }

    /// The room's creators: the create event's sender and its `additional_creators`.
    pub(crate) async fn room_creators(&self, room_id: &RoomId) -> Result<Vec<ruma::OwnedUserId>> {
        let state = self.current_state_events(room_id, Vec::new()).await?;
        let Some(create) = state.get(&(ruma::events::StateEventType::RoomCreate, String::new()))
        else {
            return Ok(Vec::new());
        };
        let mut creators = vec![create.sender.clone()];
        creators.extend(
            creators_of(create.content.get())
                .into_iter()
                .filter_map(|c| ruma::OwnedUserId::try_from(c).ok()),
        );
        Ok(creators)
    }

    /// `m.room.canonical_alias` may only name aliases that exist and point to this room.
    async fn check_canonical_alias(&self, room_id: &RoomId, content: &JsonValue) -> Result<()> {
        let mut aliases: Vec<&str> = content
            .get("alias")
            .and_then(JsonValue::as_str)
            .into_iter()
            .collect();
        if let Some(alt) = content.get("alt_aliases").and_then(JsonValue::as_array) {
            aliases.extend(alt.iter().filter_map(JsonValue::as_str));
        }
        for alias in aliases {
            let parsed = RoomAliasId::parse(alias)
                .map_err(|e| Error::InvalidParam(format!("invalid alias {alias:?}: {e}")))?;
            let points_here = parsed.server_name() == self.server_name()
                && self.resolve_alias(&parsed).await.ok().as_deref() == Some(room_id);
            if !points_here {
                return Err(Error::BadAlias(format!(
                    "{alias} does not point to this room"
                )));
            }
        }
        Ok(())
    }
}

fn creators_of(create_content: &str) -> Vec<String> {
    serde_json::from_str::<JsonValue>(create_content)
        .ok()
        .and_then(|c| c.get("additional_creators").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn require_object(content: &JsonValue) -> Result<()> {
    if content.is_object() {
        Ok(())
    } else {
        Err(Error::BadJson("event content must be a JSON object".into()))
    }
}
