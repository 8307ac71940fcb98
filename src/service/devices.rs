//! A user's devices: listing, renaming, and deleting behind user-interactive auth.

use ruma::api::client::uiaa::AuthData;
use ruma::{DeviceId, OwnedDeviceId, UserId};

use super::accounts::password_flows;
use super::{Error, Result, Services, UserSession};
use crate::storage::{self, tokens::DeviceRow};

impl Services {
    pub async fn list_devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>> {
        let user = user_id.to_owned();
        Ok(self
            .db
            .read(move |c| storage::tokens::list_devices(c, &user))
            .await?)
    }

    pub async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<DeviceRow> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .read(move |c| storage::tokens::get_device(c, &user, &device))
            .await?
            .ok_or_else(|| Error::NotFound(format!("you have no device {device_id}")))
    }

    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: Option<String>,
    ) -> Result<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        let renamed = self
            .db
            .write("rename_device", move |txn| {
                storage::tokens::rename_device_txn(txn, &user, &device, display_name.as_deref())
            })
            .await?;
        if !renamed {
            return Err(Error::NotFound(format!("you have no device {device_id}")));
        }
        Ok(())
    }

    /// Deletes devices (and so their tokens) once the user has confirmed with their password.
    pub async fn delete_devices_with_auth(
        &self,
        session: &UserSession,
        devices: Vec<OwnedDeviceId>,
        auth: Option<AuthData>,
    ) -> Result<()> {
        let uiaa = self
            .uiaa(
                "delete_devices",
                Some(&session.user_id),
                password_flows(),
                auth,
            )
            .await?;
        let changed = self.delete_devices(&session.user_id, devices).await?;
        self.devices_deleted(&session.user_id, changed).await?;
        self.finish_uiaa(uiaa.session_id).await
    }
}
