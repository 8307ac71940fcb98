//! Media as the bridge moves it: uploads as a ghost, downloads of what Matrix users sent
//! (authenticated media first, the older `/media/v3` path when the homeserver lacks it).

use ruma::{MxcUri, OwnedMxcUri, UserId};
use serde_json::Value;

use super::{Client, answer_json, encode, matrix_error};
use crate::Error;

/// Downloaded media.
#[derive(Clone, Debug)]
pub struct Media {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

impl Client {
    /// Uploads media as `user`; answers its `mxc://` URI.
    pub async fn upload(
        &self,
        user: &UserId,
        bytes: Vec<u8>,
        content_type: &str,
        filename: Option<&str>,
    ) -> Result<OwnedMxcUri, Error> {
        let mut query = self.identity(Some(user));
        if let Some(name) = filename {
            query.push(("filename", name.to_owned()));
        }
        let url = self.url("/_matrix/media/v3/upload", &query);
        let request = self
            .inner
            .http
            .post(url)
            .bearer_auth(&self.inner.as_token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        let answer = answer_json(request.send().await?).await?;
        answer["content_uri"]
            .as_str()
            .map(OwnedMxcUri::from)
            .ok_or_else(|| Error::Invalid("upload answered no content_uri".into()))
    }

    /// Downloads media (authenticated media first, the older `/media/v3` path when the
    /// homeserver does not know it).
    pub async fn download(&self, uri: &MxcUri) -> Result<Media, Error> {
        let (server, media_id) = uri
            .parts()
            .map_err(|e| Error::Invalid(format!("media uri {uri}: {e}")))?;
        let tail = format!("{}/{}", encode(server.as_str()), encode(media_id));
        let authenticated = self.url(&format!("/_matrix/client/v1/media/download/{tail}"), &[]);
        let response = self
            .inner
            .http
            .get(authenticated)
            .bearer_auth(&self.inner.as_token)
            .send()
            .await?;
        let response = if response.status() == reqwest::StatusCode::NOT_FOUND
            || response.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if body["errcode"] != "M_UNRECOGNIZED" {
                return Err(matrix_error(status, &body));
            }
            let legacy = self.url(&format!("/_matrix/media/v3/download/{tail}"), &[]);
            self.inner
                .http
                .get(legacy)
                .bearer_auth(&self.inner.as_token)
                .send()
                .await?
        } else {
            response
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(matrix_error(status.as_u16(), &body));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Media {
            bytes: response.bytes().await?.to_vec(),
            content_type,
        })
    }
}
