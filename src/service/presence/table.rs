//! The presence table: what each user set, what the stream last announced for them, and when
//! their shown state changes next on its own. Pure and clock-free: every method takes `now` (ms
//! since the epoch), so the idle and offline rules are tested without waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ruma::{OwnedUserId, UserId};

use crate::storage::{now_ms, presence::PresenceRow};

/// An online user not active for this long shows as unavailable.
pub const IDLE_AFTER: Duration = Duration::from_secs(5 * 60);
/// A user who has not set their presence for this long shows as offline. Setting presence is the
/// only sign of life counted here, so this is generous.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(30 * 60);
/// A renewed "online" that changes nothing but the activity time is announced at most this often.
const LAST_ACTIVE_GRANULARITY: i64 = 60_000;

/// The three presence states of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Online,
    Unavailable,
    Offline,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Unavailable => "unavailable",
            State::Offline => "offline",
        }
    }

    pub(super) fn parse(text: &str) -> Option<State> {
        match text {
            "online" => Some(State::Online),
            "unavailable" => Some(State::Unavailable),
            "offline" => Some(State::Offline),
            _ => None,
        }
    }
}

/// A user's presence as `GET /presence/{userId}/status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceView {
    pub state: State,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

pub(super) struct Table {
    /// The position of the latest change of any user.
    pub(super) position: u64,
    pub(super) users: HashMap<OwnedUserId, Record>,
    /// Each user with a record, by the position of their latest change.
    pub(super) by_position: BTreeMap<u64, OwnedUserId>,
    /// When each user's shown state changes next on its own (idle, offline), in ms.
    deadlines: BTreeSet<(i64, OwnedUserId)>,
}

impl Default for Table {
    /// Positions start at the wall clock in milliseconds, so they stay monotonic across restarts
    /// and a token from before a restart never hides the changes after it.
    fn default() -> Table {
        Table {
            position: u64::try_from(now_ms()).unwrap_or(0),
            users: HashMap::new(),
            by_position: BTreeMap::new(),
            deadlines: BTreeSet::new(),
        }
    }
}

/// What a user set, and what the stream last announced for them.
#[derive(Debug, Clone)]
pub(super) struct Record {
    set: State,
    status_msg: Option<String>,
    pub(super) last_active_ms: i64,
    last_seen_ms: i64,
    shown: Shown,
    changed: u64,
    deadline: Option<i64>,
    /// Bumped by every update, so an older update's timer knows it is stale.
    generation: u64,
}

/// The part of presence whose change is announced (the activity time changes continuously).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shown {
    state: State,
    currently_active: bool,
}

impl Record {
    fn shown(&self, now: i64) -> Shown {
        let silent = now - self.last_seen_ms >= millis(OFFLINE_AFTER);
        let idle = now - self.last_active_ms >= millis(IDLE_AFTER);
        let state = match self.set {
            State::Offline => State::Offline,
            _ if silent => State::Offline,
            State::Online if idle => State::Unavailable,
            state => state,
        };
        Shown {
            state,
            currently_active: state == State::Online,
        }
    }

    /// The next moment after `now` at which `shown` changes without anyone acting.
    fn next_deadline(&self, now: i64) -> Option<i64> {
        let idle = (self.set == State::Online).then(|| self.last_active_ms + millis(IDLE_AFTER));
        let offline =
            (self.set != State::Offline).then(|| self.last_seen_ms + millis(OFFLINE_AFTER));
        [idle, offline]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min()
    }

    pub(super) fn view(&self, now: i64) -> PresenceView {
        let shown = self.shown(now);
        PresenceView {
            state: shown.state,
            status_msg: self.status_msg.clone(),
            last_active_ago: Some(Duration::from_millis(
                u64::try_from(now - self.last_active_ms).unwrap_or(0),
            )),
            currently_active: Some(shown.currently_active),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Table {
    /// What a syncing client with `set_presence = wanted` changes for `user` at `now`: the state
    /// to record, or None when its presence already says it (a sync is not a write). Syncing
    /// brings an offline user to the wanted state, an online one to unavailable when asked, and
    /// renews an online user's activity once per announcement granularity; an explicit
    /// "unavailable" is kept.
    pub(super) fn sync_update(
        &self,
        user: &UserId,
        wanted: State,
        now: i64,
    ) -> Option<(State, Option<String>)> {
        let Some(record) = self.users.get(user) else {
            return (wanted != State::Offline).then_some((wanted, None));
        };
        let status = record.status_msg.clone();
        match (record.set, wanted) {
            (_, State::Offline) => None,
            (State::Offline, wanted) => Some((wanted, status)),
            (State::Online, State::Unavailable) => Some((State::Unavailable, status)),
            (State::Online, State::Online)
                if now - record.last_active_ms >= LAST_ACTIVE_GRANULARITY
                    || now - record.last_seen_ms >= LAST_ACTIVE_GRANULARITY =>
            {
                Some((State::Online, status))
            }
            _ => None,
        }
    }

    /// Records what `user` set at `now`; returns whether others see a change, and the record's
    /// generation for its timer.
    pub(super) fn set(
        &mut self,
        user: &UserId,
        set: State,
        status_msg: Option<String>,
        now: i64,
    ) -> (bool, u64) {
        let old = self.users.get(user).cloned();
        let last_active_ms = match (set, &old) {
            // Saying "online" is activity; going idle or offline keeps the last activity time.
            (State::Online, _) | (_, None) => now,
            (_, Some(old)) => old.last_active_ms,
        };
        let mut record = Record {
            set,
            status_msg,
            last_active_ms,
            last_seen_ms: now,
            shown: Shown {
                state: set,
                currently_active: false,
            },
            changed: 0,
            deadline: None,
            generation: old.as_ref().map_or(0, |o| o.generation + 1),
        };
        record.shown = record.shown(now);
        let announce = match &old {
            None => true,
            Some(old) => {
                // Compared with what was last announced: that is what others have seen.
                old.shown != record.shown
                    || old.status_msg != record.status_msg
                    || record.last_active_ms - old.last_active_ms >= LAST_ACTIVE_GRANULARITY
            }
        };
        let generation = record.generation;
        self.store(user, record, announce, old, now);
        (announce, generation)
    }

    /// Puts `record` in place, keeping the indexes right; `announce` gives it the next position.
    fn store(
        &mut self,
        user: &UserId,
        mut record: Record,
        announce: bool,
        old: Option<Record>,
        now: i64,
    ) {
        if let Some(old) = &old {
            if let Some(deadline) = old.deadline {
                self.deadlines.remove(&(deadline, user.to_owned()));
            }
            if announce {
                self.by_position.remove(&old.changed);
            }
        }
        if announce || old.is_none() {
            self.position += 1;
            record.changed = self.position;
            self.by_position.insert(record.changed, user.to_owned());
        } else if let Some(old) = &old {
            record.changed = old.changed;
        }
        record.deadline = record.next_deadline(now);
        if let Some(deadline) = record.deadline {
            self.deadlines.insert((deadline, user.to_owned()));
        }
        self.users.insert(user.to_owned(), record);
    }

    /// Re-evaluates every user whose deadline has passed; returns those whose shown presence
    /// changed (each with a new position).
    pub(super) fn refresh_due(&mut self, now: i64) -> Vec<OwnedUserId> {
        let mut changed = Vec::new();
        while let Some((deadline, user)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, user.clone()));
            let Some(mut record) = self.users.get(&user).cloned() else {
                continue;
            };
            record.deadline = None;
            let shown = record.shown(now);
            let announce = shown != record.shown;
            record.shown = shown;
            let old = self.users.get(&user).cloned().map(|mut o| {
                o.deadline = None;
                o
            });
            self.store(&user, record, announce, old, now);
            if announce {
                changed.push(user);
            }
        }
        changed
    }

    pub(super) fn restore(&mut self, row: &PresenceRow, now: i64) {
        let (Ok(user), Some(set)) = (
            OwnedUserId::try_from(row.user_id.as_str()),
            State::parse(&row.state),
        ) else {
            tracing::warn!(user.id = %row.user_id, "stored presence is invalid");
            return;
        };
        let mut record = Record {
            set,
            status_msg: row.status_msg.clone(),
            last_active_ms: row.last_active_ts,
            last_seen_ms: row.last_seen_ts,
            shown: Shown {
                state: set,
                currently_active: false,
            },
            changed: 0,
            deadline: None,
            generation: 0,
        };
        record.shown = record.shown(now);
        self.store(&user, record, true, None, now);
    }

    pub(super) fn deadline_of(&self, user: &UserId, generation: u64) -> Option<i64> {
        self.users
            .get(user)
            .filter(|r| r.generation == generation)?
            .deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn alice() -> OwnedUserId {
        "@alice:x".try_into().unwrap()
    }

    #[test]
    fn an_online_user_goes_idle_then_offline_and_each_step_is_announced() {
        let mut table = Table::default();
        let start = table.position;
        let user = alice();
        let t0 = 1_000_000;
        assert_eq!(
            table.set(&user, State::Online, Some("here".into()), t0),
            (true, 0)
        );
        let record = &table.users[&user];
        assert_eq!(record.view(t0 + MINUTE).state, State::Online);
        assert_eq!(record.view(t0 + MINUTE).currently_active, Some(true));
        assert_eq!(record.view(t0 + 6 * MINUTE).state, State::Unavailable);
        assert_eq!(record.view(t0 + 31 * MINUTE).state, State::Offline);
        assert_eq!(record.deadline, Some(t0 + 5 * MINUTE));

        assert!(table.refresh_due(t0 + 4 * MINUTE).is_empty());
        assert_eq!(
            table.refresh_due(t0 + 5 * MINUTE),
            std::slice::from_ref(&user)
        );
        assert_eq!(table.position, start + 2);
        assert_eq!(table.users[&user].deadline, Some(t0 + 30 * MINUTE));
        assert_eq!(
            table.refresh_due(t0 + 30 * MINUTE),
            std::slice::from_ref(&user)
        );
        assert_eq!(table.users[&user].shown.state, State::Offline);
        assert_eq!(table.users[&user].deadline, None);
        assert_eq!(table.by_position.len(), 1, "one index entry per user");
        assert_eq!(table.by_position.keys().next(), Some(&(start + 3)));
    }

    #[test]
    fn only_visible_changes_take_a_position() {
        let mut table = Table::default();
        let start = table.position;
        let user = alice();
        let t0 = 1_000_000;
        table.set(&user, State::Online, None, t0);
        assert_eq!(
            table.set(&user, State::Online, None, t0 + 1_000),
            (false, 1),
            "a quick renewal"
        );
        assert_eq!(table.position, start + 1);
        assert!(
            table
                .set(&user, State::Online, Some("busy".into()), t0 + 2_000)
                .0
        );
        assert!(
            table
                .set(&user, State::Online, Some("busy".into()), t0 + 2 * MINUTE)
                .0,
            "activity a while later"
        );
        assert!(
            table
                .set(
                    &user,
                    State::Unavailable,
                    Some("busy".into()),
                    t0 + 3 * MINUTE
                )
                .0
        );
        assert_eq!(table.position, start + 4);
        let record = &table.users[&user];
        assert_eq!(
            record.last_active_ms,
            t0 + 2 * MINUTE,
            "going away is not activity"
        );
        assert_eq!(
            record.deadline,
            Some(t0 + 33 * MINUTE),
            "only the offline timeout is left"
        );
        assert_eq!(
            table.deadline_of(&user, 0),
            None,
            "an older generation's timer stops"
        );
        assert_eq!(table.deadline_of(&user, 4), Some(t0 + 33 * MINUTE));
    }

    #[test]
    fn stored_presence_is_restored_with_its_clocks() {
        let mut table = Table::default();
        let now = 100 * MINUTE;
        let row = |user: &str, seen: i64| PresenceRow {
            user_id: user.into(),
            state: "online".into(),
            status_msg: Some("on call".into()),
            last_active_ts: seen,
            last_seen_ts: seen,
        };
        table.restore(&row("@recent:x", now - MINUTE), now);
        table.restore(&row("@gone:x", now - 60 * MINUTE), now);
        table.restore(&row("not a user", now), now);
        let recent: OwnedUserId = "@recent:x".try_into().unwrap();
        let gone: OwnedUserId = "@gone:x".try_into().unwrap();
        assert_eq!(table.users[&recent].view(now).state, State::Online);
        assert_eq!(
            table.users[&recent].view(now).status_msg.as_deref(),
            Some("on call")
        );
        assert_eq!(table.users[&gone].view(now).state, State::Offline);
        assert_eq!(table.users.len(), 2);
    }
}
