//! Backfill on demand: when a backwards `/messages` page runs out of events in a room joined over
//! federation, the older history is asked of the room's other servers with `/backfill`.
//!
//! The room's earliest timeline event here (after a remote join, the join itself) names
//! `prev_events` this server never stored; those are the `v` of the request. Each returned PDU
//! goes through the checks on receipt that need no room state: format, event id, signatures
//! (keys through `Federation::verify_key`; a wrong content hash keeps the redacted form), the
//! room it claims, and the authorization rules against its own `auth_events` (found in the batch
//! or among the stored events, outliers included). An event that fails is left out. The rest are
//! stored as backfilled history (`storage::backfill`): negative stream orderings below everything
//! the room had, so `/messages` pages into them with no other change; they are not forward
//! extremities and do not touch the current state. Their state before and after is the state
//! group before the earliest event (the state at the join), which is what history visibility is
//! judged against for them. An event this server holds already (the state and auth chain of the
//! join arrive as outliers) is not stored again and, being an outlier, stays out of `/messages`.
//! Once stored, history is not asked for again: the earliest event's `prev_events` are then known.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::api::federation::backfill::get_backfill;
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, UInt};

use super::super::{Error, Result, Services};
use super::append::{membership_of, pdu_from_row};
use super::remote_join::with_new_event;
use crate::room::{self, Pdu};
use crate::storage;

/// The most events one `/backfill` request asks for.
const MAX_BACKFILL: usize = 100;

impl Services {
    /// Fetches and stores history older than the room's earliest event (see the module docs).
    /// Whether any event was stored. Failures of other servers are logged, not returned.
    pub(super) async fn backfill_from_remote(
        &self,
        room_id: &RoomId,
        limit: usize,
    ) -> Result<bool> {
        if !self.federation.is_enabled() {
            return Ok(false);
        }
        let room = room_id.to_string();
        let own = self.server_name().to_string();
        let found = self
            .db
            .read(move |c| {
                let Some(room_row) = storage::events::get_room(c, &room)? else {
                    return Ok(None);
                };
                let Some((_, state_before, missing)) =
                    storage::backfill::backward_extremity(c, &room)?
                else {
                    return Ok(None);
                };
                if missing.is_empty() {
                    return Ok(None);
                }
                let servers: Vec<String> = storage::room_servers::joined_servers(c, &room)?
                    .into_iter()
                    .filter(|s| *s != own)
                    .collect();
                Ok(Some((
                    room_row.room_version,
                    state_before,
                    missing,
                    servers,
                )))
            })
            .await?;
        let Some((version, state_before, missing, servers)) = found else {
            return Ok(false);
        };
        let version = RoomVersionId::try_from(version.as_str())
            .map_err(|e| Error::Internal(format!("stored room version is invalid: {e}")))?;
        let Some(rules) = room::rules_for(&version) else {
            return Ok(false);
        };
        let v: Vec<OwnedEventId> = missing
            .iter()
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        let limit = UInt::try_from(limit.clamp(10, MAX_BACKFILL) as u64).unwrap_or(UInt::MIN);
        for server in servers {
            let Ok(server) = OwnedServerName::try_from(server) else {
                continue;
            };
            let request = get_backfill::v1::Request::new(room_id.to_owned(), v.clone(), limit);
            let pdus = match self.federation.send(&server, request).await {
                Ok(response) => response.pdus,
                Err(e) => {
                    tracing::info!(room.id = %room_id, server.name = %server, error = %e, "cannot backfill from this server");
                    continue;
                }
            };
            let mut checked: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
            for raw in pdus.iter().take(MAX_BACKFILL) {
                if let Some(pdu) = self.check_remote_pdu(&rules, room_id, raw).await?
                    && pdu.room_id == room_id
                {
                    checked.insert(pdu.event_id.clone(), Arc::new(pdu));
                }
            }
            if checked.is_empty() {
                continue;
            }
            let stored = self.store_backfilled(&rules, checked, state_before).await?;
            tracing::info!(room.id = %room_id, server.name = %server, events = stored, "backfilled history");
            return Ok(stored > 0);
        }
        Ok(false)
    }

    /// The auth check of a backfilled batch, then one write storing what passed.
    async fn store_backfilled(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        mut batch: HashMap<OwnedEventId, Arc<Pdu>>,
        state_before: Option<i64>,
    ) -> Result<usize> {
        // Auth events outside the batch, from the stored events.
        let wanted: Vec<String> = batch
            .values()
            .flat_map(|pdu| pdu.auth_events.iter())
            .filter(|id| !batch.contains_key(*id))
            .map(ToString::to_string)
            .collect();
        let known = self
            .db
            .read(move |c| {
                let mut rows = Vec::new();
                for id in wanted {
                    if let Some(row) = storage::events::get_event(c, &id)? {
                        rows.push(row);
                    }
                }
                Ok(rows)
            })
            .await?;
        let mut stored_auth: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for row in &known {
            if let Ok(pdu) = pdu_from_row(row) {
                stored_auth.insert(pdu.event_id.clone(), pdu);
            }
        }
        let mut ordered: Vec<Arc<Pdu>> = batch.values().cloned().collect();
        ordered.sort_by_key(|pdu| pdu.depth);
        for pdu in ordered {
            let fetch = |id: &EventId| batch.get(id).or_else(|| stored_auth.get(id)).cloned();
            if let Err(e) = room::check_auth_by_auth_events(rules, &pdu, fetch) {
                tracing::info!(event.id = %pdu.event_id, error = %e, "a backfilled event is not allowed by its auth events");
                batch.remove(&pdu.event_id);
            }
        }
        // Newest first: each insert takes the position below the last one.
        let mut newest_first: Vec<Arc<Pdu>> = batch.into_values().collect();
        newest_first.sort_by(|a, b| {
            b.depth
                .cmp(&a.depth)
                .then(b.origin_server_ts.cmp(&a.origin_server_ts))
                .then(b.event_id.cmp(&a.event_id))
        });
        let mut rows = Vec::with_capacity(newest_first.len());
        for pdu in newest_first {
            let json = pdu
                .canonical_json()
                .map_err(|e| Error::Internal(e.to_string()))?;
            rows.push((pdu, json));
        }
        let stored = self
            .db
            .write("store_backfilled", move |c| {
                let mut stored = 0;
                for (pdu, json) in &rows {
                    let membership = membership_of(pdu);
                    let nid = with_new_event(pdu, json, membership.as_deref(), None, |e| {
                        storage::backfill::insert_backfilled_txn(c, e, state_before)
                    })?;
                    stored += usize::from(nid.is_some());
                }
                Ok(stored)
            })
            .await?;
        Ok(stored)
    }
}
