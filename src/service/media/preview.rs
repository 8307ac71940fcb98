//! URL previews (`GET /_matrix/client/v1/media/preview_url`), off unless `[media] url_preview`:
//! the server fetches a page for a client and answers its OpenGraph `og:title`,
//! `og:description` and `og:image` (fetched too and stored as local media).
//!
//! Fetching for clients must not become a way into the server's own network: every address a
//! page's host resolves to is checked, and private, loopback, link-local and other special ranges
//! are refused unless `url_preview_allow` names them. The connection goes to the address that was
//! checked (not to a second DNS answer), and redirects are followed by hand, each hop checked the
//! same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ruma::UserId;
use serde_json::{Map, Value as JsonValue};

use super::{MediaError, MediaResult};
use crate::config::{MediaConfig, parse_cidr};
use crate::service::{Error, Services};

/// The most of a page read for its metadata.
const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// The largest preview image stored.
const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
const MAX_REDIRECTS: usize = 3;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A preview answer: OpenGraph keys and values.
pub type Preview = Map<String, JsonValue>;

/// The HTTP side of previews and of remote media redirects.
pub struct PreviewClient {
    allow: Vec<(IpAddr, u8)>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PreviewClient {
    pub fn new(config: &MediaConfig) -> PreviewClient {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| tracing::error!(error = %e, "cannot configure TLS for media fetches"))
        .ok();
        PreviewClient {
            allow: config
                .url_preview_allow
                .iter()
                .filter_map(|r| parse_cidr(r))
                .collect(),
            tls,
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        !is_special(ip)
            || self
                .allow
                .iter()
                .any(|(net, bits)| in_range(ip, *net, *bits))
    }

    /// GETs `url` from a checked address, following redirects by hand (each hop checked);
    /// returns the final URL and the answer, whose body the caller reads and bounds. A
    /// redirect that cannot be followed, or too many, is an error; other statuses are the
    /// caller's to judge.
    pub async fn get_checked(
        &self,
        url: &str,
        timeout: Duration,
    ) -> MediaResult<(reqwest::Url, reqwest::Response)> {
        let mut url = reqwest::Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("only http and https URLs can be fetched".into()));
            }
            let host = url
                .host_str()
                .ok_or_else(|| invalid("the URL has no host".into()))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = url.port_or_known_default().unwrap_or(80);
            let addr = self.checked_address(&host, port).await?;
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .no_proxy()
                .resolve(&host, addr)
                .user_agent(concat!("Plexus/", env!("CARGO_PKG_VERSION")));
            if let Some(tls) = &self.tls {
                builder = builder.tls_backend_preconfigured((**tls).clone());
            }
            let client = builder
                .build()
                .map_err(|e| MediaError::Service(Error::Internal(e.to_string())))?;
            let response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| remote(format!("cannot fetch {host}: {}", e.without_url())))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| remote("a redirect without a location".into()))?;
                url = url
                    .join(location)
                    .map_err(|e| remote(format!("a bad redirect: {e}")))?;
                continue;
            }
            return Ok((url, response));
        }
        Err(remote("too many redirects".into()))
    }

    /// GETs `url` (see `get_checked`); returns the final URL, content type and at most `limit`
    /// bytes of the body.
    async fn fetch(
        &self,
        url: &str,
        limit: usize,
    ) -> MediaResult<(reqwest::Url, Option<String>, Vec<u8>)> {
        let (url, mut response) = self.get_checked(url, FETCH_TIMEOUT).await?;
        if !response.status().is_success() {
            return Err(remote(format!("the page answered {}", response.status())));
        }
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| remote(format!("reading the page failed: {e}")))?
        {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= limit {
                break;
            }
        }
        Ok((url, content_type, body))
    }

    /// The first address of `host` that may be fetched; refused when none may.
    async fn checked_address(&self, host: &str, port: u16) -> MediaResult<SocketAddr> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| remote(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        // Every address must pass: a name resolving to both a public and a private address
        // could otherwise be steered to the private one.
        if addrs.is_empty() || !addrs.iter().all(|a| self.allowed(a.ip())) {
            return Err(MediaError::Service(Error::Forbidden(format!(
                "{host} is a private or reserved address and cannot be fetched"
            ))));
        }
        Ok(addrs[0])
    }
}

fn invalid(message: String) -> MediaError {
    MediaError::Service(Error::InvalidParam(message))
}

fn remote(message: String) -> MediaError {
    MediaError::Service(Error::RemoteServer(message))
}

/// Addresses that are not on the public internet: loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation and unique-local ranges.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_special(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
        }
    }
}

/// Whether `ip` is in `net/bits`.
pub fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        (IpAddr::V6(a), IpAddr::V4(_)) => match a.to_ipv4_mapped() {
            Some(a) => return in_range(IpAddr::V4(a), net, bits),
            None => return false,
        },
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits as u32;
    (ip >> shift) == (net >> shift)
}

/// The OpenGraph metadata of an HTML page: `og:*` meta tags, with `<title>` and the description
/// meta tag as fall-backs.
pub fn parse_open_graph(html: &str) -> Preview {
    let mut found = Preview::new();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<meta") {
        let start = at + start;
        let Some(end) = lower[start..].find('>') else {
            break;
        };
        let tag = &html[start..start + end];
        at = start + end;
        let attrs = attributes(tag);
        let key = attrs
            .iter()
            .find(|(n, _)| n == "property" || n == "name")
            .map(|(_, v)| v.to_ascii_lowercase());
        let content = attrs.iter().find(|(n, _)| n == "content").map(|(_, v)| v);
        if let (Some(key), Some(content)) = (key, content) {
            let key = if key == "description" {
                "og:description:fallback".to_owned()
            } else {
                key
            };
            if key.starts_with("og:") && !found.contains_key(&key) {
                found.insert(key, JsonValue::String(decode_entities(content)));
            }
        }
    }
    if let Some(fallback) = found.remove("og:description:fallback")
        && !found.contains_key("og:description")
    {
        found.insert("og:description".into(), fallback);
    }
    if !found.contains_key("og:title")
        && let Some(start) = lower.find("<title")
        && let Some(open) = lower[start..].find('>')
        && let Some(close) = lower[start + open..].find("</title")
    {
        let title = &html[start + open + 1..start + open + close];
        let title = decode_entities(title.trim());
        if !title.is_empty() {
            found.insert("og:title".into(), JsonValue::String(title));
        }
    }
    found
}

/// The attributes of one tag, names lower-cased.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = tag.find(char::is_whitespace).unwrap_or(tag.len());
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let name = tag[name_start..i].to_ascii_lowercase();
        if i >= bytes.len() || bytes[i] != b'=' {
            if name.is_empty() {
                i += 1;
            }
            continue;
        }
        i += 1;
        let value = match bytes.get(i) {
            Some(&quote @ (b'"' | b'\'')) => {
                let end = tag[i + 1..]
                    .find(quote as char)
                    .map_or(tag.len(), |e| i + 1 + e);
                let value = &tag[i + 1..end];
                i = end + 1;
                value
            }
            _ => {
                let end = tag[i..]
                    .find(char::is_whitespace)
                    .map_or(tag.len(), |e| i + e);
                let value = &tag[i..end];
                i = end;
                value
            }
        };
        out.push((name, value.to_owned()));
    }
    out
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Services {
    /// The preview of a page for `user`; its image is stored as media of that user.
    pub async fn preview_url(&self, user: &UserId, url: &str) -> MediaResult<Preview> {
        if !self.media.config().url_preview {
            return Err(MediaError::Service(Error::Forbidden(
                "URL previews are disabled on this server".into(),
            )));
        }
        let client = &self.media.0.preview;
        let (final_url, content_type, body) = client.fetch(url, MAX_PAGE_BYTES).await?;
        let content_type = content_type.unwrap_or_default().to_ascii_lowercase();
        let mut preview = if content_type.starts_with("text/html") {
            parse_open_graph(&String::from_utf8_lossy(&body))
        } else {
            Preview::new()
        };
        let image_url = if content_type.starts_with("image/") {
            Some(final_url.to_string())
        } else {
            preview
                .get("og:image")
                .and_then(JsonValue::as_str)
                .and_then(|i| final_url.join(i).ok())
                .map(|u| u.to_string())
        };
        preview.remove("og:image");
        if let Some(image_url) = image_url {
            match self.store_preview_image(user, &image_url).await {
                Ok(fields) => preview.extend(fields),
                Err(e) => tracing::debug!(error = %e, "no image for a preview"),
            }
        }
        Ok(preview)
    }

    async fn store_preview_image(&self, user: &UserId, url: &str) -> MediaResult<Preview> {
        let (_, content_type, bytes) = self.media.0.preview.fetch(url, MAX_IMAGE_BYTES).await?;
        let content_type = content_type.filter(|t| t.starts_with("image/"));
        let Some(content_type) = content_type else {
            return Err(remote("the preview image is not an image".into()));
        };
        let size = bytes.len();
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        let uri = self
            .upload_media(user, Some(&content_type), None, stream)
            .await?;
        let mut fields = Preview::new();
        fields.insert("og:image".into(), JsonValue::String(uri.to_string()));
        fields.insert("og:image:type".into(), JsonValue::String(content_type));
        fields.insert("matrix:image:size".into(), JsonValue::from(size));
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_recognised() {
        for special in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_special(special.parse().unwrap()), "{special}");
        }
        for public in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_special(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn allow_listed_ranges_match_by_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_range(ip("127.0.0.1"), ip("127.0.0.0"), 8));
        assert!(!in_range(ip("128.0.0.1"), ip("127.0.0.0"), 8));
        assert!(in_range(ip("::1"), ip("::1"), 128));
        assert!(!in_range(ip("::1"), ip("127.0.0.1"), 32));
        assert!(in_range(ip("::ffff:10.0.0.5"), ip("10.0.0.0"), 8));
        assert!(in_range(ip("1.2.3.4"), ip("0.0.0.0"), 0));
    }

    #[test]
    fn open_graph_tags_are_read_with_fallbacks() {
        let html = r#"<html><head><title>Plain &amp; simple</title>
            <meta name="description" content="fallback">
            <META property='og:description' content="A &quot;care&quot; page" />
            <meta property="og:image" content=/img.png>
            </head></html>"#;
        let preview = parse_open_graph(html);
        assert_eq!(preview["og:title"], "Plain & simple");
        assert_eq!(preview["og:description"], "A \"care\" page");
        assert_eq!(preview["og:image"], "/img.png");
        let only_meta = parse_open_graph(r#"<meta name="description" content="d">"#);
        assert_eq!(only_meta["og:description"], "d");
    }
}
