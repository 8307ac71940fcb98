//! End-to-end encryption keys of local users: device identity keys, one-time and fallback keys
//! (`upload`, `claim`), what other users and servers may read of them (`query`), cross-signing
//! keys and signatures (`cross_signing`), dehydrated devices (`dehydrated`), and the device-list
//! stream those changes feed, which `/sync` and `/keys/changes` read (`sync/device_lists.rs`).
//!
//! The server never checks what keys are for, only that what it hands out is what the device
//! signed: identity keys carry the device's self-signature, signed one-time and fallback keys the
//! device's signature, cross-signing keys and signatures the keys the specification names. Keys of
//! users of other servers are asked from their servers, and other servers are answered and told
//! about changes, in `federation`.

mod claim;
mod cross_signing;
mod dehydrated;
mod federation;
mod query;
pub(crate) mod signed;
mod upload;

pub use cross_signing::SigningKeysUpload;
pub use dehydrated::{DehydratedDevice, DehydratedDeviceEvents, DehydratedDeviceUpload};
pub use federation::DeviceList;
pub use query::KeysQueryAnswer;
pub use upload::KeysUpload;
pub(crate) use upload::one_time_key_counts;

use ruma::{OwnedUserId, UserId};

use super::{Result, Services};
use crate::storage;

impl Services {
    /// Wakes the long-polls of `user` and of every local user sharing a room with them, after
    /// their device list changed (at `position` of the device-list stream).
    pub(crate) async fn announce_device_list_change(
        &self,
        user: &UserId,
        position: i64,
    ) -> Result<()> {
        let owner = user.to_string();
        let sharing = self
            .db
            .read(move |c| storage::presence::users_sharing_a_room(c, &owner))
            .await?;
        for other in sharing {
            if let Ok(other) = OwnedUserId::try_from(other)
                && other.server_name() == self.server_name()
            {
                self.notifier.user_changed(&other, position);
            }
        }
        self.notifier.user_changed(user, position);
        self.federate_device_list_change(user).await
    }

    /// The device list of `user` may have changed outside this module (devices deleted: the
    /// database records the change itself, see `devices_delete_e2e_keys`): wakes whoever cares.
    pub async fn device_list_changed(&self, user: &UserId) -> Result<()> {
        let position = self.device_list_position().await?;
        self.announce_device_list_change(user, position).await
    }

    /// The position of the latest device-list change (the `stream_id` other servers are told).
    pub async fn device_list_position(&self) -> Result<i64> {
        Ok(self
            .db
            .read(storage::e2e_keys::max_device_list_position)
            .await?)
    }
}
