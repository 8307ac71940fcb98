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

    /// The filter a `/sync` asks for with its `filter` query parameter: none (the default filter),
    /// an inline definition (it starts with `{`; invalid → `M_BAD_JSON`), or the id of a filter
    /// the user uploaded (unknown → `M_NOT_FOUND`).
    pub async fn resolve_sync_filter(
        &self,
        user_id: &UserId,
        filter: Option<&str>,
    ) -> Result<FilterDefinition> {
        match filter {
            None => Ok(FilterDefinition::default()),
            Some(text) if text.trim_start().starts_with('{') => parse_inline_filter(text),
            Some(filter_id) => self.get_filter(user_id, filter_id).await,
        }
    }
}

fn parse_inline_filter(text: &str) -> Result<FilterDefinition> {
    serde_json::from_str(text).map_err(|e| Error::BadJson(format!("invalid inline filter: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::service::account_data::tests::services_with;

    #[test]
    fn inline_filters_parse_and_bad_ones_are_bad_json() {
        let filter = parse_inline_filter(r#"{"room": {"timeline": {"limit": 5}}}"#).unwrap();
        assert_eq!(filter.room.timeline.limit, Some(5u32.into()));
        for bad in [
            r#"{"room": {"timeline": {"limit": "ten"}}}"#,
            "{not json",
            r#"{"room": 3}"#,
        ] {
            let err = parse_inline_filter(bad).unwrap_err();
            assert!(matches!(err, Error::BadJson(_)), "{bad}: {err:?}");
        }
    }

    #[tokio::test]
    async fn the_sync_filter_parameter_is_an_id_or_inline_json() {
        let alice: &UserId = "@alice:localhost".try_into().unwrap();
        let (_dir, services) = services_with(&[alice]).await;
        let uploaded: ruma::api::client::filter::FilterDefinition =
            serde_json::from_value(json!({"room": {"timeline": {"limit": 7}}})).unwrap();
        let id = services
            .upload_filter(alice, alice, &uploaded)
            .await
            .unwrap();

        let by_id = services
            .resolve_sync_filter(alice, Some(&id))
            .await
            .unwrap();
        assert_eq!(by_id.room.timeline.limit, Some(7u32.into()));
        let inline = services
            .resolve_sync_filter(alice, Some(r#"{"room":{"timeline":{"limit":2}}}"#))
            .await
            .unwrap();
        assert_eq!(inline.room.timeline.limit, Some(2u32.into()));
        let default = services.resolve_sync_filter(alice, None).await.unwrap();
        assert!(default.is_empty());

        let unknown = services
            .resolve_sync_filter(alice, Some("99"))
            .await
            .unwrap_err();
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown:?}");
        let invalid = services
            .resolve_sync_filter(alice, Some("{\"room\":"))
            .await
            .unwrap_err();
        assert!(matches!(invalid, Error::BadJson(_)), "{invalid:?}");
    }
}
