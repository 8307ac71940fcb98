//! Wakes long-polling requests when something they care about is committed. It carries positions
//! only, never data: a woken `/sync` reads what changed itself. There is one channel per room and
//! one per user (for what reaches a user outside their rooms: invites, account data), created
//! when someone listens, so waking costs O(interested requests), not O(all requests).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::watch;

#[derive(Default)]
pub struct Notifier {
    rooms: Channels<OwnedRoomId>,
    users: Channels<OwnedUserId>,
    /// Per user, the push evaluator's position when it last recorded a notification for them.
    counts: Channels<OwnedUserId>,
    /// How far the push evaluator has got through the event stream.
    push_progress: PushProgress,
    /// Counts ephemeral changes in any room, so a request that subscribes after reading can tell
    /// whether one slipped in between (ephemeral changes move no event position).
    ephemeral: AtomicU64,
}

struct Channels<K>(Mutex<HashMap<K, watch::Sender<i64>>>);

struct PushProgress(watch::Sender<i64>);

impl Default for PushProgress {
    fn default() -> Self {
        PushProgress(watch::channel(0).0)
    }
}

impl<K> Default for Channels<K> {
    fn default() -> Self {
        Channels(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash + Clone> Channels<K> {
    fn publish(&self, key: &K, position: i64) {
        let channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = channels.get(key) {
            sender.send_replace(position);
        }
    }

    fn subscribe(&self, key: &K) -> watch::Receiver<i64> {
        let mut channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Channels nobody listens to any more are dropped as new listeners arrive.
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

impl Notifier {
    /// An event of `room` was committed at stream position `position`.
    pub fn room_changed(&self, room: &RoomId, position: i64) {
        self.rooms.publish(&room.to_owned(), position);
    }

    /// Something only `user` sees changed (an invite, their account data).
    pub fn user_changed(&self, user: &UserId, position: i64) {
        self.users.publish(&user.to_owned(), position);
    }

    /// Something ephemeral of `room` changed (typing, receipts, presence of a member): wakes the
    /// room's listeners without touching the event position their channel carries.
    pub fn room_ephemeral_changed(&self, room: &RoomId) {
        self.ephemeral.fetch_add(1, Ordering::SeqCst);
        let channels = self.rooms.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = channels.get(room) {
            sender.send_modify(|_| ());
        }
    }

    /// The push evaluator recorded notifications of `user` for events up to `position`.
    pub fn counts_changed(&self, user: &UserId, position: i64) {
        self.counts.publish(&user.to_owned(), position);
    }

    pub fn subscribe_counts(&self, user: &UserId) -> watch::Receiver<i64> {
        self.counts.subscribe(&user.to_owned())
    }

    /// The push evaluator has evaluated every event up to `position`.
    pub fn push_evaluated(&self, position: i64) {
        self.push_progress.0.send_if_modified(|p| {
            let moved = position > *p;
            *p = (*p).max(position);
            moved
        });
    }

    /// How far the push evaluator has got.
    pub fn push_position(&self) -> i64 {
        *self.push_progress.0.borrow()
    }

    /// Waits until the push evaluator has evaluated every event up to `position`, or `timeout`
    /// passes; returns how far it has got.
    pub async fn wait_for_push(&self, position: i64, timeout: std::time::Duration) -> i64 {
        let mut progress = self.push_progress.0.subscribe();
        let _ = tokio::time::timeout(timeout, progress.wait_for(|p| *p >= position)).await;
        *progress.borrow()
    }

    /// How many ephemeral changes have been published so far.
    pub fn ephemeral_generation(&self) -> u64 {
        self.ephemeral.load(Ordering::SeqCst)
    }

    pub fn subscribe_room(&self, room: &RoomId) -> watch::Receiver<i64> {
        self.rooms.subscribe(&room.to_owned())
    }

    pub fn subscribe_user(&self, user: &UserId) -> watch::Receiver<i64> {
        self.users.subscribe(&user.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_of_a_room_wake_and_others_do_not() {
        let notifier = Notifier::default();
        let room: OwnedRoomId = "!a:x".try_into().unwrap();
        let other: OwnedRoomId = "!b:x".try_into().unwrap();
        let mut listening = notifier.subscribe_room(&room);
        let elsewhere = notifier.subscribe_room(&other);
        notifier.room_changed(&room, 7);
        listening.changed().await.unwrap();
        assert_eq!(*listening.borrow(), 7);
        assert!(!elsewhere.has_changed().unwrap());
        // Publishing to a room nobody listens to is free and creates nothing.
        notifier.room_changed(&RoomId::parse("!c:x").unwrap(), 1);
        assert_eq!(notifier.rooms.0.lock().unwrap().len(), 2);
    }
}
