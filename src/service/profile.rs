//! Profiles: `displayname`, `avatar_url`, `m.tz` and custom fields of local users. Profiles of
//! other servers' users are asked over federation (`remote_profile`).

use ruma::UserId;
use serde_json::{Map, Value as JsonValue};

use super::{Error, Result, Services};
use crate::storage;

/// Limits on profile data, as other homeservers enforce them.
const MAX_DISPLAYNAME_CHARS: usize = 256;
const MAX_PROFILE_BYTES: usize = 64 * 1024;
const MAX_FIELD_NAME_BYTES: usize = 255;

impl Services {
    /// Every profile field of a local user; `M_NOT_FOUND` when there is no such user.
    pub async fn get_profile(&self, user_id: &UserId) -> Result<Map<String, JsonValue>> {
        if user_id.server_name() != self.server_name() {
            return self.remote_profile(user_id, None).await;
        }
        self.require_local_user(user_id).await?;
        let user = user_id.to_owned();
        let fields = self
            .db
            .read(move |c| storage::users::get_profile(c, &user))
            .await?;
        Ok(fields.into_iter().collect())
    }

    pub async fn get_profile_field(&self, user_id: &UserId, field: &str) -> Result<JsonValue> {
        if user_id.server_name() != self.server_name() {
            let mut profile = self.remote_profile(user_id, Some(field)).await?;
            return profile
                .remove(field)
                .ok_or_else(|| Error::NotFound(format!("{user_id} has no profile field {field}")));
        }
        self.require_local_user(user_id).await?;
        let (user, name) = (user_id.to_owned(), field.to_owned());
        self.db
            .read(move |c| storage::users::get_profile_field(c, &user, &name))
            .await?
            .ok_or_else(|| Error::NotFound(format!("{user_id} has no profile field {field}")))
    }

    /// Sets one field of the caller's own profile.
    pub async fn set_profile_field(
        &self,
        caller: &UserId,
        user_id: &UserId,
        field: &str,
        value: JsonValue,
    ) -> Result<()> {
        if caller != user_id {
            return Err(Error::Forbidden(
                "you can only change your own profile".into(),
            ));
        }
        validate_field(field, &value)?;
        let mut profile = self.get_profile(user_id).await?;
        profile.insert(field.to_owned(), value.clone());
        if JsonValue::Object(profile).to_string().len() > MAX_PROFILE_BYTES {
            return Err(Error::InvalidParam(format!(
                "the profile would be larger than {MAX_PROFILE_BYTES} bytes"
            )));
        }
        let (user, name) = (user_id.to_owned(), field.to_owned());
        self.db
            .write("set_profile_field", move |txn| {
                storage::users::set_profile_field_txn(txn, &user, &name, &value)
            })
            .await?;
        Ok(())
    }

    pub async fn delete_profile_field(
        &self,
        caller: &UserId,
        user_id: &UserId,
        field: &str,
    ) -> Result<()> {
        if caller != user_id {
            return Err(Error::Forbidden(
                "you can only change your own profile".into(),
            ));
        }
        let (user, name) = (user_id.to_owned(), field.to_owned());
        self.db
            .write("delete_profile_field", move |txn| {
                storage::users::delete_profile_field_txn(txn, &user, &name)
            })
            .await?;
        Ok(())
    }

    pub(super) async fn require_local_user(&self, user_id: &UserId) -> Result<()> {
        if user_id.server_name() != self.server_name() {
            return Err(Error::NotFound(format!(
                "{user_id} is not a user of this server"
            )));
        }
        self.ensure_appservice_user(user_id).await?;
        let user = user_id.to_owned();
        match self
            .db
            .read(move |c| storage::users::get_user(c, &user))
            .await?
        {
            Some(row) if !row.deactivated => Ok(()),
            _ => Err(Error::NotFound(format!("no profile for {user_id}"))),
        }
    }
}

fn validate_field(field: &str, value: &JsonValue) -> Result<()> {
    if field.is_empty() || field.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::InvalidParam(format!(
            "profile field names must be 1 to {MAX_FIELD_NAME_BYTES} bytes"
        )));
    }
    match (field, value) {
        ("displayname", JsonValue::String(name))
            if name.chars().count() > MAX_DISPLAYNAME_CHARS =>
        {
            Err(Error::InvalidParam(format!(
                "displayname is longer than {MAX_DISPLAYNAME_CHARS} characters"
            )))
        }
        ("displayname" | "m.tz", JsonValue::String(_)) => Ok(()),
        ("avatar_url", JsonValue::String(url)) => {
            let mxc: &ruma::MxcUri = url.as_str().into();
            if mxc.validate().is_err() {
                return Err(Error::InvalidParam(format!(
                    "avatar_url must be an mxc:// URI, got {url:?}"
                )));
            }
            Ok(())
        }
        ("displayname" | "avatar_url" | "m.tz", _) => {
            Err(Error::BadJson(format!("{field} must be a string")))
        }
        _ => Ok(()),
    }
}
