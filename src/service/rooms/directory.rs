//! The public room directory: which rooms are published (`/directory/list/room/{roomId}`) and the
//! paginated, filterable list of them (`/publicRooms`), largest rooms first.
//!
//! Pages are keyed, not counted: a token names the (joined members, room id) of the room at the
//! edge of the page it came from, and the next page starts strictly after (or, for `prev_batch`,
//! strictly before) it along the `rooms_published_by_size` index. A page without a filter costs
//! O(log n + limit) however deep into the directory it is; a search term costs a scan of the
//! published rooms from the token on, until the page is full.

use ruma::api::federation::directory::get_public_rooms_filtered;
use ruma::directory::{Filter, PublicRoomsChunk, RoomNetwork, RoomTypeFilter};
use ruma::room::RoomSummary;
use ruma::{OwnedServerName, RoomId, ServerName, UInt};
use rusqlite::Connection;
use serde_json::Value as JsonValue;

use super::super::{Error, Result, Services, UserSession};
use super::remote_join::remote_error;
use super::summary::{directory_chunk, read_summary};
use crate::storage::{self, directory::DirectoryKey};

/// Rooms per page when the client gives no limit.
const DEFAULT_LIMIT: u64 = 100;
/// The most rooms one page returns.
const MAX_LIMIT: u64 = 500;
/// Rooms read from the index at a time while filling a filtered page.
const SCAN_BATCH: usize = 200;

/// `/publicRooms` parameters (the `GET` form has no filter and the default network).
#[derive(Clone)]
pub struct PublicRoomsQuery {
    pub server: Option<OwnedServerName>,
    pub limit: Option<u64>,
    pub since: Option<String>,
    pub filter: Filter,
    pub network: RoomNetwork,
}

/// One page of the directory.
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: u64,
}

/// A pagination token: the edge room of a page and which side of it the next page lies on.
#[derive(Debug, PartialEq, Eq)]
struct DirectoryToken {
    backwards: bool,
    key: DirectoryKey,
}

impl DirectoryToken {
    fn encode(&self) -> String {
        let side = if self.backwards { 'p' } else { 'n' };
        format!("{side}{}_{}", self.key.joined_members, self.key.room_id)
    }

    fn parse(token: &str) -> Result<DirectoryToken> {
        let invalid = || Error::InvalidParam(format!("invalid pagination token {token:?}"));
        let backwards = match token.chars().next() {
            Some('n') => false,
            Some('p') => true,
            _ => return Err(invalid()),
        };
        let (joined, room) = token[1..].split_once('_').ok_or_else(invalid)?;
        let joined_members = joined.parse::<i64>().map_err(|_| invalid())?;
        let room_id = RoomId::parse(room).map_err(|_| invalid())?;
        Ok(DirectoryToken {
            backwards,
            key: DirectoryKey {
                joined_members,
                room_id: room_id.to_string(),
            },
        })
    }
}

impl Services {
    /// Another server's directory, asked of it over federation (`POST /publicRooms`, which
    /// carries the filter and the network); its pagination tokens are passed through as they are.
    async fn remote_public_rooms(
        &self,
        server: &ServerName,
        query: PublicRoomsQuery,
    ) -> Result<PublicRoomsPage> {
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = query.limit.map(|l| UInt::new_saturating(l.min(MAX_LIMIT)));
        request.since = query.since;
        request.filter = query.filter;
        request.room_network = query.network;
        let response = self
            .federation
            .send(server, request)
            .await
            .map_err(|e| remote_error(server, e))?;
        Ok(PublicRoomsPage {
            chunk: response.chunk,
            next_batch: response.next_batch,
            prev_batch: response.prev_batch,
            total_room_count_estimate: response.total_room_count_estimate.map_or(0, u64::from),
        })
    }

    /// A page of the public room directory (another server's when `query.server` names one).
    pub async fn public_rooms(&self, query: PublicRoomsQuery) -> Result<PublicRoomsPage> {
        if let Some(server) = &query.server
            && server != self.server_name()
        {
            return self.remote_public_rooms(server, query.clone()).await;
        }
        let since = query
            .since
            .as_deref()
            .map(DirectoryToken::parse)
            .transpose()?;
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize;
        // Rooms of application service networks (bridges) are not kept apart yet, so a named
        // third-party network has no rooms and "all networks" is this server's directory.
        if matches!(query.network, RoomNetwork::ThirdParty(_)) {
            return Ok(PublicRoomsPage {
                chunk: Vec::new(),
                next_batch: None,
                prev_batch: None,
                total_room_count_estimate: 0,
            });
        }
        let matcher = Matcher::new(&query.filter);
        self.db
            .read(move |c| directory_page(c, since, limit, &matcher))
            .await
            .map_err(Error::from)
    }

    /// Whether a room is published in the directory; `M_NOT_FOUND` for an unknown room.
    pub async fn room_directory_visibility(&self, room_id: &RoomId) -> Result<bool> {
        let room = room_id.to_string();
        let row = self
            .db
            .read(move |c| storage::events::get_room(c, &room))
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("room {room_id} is not known to this server"))
            })?;
        Ok(row.published)
    }

    /// Publishes a room in the directory or takes it out. Allowed to server admins, and to
    /// members with the power to change the room's canonical alias: both say how the room is
    /// found, so whoever may do one may do the other.
    pub async fn set_room_directory_visibility(
        &self,
        session: &UserSession,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        self.room_directory_visibility(room_id).await?;
        if !session.is_admin {
            let joined = self.membership_of(room_id, &session.user_id).await?;
            if joined.as_deref() != Some("join") {
                return Err(Error::Forbidden(format!(
                    "you must be in {room_id} to change whether it is published"
                )));
            }
            let levels = self.power_levels(room_id).await?;
            let needed = alias_level(&levels);
            if self.user_power(room_id, &levels, &session.user_id).await? < needed {
                return Err(Error::Forbidden(format!(
                    "publishing {room_id} needs the power to set its canonical alias ({needed})"
                )));
            }
        }
        let room = room_id.to_string();
        self.db
            .write("set_room_published", move |c| {
                storage::events::set_room_published_txn(c, &room, public)
            })
            .await?;
        Ok(())
    }
}

/// The level needed to send `m.room.canonical_alias`: its own entry in `events`, else
/// `state_default` (50 when unset, 0 in a room without power levels at all).
fn alias_level(levels: &JsonValue) -> i64 {
    let no_levels = levels.as_object().is_none_or(|l| l.is_empty());
    levels
        .pointer("/events/m.room.canonical_alias")
        .or_else(|| levels.get("state_default"))
        .and_then(JsonValue::as_i64)
        .unwrap_or(if no_levels { 0 } else { 50 })
}

/// Fills one page: walks the index from the token in its direction, summarising rooms and keeping
/// those the filter accepts, one more than the page holds to learn whether there is a next page.
fn directory_page(
    conn: &Connection,
    since: Option<DirectoryToken>,
    limit: usize,
    matcher: &Matcher,
) -> storage::Result<PublicRoomsPage> {
    let total = storage::directory::count_published_rooms(conn)?.max(0) as u64;
    let backwards = since.as_ref().is_some_and(|t| t.backwards);
    let mut cursor = since.as_ref().map(|t| t.key.clone());
    let mut page: Vec<(DirectoryKey, RoomSummary)> = Vec::new();
    let mut more = false;
    let batch_size = if matcher.is_empty() {
        limit + 1
    } else {
        SCAN_BATCH
    };
    let mut exhausted = limit == 0;
    'scan: while !exhausted {
        let batch =
            storage::directory::published_rooms(conn, cursor.as_ref(), backwards, batch_size)?;
        exhausted = batch.len() < batch_size;
        for key in batch {
            cursor = Some(key.clone());
            let Ok(room_id) = RoomId::parse(&key.room_id) else {
                continue;
            };
            let Some(summary) = read_summary(conn, &room_id)? else {
                continue;
            };
            if !matcher.accepts(&summary) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break 'scan;
            }
            page.push((key, summary));
        }
    }
    if backwards {
        page.reverse();
    }
    let token = |backwards: bool, key: Option<&DirectoryKey>| {
        key.map(|key| {
            DirectoryToken {
                backwards,
                key: key.clone(),
            }
            .encode()
        })
    };
    let first = page.first().map(|(key, _)| key);
    let last = page.last().map(|(key, _)| key);
    // Going forwards, there is something before this page exactly when it did not start at the
    // top; going backwards, there is something after it: the page the token came from.
    let (prev_batch, next_batch) = if backwards {
        (token(true, first.filter(|_| more)), token(false, last))
    } else {
        (
            token(true, first.filter(|_| since.is_some())),
            token(false, last.filter(|_| more)),
        )
    };
    Ok(PublicRoomsPage {
        chunk: page
            .into_iter()
            .map(|(_, summary)| directory_chunk(summary))
            .collect(),
        next_batch,
        prev_batch,
        total_room_count_estimate: total,
    })
}

/// The `/publicRooms` filter: a search term matched case-insensitively against the name, topic and
/// canonical alias, and a list of room types (`None` standing for rooms without a type).
struct Matcher {
    term: Option<String>,
    room_types: Option<Vec<Option<String>>>,
}

impl Matcher {
    fn new(filter: &Filter) -> Matcher {
        let term = filter
            .generic_search_term
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase);
        let room_types = (!filter.room_types.is_empty()).then(|| {
            filter
                .room_types
                .iter()
                .map(|t: &RoomTypeFilter| t.as_str().map(str::to_owned))
                .collect()
        });
        Matcher { term, room_types }
    }

    fn is_empty(&self) -> bool {
        self.term.is_none() && self.room_types.is_none()
    }

    fn accepts(&self, summary: &RoomSummary) -> bool {
        if let Some(types) = &self.room_types {
            let room_type = summary.room_type.as_ref().map(|t| t.as_str());
            if !types.iter().any(|t| t.as_deref() == room_type) {
                return false;
            }
        }
        let Some(term) = &self.term else {
            return true;
        };
        let alias = summary.canonical_alias.as_ref().map(|a| a.as_str());
        [summary.name.as_deref(), summary.topic.as_deref(), alias]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(term.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let token = DirectoryToken {
            backwards: true,
            key: DirectoryKey {
                joined_members: 12,
                room_id: "!a_b:x".into(),
            },
        };
        assert_eq!(DirectoryToken::parse(&token.encode()).unwrap(), token);
        for bad in [
            "",
            "x1_!a:x",
            "n_!a:x",
            "nabc_!a:x",
            "n1_notaroom",
            "n1",
            "é",
        ] {
            assert!(
                matches!(DirectoryToken::parse(bad), Err(Error::InvalidParam(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_alias_level_follows_the_power_levels() {
        assert_eq!(alias_level(&json!({})), 0);
        assert_eq!(alias_level(&json!({"users": {}})), 50);
        assert_eq!(alias_level(&json!({"state_default": 20})), 20);
        assert_eq!(
            alias_level(&json!({"state_default": 20, "events": {"m.room.canonical_alias": 70}})),
            70
        );
    }

    #[test]
    fn the_filter_matches_name_topic_alias_and_room_type() {
        let room = RoomId::parse("!r:x").unwrap();
        let mut summary = RoomSummary::new(
            room,
            ruma::room::JoinRuleSummary::Public,
            false,
            ruma::UInt::from(1u32),
            false,
        );
        summary.name = Some("Knitting Circle".into());
        summary.topic = Some("Wool and needles".into());
        summary.canonical_alias = ruma::OwnedRoomAliasId::try_from("#yarn:x").ok();
        let matches = |term: &str, types: Vec<RoomTypeFilter>| {
            let mut filter = Filter::new();
            filter.generic_search_term = Some(term.to_owned());
            filter.room_types = types;
            Matcher::new(&filter).accepts(&summary)
        };
        assert!(matches("knit", vec![]));
        assert!(matches("NEEDLES", vec![]));
        assert!(matches("#YARN", vec![]));
        assert!(matches("  ", vec![]), "a blank term matches everything");
        assert!(!matches("crochet", vec![]));
        assert!(matches("", vec![RoomTypeFilter::Default]));
        assert!(!matches("", vec![RoomTypeFilter::Space]));
    }
}
