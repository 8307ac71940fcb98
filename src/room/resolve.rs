//! State resolution: the one state a room has where its DAG forked into several. Wraps
//! `ruma::state_res::resolve` (state resolution v2, and from v12 its variant that also considers
//! the conflicted state subgraph) and computes its inputs, the auth chains and the conflicted
//! state subgraph, by walking `auth_events` through the caller's `fetch_event`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::StateMap;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, OwnedEventId};

use super::pdu::Pdu;

/// Why the forked states could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

/// Resolves forked states into one.
///
/// `fetch_event` must find every event of the states and of their auth chains; an event it cannot
/// find is left out of the auth chains, and ruma ignores conflicted events it cannot fetch. The
/// result does not depend on the order of `state_sets`.
pub fn resolve_state(
    rules: &RoomVersionRules,
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<StateMap<OwnedEventId>, ResolveError> {
    let Some(v2_rules) = rules.state_res.v2_rules() else {
        return Err(ResolveError(
            "this room version does not use state resolution v2".into(),
        ));
    };
    match state_sets {
        [] => return Ok(StateMap::new()),
        [only] => return Ok(only.clone()),
        _ => {}
    }

    let auth_chains = auth_chains(state_sets, &fetch_event);
    ruma::state_res::resolve(
        &rules.authorization,
        v2_rules,
        state_sets.iter(),
        auth_chains,
        &fetch_event,
        |conflicted| Some(conflicted_state_subgraph(conflicted, &fetch_event)),
    )
    .map_err(|e| ResolveError(e.to_string()))
}

/// The full auth chain of each state set, minus what every set shares.
///
/// Ruma only uses the auth chains to compute the auth difference (what is in some chains but
/// not all). Everything in the auth chain of the unconflicted state is in every set's chain, so
/// it is walked once and then left out of each set's walk; the difference comes out the same and
/// the shared history of the room is not walked once per set.
fn auth_chains(
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Vec<EventIdSet<OwnedEventId>> {
    let (first, others) = match state_sets {
        [first, others @ ..] => (first, others),
        [] => return Vec::new(),
    };
    let is_unconflicted = |key: &_, id: &OwnedEventId| {
        others
            .iter()
            .all(|set| set.get(key).is_some_and(|other| other == id))
    };
    let unconflicted: HashSet<&OwnedEventId> = first
        .iter()
        .filter(|(key, id)| is_unconflicted(key, id))
        .map(|(_, id)| id)
        .collect();

    let shared = auth_chain(unconflicted.iter().copied(), fetch_event, &HashSet::new());
    state_sets
        .iter()
        .map(|set| {
            let conflicted = set.values().filter(|id| !unconflicted.contains(id));
            auth_chain(conflicted, fetch_event, &shared)
                .into_iter()
                .collect()
        })
        .collect()
}

/// Every event reachable from `starts` along `auth_events` (the starts themselves only when
/// another start reaches them), without entering `known`, whose auth chains are walked already.
fn auth_chain<'a>(
    starts: impl Iterator<Item = &'a OwnedEventId>,
    fetch_event: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
    known: &HashSet<OwnedEventId>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut stack: Vec<OwnedEventId> = starts
        .filter_map(|id| fetch_event(id))
        .flat_map(|event| event.auth_events.clone())
        .collect();
    while let Some(id) = stack.pop() {
        if known.contains(&id) || chain.contains(&id) {
            continue;
        }
        if let Some(event) = fetch_event(&id) {
            stack.extend(event.auth_events.iter().cloned());
        }
        chain.insert(id);
    }
    chain
}

/// The conflicted state subgraph (v12): every event on a path along `auth_events` from one
/// conflicted event to another, the conflicted events included.
///
/// First every event reachable from a conflicted event is found, noting for each the events that
/// cite it. Walking those citations back from the conflicted events then finds exactly the
/// reachable events that also lead to a conflicted event, which is the subgraph.
fn conflicted_state_subgraph(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    fetch_event: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> EventIdSet<OwnedEventId> {
    let conflicted_ids: HashSet<OwnedEventId> = conflicted.values().flatten().cloned().collect();

    let mut cited_by: HashMap<OwnedEventId, Vec<OwnedEventId>> = HashMap::new();
    let mut reached = conflicted_ids.clone();
    let mut stack: Vec<OwnedEventId> = conflicted_ids.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        let Some(event) = fetch_event(&id) else {
            continue;
        };
        for auth_id in &event.auth_events {
            cited_by
                .entry(auth_id.clone())
                .or_default()
                .push(id.clone());
            if reached.insert(auth_id.clone()) {
                stack.push(auth_id.clone());
            }
        }
    }

    let mut subgraph = conflicted_ids.clone();
    let mut stack: Vec<OwnedEventId> = conflicted_ids.into_iter().collect();
    while let Some(id) = stack.pop() {
        for citer in cited_by.get(&id).into_iter().flatten() {
            if subgraph.insert(citer.clone()) {
                stack.push(citer.clone());
            }
        }
    }
    subgraph.into_iter().collect()
}

#[cfg(test)]
mod tests;
