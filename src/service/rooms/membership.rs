//! Membership changes (join, invite, leave, kick, ban, unban, knock), forgetting a room, and room
//! aliases. Each change is one `m.room.member` event through `append_event`; the room version's
//! authorisation rules decide whether it is allowed.

use ruma::events::TimelineEventType;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, UserId};
use serde_json::{Value as JsonValue, json};

use super::super::{Error, Result, Services, UserSession};
use super::append::AppendOptions;
use crate::room::PduTemplate;
use crate::storage;

impl Services {
    /// The content of a member event: membership plus the target's profile and an optional reason.
    pub(super) async fn member_content(
        &self,
        membership: &str,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<JsonValue> {
        let mut content = json!({ "membership": membership });
        if matches!(membership, "join" | "invite" | "knock")
            && target.server_name() == self.server_name()
        {
            let user = target.to_owned();
            let profile = self
                .db
                .read(move |c| storage::users::get_profile(c, &user))
                .await?;
            for (field, value) in profile {
                if field == "displayname" || field == "avatar_url" {
                    content[field] = value;
                }
            }
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if is_direct {
            content["is_direct"] = json!(true);
        }
        Ok(content)
    }

    async fn set_membership(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        membership: &str,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        let content = self
            .member_content(membership, target, reason, is_direct)
            .await?;
        if target.server_name() != self.server_name() && membership == "invite" {
            if !self.federation.is_enabled() {
                return Err(Error::Forbidden(
                    "inviting users of other servers needs federation".into(),
                ));
            }
            // The invitee's server signs the invite before it is written (`remote_invite.rs`).
            return self.invite_remote(sender, room_id, target, content).await;
        }
        let template = PduTemplate::state(TimelineEventType::RoomMember, target.as_str(), content);
        self.append_event(room_id, sender, template, AppendOptions::default())
            .await?;
        Ok(())
    }

    /// Joins a room this server knows, by id or alias.
    pub async fn join(
        &self,
        session: &UserSession,
        room: &str,
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        self.join_via(session, room, reason, &[]).await
    }

    /// Joins a room by id or alias; when this server has no joined member in it, through `via`
    /// (or the servers an alias of another server names, the inviter's, the room id's): see
    /// `remote_join.rs`.
    pub async fn join_via(
        &self,
        session: &UserSession,
        room: &str,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<OwnedRoomId> {
        let (room_id, remote) = self.membership_target(session, room, via).await?;
        if let Some(servers) = remote {
            self.join_remote(&session.user_id, &room_id, &servers, reason)
                .await?;
            return Ok(room_id);
        }
        self.enter(session, room_id.as_str(), "join", reason).await
    }

    /// Where a join or knock by id or alias goes: the room, and — when this server has no joined
    /// member in it — the servers to go through (`via`, those an alias of another server names,
    /// the inviter's, the room id's), in the order to try them.
    pub(super) async fn membership_target(
        &self,
        session: &UserSession,
        room: &str,
        via: &[OwnedServerName],
    ) -> Result<(OwnedRoomId, Option<Vec<OwnedServerName>>)> {
        let mut servers = via.to_vec();
        let room_id = match RoomAliasId::parse(room) {
            Ok(alias) if alias.server_name() != self.server_name() => {
                let (room_id, alias_servers) = self.resolve_remote_alias(&alias).await?;
                servers.extend(alias_servers);
                room_id
            }
            _ => self.resolve_room(room).await?,
        };
        let candidates = self
            .join_candidates(&room_id, &session.user_id, &servers)
            .await?;
        let remote = self.joins_remotely(&room_id, &candidates).await?;
        Ok((room_id, remote.then_some(candidates)))
    }

    /// Asks to join a room whose join rule is `knock`.
    pub async fn knock(
        &self,
        session: &UserSession,
        room: &str,
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        self.enter(session, room, "knock", reason).await
    }

    async fn enter(
        &self,
        session: &UserSession,
        room: &str,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        let room_id = self.resolve_room(room).await?;
        self.known_room_or_not_found(&room_id).await?;
        let user = &session.user_id;
        self.set_membership(user, &room_id, user, membership, reason, false)
            .await?;
        Ok(room_id)
    }

    pub async fn invite(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        // An unknown local user in an appservice's namespace: the appservice may create it now.
        self.ensure_appservice_user(target).await?;
        self.set_membership(
            &session.user_id,
            room_id,
            target,
            "invite",
            reason,
            is_direct,
        )
        .await
    }

    /// Leaves a room (or rejects an invite, or withdraws a knock). An invite to, or a knock on,
    /// a room this server is not in is answered through the room's servers (`remote_invite.rs`).
    pub async fn leave(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        if self
            .membership_of(room_id, &session.user_id)
            .await?
            .as_deref()
            .is_some_and(|m| matches!(m, "invite" | "knock"))
            && self
                .joins_remotely(
                    room_id,
                    &self.join_candidates(room_id, &session.user_id, &[]).await?,
                )
                .await?
        {
            return self
                .reject_remote_invite(&session.user_id, room_id, reason)
                .await;
        }
        self.set_membership(
            &session.user_id,
            room_id,
            &session.user_id,
            "leave",
            reason,
            false,
        )
        .await
    }

    pub async fn kick(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let current = self.membership_of(room_id, target).await?;
        if !matches!(current.as_deref(), Some("join" | "invite" | "knock")) {
            return Err(Error::Forbidden(format!("{target} is not in the room")));
        }
        self.set_membership(&session.user_id, room_id, target, "leave", reason, false)
            .await
    }

    pub async fn ban(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.set_membership(&session.user_id, room_id, target, "ban", reason, false)
            .await
    }

    pub async fn unban(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        if self.membership_of(room_id, target).await?.as_deref() != Some("ban") {
            return Err(Error::Forbidden(format!("{target} is not banned")));
        }
        self.set_membership(&session.user_id, room_id, target, "leave", reason, false)
            .await
    }

    /// Hides a room the user has left from their room lists.
    pub async fn forget(&self, session: &UserSession, room_id: &RoomId) -> Result<()> {
        match self
            .membership_of(room_id, &session.user_id)
            .await?
            .as_deref()
        {
            Some("leave" | "ban") => {}
            Some(_) => {
                return Err(Error::Unsupported(
                    "leave the room before forgetting it".into(),
                ));
            }
            None => return Err(Error::NotFound(format!("you have never been in {room_id}"))),
        }
        let (room, user) = (room_id.to_string(), session.user_id.to_string());
        self.db
            .write("forget_room", move |c| {
                storage::rooms::forget_room_txn(c, &room, &user)
            })
            .await?;
        Ok(())
    }

    /// `M_FORBIDDEN` unless the user is joined to the room now.
    pub(crate) async fn require_joined(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        if self.membership_of(room_id, user_id).await?.as_deref() != Some("join") {
            return Err(Error::Forbidden(format!("you are not in room {room_id}")));
        }
        Ok(())
    }

    /// The user's current membership in a room, if any.
    pub async fn membership_of(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<String>> {
        let (room, user) = (room_id.to_string(), user_id.to_string());
        let row = self
            .db
            .read(move |c| storage::rooms::membership(c, &room, &user))
            .await?;
        Ok(row.map(|r| r.membership))
    }

    pub(super) async fn known_room_or_not_found(&self, room_id: &RoomId) -> Result<()> {
        let room = room_id.to_string();
        if self
            .db
            .read(move |c| storage::events::get_room(c, &room))
            .await?
            .is_none()
        {
            // Joining rooms on other servers comes with federation.
            return Err(Error::NotFound(format!(
                "room {room_id} is not known to this server"
            )));
        }
        Ok(())
    }

    /// A room id, or the room an alias points to.
    pub async fn resolve_room(&self, room: &str) -> Result<OwnedRoomId> {
        if room.starts_with('#') {
            let alias = RoomAliasId::parse(room)
                .map_err(|e| Error::InvalidParam(format!("invalid alias {room:?}: {e}")))?;
            return self.resolve_alias(&alias).await;
        }
        RoomId::parse(room)
            .map_err(|e| Error::InvalidParam(format!("invalid room id {room:?}: {e}")))
    }

    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<OwnedRoomId> {
        let text = alias.to_string();
        let mut row = self
            .db
            .read(move |c| storage::rooms::alias_room(c, &text))
            .await?;
        // An unknown alias in an appservice's namespace: the appservice may create it now.
        if row.is_none() && self.query_appservices_for_alias(alias).await {
            let text = alias.to_string();
            row = self
                .db
                .read(move |c| storage::rooms::alias_room(c, &text))
                .await?;
        }
        let (room, _) =
            row.ok_or_else(|| Error::NotFound(format!("room alias {alias} does not exist")))?;
        RoomId::parse(room).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Validates a new alias's localpart and checks it is free (`M_ROOM_IN_USE` otherwise).
    pub(super) async fn check_new_alias(&self, localpart: &str) -> Result<OwnedRoomAliasId> {
        if localpart.is_empty() || localpart.contains([':', '#', ' ']) {
            return Err(Error::InvalidParam(format!(
                "invalid room alias name {localpart:?}"
            )));
        }
        let alias =
            RoomAliasId::parse(format!("#{localpart}:{}", self.server_name())).map_err(|e| {
                Error::InvalidParam(format!("invalid room alias name {localpart:?}: {e}"))
            })?;
        let text = alias.to_string();
        if self
            .db
            .read(move |c| storage::rooms::alias_room(c, &text))
            .await?
            .is_some()
        {
            return Err(Error::RoomInUse(format!(
                "the alias {alias} is already in use"
            )));
        }
        Ok(alias)
    }

    pub async fn put_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> Result<()> {
        if alias.server_name() != self.server_name() {
            return Err(Error::InvalidParam(format!(
                "{alias} is not an alias of this server"
            )));
        }
        let (a, r, u) = (alias.to_string(), room_id.to_string(), creator.to_string());
        let inserted = self
            .db
            .write("put_alias", move |c| {
                storage::rooms::insert_alias_txn(c, &a, &r, &u)
            })
            .await?;
        if !inserted {
            return Err(Error::Conflict(format!(
                "the alias {alias} is already in use"
            )));
        }
        Ok(())
    }

    /// `PUT /directory/room/{alias}`: members of a room may give it aliases.
    pub async fn create_alias(
        &self,
        session: &UserSession,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        if self
            .membership_of(room_id, &session.user_id)
            .await?
            .as_deref()
            != Some("join")
        {
            return Err(Error::Forbidden(format!(
                "you must be in {room_id} to give it an alias"
            )));
        }
        self.put_alias(alias, room_id, &session.user_id).await
    }

    /// `DELETE /directory/room/{alias}`: by its creator, a room moderator, or a server admin.
    pub async fn delete_alias(&self, session: &UserSession, alias: &RoomAliasId) -> Result<()> {
        let text = alias.to_string();
        let (room, creator) = self
            .db
            .read(move |c| storage::rooms::alias_room(c, &text))
            .await?
            .ok_or_else(|| Error::NotFound(format!("room alias {alias} does not exist")))?;
        let allowed = session.is_admin || creator == session.user_id.as_str() || {
            let room_id = RoomId::parse(&room).map_err(|e| Error::Internal(e.to_string()))?;
            let levels = self.power_levels(&room_id).await?;
            let needed = levels
                .get("state_default")
                .and_then(JsonValue::as_i64)
                .unwrap_or(50);
            self.user_power(&room_id, &levels, &session.user_id).await? >= needed
        };
        if !allowed {
            return Err(Error::Forbidden("you may not delete this alias".into()));
        }
        let text = alias.to_string();
        self.db
            .write("delete_alias", move |c| {
                storage::rooms::delete_alias_txn(c, &text)
            })
            .await?;
        Ok(())
    }

    /// `GET /rooms/{roomId}/aliases`: for members.
    pub async fn room_aliases(
        &self,
        session: &UserSession,
        room_id: &RoomId,
    ) -> Result<Vec<String>> {
        self.require_joined(room_id, &session.user_id).await?;
        let room = room_id.to_string();
        Ok(self
            .db
            .read(move |c| storage::rooms::aliases_of_room(c, &room))
            .await?)
    }
}
