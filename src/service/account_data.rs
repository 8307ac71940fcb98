//! Account data: the JSON objects a client stores for its user, globally or per room, and the
//! account-data stream `/sync` reads them from. Every change takes the next stream position (in
//! the write transaction) and then wakes the user's listeners with it.
//!
//! `m.direct`, `m.ignored_user_list` and the like are ordinary global account data here; room
//! tags are the room account data `m.tag` (see `tags.rs`). Types the server manages itself are
//! refused from clients: `m.fully_read` is set through read markers, `m.push_rules` through
//! `/pushrules`; those paths call `store_account_data` directly.

use std::collections::{BTreeSet, HashMap};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::Value as JsonValue;

use super::{Error, Result, Services};
use crate::storage;

/// Account data types clients may read but never set through `/account_data`.
const SERVER_MANAGED: [&str; 2] = ["m.fully_read", "m.push_rules"];

/// What changed in a user's account data after a position: the current content of each changed
/// piece, and the position these changes bring the user up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountDataChanges {
    /// `(type, content)` of changed global account data, in stream order.
    pub global: Vec<(String, JsonValue)>,
    /// `(type, content)` of changed room account data per room, in stream order.
    pub rooms: HashMap<OwnedRoomId, Vec<(String, JsonValue)>>,
    /// The account-data stream position the answer is complete up to; the next `since`.
    pub position: i64,
}

impl AccountDataChanges {
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.rooms.is_empty()
    }
}

impl Services {
    /// Sets a piece of the caller's own account data (global when `room_id` is `None`) for
    /// `PUT …/account_data/{type}`.
    pub async fn set_account_data(
        &self,
        caller: &UserId,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: JsonValue,
    ) -> Result<()> {
        require_self(caller, user_id, "set account data")?;
        if SERVER_MANAGED.contains(&data_type) {
            return Err(Error::ServerManaged(format!(
                "cannot set {data_type} through this API"
            )));
        }
        if !content.is_object() {
            return Err(Error::BadJson("account data must be a JSON object".into()));
        }
        self.store_account_data(user_id, room_id, data_type, content)
            .await?;
        Ok(())
    }

    /// A piece of the caller's own account data for `GET …/account_data/{type}`; `M_NOT_FOUND`
    /// when it was never set.
    pub async fn get_account_data(
        &self,
        caller: &UserId,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<JsonValue> {
        require_self(caller, user_id, "read account data")?;
        self.account_data(user_id, room_id, data_type)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no {data_type} account data")))
    }

    /// Writes a piece of account data without the checks of the client API (for the server's own
    /// types: read markers, push rules), wakes the user's listeners, and returns its position.
    pub async fn store_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: JsonValue,
    ) -> Result<i64> {
        let (user, room, kind) = (
            user_id.to_owned(),
            room_id.map(RoomId::to_owned),
            data_type.to_owned(),
        );
        let position = self
            .db
            .write("set_account_data", move |txn| {
                storage::account_data::set_account_data_txn(
                    txn,
                    &user,
                    room.as_deref(),
                    &kind,
                    &content,
                )
            })
            .await?;
        self.notifier.user_changed(user_id, position);
        Ok(position)
    }

    /// A piece of account data of `user_id`, if set; no permission check.
    pub async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<Option<JsonValue>> {
        let (user, room, kind) = (
            user_id.to_owned(),
            room_id.map(RoomId::to_owned),
            data_type.to_owned(),
        );
        Ok(self
            .db
            .read(move |c| {
                storage::account_data::get_account_data(c, &user, room.as_deref(), &kind)
            })
            .await?)
    }

    /// The users `user_id` ignores (`m.ignored_user_list`).
    pub async fn ignored_users(&self, user_id: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let user = user_id.to_owned();
        self.db
            .read(move |c| Ok(ignored_users_in(c, &user)))
            .await?
    }

    #[cfg(test)]
    /// The account data of `user_id` changed after position `since` (0: all of it), each piece
    /// with its current content, and the position the answer is complete up to.
    pub async fn account_data_since(
        &self,
        user_id: &UserId,
        since: i64,
    ) -> Result<AccountDataChanges> {
        let user = user_id.to_owned();
        self.db
            .read(move |c| Ok(account_data_changes(c, &user, since)))
            .await?
    }

    #[cfg(test)]
    /// The position of the latest committed account-data change (0 before the first).
    pub async fn account_data_position(&self) -> Result<i64> {
        Ok(self.db.read(storage::account_data::max_stream_id).await?)
    }
}

/// `ignored_users` over an open connection. Entries that are not user ids are skipped: the list is
/// whatever the client stored.
pub(crate) fn ignored_users_in(
    c: &rusqlite::Connection,
    user_id: &UserId,
) -> Result<BTreeSet<OwnedUserId>> {
    let content = storage::account_data::get_account_data(c, user_id, None, "m.ignored_user_list")?;
    let ignored = content
        .as_ref()
        .and_then(|c| c.get("ignored_users"))
        .and_then(JsonValue::as_object);
    Ok(ignored
        .into_iter()
        .flat_map(|users| users.keys())
        .filter_map(|user| OwnedUserId::try_from(user.as_str()).ok())
        .collect())
}

/// The account data of `user_id` changed after position `since` (0: all of it), each piece with
/// its current content, and the position the answer is complete up to; read over an open
/// connection, inside `/sync`'s one read.
pub(crate) fn account_data_changes(
    c: &rusqlite::Connection,
    user_id: &UserId,
    since: i64,
) -> Result<AccountDataChanges> {
    // The bound is read first: every position up to it is committed, so the answer is complete
    // up to it. A piece changed again meanwhile moves past the bound and is delivered from the
    // next `since`, with its newer content.
    let position = storage::account_data::max_stream_id(c)?;
    let rows = storage::account_data::get_account_data_between(c, user_id, since, position)?;
    let mut changes = AccountDataChanges {
        position: position.max(since),
        ..AccountDataChanges::default()
    };
    for row in rows {
        match row.room_id {
            None => changes.global.push((row.data_type, row.content)),
            Some(room) => match OwnedRoomId::try_from(room) {
                Ok(room) => changes
                    .rooms
                    .entry(room)
                    .or_default()
                    .push((row.data_type, row.content)),
                Err(e) => tracing::warn!(error = %e, "account data with an invalid room id"),
            },
        }
    }
    Ok(changes)
}

/// Account data and filters are private to their user: even a server admin may not touch them
/// through the client API.
pub(super) fn require_self(caller: &UserId, user_id: &UserId, what: &str) -> Result<()> {
    if caller == user_id {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "you can only {what} for yourself"
        )))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    /// Services over a fresh database, with `users` registered (account data belongs to a user).
    pub(in crate::service) async fn services_with(
        users: &[&UserId],
    ) -> (tempfile::TempDir, Services) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let db = crate::server::open_database(&config).unwrap();
        let services = crate::server::build_services(config, db).unwrap();
        for user in users {
            let user = (*user).to_owned();
            services
                .db
                .write("insert_user", move |txn| {
                    storage::users::insert_user_txn(txn, &user, None, false)
                })
                .await
                .unwrap();
        }
        (dir, services)
    }

    #[tokio::test]
    async fn sync_reads_what_changed_since_a_position_and_is_woken_by_changes() {
        let alice: &UserId = "@alice:localhost".try_into().unwrap();
        let bob: &UserId = "@bob:localhost".try_into().unwrap();
        let room: OwnedRoomId = "!room:localhost".try_into().unwrap();
        let (_dir, services) = services_with(&[alice, bob]).await;
        assert_eq!(services.account_data_position().await.unwrap(), 0);
        let woken = services.notifier.subscribe_user(alice);

        services
            .set_account_data(
                alice,
                alice,
                None,
                "m.direct",
                json!({"@bob:localhost": []}),
            )
            .await
            .unwrap();
        assert!(woken.has_changed().unwrap());
        services
            .set_account_data(bob, bob, None, "m.direct", json!({}))
            .await
            .unwrap();
        services
            .set_tag(
                alice,
                alice,
                &room,
                "u.work",
                &ruma::events::tag::TagInfo::new(),
            )
            .await
            .unwrap();

        let all = services.account_data_since(alice, 0).await.unwrap();
        assert_eq!(all.position, 3);
        assert_eq!(
            all.global,
            vec![("m.direct".to_owned(), json!({"@bob:localhost": []}))]
        );
        assert_eq!(
            all.rooms[&room],
            vec![("m.tag".to_owned(), json!({"tags": {"u.work": {}}}))]
        );

        services
            .set_account_data(
                alice,
                alice,
                None,
                "m.direct",
                json!({"@carol:localhost": []}),
            )
            .await
            .unwrap();
        let since = services
            .account_data_since(alice, all.position)
            .await
            .unwrap();
        assert_eq!(since.position, 4);
        assert_eq!(
            since.global,
            vec![("m.direct".to_owned(), json!({"@carol:localhost": []}))]
        );
        assert!(since.rooms.is_empty());
        let nothing = services
            .account_data_since(alice, since.position)
            .await
            .unwrap();
        assert!(nothing.is_empty());
        assert_eq!(nothing.position, 4);
        assert_eq!(services.account_data_position().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn ignored_users_are_read_from_the_ignored_user_list() {
        let alice: &UserId = "@alice:localhost".try_into().unwrap();
        let (_dir, services) = services_with(&[alice]).await;
        assert!(services.ignored_users(alice).await.unwrap().is_empty());
        let list = json!({"ignored_users": {"@spam:localhost": {}, "not a user": {}}});
        services
            .set_account_data(alice, alice, None, "m.ignored_user_list", list)
            .await
            .unwrap();
        let ignored: Vec<String> = services
            .ignored_users(alice)
            .await
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(ignored, ["@spam:localhost"]);
    }
}
