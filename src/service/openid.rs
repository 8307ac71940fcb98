//! OpenID tokens: a user asks for one (`/user/{userId}/openid/request_token`) and hands it to a
//! third party (an integration manager, a widget), which asks this server who it belongs to
//! (`/_matrix/federation/v1/openid/userinfo`). A token proves nothing but the user id, lives an
//! hour, and is stored only as its SHA-256 hash.

use std::time::Duration;

use ruma::{OwnedUserId, UserId};

use super::tokens::hash_token;
use super::{Error, Result, Services, UserSession, random_string};
use crate::storage::{self, now_ms};

/// How long an OpenID token is valid.
pub const OPENID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

impl Services {
    /// A new OpenID token for the session's own user; another user's is `M_FORBIDDEN`.
    pub async fn request_openid_token(
        &self,
        session: &UserSession,
        user_id: &UserId,
    ) -> Result<(String, Duration)> {
        if session.user_id != user_id {
            return Err(Error::Forbidden(
                "you may only request OpenID tokens for yourself".into(),
            ));
        }
        let token = random_string(32);
        let hash = hash_token(&token);
        let user = user_id.to_string();
        let now = now_ms();
        let expires_ts = now + OPENID_TOKEN_LIFETIME.as_millis() as i64;
        self.db
            .write("insert_openid_token", move |txn| {
                storage::openid::insert_openid_token_txn(txn, &hash, &user, expires_ts, now)
            })
            .await?;
        Ok((token, OPENID_TOKEN_LIFETIME))
    }

    /// The user an OpenID token belongs to; `M_UNKNOWN_TOKEN` for an unknown or expired one.
    pub async fn openid_userinfo(&self, token: &str) -> Result<OwnedUserId> {
        let hash = hash_token(token);
        let now = now_ms();
        let user = self
            .db
            .read(move |c| storage::openid::openid_token_user(c, &hash, now))
            .await?;
        let unknown = || Error::UnknownToken {
            soft_logout: false,
            message: "the OpenID token is unknown or has expired".into(),
        };
        user.ok_or_else(unknown)
            .and_then(|u| OwnedUserId::try_from(u).map_err(|_| unknown()))
    }
}
