//! Registration tokens, managed by admins through the Synapse-compatible admin API.

use serde::Deserialize;

use super::{Error, Result, Services, random_string};
use crate::storage::{self, now_ms, registration_tokens::RegistrationToken};

/// Characters a registration token may contain, as the specification allows.
fn valid_token_text(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
}

/// What an admin asks for when creating a token; unset fields get defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRegistrationToken {
    pub token: Option<String>,
    pub uses_allowed: Option<i64>,
    pub expiry_time: Option<i64>,
    pub length: Option<usize>,
}

impl Services {
    pub async fn create_registration_token(
        &self,
        new: NewRegistrationToken,
    ) -> Result<RegistrationToken> {
        let token = match (new.token, new.length) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidParam(
                    "give either token or length, not both".into(),
                ));
            }
            (Some(token), None) => token,
            (None, length) => {
                let length = length.unwrap_or(16);
                if !(1..=64).contains(&length) {
                    return Err(Error::InvalidParam(
                        "length must be between 1 and 64".into(),
                    ));
                }
                random_string(length)
            }
        };
        if !valid_token_text(&token) {
            return Err(Error::InvalidParam(
                "token must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'".into(),
            ));
        }
        if new.uses_allowed.is_some_and(|n| n < 0) {
            return Err(Error::InvalidParam(
                "uses_allowed must not be negative".into(),
            ));
        }
        let now = now_ms();
        if new.expiry_time.is_some_and(|t| t < now) {
            return Err(Error::InvalidParam("expiry_time is in the past".into()));
        }
        let row = RegistrationToken {
            token,
            uses_allowed: new.uses_allowed,
            pending: 0,
            completed: 0,
            expiry_time: new.expiry_time,
        };
        let insert = row.clone();
        let inserted = self
            .db
            .write("create_registration_token", move |txn| {
                storage::registration_tokens::insert_token_txn(txn, &insert, now)
            })
            .await?;
        if !inserted {
            return Err(Error::InvalidParam(format!(
                "registration token {:?} already exists",
                row.token
            )));
        }
        Ok(row)
    }

    /// Lists tokens; `valid` filters to tokens that can (or cannot) still be used.
    pub async fn list_registration_tokens(
        &self,
        valid: Option<bool>,
    ) -> Result<Vec<RegistrationToken>> {
        let tokens = self
            .db
            .read(storage::registration_tokens::list_tokens)
            .await?;
        let now = now_ms();
        Ok(tokens
            .into_iter()
            .filter(|t| valid.is_none_or(|v| is_usable(t, now) == v))
            .collect())
    }

    pub async fn get_registration_token(&self, token: &str) -> Result<RegistrationToken> {
        let text = token.to_owned();
        self.db
            .read(move |c| storage::registration_tokens::get_token(c, &text))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no registration token {token:?}")))
    }

    pub async fn update_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<Option<i64>>,
        expiry_time: Option<Option<i64>>,
    ) -> Result<RegistrationToken> {
        if uses_allowed.flatten().is_some_and(|n| n < 0) {
            return Err(Error::InvalidParam(
                "uses_allowed must not be negative".into(),
            ));
        }
        let text = token.to_owned();
        self.db
            .write("update_registration_token", move |txn| {
                storage::registration_tokens::update_token_txn(
                    txn,
                    &text,
                    uses_allowed,
                    expiry_time,
                )
            })
            .await?
            .ok_or_else(|| Error::NotFound(format!("no registration token {token:?}")))
    }

    pub async fn delete_registration_token(&self, token: &str) -> Result<()> {
        let text = token.to_owned();
        let deleted = self
            .db
            .write("delete_registration_token", move |txn| {
                storage::registration_tokens::delete_token_txn(txn, &text)
            })
            .await?;
        if !deleted {
            return Err(Error::NotFound(format!("no registration token {token:?}")));
        }
        Ok(())
    }

    /// Whether a token can still be used to register (`/register/m.login.registration_token/validity`).
    pub async fn registration_token_is_valid(&self, token: &str) -> Result<bool> {
        let text = token.to_owned();
        let row = self
            .db
            .read(move |c| storage::registration_tokens::get_token(c, &text))
            .await?;
        Ok(row.is_some_and(|t| is_usable(&t, now_ms())))
    }
}

fn is_usable(token: &RegistrationToken, now: i64) -> bool {
    token.expiry_time.is_none_or(|t| t > now)
        && token
            .uses_allowed
            .is_none_or(|n| token.pending + token.completed < n)
}
