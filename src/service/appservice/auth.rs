//! Requests made with an appservice's `as_token`: who they act as (identity assertion), the
//! appservice's own user, and users registered by an appservice.
//!
//! Without `user_id` a request acts as the appservice's bot (`sender_localpart`); with
//! `?user_id=` it acts as that user, who must be in the appservice's user namespace (else 403
//! "cannot masquerade") and registered (else 403 "has not registered this user"). With
//! `device_id` (or the unstable `org.matrix.msc3202.device_id`), a registration with device
//! masquerading acts as that device of the user (400 `M_UNKNOWN_DEVICE` when it is not theirs);
//! otherwise the session's device is [`appservice_device_id`], a device that exists in no table:
//! like Synapse, an appservice request has no real device, so what is bound to a device (keys,
//! pushers, to-device messages) needs device masquerading, while transaction ids of `/send` are
//! still kept apart per appservice.

use std::sync::Arc;

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

use super::Registration;
use crate::service::{Error, Result, Services, UserSession};
use crate::storage;

/// The device an appservice's requests act as when they name none.
pub fn appservice_device_id(registration: &Registration) -> OwnedDeviceId {
    format!("_appservice_{}", registration.id).into()
}

/// The identity-assertion parameters of a request's query string.
#[derive(Debug, Default)]
pub struct Assertion {
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

impl Assertion {
    /// Reads `user_id` and `device_id` (or `org.matrix.msc3202.device_id`) from a query string.
    pub fn from_query(query: Option<&str>) -> Assertion {
        let mut assertion = Assertion::default();
        let Some(query) = query else {
            return assertion;
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "user_id" => assertion.user_id = Some(value.into_owned()),
                "device_id" => assertion.device_id = Some(value.into_owned()),
                "org.matrix.msc3202.device_id" if assertion.device_id.is_none() => {
                    assertion.device_id = Some(value.into_owned());
                }
                _ => {}
            }
        }
        assertion
    }
}

impl Services {
    /// The session of a request made with `registration`'s `as_token`.
    pub async fn appservice_session(
        &self,
        registration: &Arc<Registration>,
        assertion: &Assertion,
    ) -> Result<UserSession> {
        let user_id: OwnedUserId = match &assertion.user_id {
            Some(text) => UserId::parse(text.as_str())
                .map_err(|e| Error::InvalidParam(format!("invalid user_id {text:?}: {e}")))?,
            None => registration.sender.clone(),
        };
        if !registration.is_in_user_namespace(&user_id) {
            return Err(Error::Forbidden(format!(
                "the application service cannot masquerade as {user_id}: it is not in its \
                 user namespace"
            )));
        }
        let lookup = user_id.clone();
        let row = self
            .db
            .read(move |c| storage::users::get_user(c, &lookup))
            .await?;
        let row = match row {
            Some(row) => row,
            // The bot is registered at start-up; should it have gone missing, it comes back.
            None if user_id == registration.sender => {
                self.register_appservice_sender(registration).await?;
                storage::users::UserRow {
                    password_hash: None,
                    is_admin: false,
                    deactivated: false,
                }
            }
            None => {
                return Err(Error::Forbidden(format!(
                    "the application service has not registered {user_id}"
                )));
            }
        };
        if row.deactivated {
            return Err(Error::UserDeactivated);
        }
        let (device_id, without_device) =
            match (&assertion.device_id, registration.device_masquerading) {
                (Some(device), true) => {
                    let device: OwnedDeviceId = device.as_str().into();
                    self.check_user_device(&user_id, &device).await?;
                    (device, false)
                }
                _ => (appservice_device_id(registration), true),
            };
        Ok(UserSession {
            user_id,
            device_id,
            is_admin: row.is_admin,
            without_device,
        })
    }

    async fn check_user_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<()> {
        let (user, device) = (user_id.to_owned(), device_id.to_owned());
        let found = self
            .db
            .read(move |c| storage::tokens::get_device(c, &user, &device))
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::UnknownDevice(format!(
                "{user_id} has no device {device_id}"
            ))),
        }
    }

    /// Registers every appservice's own user that does not exist yet (at start-up, as Synapse
    /// does), so that it can be invited and act before its first request.
    pub async fn register_appservice_senders(&self) -> Result<()> {
        for registration in self.appservices.all() {
            self.register_appservice_sender(registration).await?;
        }
        Ok(())
    }

    async fn register_appservice_sender(&self, registration: &Registration) -> Result<()> {
        let sender = registration.sender.clone();
        let created = self
            .db
            .write("register_appservice_sender", move |txn| {
                storage::users::insert_user_txn(txn, &sender, None, false)
            })
            .await?;
        if created {
            tracing::info!(user.id = %registration.sender, appservice = %registration.id,
                "registered the appservice's user");
        }
        Ok(())
    }

    /// Refuses `user` to anyone but the appservice that claims it exclusively: `by` is the
    /// appservice asking (`None` for a client or an admin), and asking for a user outside its own
    /// namespace is refused too.
    pub fn check_user_namespace(
        &self,
        user: &UserId,
        by: Option<&Arc<Registration>>,
    ) -> Result<()> {
        if let Some(registration) = by
            && !registration.is_in_user_namespace(user)
        {
            return Err(Error::Exclusive(format!(
                "{user} is not in the user namespace of the application service {}",
                registration.id
            )));
        }
        match self.appservices.exclusive_owner_of_user(user) {
            Some(owner) if by.is_none_or(|r| r.id != owner.id) => Err(Error::Exclusive(format!(
                "{user} is reserved by the application service {}",
                owner.id
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses `alias` to anyone but the appservice that claims it exclusively (`by`: the
    /// appservice asking, `None` for a client); an appservice may only create aliases in its own
    /// alias namespace (as Synapse).
    pub fn check_alias_namespace(
        &self,
        alias: &ruma::RoomAliasId,
        by: Option<&Arc<Registration>>,
    ) -> Result<()> {
        if let Some(registration) = by
            && !registration
                .aliases
                .iter()
                .any(|n| n.matches(alias.as_str()))
        {
            return Err(Error::Exclusive(format!(
                "{alias} is not in the alias namespace of the application service {}",
                registration.id
            )));
        }
        match self.appservices.exclusive_owner_of_alias(alias) {
            Some(owner) if by.is_none_or(|r| r.id != owner.id) => Err(Error::Exclusive(format!(
                "{alias} is reserved by the application service {}",
                owner.id
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assertion_is_read_from_the_query() {
        let a = Assertion::from_query(Some("user_id=%40_wa_1%3Ahs&ts=5&device_id=DEV"));
        assert_eq!(a.user_id.as_deref(), Some("@_wa_1:hs"));
        assert_eq!(a.device_id.as_deref(), Some("DEV"));
        let a = Assertion::from_query(Some("org.matrix.msc3202.device_id=X"));
        assert_eq!((a.user_id, a.device_id.as_deref()), (None, Some("X")));
        assert!(Assertion::from_query(None).user_id.is_none());
    }
}
