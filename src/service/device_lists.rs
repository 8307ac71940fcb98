//! Device lists other servers ask for (`GET /_matrix/federation/v1/user/devices/{userId}`): a
//! local user's devices with the position of their device list.
//!
//! Until end-to-end encryption lands there are no uploaded identity keys and no device-list
//! stream: every device is listed with empty `keys` (its user and device id, no algorithms, no
//! keys, no signatures) and `stream_id` is 0, since no `m.device_list_update` is ever sent that a
//! later answer would have to follow. Display names are not shared with other servers, to keep
//! what people call their phones within the organisation.

use ruma::UserId;
use ruma::api::federation::device::get_devices::v1::UserDevice;
use ruma::encryption::DeviceKeys;
use ruma::serde::Raw;

use super::{Error, Result, Services};
use crate::storage;

/// A user's devices as another server sees them.
pub struct DeviceList {
    pub stream_id: u64,
    pub devices: Vec<UserDevice>,
}

impl Services {
    /// The device list of a local user; `M_NOT_FOUND` for unknown, deactivated or remote users.
    pub async fn device_list_for_federation(&self, user_id: &UserId) -> Result<DeviceList> {
        self.require_local_user(user_id).await?;
        let user = user_id.to_owned();
        let rows = self
            .db
            .read(move |c| storage::tokens::list_devices(c, &user))
            .await?;
        let devices = rows
            .into_iter()
            .map(|row| {
                let keys = DeviceKeys::new(
                    user_id.to_owned(),
                    row.device_id.clone(),
                    Vec::new(),
                    Default::default(),
                    Default::default(),
                );
                Raw::new(&keys)
                    .map(|keys| UserDevice::new(row.device_id.clone(), keys))
                    .map_err(|e| Error::Internal(format!("cannot serialise device keys: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(DeviceList {
            stream_id: 0,
            devices,
        })
    }
}
