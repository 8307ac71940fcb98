//! A user's pushers: listing them, and setting or deleting one as `/pushers/set` asks. Only HTTP
//! pushers are supported; what is accepted is exactly what the push outbox (`outbox::push`) can
//! deliver. Delivery itself is not here.

use ruma::api::client::push::set_pusher::v3::PusherAction;
use ruma::api::client::push::{Pusher, PusherIds, PusherInit, PusherKind};
use ruma::push::HttpPusherData;

use super::{Error, Result, Services, UserSession};
use crate::storage::{
    self,
    pushers::{NewPusher, PusherKey, PusherRow},
};

/// The longest `app_id`, in characters.
const MAX_APP_ID_CHARS: usize = 64;
/// The longest `pushkey`, in bytes.
const MAX_PUSHKEY_BYTES: usize = 512;
/// The path every push gateway URL must have.
pub(crate) const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

impl Services {
    /// `GET /pushers`: the user's pushers, as they were set.
    pub async fn pushers(&self, session: &UserSession) -> Result<Vec<Pusher>> {
        let user = session.user_id.to_string();
        let rows = self
            .db
            .read(move |c| storage::pushers::user_pushers(c, &user))
            .await?;
        rows.into_iter().map(client_pusher).collect()
    }

    /// `POST /pushers/set`: creates, updates or (with `kind: null`) deletes one of the user's
    /// pushers. Unless `append` is set, the same app and push key is taken away from any other
    /// user, as the push key now reaches this user's device.
    pub async fn set_pusher(&self, session: &UserSession, action: PusherAction) -> Result<()> {
        session.require_device("a pusher")?;
        let user_id = session.user_id.to_string();
        let post = match action {
            PusherAction::Delete(ids) => {
                let key = PusherKey {
                    user_id,
                    app_id: ids.app_id,
                    pushkey: ids.pushkey,
                };
                self.db
                    .write("delete_pusher", move |txn| {
                        storage::pushers::delete_pusher_txn(txn, &key)
                    })
                    .await?;
                return Ok(());
            }
            PusherAction::Post(post) => post,
            _ => return Err(Error::InvalidParam("unknown pusher action".into())),
        };
        let pusher = post.pusher;
        check_ids(&pusher.ids)?;
        let data = match pusher.kind {
            PusherKind::Http(data) => {
                check_gateway_url(&data.url)?;
                data
            }
            PusherKind::Email(_) => {
                return Err(Error::InvalidParam(
                    "email pushers are not supported".into(),
                ));
            }
            _ => {
                return Err(Error::InvalidParam(
                    "unknown pusher kind; this server supports \"http\" pushers".into(),
                ));
            }
        };
        let data = serde_json::to_string(&data)
            .map_err(|e| Error::Internal(format!("cannot serialise pusher data: {e}")))?;
        let key = PusherKey {
            user_id,
            app_id: pusher.ids.app_id,
            pushkey: pusher.ids.pushkey,
        };
        let device = session.device_id.to_string();
        let append = post.append;
        let pushkey_ts = storage::now_ms() / 1000;
        self.db
            .write("set_pusher", move |txn| {
                if !append {
                    storage::pushers::delete_others_with_key_txn(txn, &key)?;
                }
                storage::pushers::upsert_pusher_txn(
                    txn,
                    &NewPusher {
                        key: &key,
                        kind: "http",
                        app_display_name: &pusher.app_display_name,
                        device_display_name: &pusher.device_display_name,
                        profile_tag: pusher.profile_tag.as_deref(),
                        lang: &pusher.lang,
                        data: &data,
                        device_id: Some(&device),
                        pushkey_ts,
                    },
                )
            })
            .await?;
        Ok(())
    }
}

fn check_ids(ids: &PusherIds) -> Result<()> {
    if ids.app_id.chars().count() > MAX_APP_ID_CHARS {
        return Err(Error::InvalidParam(format!(
            "app_id is longer than {MAX_APP_ID_CHARS} characters"
        )));
    }
    if ids.pushkey.len() > MAX_PUSHKEY_BYTES {
        return Err(Error::InvalidParam(format!(
            "pushkey is longer than {MAX_PUSHKEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// An HTTP pusher's `data.url` must be an absolute http(s) URL of a gateway's notify endpoint.
fn check_gateway_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::InvalidParam(format!("data.url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::InvalidParam(
            "data.url must be an http or https URL".into(),
        ));
    }
    if parsed.path() != NOTIFY_PATH {
        return Err(Error::InvalidParam(format!(
            "data.url must have the path {NOTIFY_PATH}"
        )));
    }
    Ok(())
}

/// A stored pusher as `GET /pushers` lists it.
fn client_pusher(row: PusherRow) -> Result<Pusher> {
    let data: HttpPusherData = serde_json::from_str(&row.data)
        .map_err(|e| Error::Internal(format!("stored pusher data is not valid: {e}")))?;
    Ok(PusherInit {
        ids: PusherIds::new(row.key.pushkey, row.key.app_id),
        kind: PusherKind::Http(data),
        app_display_name: row.app_display_name,
        device_display_name: row.device_display_name,
        profile_tag: row.profile_tag,
        lang: row.lang,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_must_be_http_with_the_notify_path() {
        for good in [
            "https://push.example.org/_matrix/push/v1/notify",
            "http://127.0.0.1:5000/_matrix/push/v1/notify",
        ] {
            assert!(check_gateway_url(good).is_ok(), "{good}");
        }
        for bad in [
            "push.example.org/_matrix/push/v1/notify",
            "ftp://push.example.org/_matrix/push/v1/notify",
            "https://push.example.org/notify",
            "https://push.example.org/_matrix/push/v1/notify/extra",
            "https:///_matrix/push/v1/notify",
            "",
        ] {
            assert!(
                matches!(check_gateway_url(bad), Err(Error::InvalidParam(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_have_length_limits() {
        let ok = PusherIds::new("k".repeat(512), "a".repeat(64));
        assert!(check_ids(&ok).is_ok());
        let long_app = PusherIds::new("k".into(), "a".repeat(65));
        assert!(matches!(check_ids(&long_app), Err(Error::InvalidParam(_))));
        let long_key = PusherIds::new("k".repeat(513), "a".into());
        assert!(matches!(check_ids(&long_key), Err(Error::InvalidParam(_))));
    }
}
