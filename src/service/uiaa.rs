//! User-interactive authentication (UIA): sessions, stages and flows, as the Client-Server API
//! describes them. An endpoint asks `Services::uiaa` whether its request is authorised; the answer
//! is either the completed session or `Error::AuthRequired` carrying what the client must do next
//! (a 401 with `flows`, `completed`, `session` and, after a failed stage, `errcode`/`error`).
//!
//! A session is bound to one purpose (the operation) and, for logged-in users, to one user, so
//! stages completed for one request cannot authorise another. Sessions live in the database and
//! expire after `auth.uiaa_session_lifetime_secs`.

use ruma::UserId;
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use serde_json::{Map, Value as JsonValue};

use super::rate_limit::Action;
use super::{Error, Result, Services, random_string};
use crate::storage::{self, now_ms, registration_tokens, uiaa::UiaaSessionRow};

/// The session parameter recording a reserved registration token.
pub const REGISTRATION_TOKEN_PARAM: &str = "registration_token";

/// A session whose stages satisfy one of the flows.
#[derive(Debug)]
pub struct CompletedSession {
    pub session_id: String,
    pub params: Map<String, JsonValue>,
}

impl Services {
    /// Checks `auth` against `flows` for the operation `purpose`. `user` is the logged-in user for
    /// operations on an existing account (password stages must authenticate as them).
    pub async fn uiaa(
        &self,
        purpose: &str,
        user: Option<&UserId>,
        flows: Vec<AuthFlow>,
        auth: Option<AuthData>,
    ) -> Result<CompletedSession> {
        let Some(auth) = auth else {
            let session_id = self.new_uiaa_session(purpose, user).await?;
            return Err(auth_required(flows, Vec::new(), session_id, None));
        };
        let session_id = match auth.session() {
            Some(id) => id.to_owned(),
            None => self.new_uiaa_session(purpose, user).await?,
        };
        let session = self.load_uiaa_session(&session_id, purpose, user).await?;
        let mut completed = session.completed.clone();
        let mut params = session.params.clone();

        let stage_error = match self.run_stage(&auth, user, &flows, &mut params).await? {
            StageOutcome::Passed(stage) => {
                if !completed.contains(&stage) {
                    completed.push(stage);
                }
                None
            }
            StageOutcome::Failed(error) => Some(error),
            StageOutcome::NoStage => None,
        };
        if completed != session.completed || params != session.params {
            let (id, done, kept) = (session_id.clone(), completed.clone(), params.clone());
            self.db
                .write("update_uiaa_session", move |txn| {
                    storage::uiaa::update_session_txn(txn, &id, &done, &kept)
                })
                .await?;
        }
        let satisfied = flows.iter().any(|flow| {
            flow.stages
                .iter()
                .all(|stage| completed.contains(&stage.to_string()))
        });
        if satisfied && stage_error.is_none() {
            return Ok(CompletedSession { session_id, params });
        }
        Err(auth_required(flows, completed, session_id, stage_error))
    }

    /// Forgets a session after the operation it authorised has succeeded.
    pub async fn finish_uiaa(&self, session_id: String) -> Result<()> {
        self.db
            .write("finish_uiaa_session", move |txn| {
                storage::uiaa::delete_session_txn(txn, &session_id)
            })
            .await?;
        Ok(())
    }

    async fn new_uiaa_session(&self, purpose: &str, user: Option<&UserId>) -> Result<String> {
        let session_id = random_string(24);
        let cutoff = now_ms() - self.uiaa_lifetime_ms();
        let (id, purpose, user) = (
            session_id.clone(),
            purpose.to_owned(),
            user.map(|u| u.as_str().to_owned()),
        );
        self.db
            .write("new_uiaa_session", move |txn| {
                // Expired sessions go first, giving back registration token uses they reserved.
                for params in storage::uiaa::delete_sessions_before_txn(txn, cutoff)? {
                    if let Some(JsonValue::String(token)) = params.get(REGISTRATION_TOKEN_PARAM) {
                        registration_tokens::release_use_txn(txn, token)?;
                    }
                }
                storage::uiaa::insert_session_txn(txn, &id, &purpose, user.as_deref())
            })
            .await?;
        Ok(session_id)
    }

    async fn load_uiaa_session(
        &self,
        session_id: &str,
        purpose: &str,
        user: Option<&UserId>,
    ) -> Result<UiaaSessionRow> {
        let id = session_id.to_owned();
        let session = self
            .db
            .read(move |conn| storage::uiaa::get_session(conn, &id))
            .await?;
        let lifetime = self.uiaa_lifetime_ms();
        let session = session
            .filter(|s| s.created_ts + lifetime > now_ms())
            .ok_or_else(|| {
                Error::InvalidParam(format!("unknown or expired auth session {session_id:?}"))
            })?;
        if session.purpose != purpose || session.user_id.as_deref() != user.map(UserId::as_str) {
            return Err(Error::Forbidden(
                "this auth session was started for another request; start a new one".into(),
            ));
        }
        Ok(session)
    }

    fn uiaa_lifetime_ms(&self) -> i64 {
        self.config.auth.uiaa_session_lifetime_secs as i64 * 1000
    }

    async fn run_stage(
        &self,
        auth: &AuthData,
        user: Option<&UserId>,
        flows: &[AuthFlow],
        params: &mut Map<String, JsonValue>,
    ) -> Result<StageOutcome> {
        let Some(stage) = auth.auth_type() else {
            return Ok(StageOutcome::NoStage);
        };
        if matches!(auth, AuthData::FallbackAcknowledgement(_)) {
            return Ok(StageOutcome::NoStage);
        }
        if !flows.iter().any(|flow| flow.stages.contains(&stage)) {
            return Ok(StageOutcome::Failed(stage_error(
                ErrorKind::Unrecognized,
                format!("the stage {stage} is not offered for this request"),
            )));
        }
        let name = stage.to_string();
        match auth {
            AuthData::Dummy(_) => Ok(StageOutcome::Passed(name)),
            AuthData::Password(password) => {
                let Some(user) = user else {
                    return Ok(StageOutcome::Failed(stage_error(
                        ErrorKind::Forbidden,
                        "a password stage needs a logged-in user".into(),
                    )));
                };
                let named_ok = match &password.identifier {
                    UserIdentifier::Matrix(id) => {
                        id.user == user.as_str() || id.user == user.localpart()
                    }
                    _ => false,
                };
                if !named_ok {
                    return Ok(StageOutcome::Failed(stage_error(
                        ErrorKind::Forbidden,
                        "the password stage must identify the logged-in user".into(),
                    )));
                }
                if self.check_password(user, &password.password).await? {
                    Ok(StageOutcome::Passed(name))
                } else {
                    Ok(StageOutcome::Failed(stage_error(
                        ErrorKind::Forbidden,
                        "invalid password".into(),
                    )))
                }
            }
            AuthData::RegistrationToken(token) => {
                if params.contains_key(REGISTRATION_TOKEN_PARAM) {
                    return Ok(StageOutcome::Passed(name));
                }
                let text = token.token.clone();
                let reserved = self
                    .db
                    .write("reserve_registration_token", move |txn| {
                        registration_tokens::reserve_use_txn(txn, &text, now_ms())
                    })
                    .await?;
                if reserved {
                    params.insert(REGISTRATION_TOKEN_PARAM.into(), token.token.clone().into());
                    Ok(StageOutcome::Passed(name))
                } else {
                    Ok(StageOutcome::Failed(stage_error(
                        ErrorKind::Forbidden,
                        "the registration token is invalid, expired or used up".into(),
                    )))
                }
            }
            _ => Ok(StageOutcome::Failed(stage_error(
                ErrorKind::Unrecognized,
                format!("the stage {stage} is not supported by this server"),
            ))),
        }
    }

    /// Verifies a user's password, counting failures against the account's failed-login bucket.
    pub async fn check_password(&self, user: &UserId, password: &str) -> Result<bool> {
        self.rate_limiter
            .would_limit(Action::FailedLogin, user.as_str())?;
        let id = user.to_owned();
        let row = self
            .db
            .read(move |conn| storage::users::get_user(conn, &id))
            .await?;
        let matches = match row.and_then(|r| r.password_hash) {
            Some(stored) => self.verify_password(password.to_owned(), stored).await?,
            None => false,
        };
        if !matches {
            // Only failures use up the bucket; the error of a limited attempt is reported above.
            let _ = self.rate_limiter.check(Action::FailedLogin, user.as_str());
        }
        Ok(matches)
    }
}

enum StageOutcome {
    Passed(String),
    Failed(StandardErrorBody),
    NoStage,
}

fn stage_error(kind: ErrorKind, message: String) -> StandardErrorBody {
    StandardErrorBody::new(kind, message)
}

fn auth_required(
    flows: Vec<AuthFlow>,
    completed: Vec<String>,
    session_id: String,
    error: Option<StandardErrorBody>,
) -> Error {
    let mut info = UiaaInfo::new(flows);
    info.completed = completed
        .iter()
        .map(|s| AuthType::from(s.as_str()))
        .collect();
    info.session = Some(session_id);
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    info.auth_error = error.map(Box::new);
    Error::AuthRequired(Box::new(info))
}
