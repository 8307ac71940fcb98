//! Filters: uploading and downloading a user's filter definitions, and resolving the `filter`
//! parameter of `/sync` (a filter id or an inline definition) to a `FilterDefinition`.
//!
//! A filter is validated by parsing it as ruma's `FilterDefinition` and stored as that type
//! serialises it, so every stored filter parses again when `/sync` reads it.

use ruma::UserId;
use ruma::api::client::filter::FilterDefinition;

use super::account_data::require_self;
use super::{Error, Result, Services};
use crate::storage;

impl Services {
    /// Stores a filter of the caller's own and returns its id.
    pub async fn upload_filter(
        &self,
        caller: &UserId,
        user_id: &UserId,
        filter: &FilterDefinition,
    ) -> Result<String> {
        require_self(caller, user_id, "upload filters")?;
        let definition = serde_json::to_string(filter)
            .map_err(|e| Error::Internal(format!("cannot serialise a filter: {e}")))?;
        let user = user_id.to_owned();
        let filter_id = self
            .db
            .write("insert_filter", move |txn| {
                storage::filters::insert_filter_txn(txn, &user, &definition)
            })
            .await?;
        Ok(filter_id.to_string())
    }

    /// One of the caller's own filters, for `GET /user/{userId}/filter/{filterId}`.
    pub async fn download_filter(
        &self,
        caller: &UserId,
        user_id: &UserId,
        filter_id: &str,
    ) -> Result<FilterDefinition> {
        require_self(caller, user_id, "download filters")?;
        self.get_filter(user_id, filter_id).await
    }

    /// A filter `user_id` uploaded; `M_NOT_FOUND` for an id they never got.
    pub async fn get_filter(&self, user_id: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let not_found = || Error::NotFound(format!("no filter {filter_id:?} for {user_id}"));
        // Ids are issued as decimal numbers; anything else was never issued.
        let id: i64 = filter_id.parse().map_err(|_| not_found())?;
        let user = user_id.to_owned();
        let definition = self
            .db
            .read(move |c| storage::filters::get_filter(c, &user, id))
            .await?
            .ok_or_else(not_found)?;
        serde_json::from_str(&definition).map_err(|e| {
            Error::Internal(format!("stored filter {id} of {user_id} is invalid: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::service::account_data::tests::services_with;

    #[tokio::test]
    async fn an_uploaded_filter_is_found_by_its_id_and_an_unknown_id_is_not() {
        let alice: &UserId = "@alice:localhost".try_into().unwrap();
        let (_dir, services) = services_with(&[alice]).await;
        let uploaded: ruma::api::client::filter::FilterDefinition =
            serde_json::from_value(json!({"room": {"timeline": {"limit": 7}}})).unwrap();
        let id = services
            .upload_filter(alice, alice, &uploaded)
            .await
            .unwrap();

        let by_id = services.get_filter(alice, &id).await.unwrap();
        assert_eq!(by_id.room.timeline.limit, Some(7u32.into()));
        let unknown = services.get_filter(alice, "99").await.unwrap_err();
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown:?}");
    }
}
