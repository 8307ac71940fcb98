//! A logged-in session of a registered account: its identity, credentials, and requests made
//! with its access token, plus the few steps most stories need (UIA with the password, a second
//! device, the display name).

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, encode};
use crate::reply::Reply;

#[derive(Clone, Debug)]
pub struct User {
    /// The full Matrix ID, e.g. `@alice:localhost`.
    pub user_id: String,
    pub localpart: String,
    pub password: String,
    pub access_token: String,
    pub device_id: String,
    /// Set when the session was created with `"refresh_token": true`.
    pub refresh_token: Option<String>,
    client: Client,
}

impl User {
    /// A session from a successful `/register` or `/login` body.
    pub(crate) fn from_session(client: &Client, password: &str, body: &Value) -> User {
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("the session has no {name}: {body:#}"))
                .to_owned()
        };
        let user_id = field("user_id");
        let localpart = user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let access_token = field("access_token");
        User {
            client: client.with_token(&access_token),
            localpart,
            password: password.to_owned(),
            device_id: field("device_id"),
            refresh_token: body["refresh_token"].as_str().map(str::to_owned),
            access_token,
            user_id,
        }
    }

    /// The authenticated client of this session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A client for the same server without any access token.
    pub fn anonymous(&self) -> Client {
        self.client.anonymous()
    }

    /// The same account and device, using another access token (e.g. after `/refresh`).
    pub fn with_access_token(&self, access_token: &str) -> User {
        User {
            access_token: access_token.to_owned(),
            client: self.client.with_token(access_token),
            ..self.clone()
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.client.get(path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.client.post(path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.client.put(path, body).await
    }

    pub async fn delete(&self, path: &str, body: Value) -> Reply {
        self.client.delete(path, body).await
    }

    /// `GET /account/whoami` with this session's token.
    pub async fn whoami(&self) -> Reply {
        self.get("/_matrix/client/v3/account/whoami").await
    }

    /// The `/login` body for this account's password, to extend with `device_id` and friends.
    pub fn login_body(&self) -> Value {
        json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.localpart},
            "password": self.password,
        })
    }

    /// Logs in again with the password: a new session on a new device.
    pub async fn login_new_device(&self) -> User {
        let reply = self
            .anonymous()
            .post("/_matrix/client/v3/login", self.login_body())
            .await;
        User::from_session(&self.client, &self.password, &reply.ok())
    }

    /// The `auth` object for the `m.login.password` UIA stage, with this account's password.
    pub fn password_auth(&self, session: &str) -> Value {
        self.password_auth_with(session, &self.password)
    }

    /// The `auth` object for the `m.login.password` UIA stage with any password.
    pub fn password_auth_with(&self, session: &str, password: &str) -> Value {
        json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": password,
            "session": session,
        })
    }

    /// Sends a request guarded by user-interactive auth: first without `auth` (which must be
    /// challenged with an `m.login.password` flow), then again with the password. Returns the
    /// answer to the second request.
    pub async fn with_password_uia(&self, method: Method, path: &str, body: Value) -> Reply {
        let challenge = self
            .client
            .request(method.clone(), path)
            .json(&body)
            .send()
            .await;
        let session = challenge.assert_uia_challenge("m.login.password");
        let mut body = body;
        body["auth"] = self.password_auth(&session);
        self.client.request(method, path).json(&body).send().await
    }

    pub fn profile_path(&self, field: &str) -> String {
        format!(
            "/_matrix/client/v3/profile/{}/{field}",
            encode(&self.user_id)
        )
    }

    /// Sets this user's display name, asserting success.
    pub async fn set_displayname(&self, displayname: &str) {
        self.put(
            &self.profile_path("displayname"),
            json!({"displayname": displayname}),
        )
        .await
        .ok();
    }

    /// This user's display name as the server reports it (`None` when unset).
    pub async fn displayname(&self) -> Option<String> {
        let reply = self.get(&self.profile_path("displayname")).await;
        if reply.status == 404 {
            return None;
        }
        reply.ok()["displayname"].as_str().map(str::to_owned)
    }

    /// The device IDs of this account, as `GET /devices` lists them.
    pub async fn device_ids(&self) -> Vec<String> {
        let reply = self.get("/_matrix/client/v3/devices").await;
        let body = reply.ok();
        let devices = body["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /devices has no devices array:\n{reply}"));
        devices
            .iter()
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect()
    }
}
