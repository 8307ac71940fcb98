//! Accounts: usernames, registration, password login, password change and deactivation; the
//! users appservices register and log in (`m.login.application_service`).

use std::net::IpAddr;
use std::sync::Arc;

use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use super::appservice::Registration as AppserviceRegistration;
use super::rate_limit::Action;
use super::tokens::{IssuedTokens, delete_devices_txn};
use super::uiaa::REGISTRATION_TOKEN_PARAM;
use super::{Error, Result, Services, UserSession};
use crate::storage::{self, registration_tokens};

/// Longest full user id the specification allows.
const MAX_USER_ID_BYTES: usize = 255;

/// What a client asked `/register` for.
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub auth: Option<AuthData>,
    pub client_ip: IpAddr,
}

/// A new account, and the device it is logged in with unless login was inhibited.
pub struct Registered {
    pub user_id: OwnedUserId,
    pub device: Option<(OwnedDeviceId, IssuedTokens)>,
}

/// The first character of `localpart` that user ids of new users may not contain (they may
/// contain a-z, 0-9 and `._=-/+`).
pub fn invalid_localpart_char(localpart: &str) -> Option<char> {
    localpart
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+'))
}

impl Services {
    /// Validates a requested localpart and returns the user id it makes on this server.
    pub fn user_id_for(&self, localpart: &str) -> Result<OwnedUserId> {
        let user_id = self.any_user_id_for(localpart)?;
        if localpart.starts_with('_') {
            return Err(Error::InvalidUsername(
                "usernames starting with '_' are reserved for bridges".into(),
            ));
        }
        Ok(user_id)
    }

    /// Like [`Services::user_id_for`], also allowing the leading `_` reserved for appservices.
    fn any_user_id_for(&self, localpart: &str) -> Result<OwnedUserId> {
        if localpart.is_empty() {
            return Err(Error::InvalidUsername("the username is empty".into()));
        }
        if let Some(bad) = invalid_localpart_char(localpart) {
            return Err(Error::InvalidUsername(format!(
                "usernames may only contain a-z, 0-9 and . _ = - / +; found {bad:?}"
            )));
        }
        let full = format!("@{localpart}:{}", self.server_name());
        if full.len() > MAX_USER_ID_BYTES {
            return Err(Error::InvalidUsername(format!(
                "the user id would be longer than {MAX_USER_ID_BYTES} bytes"
            )));
        }
        UserId::parse(full).map_err(|e| Error::InvalidUsername(e.to_string()))
    }

    /// Resolves what a client typed at login (a localpart or a full user id) to a local user id.
    pub fn local_user_id(&self, typed: &str) -> Result<OwnedUserId> {
        if typed.starts_with('@') {
            let user_id = UserId::parse(typed)
                .map_err(|e| Error::InvalidParam(format!("invalid user id {typed:?}: {e}")))?;
            if user_id.server_name() != self.server_name() {
                return Err(Error::Forbidden(format!(
                    "{typed} is not a user of this server"
                )));
            }
            return Ok(user_id);
        }
        UserId::parse(format!("@{}:{}", typed.to_lowercase(), self.server_name()))
            .map_err(|e| Error::InvalidParam(format!("invalid user name {typed:?}: {e}")))
    }

    /// Ok when the localpart is valid and free; `M_USER_IN_USE` or `M_INVALID_USERNAME` otherwise.
    /// A user id in an appservice's exclusive namespace is `M_EXCLUSIVE`.
    pub async fn check_username_available(&self, localpart: &str) -> Result<OwnedUserId> {
        if let Ok(user_id) = self.any_user_id_for(localpart) {
            self.check_user_namespace(&user_id, None)?;
        }
        let user_id = self.user_id_for(localpart)?;
        let lookup = user_id.clone();
        if self
            .db
            .read(move |conn| storage::users::get_user(conn, &lookup))
            .await?
            .is_some()
        {
            return Err(Error::UserInUse(format!("{user_id} is already taken")));
        }
        Ok(user_id)
    }

    pub fn check_password_policy(&self, password: &str) -> Result<()> {
        let minimum = self.config.registration.password_min_length;
        if password.chars().count() < minimum {
            return Err(Error::WeakPassword(format!(
                "the password must be at least {minimum} characters long"
            )));
        }
        Ok(())
    }

    /// The registration flows this server offers.
    pub fn registration_flows(&self) -> Vec<AuthFlow> {
        let mut flows = Vec::new();
        if self.config.registration.open {
            flows.push(AuthFlow::new(vec![AuthType::Dummy]));
        }
        flows.push(AuthFlow::new(vec![AuthType::RegistrationToken]));
        flows
    }

    /// `POST /register`: validates early, runs user-interactive auth, then creates the account
    /// (and its first device) in one transaction.
    pub async fn register(&self, request: Registration) -> Result<Registered> {
        self.rate_limiter
            .check(Action::Registration, &request.client_ip.to_string())?;
        let requested = match &request.username {
            Some(name) => Some(self.check_username_available(name).await?),
            None => None,
        };
        if let Some(password) = &request.password {
            self.check_password_policy(password)?;
        }
        let session = self
            .uiaa("register", None, self.registration_flows(), request.auth)
            .await?;
        let password = request
            .password
            .ok_or_else(|| Error::MissingParam("a password is required to register".into()))?;
        let hash = self.hash_password(password).await?;
        let user_id = match requested {
            Some(user_id) => user_id,
            None => self.next_generated_user_id().await?,
        };
        let token = session
            .params
            .get(REGISTRATION_TOKEN_PARAM)
            .and_then(|v| v.as_str())
            .map(String::from);
        let device_id = (!request.inhibit_login).then(|| {
            request
                .device_id
                .unwrap_or_else(super::tokens::new_device_id)
        });
        let prepared = device_id
            .as_ref()
            .map(|_| self.prepare_tokens(request.refresh_token));
        let (user, session_id) = (user_id.clone(), session.session_id);
        let display_name = request.initial_device_display_name;
        let device = device_id.clone();
        let ip = request.client_ip.to_string();
        let prepared = self
            .db
            .write("register_user", move |txn| {
                if !storage::users::insert_user_txn(txn, &user, Some(&hash), false)? {
                    return Ok(Err(Error::UserInUse(format!("{user} is already taken"))));
                }
                if let Some(token) = &token {
                    registration_tokens::complete_use_txn(txn, token)?;
                }
                storage::uiaa::delete_session_txn(txn, &session_id)?;
                if let (Some(device), Some(prepared)) = (&device, &prepared) {
                    storage::tokens::upsert_device_with_tokens_txn(
                        txn,
                        &user,
                        device,
                        display_name.as_deref(),
                        &ip,
                        &prepared.as_new_tokens(),
                    )?;
                }
                Ok(Ok(prepared))
            })
            .await??;
        tracing::info!(user.id = %user_id, "registered user");
        Ok(Registered {
            user_id,
            device: device_id.zip(prepared.map(|p| p.issued)),
        })
    }

    /// `POST /register` with `m.login.application_service` and an appservice's token: a user of
    /// its namespace (a leading `_` allowed), without password or user-interactive auth; logged
    /// in unless `inhibit_login`.
    pub async fn register_appservice_user(
        &self,
        registration: &Arc<AppserviceRegistration>,
        request: Registration,
    ) -> Result<Registered> {
        let localpart = request.username.as_deref().ok_or_else(|| {
            Error::MissingParam("an application service must name the user to register".into())
        })?;
        let user_id = self.any_user_id_for(localpart)?;
        self.check_user_namespace(&user_id, Some(registration))?;
        let device_id = (!request.inhibit_login).then(|| {
            request
                .device_id
                .unwrap_or_else(super::tokens::new_device_id)
        });
        let prepared = device_id
            .as_ref()
            .map(|_| self.prepare_tokens(request.refresh_token));
        let (user, device) = (user_id.clone(), device_id.clone());
        let display_name = request.initial_device_display_name;
        let ip = request.client_ip.to_string();
        let prepared = self
            .db
            .write("register_appservice_user", move |txn| {
                if !storage::users::insert_user_txn(txn, &user, None, false)? {
                    return Ok(Err(Error::UserInUse(format!("{user} is already taken"))));
                }
                if let (Some(device), Some(prepared)) = (&device, &prepared) {
                    storage::tokens::upsert_device_with_tokens_txn(
                        txn,
                        &user,
                        device,
                        display_name.as_deref(),
                        &ip,
                        &prepared.as_new_tokens(),
                    )?;
                }
                Ok(Ok(prepared))
            })
            .await??;
        tracing::info!(user.id = %user_id, appservice = %registration.id, "registered user");
        Ok(Registered {
            user_id,
            device: device_id.zip(prepared.map(|p| p.issued)),
        })
    }

    /// `m.login.application_service`: an appservice logs in one of its namespace's users, who
    /// must exist.
    pub async fn login_appservice_user(
        &self,
        registration: &Arc<AppserviceRegistration>,
        typed_user: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        with_refresh: bool,
        client_ip: IpAddr,
    ) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
        let user_id = self.local_user_id(typed_user)?;
        if !registration.is_in_user_namespace(&user_id) {
            return Err(Error::Exclusive(format!(
                "{user_id} is not in the user namespace of the application service {}",
                registration.id
            )));
        }
        let lookup = user_id.clone();
        let row = self
            .db
            .read(move |c| storage::users::get_user(c, &lookup))
            .await?;
        match row {
            None => {
                return Err(Error::Forbidden(format!(
                    "the application service has not registered {user_id}"
                )));
            }
            Some(row) if row.deactivated => return Err(Error::UserDeactivated),
            Some(_) => {}
        }
        let (device_id, tokens) = self
            .open_device(&user_id, device_id, display_name, with_refresh, client_ip)
            .await?;
        tracing::info!(user.id = %user_id, device.id = %device_id, appservice = %registration.id,
            "logged in");
        Ok((user_id, device_id, tokens))
    }

    /// Creates an account directly (the command line and shared-secret registration): no
    /// user-interactive auth, no device.
    pub async fn create_user(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> Result<OwnedUserId> {
        let user_id = self.user_id_for(localpart)?;
        self.check_password_policy(password)?;
        let hash = self.hash_password(password.to_owned()).await?;
        let user = user_id.clone();
        self.db
            .write("create_user", move |txn| {
                if !storage::users::insert_user_txn(txn, &user, Some(&hash), admin)? {
                    return Ok(Err(Error::UserInUse(format!("{user} is already taken"))));
                }
                Ok(Ok(()))
            })
            .await??;
        tracing::info!(user.id = %user_id, admin, "created user");
        Ok(user_id)
    }

    /// Picks a free numeric localpart for a registration that named none.
    async fn next_generated_user_id(&self) -> Result<OwnedUserId> {
        let mut candidate = self.db.read(storage::users::count_users).await? + 1;
        loop {
            let user_id = self.user_id_for(&candidate.to_string())?;
            let lookup = user_id.clone();
            if self
                .db
                .read(move |c| storage::users::get_user(c, &lookup))
                .await?
                .is_none()
            {
                return Ok(user_id);
            }
            candidate += 1;
        }
    }

    /// `m.login.password`: checks the password and opens a device.
    pub async fn login_with_password(
        &self,
        typed_user: &str,
        password: &str,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        with_refresh: bool,
        client_ip: IpAddr,
    ) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
        self.rate_limiter
            .check(Action::Login, &client_ip.to_string())?;
        let user_id = self.local_user_id(typed_user)?;
        if !self.check_password(&user_id, password).await? {
            return Err(Error::Forbidden("invalid username or password".into()));
        }
        let lookup = user_id.clone();
        let row = self
            .db
            .read(move |c| storage::users::get_user(c, &lookup))
            .await?;
        if row.is_some_and(|r| r.deactivated) {
            return Err(Error::UserDeactivated);
        }
        let (device_id, tokens) = self
            .open_device(&user_id, device_id, display_name, with_refresh, client_ip)
            .await?;
        tracing::info!(user.id = %user_id, device.id = %device_id, "logged in");
        Ok((user_id, device_id, tokens))
    }

    /// Sets a new password, after user-interactive auth; optionally logs out every other device.
    pub async fn change_password(
        &self,
        session: &UserSession,
        new_password: String,
        logout_devices: bool,
        auth: Option<AuthData>,
    ) -> Result<()> {
        self.check_password_policy(&new_password)?;
        let uiaa = self
            .uiaa(
                "change_password",
                Some(&session.user_id),
                password_flows(),
                auth,
            )
            .await?;
        let hash = self.hash_password(new_password).await?;
        let (user, keep) = (session.user_id.clone(), session.device_id.clone());
        let list_changed = self
            .db
            .write("change_password", move |txn| {
                storage::users::set_password_hash_txn(txn, &user, &hash)?;
                if !logout_devices {
                    return Ok(false);
                }
                delete_devices_txn(txn, |txn| {
                    storage::tokens::delete_other_devices_txn(txn, &user, Some(&keep))
                })
            })
            .await?;
        self.devices_deleted(&session.user_id, list_changed).await?;
        self.finish_uiaa(uiaa.session_id).await?;
        tracing::info!(user.id = %session.user_id, logout_devices, "password changed");
        Ok(())
    }

    /// Deactivates the account after user-interactive auth: every device is logged out and the
    /// user id stays reserved. With `erase`, the profile and password are removed too.
    pub async fn deactivate(
        &self,
        session: &UserSession,
        erase: bool,
        auth: Option<AuthData>,
    ) -> Result<()> {
        let uiaa = self
            .uiaa("deactivate", Some(&session.user_id), password_flows(), auth)
            .await?;
        let user = session.user_id.clone();
        let list_changed = self
            .db
            .write("deactivate_user", move |txn| {
                storage::users::deactivate_user_txn(txn, &user, erase)?;
                let list_changed = delete_devices_txn(txn, |txn| {
                    storage::tokens::delete_other_devices_txn(txn, &user, None)
                })?;
                if erase {
                    storage::users::delete_profile_txn(txn, &user)?;
                }
                Ok(list_changed)
            })
            .await?;
        self.devices_deleted(&session.user_id, list_changed).await?;
        self.finish_uiaa(uiaa.session_id).await?;
        tracing::info!(user.id = %session.user_id, erase, "account deactivated");
        Ok(())
    }

    pub async fn is_admin(&self, user_id: &UserId) -> Result<bool> {
        let lookup = user_id.to_owned();
        let row = self
            .db
            .read(move |c| storage::users::get_user(c, &lookup))
            .await?;
        Ok(row.is_some_and(|r| r.is_admin && !r.deactivated))
    }
}

/// The flows of operations on an existing account: confirm with the account's password.
pub fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}
