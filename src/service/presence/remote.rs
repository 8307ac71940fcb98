//! Presence of other servers' users, as their servers push it in `m.presence` EDUs: kept in
//! memory only (it belongs to the user's own server, which sends it again when it changes) and
//! shown to local users who share a room with them, exactly like local presence. The idle and
//! offline clocks run here too, so a server that goes silent leaves its users offline.

use std::sync::Arc;

use ruma::UserId;

use super::super::{Error, Result, Services};
use super::{State, watch_deadlines};
use crate::storage::now_ms;

impl Services {
    /// Records the presence `state` (`online`, `unavailable`, `offline`) of a remote user. The
    /// caller has checked that the user belongs to the server that sent it.
    pub(crate) async fn receive_remote_presence(
        self: &Arc<Self>,
        user_id: &UserId,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        if user_id.server_name() == self.server_name() {
            return Err(Error::Forbidden(
                "another server cannot set the presence of a local user".into(),
            ));
        }
        let set = State::parse(state)
            .ok_or_else(|| Error::InvalidParam(format!("unknown presence state {state:?}")))?;
        self.load_presence().await?;
        let (announce, generation) = self
            .presence
            .table()
            .set(user_id, set, status_msg, now_ms());
        if announce {
            self.wake_presence_watchers(user_id).await?;
        }
        watch_deadlines(Arc::downgrade(self), user_id.to_owned(), generation);
        Ok(())
    }
}
