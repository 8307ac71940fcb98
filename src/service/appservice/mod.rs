//! Application services (bridges and bots) registered with this server: their registration
//! files, read once at start-up (`registration.rs`), and the questions the rest of the server asks
//! about them — which registration an `as_token` belongs to, which registrations a user id, alias
//! or room falls in, and which one claims it exclusively.
//!
//! What an appservice may do — identity assertion, namespace users' registration, `M_EXCLUSIVE`
//! — is `auth.rs`; questions the server asks an appservice (unknown users and aliases in its
//! namespaces, third-party lookups, pings) are `queries.rs` and `thirdparty.rs`, over the HTTP
//! client of `client.rs`. What it is sent (transactions) is the appservice outbox's.

pub mod auth;
pub mod client;
pub mod queries;
mod registration;
pub mod thirdparty;

use std::sync::Arc;

use ruma::{RoomAliasId, RoomId, UserId};

use crate::config::Config;
pub use auth::{Assertion, appservice_device_id};
pub use client::{AppserviceClient, CallError};
pub use registration::{Namespace, Registration, RegistrationError};

/// Every registration, in the order the config lists their files.
#[derive(Debug, Default)]
pub struct Appservices {
    registrations: Vec<Arc<Registration>>,
    /// The HTTP client for queries and pings to the appservices.
    pub client: AppserviceClient,
}

impl Appservices {
    /// Reads and checks every file of `appservice_registrations`: a file that cannot be read or
    /// parsed, a missing or invalid field, two registrations with the same `id` or `as_token`,
    /// or two claiming the same exclusive namespace stop start-up with an error naming the file
    /// and the field.
    pub fn load(config: &Config) -> Result<Appservices, RegistrationError> {
        let mut registrations: Vec<Arc<Registration>> = Vec::new();
        for path in &config.appservice_registrations {
            let registration = Registration::load(path, &config.server_name)?;
            for other in &registrations {
                registration.check_compatible_with(other)?;
            }
            registrations.push(Arc::new(registration));
        }
        Ok(Appservices {
            registrations,
            client: AppserviceClient::default(),
        })
    }

    /// Registrations given directly (tests).
    pub fn from_registrations(registrations: Vec<Registration>) -> Appservices {
        Appservices {
            registrations: registrations.into_iter().map(Arc::new).collect(),
            client: AppserviceClient::default(),
        }
    }

    pub fn all(&self) -> &[Arc<Registration>] {
        &self.registrations
    }

    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
    }

    /// The registration whose `as_token` this is.
    /// Every registration's token is compared, each in time that does not depend on where it
    /// differs, so response times tell nothing about the tokens.
    pub fn by_as_token(&self, token: &str) -> Option<&Arc<Registration>> {
        self.registrations
            .iter()
            .fold(None, |found, r| match same_secret(token, &r.as_token) {
                true => Some(r),
                false => found,
            })
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Registration>> {
        self.registrations.iter().find(|r| r.id == id)
    }

    /// The registration that claims `user` exclusively (its bot included), if any.
    pub fn exclusive_owner_of_user(&self, user: &UserId) -> Option<&Arc<Registration>> {
        self.registrations
            .iter()
            .find(|r| r.claims_user_exclusively(user))
    }

    /// The registration that claims `alias` exclusively, if any.
    pub fn exclusive_owner_of_alias(&self, alias: &RoomAliasId) -> Option<&Arc<Registration>> {
        self.registrations.iter().find(|r| {
            r.aliases
                .iter()
                .any(|n| n.exclusive && n.matches(alias.as_str()))
        })
    }

    /// The registrations whose user namespace `user` falls in (exclusive or not).
    pub fn interested_in_user<'a>(
        &'a self,
        user: &'a UserId,
    ) -> impl Iterator<Item = &'a Arc<Registration>> + 'a {
        self.registrations
            .iter()
            .filter(move |r| r.is_in_user_namespace(user))
    }

    /// The registrations whose room namespace `room` falls in.
    pub fn interested_in_room<'a>(
        &'a self,
        room: &'a RoomId,
    ) -> impl Iterator<Item = &'a Arc<Registration>> + 'a {
        self.registrations
            .iter()
            .filter(move |r| r.rooms.iter().any(|n| n.matches(room.as_str())))
    }
}

/// Whether two secrets are equal, compared in time that depends only on their length.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
