//! Rooms as a user meets them: creating, joining, inviting and leaving, sending events and reading
//! state, members and history back. Each helper asserts that the server said yes and returns what
//! a story needs next (a room ID, an event ID, a content); to check a refusal, a story sends the
//! request itself, using [`room_path`] and [`query`] to spell the URL.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::client::encode;
use crate::reply::Reply;
use crate::user::User;

/// A long `/messages` walk is cut off after this many pages, so a server whose tokens never
/// advance fails the test instead of hanging it.
const MAX_PAGES: usize = 20_000;

/// `/_matrix/client/v3/rooms/{roomId}/{rest}`, with the room ID percent-encoded. `rest` is used as
/// given, so encode any IDs inside it (`format!("event/{}", encode(&event_id))`).
pub fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

/// The path of one piece of state: `/rooms/{roomId}/state/{type}/{stateKey}`. An empty state key
/// leaves a trailing slash, the form most clients send.
pub fn state_path(room_id: &str, event_type: &str, state_key: &str) -> String {
    room_path(
        room_id,
        &format!("state/{}/{}", encode(event_type), encode(state_key)),
    )
}

/// A query string (`?a=1&b=2`) with every value percent-encoded; empty for no pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let joined: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

/// A transaction ID no other request of this test process uses.
pub fn txn_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "txn-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `content.body` of each event in `events` that has one, in order (state events and other
/// events without a body are skipped).
pub fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// The `chunk` array of a `/messages` (or `/members`) answer.
pub fn chunk(body: &Value) -> Vec<Value> {
    body["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("the answer has no chunk array: {body:#}"))
        .clone()
}

fn string_field(reply: &Reply, name: &str) -> String {
    reply.ok()[name]
        .as_str()
        .unwrap_or_else(|| panic!("the answer has no {name}:\n{reply}"))
        .to_owned()
}

impl User {
    /// `POST /createRoom` with `body`; returns the new room's ID.
    pub async fn create_room(&self, body: Value) -> String {
        let reply = self.post("/_matrix/client/v3/createRoom", body).await;
        string_field(&reply, "room_id")
    }

    /// `POST /join/{roomIdOrAlias}` with an empty body; returns the joined room's ID.
    pub async fn join(&self, room_id_or_alias: &str) -> String {
        let path = format!("/_matrix/client/v3/join/{}", encode(room_id_or_alias));
        let reply = self.post(&path, json!({})).await;
        string_field(&reply, "room_id")
    }

    /// `POST /rooms/{roomId}/invite` for `user_id`.
    pub async fn invite(&self, room_id: &str, user_id: &str) {
        self.post(&room_path(room_id, "invite"), json!({"user_id": user_id}))
            .await
            .ok();
    }

    /// `POST /rooms/{roomId}/leave` (which also rejects an invite or withdraws a knock).
    pub async fn leave(&self, room_id: &str) {
        self.post(&room_path(room_id, "leave"), json!({}))
            .await
            .ok();
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` with a fresh transaction ID; returns the
    /// event ID.
    pub async fn send_event(&self, room_id: &str, event_type: &str, content: Value) -> String {
        let path = room_path(
            room_id,
            &format!("send/{}/{}", encode(event_type), txn_id()),
        );
        let reply = self.put(&path, content).await;
        string_field(&reply, "event_id")
    }

    /// Sends an `m.text` message with `body`; returns the event ID.
    pub async fn send_message(&self, room_id: &str, body: &str) -> String {
        self.send_event(
            room_id,
            "m.room.message",
            json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    /// `PUT /rooms/{roomId}/state/{type}/{stateKey}`; returns the event ID.
    pub async fn set_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        let path = state_path(room_id, event_type, state_key);
        let reply = self.put(&path, content).await;
        string_field(&reply, "event_id")
    }

    /// The content of one piece of current state, as `GET /rooms/{roomId}/state/{type}/{key}`
    /// returns it.
    pub async fn state(&self, room_id: &str, event_type: &str, state_key: &str) -> Value {
        self.get(&state_path(room_id, event_type, state_key))
            .await
            .ok()
    }

    /// Every event of the current state, as `GET /rooms/{roomId}/state` returns them.
    pub async fn state_events(&self, room_id: &str) -> Vec<Value> {
        let reply = self.get(&room_path(room_id, "state")).await;
        reply
            .ok()
            .as_array()
            .unwrap_or_else(|| panic!("GET /state must answer an array of events:\n{reply}"))
            .clone()
    }

    /// One piece of current state as a whole event (sender, event ID, ...), found in
    /// `GET /rooms/{roomId}/state`; panics if the state has no such event.
    pub async fn state_event(&self, room_id: &str, event_type: &str, state_key: &str) -> Value {
        let state = self.state_events(room_id).await;
        state
            .iter()
            .find(|e| e["type"] == event_type && e["state_key"] == state_key)
            .cloned()
            .unwrap_or_else(|| {
                panic!("no {event_type}/{state_key:?} in the state of {room_id}: {state:#?}")
            })
    }

    /// `GET /rooms/{roomId}/event/{eventId}`, asserting that this user may see it.
    pub async fn event(&self, room_id: &str, event_id: &str) -> Value {
        self.get(&room_path(room_id, &format!("event/{}", encode(event_id))))
            .await
            .ok()
    }

    /// Changes one user's level in `m.room.power_levels`, keeping the rest of the content.
    pub async fn set_power_level(&self, room_id: &str, user_id: &str, level: i64) {
        let mut levels = self.state(room_id, "m.room.power_levels", "").await;
        levels["users"][user_id] = json!(level);
        self.set_state(room_id, "m.room.power_levels", "", levels)
            .await;
    }

    /// The room IDs of `GET /joined_rooms`.
    pub async fn joined_rooms(&self) -> Vec<String> {
        let reply = self.get("/_matrix/client/v3/joined_rooms").await;
        let body = reply.ok();
        let rooms = body["joined_rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("no joined_rooms array in\n{reply}"));
        rooms
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The user IDs of `GET /rooms/{roomId}/joined_members`, sorted.
    pub async fn joined_members(&self, room_id: &str) -> Vec<String> {
        let reply = self.get(&room_path(room_id, "joined_members")).await;
        let body = reply.ok();
        let joined = body["joined"]
            .as_object()
            .unwrap_or_else(|| panic!("no joined object in\n{reply}"));
        let mut users: Vec<String> = joined.keys().cloned().collect();
        users.sort();
        users
    }

    /// `(user_id, membership)` for each event of `GET /rooms/{roomId}/members{query}`, sorted
    /// by user ID. Pass `""` for no filter, or e.g. `"?membership=join"`.
    pub async fn members(&self, room_id: &str, query: &str) -> Vec<(String, String)> {
        let reply = self
            .get(&room_path(room_id, &format!("members{query}")))
            .await;
        let mut members: Vec<(String, String)> = chunk(&reply.ok())
            .iter()
            .map(|event| {
                (
                    event["state_key"].as_str().unwrap_or_default().to_owned(),
                    event["content"]["membership"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        members.sort();
        members
    }

    /// One page of `GET /rooms/{roomId}/messages`: `dir` is `"b"` or `"f"`, `from` a token from
    /// an earlier page (`None` starts at the latest event for `b`, the first for `f`).
    pub async fn messages(
        &self,
        room_id: &str,
        dir: &str,
        from: Option<&str>,
        limit: u32,
    ) -> Value {
        let limit = limit.to_string();
        let mut pairs = vec![("dir", dir), ("limit", limit.as_str())];
        if let Some(from) = from {
            pairs.push(("from", from));
        }
        self.messages_with(room_id, &pairs).await.ok()
    }

    /// The bodies of the latest (up to 100) `m.room.message` events of a room, oldest first.
    pub async fn latest_bodies(&self, room_id: &str) -> Vec<String> {
        let page = self.messages(room_id, "b", None, 100).await;
        let mut bodies: Vec<String> = page["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        bodies.reverse();
        bodies
    }

    /// `POST /join/{roomIdOrAlias}?server_name=…`: joins through another server, reply unchecked.
    pub async fn join_via(&self, room_id_or_alias: &str, server: &str) -> Reply {
        let path = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            encode(room_id_or_alias),
            encode(server)
        );
        self.post(&path, serde_json::json!({})).await
    }

    /// `GET /rooms/{roomId}/messages` with any query parameters (`to`, `filter`, ...), returning
    /// the reply unchecked.
    pub async fn messages_with(&self, room_id: &str, pairs: &[(&str, &str)]) -> Reply {
        self.get(&room_path(room_id, &format!("messages{}", query(pairs))))
            .await
    }

    /// Every event `/messages` yields walking in direction `dir` from the latest (`b`) or first
    /// (`f`) event, `page` at a time, following `end` tokens until the server omits `end`.
    pub async fn all_messages(&self, room_id: &str, dir: &str, page: u32) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = self.messages(room_id, dir, from.as_deref(), page).await;
            let batch = chunk(&body);
            let Some(end) = body["end"].as_str() else {
                events.extend(batch);
                return events;
            };
            assert!(
                !(batch.is_empty() && from.as_deref() == Some(end)),
                "/messages dir={dir} stalled: from={end} gave an empty chunk and the same end token"
            );
            events.extend(batch);
            from = Some(end.to_owned());
        }
        panic!("/messages dir={dir} still had an end token after {MAX_PAGES} pages of {page}");
    }
}

/// Relating events: reactions, edits and thread replies, each sent as a user of a client would.
impl User {
    /// Reacts to `event_id` with `key` (an `m.reaction` with an `m.annotation` relation); returns
    /// the reaction's event ID.
    pub async fn react(&self, room_id: &str, event_id: &str, key: &str) -> String {
        self.send_event(
            room_id,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}),
        )
        .await
    }

    /// Edits the message `event_id` to read `new_body` (an `m.replace` relation with
    /// `m.new_content`, and a `* new_body` fallback for clients without edits); returns the
    /// edit's event ID.
    pub async fn edit(&self, room_id: &str, event_id: &str, new_body: &str) -> String {
        self.send_event(
            room_id,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": format!("* {new_body}"),
                "m.new_content": {"msgtype": "m.text", "body": new_body},
                "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
            }),
        )
        .await
    }

    /// Replies with `body` in the thread rooted at `root` (an `m.thread` relation); returns the
    /// reply's event ID.
    pub async fn reply_in_thread(&self, room_id: &str, root: &str, body: &str) -> String {
        self.send_event(
            room_id,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": body,
                "m.relates_to": {"rel_type": "m.thread", "event_id": root},
            }),
        )
        .await
    }
}
