//! Transactions other servers push to this one (`PUT /_matrix/federation/v1/send/{txnId}`): up
//! to 50 PDUs and 100 EDUs from one origin. Each PDU goes through the checks on receipt of a PDU
//! in the specification's order and gets its own answer (`{}` or an `error`); a failing PDU never
//! fails the transaction. The answer is stored per (origin, txn id), so a transaction sent again
//! gets the same answer without being processed twice.
//!
//! Per PDU: the room must be known here, the origin must have a joined member in it and not be
//! refused by its `m.room.server_acl`; the format must suit the room version; the event id is its
//! reference hash; the sender's server must have signed it (keys through
//! `Federation::verify_key` at the event's `origin_server_ts`); a wrong content hash carries on
//! with the redacted form. `prev_events` unknown here are asked from the origin with
//! `/get_missing_events` (`MISSING_EVENTS_LIMIT` per answer); a longer gap is asked again from
//! the oldest fetched events, up to `MISSING_EVENTS_ROUNDS` rounds (repeating first, so every
//! event of the gap that can be had reaches the timeline); the fetched events are processed
//! oldest first, without asking again for theirs. When the ingest still refuses the PDU for want
//! of events, its unknown auth events are fetched with `/event_auth`, and for a gap still open
//! the state at each missing prev event with `/state_ids` and `/event` (`rooms::outliers` checks
//! them and stores them as outliers); then it is ingested again, and refused if something is
//! still missing (nothing stored). A server the room's `m.room.server_acl` denies is refused
//! (`acl.rs`, also for `make_*`/`send_*`).
//! Authorization and storage are `rooms::ingest`'s.
//!
//! EDUs: `m.typing` and `m.receipt` of the origin's users in rooms where the origin is allowed are
//! applied (the user must be joined), and `m.presence` of the origin's users; other EDUs are
//! ignored (see `edus.rs`).

pub(crate) mod acl;
mod checks;
mod edus;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ruma::api::federation::event::get_missing_events;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::PublicKeyMap;
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName,
    OwnedServerSigningKeyId, RoomId, ServerName, UInt,
};
use serde_json::Value as JsonValue;
use serde_json::value::RawValue as RawJsonValue;

use super::rooms::{IngestChain, Ingested};
use super::{Error, Result, Services};
use crate::room;
use crate::storage::{self, received};

/// The most PDUs and EDUs one transaction may carry.
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;

/// How many missing events are asked from the origin for a PDU whose `prev_events` are unknown.
const MISSING_EVENTS_LIMIT: u32 = 10;

/// How many times `/get_missing_events` is asked for one PDU's gap (so at most
/// `MISSING_EVENTS_ROUNDS * MISSING_EVENTS_LIMIT` events are fetched for it).
const MISSING_EVENTS_ROUNDS: usize = 10;

/// The answer for each PDU of a transaction, by event id.
pub type PduResults = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

/// One PDU's answer: its event id (when it could be computed) and the outcome.
type PduAnswer = Option<(OwnedEventId, std::result::Result<(), String>)>;

impl Services {
    /// Processes transaction `txn_id` from `origin` (see the module docs) and answers per PDU.
    /// More than `MAX_PDUS` PDUs or `MAX_EDUS` EDUs is `M_BAD_JSON`; an internal failure is an
    /// error, so the origin sends the transaction again.
    pub async fn receive_transaction(
        self: &Arc<Self>,
        origin: &ServerName,
        txn_id: &str,
        pdus: &[Box<RawJsonValue>],
        edus: &[Box<RawJsonValue>],
    ) -> Result<PduResults> {
        if pdus.len() > MAX_PDUS {
            return Err(Error::BadJson(format!(
                "a transaction must not include more than {MAX_PDUS} PDUs"
            )));
        }
        if edus.len() > MAX_EDUS {
            return Err(Error::BadJson(format!(
                "a transaction must not include more than {MAX_EDUS} EDUs"
            )));
        }
        let (server, txn) = (origin.to_string(), txn_id.to_owned());
        let earlier = self
            .db
            .read(move |c| received::transaction_response(c, &server, &txn))
            .await?;
        if let Some(earlier) = earlier {
            tracing::debug!(server.name = %origin, txn.id = txn_id, "transaction received again");
            return decode_results(&earlier);
        }

        let mut results = PduResults::new();
        let mut chain = IngestChain::default();
        for pdu in pdus {
            if let Some((event_id, outcome)) =
                self.receive_pdu(origin, pdu, true, &mut chain).await?
            {
                results.insert(event_id, outcome);
            }
        }
        // Every PDU answered is committed before the answer.
        self.flush_chain(&mut chain).await?;
        for edu in edus {
            self.receive_edu(origin, edu).await;
        }

        let response = encode_results(&results)?;
        let (server, txn) = (origin.to_string(), txn_id.to_owned());
        self.db
            .write("record_received_transaction", move |c| {
                received::insert_transaction_response_txn(
                    c,
                    &server,
                    &txn,
                    &response,
                    storage::now_ms(),
                )
            })
            .await?;
        Ok(results)
    }

    /// One PDU through the checks on receipt; `None` when it is too malformed to have an id.
    /// `fetch_missing` asks the origin for unknown `prev_events` first (not for events that are
    /// themselves such an answer).
    fn receive_pdu<'a>(
        self: &'a Arc<Self>,
        origin: &'a ServerName,
        raw: &'a RawJsonValue,
        fetch_missing: bool,
        chain: &'a mut IngestChain,
    ) -> Pin<Box<dyn Future<Output = Result<PduAnswer>> + Send + 'a>> {
        Box::pin(async move {
            let Ok(json) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
                tracing::debug!(server.name = %origin, "dropped a PDU that is not a JSON object");
                return Ok(None);
            };
            let room_id = match checks::room_id_of(&json) {
                Ok(room_id) => room_id,
                Err(e) => return Ok(checks::fallback_event_id(&json).map(|id| (id, Err(e)))),
            };
            let known_rules = chain.rules_for(&room_id).cloned();
            let rules = match known_rules {
                Some(rules) => Ok(rules),
                None => self.room_rules(&room_id).await.map(|(_, rules)| rules),
            };
            let rules = match rules {
                Ok(rules) => rules,
                Err(Error::NotFound(_)) => {
                    let error = format!("room {room_id} is not known here");
                    return Ok(checks::fallback_event_id(&json).map(|id| (id, Err(error))));
                }
                Err(e) => return Err(e),
            };
            let Ok(event_id) = room::event_id_for(&rules, &json) else {
                tracing::debug!(server.name = %origin, room.id = %room_id, "dropped a PDU without a reference hash");
                return Ok(None);
            };
            let received = Received {
                room_id: &room_id,
                event_id: event_id.clone(),
                json,
            };
            let outcome = self
                .check_pdu(origin, &rules, received, fetch_missing, chain)
                .await?;
            if let Err(error) = &outcome {
                tracing::info!(server.name = %origin, room.id = %room_id, event.id = %event_id, %error, "received PDU not accepted");
            }
            Ok(Some((event_id, outcome)))
        })
    }

    async fn check_pdu(
        self: &Arc<Self>,
        origin: &ServerName,
        rules: &RoomVersionRules,
        received: Received<'_>,
        fetch_missing: bool,
        chain: &mut IngestChain,
    ) -> Result<std::result::Result<(), String>> {
        let Received {
            room_id,
            event_id,
            json,
        } = received;
        // A PDU on the event this transaction just added is new here, from an origin that may
        // send into the room (see `rooms::ingest_chain`).
        let on_chain = chain.follows(room_id, &checks::prev_event_ids(&json));
        if !on_chain {
            // Everything below reads what is committed.
            self.flush_chain(chain).await?;
        }
        if !on_chain && let Err(e) = self.origin_may_send(origin, room_id).await? {
            return Ok(Err(e));
        }
        if let Err(e) = room::check_format(rules, &json) {
            return Ok(Err(format!("malformed PDU: {e}")));
        }
        if !on_chain && let Some(known) = self.known_outcome(&event_id).await? {
            return Ok(known);
        }
        let keys = match checks::keys_to_fetch(rules, &json) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e)),
        };
        let origin_server_ts = json
            .get("origin_server_ts")
            .and_then(|v| v.as_integer())
            .and_then(|ts| UInt::try_from(i64::from(ts)).ok())
            .map(MilliSecondsSinceUnixEpoch)
            .unwrap_or_else(MilliSecondsSinceUnixEpoch::now);
        let key_map = self.public_keys(keys, origin_server_ts).await;
        let checked = match checks::verify_pdu(rules, event_id.clone(), room_id, json, &key_map) {
            Ok(checked) => checked,
            Err(e) => return Ok(Err(e)),
        };
        if checked.redacted {
            tracing::info!(server.name = %origin, event.id = %event_id, "content hash mismatch; keeping the redacted form");
        }
        if fetch_missing && !on_chain {
            self.fetch_missing_prev_events(origin, rules, &checked.pdu, chain)
                .await?;
        }
        let pdu = Arc::new(checked.pdu);
        let mut ingested = self.ingest_pdu(rules, pdu.clone(), chain).await?;
        if matches!(ingested, Ingested::Refused(_)) {
            // Events it needs are unknown here: its auth events from `/event_auth`, and for a gap
            // `/get_missing_events` could not close, the state at each missing prev event.
            self.fetch_missing_auth_events(origin, rules, &pdu).await?;
            if fetch_missing {
                let missing = self.unknown_events(pdu.prev_events.iter().cloned()).await?;
                for prev in missing {
                    self.fetch_state_at_gap(origin, rules, room_id, &prev)
                        .await?;
                }
            }
            ingested = self.ingest_pdu(rules, pdu, chain).await?;
        }
        Ok(match ingested {
            Ingested::Accepted | Ingested::SoftFailed(_) => Ok(()),
            Ingested::Rejected(reason) | Ingested::Refused(reason) => Err(reason),
        })
    }

    /// Whether `origin` may send into the room: it has a joined member there and the room's
    /// server ACL lets it in. The inner `Err` says why not.
    pub(super) async fn origin_may_send(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
    ) -> Result<std::result::Result<(), String>> {
        let (room, server) = (room_id.to_string(), origin.to_string());
        let joined = self
            .db
            .read(move |c| storage::room_servers::server_is_joined(c, &room, &server))
            .await?;
        if !self.acl_allows(origin, room_id).await? {
            return Ok(Err(format!(
                "{origin} is denied by the server ACL of {room_id}"
            )));
        }
        if !joined {
            return Ok(Err(format!("{origin} has no joined member in {room_id}")));
        }
        Ok(Ok(()))
    }

    /// The answer for an event stored before: accepted, or its rejection.
    async fn known_outcome(
        &self,
        event_id: &OwnedEventId,
    ) -> Result<Option<std::result::Result<(), String>>> {
        let ids = vec![event_id.to_string()];
        let stored = self
            .db
            .read(move |c| received::stored_events(c, &ids))
            .await?;
        Ok(stored
            .into_iter()
            .next()
            .map(|event| match event.rejected_reason {
                Some(reason) => Err(reason),
                None => Ok(()),
            }))
    }

    /// The public keys of `keys` valid at `at`, those that can be had; a missing one makes the
    /// signature check fail with a message naming the server.
    async fn public_keys(
        &self,
        keys: Vec<(OwnedServerName, OwnedServerSigningKeyId)>,
        at: MilliSecondsSinceUnixEpoch,
    ) -> PublicKeyMap {
        let mut map = PublicKeyMap::new();
        for (server, key_id) in keys {
            match self.federation.verify_key(&server, &key_id, at).await {
                Ok(key) => {
                    map.entry(server.to_string())
                        .or_default()
                        .insert(key_id.to_string(), key);
                }
                Err(e) => {
                    tracing::info!(server.name = %server, key.id = %key_id, error = %e, "no key to check a PDU signature");
                }
            }
        }
        map
    }

    /// Asks `origin` for the events between the room's forward extremities and `pdu` when some
    /// of its `prev_events` are unknown here, and processes them oldest first. What cannot be had
    /// is left for `ingest_pdu` to refuse.
    ///
    /// A gap longer than one answer (`MISSING_EVENTS_LIMIT`) is closed by asking again (the
    /// specification lets a server repeat `/get_missing_events` or take the state at the gap
    /// with `/state_ids`; repeating keeps every message of the gap in the timeline): each round
    /// asks for what comes before the fetched events whose `prev_events` are still unknown, up
    /// to `MISSING_EVENTS_ROUNDS` rounds.
    async fn fetch_missing_prev_events(
        self: &Arc<Self>,
        origin: &ServerName,
        rules: &RoomVersionRules,
        pdu: &room::Pdu,
        chain: &mut IngestChain,
    ) -> Result<()> {
        let ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let room = pdu.room_id.to_string();
        let (stored, extremities) = self
            .db
            .read(move |c| {
                let stored = received::stored_events(c, &ids)?.len();
                Ok((stored, received::extremities_with_state(c, &room)?))
            })
            .await?;
        if stored == pdu.prev_events.len() {
            return Ok(());
        }
        let earliest: Vec<OwnedEventId> = extremities
            .into_iter()
            .filter_map(|(id, _)| ruma::EventId::parse(id).ok())
            .collect();
        // Fetched events by id: depth, prev_events, the PDU.
        let mut fetched: BTreeMap<OwnedEventId, (u64, Vec<String>, Box<RawJsonValue>)> =
            BTreeMap::new();
        let mut latest = vec![pdu.event_id.clone()];
        for _ in 0..MISSING_EVENTS_ROUNDS {
            let mut request = get_missing_events::v1::Request::new(
                pdu.room_id.clone(),
                earliest.clone(),
                latest.clone(),
            );
            request.limit = UInt::from(MISSING_EVENTS_LIMIT);
            let events = match self.federation.send(origin, request).await {
                Ok(response) => response.events,
                Err(e) => {
                    tracing::info!(server.name = %origin, event.id = %pdu.event_id, error = %e, "cannot fetch missing prev events");
                    break;
                }
            };
            let mut new = 0;
            for raw in events.into_iter().take(MISSING_EVENTS_LIMIT as usize) {
                let Ok(json) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
                    continue;
                };
                let Ok(event_id) = room::event_id_for(rules, &json) else {
                    continue;
                };
                let prevs = prev_events_of(&raw);
                if let std::collections::btree_map::Entry::Vacant(entry) = fetched.entry(event_id) {
                    new += 1;
                    entry.insert((depth_of(&raw), prevs, raw));
                }
            }
            if new == 0 {
                break;
            }
            // The fetched events whose prev_events are neither fetched nor stored here.
            let cited: Vec<String> = fetched
                .values()
                .flat_map(|(_, prevs, _)| prevs.iter().cloned())
                .filter(|id| {
                    ruma::EventId::parse(id.as_str()).is_ok_and(|id| !fetched.contains_key(&id))
                })
                .collect();
            let known: std::collections::BTreeSet<String> = self
                .db
                .read(move |c| received::stored_events(c, &cited))
                .await?
                .into_iter()
                .map(|event| event.row.event_id.to_string())
                .collect();
            latest = fetched
                .iter()
                .filter(|(_, (_, prevs, _))| {
                    prevs.iter().any(|prev| {
                        !known.contains(prev)
                            && ruma::EventId::parse(prev.as_str())
                                .is_ok_and(|id| !fetched.contains_key(&id))
                    })
                })
                .map(|(id, _)| id.clone())
                .collect();
            if latest.is_empty() {
                break;
            }
        }
        let mut events: Vec<(u64, Box<RawJsonValue>)> = fetched
            .into_values()
            .map(|(depth, _, raw)| (depth, raw))
            .collect();
        events.sort_by_key(|(depth, _)| *depth);
        for (_, raw) in events {
            self.receive_pdu(origin, &raw, false, chain).await?;
        }
        Ok(())
    }
}

/// A PDU whose room is known here and whose event id could be computed.
struct Received<'a> {
    room_id: &'a RoomId,
    event_id: OwnedEventId,
    json: CanonicalJsonObject,
}

/// The `prev_events` of a PDU in JSON.
fn prev_events_of(raw: &RawJsonValue) -> Vec<String> {
    serde_json::from_str::<JsonValue>(raw.get())
        .ok()
        .and_then(|v| {
            v.get("prev_events")
                .and_then(JsonValue::as_array)
                .map(|prevs| {
                    prevs
                        .iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
        })
        .unwrap_or_default()
}

/// The `depth` of a PDU in JSON, 0 when it has none (such a PDU fails its checks anyway).
fn depth_of(raw: &RawJsonValue) -> u64 {
    serde_json::from_str::<JsonValue>(raw.get())
        .ok()
        .and_then(|v| v.get("depth").and_then(JsonValue::as_u64))
        .unwrap_or(0)
}

/// The stored form of a transaction's answer: event id → `null` or the error.
fn encode_results(results: &PduResults) -> Result<String> {
    let map: BTreeMap<&str, Option<&str>> = results
        .iter()
        .map(|(id, outcome)| (id.as_str(), outcome.as_ref().err().map(String::as_str)))
        .collect();
    serde_json::to_string(&map).map_err(|e| Error::Internal(e.to_string()))
}

fn decode_results(stored: &str) -> Result<PduResults> {
    let map: BTreeMap<OwnedEventId, Option<String>> = serde_json::from_str(stored)
        .map_err(|e| Error::Internal(format!("stored transaction answer: {e}")))?;
    Ok(map
        .into_iter()
        .map(|(id, error)| (id, error.map_or(Ok(()), Err)))
        .collect())
}

#[cfg(test)]
mod tests;
