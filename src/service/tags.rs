//! Room tags (`m.favourite`, `u.work`, …): kept as the room account data `m.tag`, content
//! `{"tags": {name: {"order": n}}}`, so that every tag change is an account-data change `/sync`
//! delivers. A tag change reads and rewrites `m.tag` inside one write closure, so two concurrent
//! changes of one room's tags never lose each other.

use ruma::events::tag::{TagInfo, TagName, Tags};
use ruma::{RoomId, UserId};
use serde_json::{Map, Value as JsonValue, json};

use super::account_data::require_self;
use super::{Error, Result, Services};
use crate::storage;

/// The longest tag name accepted, in bytes (as other homeservers limit it).
const MAX_TAG_BYTES: usize = 255;

const TAG_TYPE: &str = "m.tag";

impl Services {
    /// The caller's tags on a room; none when no tag was ever set.
    pub async fn get_tags(
        &self,
        caller: &UserId,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Tags> {
        require_self(caller, user_id, "read room tags")?;
        let content = self.account_data(user_id, Some(room_id), TAG_TYPE).await?;
        Ok(content.as_ref().map(tags_of).unwrap_or_default())
    }

    /// Adds a tag to a room, or changes its order.
    pub async fn set_tag(
        &self,
        caller: &UserId,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        info: &TagInfo,
    ) -> Result<()> {
        require_self(caller, user_id, "tag rooms")?;
        validate_tag(tag)?;
        if let Some(order) = info.order
            && !(0.0..=1.0).contains(&order)
        {
            return Err(Error::InvalidParam(format!(
                "a tag's order must be a number from 0 to 1, not {order}"
            )));
        }
        let info = serde_json::to_value(info)
            .map_err(|e| Error::Internal(format!("cannot serialise a tag: {e}")))?;
        self.change_tags(user_id, room_id, tag, Some(info)).await
    }

    /// Removes a tag from a room; removing a tag the room does not have changes nothing.
    pub async fn delete_tag(
        &self,
        caller: &UserId,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
    ) -> Result<()> {
        require_self(caller, user_id, "untag rooms")?;
        self.change_tags(user_id, room_id, tag, None).await
    }

    /// Sets (`Some`) or removes (`None`) one tag in `m.tag`, keeping everything else of the
    /// content as stored. Returns without writing when nothing would change.
    async fn change_tags(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        info: Option<JsonValue>,
    ) -> Result<()> {
        let (user, room, name) = (user_id.to_owned(), room_id.to_owned(), tag.to_owned());
        let position = self
            .db
            .write("set_room_tag", move |txn| {
                use storage::account_data::{get_account_data, set_account_data_txn};
                let stored = get_account_data(txn, &user, Some(&room), TAG_TYPE)?;
                let Some(content) = with_tag(stored, &name, info) else {
                    return Ok(None);
                };
                set_account_data_txn(txn, &user, Some(&room), TAG_TYPE, &content).map(Some)
            })
            .await?;
        if let Some(position) = position {
            self.notifier.user_changed(user_id, position);
        }
        Ok(())
    }
}

fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(Error::InvalidParam(format!(
            "tag names must be 1 to {MAX_TAG_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The `m.tag` content after setting or removing one tag, or `None` if it would not change. A
/// content that is not of the expected shape (room account data can be set to anything) is
/// repaired rather than refused, so a client can always tag again.
fn with_tag(stored: Option<JsonValue>, tag: &str, info: Option<JsonValue>) -> Option<JsonValue> {
    let mut content = match stored {
        Some(JsonValue::Object(content)) => content,
        _ => Map::new(),
    };
    let tags = content
        .entry("tags")
        .and_modify(|tags| {
            if !tags.is_object() {
                *tags = json!({});
            }
        })
        .or_insert_with(|| json!({}));
    let JsonValue::Object(tags) = tags else {
        return None;
    };
    match info {
        Some(info) => {
            if tags.get(tag) == Some(&info) {
                return None;
            }
            tags.insert(tag.to_owned(), info);
        }
        None => {
            tags.remove(tag)?;
        }
    }
    Some(JsonValue::Object(content))
}

/// The tags of an `m.tag` content; entries that do not parse as a tag are left out.
fn tags_of(content: &JsonValue) -> Tags {
    let Some(tags) = content.get("tags").and_then(JsonValue::as_object) else {
        return Tags::new();
    };
    tags.iter()
        .filter_map(|(name, info)| {
            let info = serde_json::from_value::<TagInfo>(info.clone()).ok()?;
            Some((TagName::from(name.as_str()), info))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_added_changed_and_removed_in_place() {
        let content = with_tag(None, "u.work", Some(json!({"order": 0.5}))).unwrap();
        assert_eq!(content, json!({"tags": {"u.work": {"order": 0.5}}}));
        assert_eq!(
            with_tag(Some(content.clone()), "u.work", Some(json!({"order": 0.5}))),
            None
        );
        let content = with_tag(Some(content), "m.favourite", Some(json!({}))).unwrap();
        let content = with_tag(Some(content), "u.work", None).unwrap();
        assert_eq!(content, json!({"tags": {"m.favourite": {}}}));
        assert_eq!(with_tag(Some(content), "u.gone", None), None);
    }

    #[test]
    fn a_malformed_tag_content_is_repaired_and_read_leniently() {
        let stored = json!({"tags": ["nope"], "other": 1});
        let content = with_tag(Some(stored), "u.a", Some(json!({}))).unwrap();
        assert_eq!(content, json!({"tags": {"u.a": {}}, "other": 1}));

        let tags = tags_of(&json!({"tags": {"u.a": {"order": 0.25}, "u.b": {"order": "x"}}}));
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[&TagName::from("u.a")].order, Some(0.25));
    }

    #[test]
    fn tag_names_have_a_length_limit() {
        assert!(validate_tag("u.work").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"x".repeat(MAX_TAG_BYTES)).is_ok());
        assert!(validate_tag(&"x".repeat(MAX_TAG_BYTES + 1)).is_err());
    }
}
