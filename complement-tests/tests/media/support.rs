//! What the media stories share: a client that sends raw bodies and reads raw bytes, raw HTTP
//! uploads (a declared length with no body, a chunked body), test images, the files in a
//! server's media store, and a web page to preview.

use std::path::Path;
use std::time::Duration;

use complement_tests::{User, Value, encode};

/// A client that sends raw bodies and reads raw bytes, which the JSON-minded harness client
/// does not.
pub struct Media {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: Option<String>,
}

/// What a media request answered.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, errcode: &str) {
        let body = self.json();
        assert_eq!(
            (self.status, body["errcode"].as_str().unwrap_or("")),
            (status, errcode),
            "{body}"
        );
    }
}

impl Media {
    pub fn of(user: &User) -> Media {
        let mut media = Media::anonymous(&user.client().base_url());
        media.token = Some(user.access_token.clone());
        media
    }

    pub fn anonymous(base_url: &str) -> Media {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Media {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client"),
            base_url: base_url.to_owned(),
            token: None,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body").to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    pub async fn get_range(&self, path: &str, range: &str) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base_url))
            .header("Range", range);
        self.send(request).await
    }

    pub async fn upload_to(&self, path: &str, body: Vec<u8>, content_type: &str) -> Answer {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("Content-Type", content_type)
            .body(body);
        self.send(request).await
    }

    /// Uploads and returns the `mxc://` URI.
    pub async fn upload(
        &self,
        body: Vec<u8>,
        content_type: &str,
        filename: Option<&str>,
    ) -> String {
        let path = match filename {
            Some(name) => format!("/_matrix/media/v3/upload?filename={}", encode(name)),
            None => "/_matrix/media/v3/upload".to_owned(),
        };
        let answer = self.upload_to(&path, body, content_type).await;
        assert_eq!(answer.status, 200, "{}", answer.json());
        answer.json()["content_uri"]
            .as_str()
            .expect("a content_uri")
            .to_owned()
    }

    pub async fn put(&self, mxc: &str, body: Vec<u8>, content_type: &str) -> Answer {
        let request = self
            .http
            .put(format!(
                "{}/_matrix/media/v3/upload/{}",
                self.base_url,
                mxc_path(mxc)
            ))
            .header("Content-Type", content_type)
            .body(body);
        self.send(request).await
    }

    pub async fn download(&self, mxc: &str) -> Answer {
        self.get(&format!(
            "/_matrix/client/v1/media/download/{}",
            mxc_path(mxc)
        ))
        .await
    }

    pub async fn thumbnail(&self, mxc: &str, width: u32, height: u32, method: &str) -> Answer {
        self.get(&format!(
            "/_matrix/client/v1/media/thumbnail/{}?width={width}&height={height}&method={method}",
            mxc_path(mxc)
        ))
        .await
    }
}

/// `server/id` of `mxc://server/id`.
pub fn mxc_path(mxc: &str) -> &str {
    mxc.strip_prefix("mxc://").expect("an mxc:// URI")
}

/// Bytes that are not all alike, so a shifted or truncated copy is noticed.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

pub fn image_bytes(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .expect("encoding a test image");
    bytes
}

/// CRC-32 (IEEE), as PNG chunks carry it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= *byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The files the media store holds (temporary ones included), recursively.
pub fn stored_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    pub fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("media"), &mut out);
    out
}

/// Sends only the head of an upload declaring `length` bytes (`request` is "METHOD /path") and
/// returns the status and text of the answer, which must come without the body being sent.
pub async fn declared_upload(
    base_url: &str,
    token: &str,
    request: &str,
    length: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{request} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server waited for a body it should refuse"
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Uploads `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` (no length given)
/// over a raw connection; returns the status and body of the answer. The server may answer and
/// close before the body is all sent, so write errors are ignored.
pub async fn chunked_upload(
    base_url: &str,
    token: &str,
    chunks: usize,
    size: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = pattern(size);
    for _ in 0..chunks {
        let frame = [
            format!("{size:x}\r\n").into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A web page with OpenGraph tags and an image, on loopback.
pub struct PreviewPage {
    pub url: String,
    pub task: tokio::task::JoinHandle<()>,
}

impl PreviewPage {
    pub async fn start() -> PreviewPage {
        use axum::routing::get;
        let png = image_bytes(20, 10, image::ImageFormat::Png);
        let app = axum::Router::new()
            .route(
                "/rota",
                get(|| async {
                    (
                        [("content-type", "text/html; charset=utf-8")],
                        r#"<html><head><title>ignored</title>
                        <meta property="og:title" content="Ward rota">
                        <meta property="og:description" content="Who is on call &amp; when">
                        <meta property="og:image" content="/logo.png"></head></html>"#,
                    )
                }),
            )
            .route(
                "/logo.png",
                get(move || {
                    let png = png.clone();
                    async move { ([("content-type", "image/png")], png) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PreviewPage {
            url: format!("http://{addr}/rota"),
            task,
        }
    }
}

impl Drop for PreviewPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}
