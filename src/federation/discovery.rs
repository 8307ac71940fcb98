//! Server discovery ("resolving server names" in the Server-Server API): from a server name to
//! the address to connect to, the name its TLS certificate must carry, and the `Host` header.
//!
//! The order is the spec's, after one local step: a `[federation.resolve]` entry wins outright.
//! Then an IP literal is used as is (port 8448 unless given); a name with an explicit port is
//! connected to directly; otherwise `https://<name>/.well-known/matrix/server` may delegate to
//! another name (itself resolved by the same rules, but never delegated again), then SRV records
//! `_matrix-fed._tcp` and the deprecated `_matrix._tcp`, and finally the name's A/AAAA on 8448.
//!
//! Well-known answers are cached as the spec recommends: for the response's `Cache-Control`
//! max-age, bounded to between 5 minutes and 48 hours, 24 hours without one, and failures for
//! an hour. SRV answers are cached by the DNS resolver for their TTL. Parsing and the choice of
//! destination are pure functions, tested below; only `Discovery::resolve` does IO.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use ruma::{OwnedServerName, ServerName};

/// The port of the Server-Server API when nothing else says.
pub const DEFAULT_PORT: u16 = 8448;
/// How long a well-known answer is kept when it carries no cache header.
const WELL_KNOWN_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN_MIN_TTL: Duration = Duration::from_secs(5 * 60);
const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 3600);
/// How long a failed well-known lookup is remembered before it is tried again.
const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(3600);
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// A well-known document is a few dozen bytes; anything much larger is not one.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;
/// Beyond this many cached well-known answers, expired ones are dropped on insert.
const WELL_KNOWN_CACHE_PRUNE_AT: usize = 4096;

/// The host part of a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Name(String),
}

impl Host {
    /// The form used in URLs and `Host` headers (IPv6 in brackets).
    fn url_form(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// The form a TLS certificate is checked against (no brackets).
    fn tls_form(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// A server name split into host and optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub host: Host,
    pub port: Option<u16>,
}

impl ParsedName {
    /// `host[:port]` as it would be written in a `Host` header.
    fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host.url_form()),
            None => self.host.url_form(),
        }
    }
}

/// A string that is not a server name, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid server name: {reason}")]
pub struct InvalidServerName {
    pub name: String,
    pub reason: &'static str,
}

/// Parses a server name per the spec's grammar: `hostname [":" port]`, where the hostname is an
/// IPv4 literal, an IPv6 literal in brackets, or a DNS name of letters, digits, `-` and `.`.
pub fn parse_server_name(name: &str) -> Result<ParsedName, InvalidServerName> {
    let invalid = |reason| InvalidServerName {
        name: name.to_owned(),
        reason,
    };
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("an IPv6 literal lacks its closing bracket"))?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| invalid("the bracketed part is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid("unexpected text after the IPv6 literal"))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match name.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (name, None),
        };
        if host.is_empty() {
            return Err(invalid("the hostname is empty"));
        }
        if host.len() > 255 {
            return Err(invalid("the hostname is longer than 255 characters"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(invalid(
                "the hostname may only hold letters, digits, '-' and '.'",
            ));
        }
        let host = match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(host.to_ascii_lowercase()),
        };
        (host, port)
    };
    let port = match port {
        None => None,
        Some(text) => {
            if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("the port must be 1 to 5 digits"));
            }
            match text.parse::<u16>() {
                Ok(0) | Err(_) => return Err(invalid("the port must be between 1 and 65535")),
                Ok(port) => Some(port),
            }
        }
    };
    Ok(ParsedName { host, port })
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed socket address (an IP literal or a `[federation.resolve]` entry).
    Addr(SocketAddr),
    /// A host name still to be looked up (A/AAAA), and the port.
    Host { host: String, port: u16 },
}

impl Target {
    pub fn port(&self) -> u16 {
        match self {
            Target::Addr(addr) => addr.port(),
            Target::Host { port, .. } => *port,
        }
    }
}

/// The result of discovery: everything needed to send a request to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Where to open the TCP connection.
    pub target: Target,
    /// The name the server's certificate must be valid for, also sent as SNI: the server's
    /// hostname, or the delegated hostname when `.well-known` delegated. No brackets.
    pub tls_name: String,
    /// The `Host` header of requests.
    pub host_header: String,
}

impl Destination {
    /// `https://<tls_name>:<port>`: the URL host carries the certificate name, the port the one
    /// to connect to; the HTTP client's resolver maps the name to the target (see `client`).
    pub fn base_url(&self) -> String {
        let host = match self.tls_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.tls_name.clone(),
        };
        format!("https://{host}:{}", self.target.port())
    }
}

/// An SRV lookup still to be made, and what the destination will be named after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvQuery {
    /// The hostname whose SRV records are looked up (`_matrix-fed._tcp.<hostname>`).
    pub hostname: String,
    pub host_header: String,
}

/// What the server name alone decides: steps 1 and 2 of the spec (IP literals and explicit
/// ports). Otherwise the hostname to ask well-known and DNS about.
pub fn destination_from_name(server: &str, parsed: &ParsedName) -> Result<Destination, String> {
    match (&parsed.host, parsed.port) {
        (Host::Ip(ip), port) => Ok(Destination {
            target: Target::Addr(SocketAddr::new(*ip, port.unwrap_or(DEFAULT_PORT))),
            tls_name: parsed.host.tls_form(),
            host_header: server.to_owned(),
        }),
        (Host::Name(host), Some(port)) => Ok(Destination {
            target: Target::Host {
                host: host.clone(),
                port,
            },
            tls_name: host.clone(),
            host_header: server.to_owned(),
        }),
        (Host::Name(host), None) => Err(host.clone()),
    }
}

/// Step 3: a well-known delegation to `delegated`. An IP literal or explicit port decides at
/// once; otherwise SRV records of the delegated hostname are asked next.
pub fn destination_from_delegation(delegated: &ParsedName) -> Result<Destination, SrvQuery> {
    let authority = delegated.authority();
    match (&delegated.host, delegated.port) {
        (Host::Ip(ip), port) => Ok(Destination {
            target: Target::Addr(SocketAddr::new(*ip, port.unwrap_or(DEFAULT_PORT))),
            tls_name: delegated.host.tls_form(),
            host_header: authority,
        }),
        (Host::Name(host), Some(port)) => Ok(Destination {
            target: Target::Host {
                host: host.clone(),
                port,
            },
            tls_name: host.clone(),
            host_header: authority,
        }),
        (Host::Name(host), None) => Err(SrvQuery {
            hostname: host.clone(),
            host_header: host.clone(),
        }),
    }
}

/// The last steps: the SRV record found for `query.hostname` (target host and port), or the
/// hostname itself on port 8448. The certificate is always checked against the hostname.
pub fn destination_from_srv(query: SrvQuery, srv: Option<(String, u16)>) -> Destination {
    let target = match srv {
        Some((host, port)) => Target::Host { host, port },
        None => Target::Host {
            host: query.hostname.clone(),
            port: DEFAULT_PORT,
        },
    };
    Destination {
        target,
        tls_name: query.hostname,
        host_header: query.host_header,
    }
}

/// How long to keep a well-known answer, from its `Cache-Control` header.
pub fn well_known_lifetime(cache_control: Option<&str>) -> Duration {
    let Some(header) = cache_control else {
        return WELL_KNOWN_DEFAULT_TTL;
    };
    let mut lifetime = None;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return WELL_KNOWN_MIN_TTL;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            lifetime = seconds.trim_matches('"').parse::<u64>().ok();
        }
    }
    lifetime
        .map(Duration::from_secs)
        .unwrap_or(WELL_KNOWN_DEFAULT_TTL)
        .clamp(WELL_KNOWN_MIN_TTL, WELL_KNOWN_MAX_TTL)
}

/// Picks the SRV record to use: the lowest priority, then the highest weight.
fn best_srv(records: impl IntoIterator<Item = (u16, u16, String, u16)>) -> Option<(String, u16)> {
    records
        .into_iter()
        // A target of "." means the service is decidedly not available at this name.
        .filter(|(_, _, target, _)| !target.is_empty())
        .min_by_key(|(priority, weight, _, _)| (*priority, std::cmp::Reverse(*weight)))
        .map(|(_, _, target, port)| (target, port))
}

/// A remembered well-known answer: the delegated name, or `None` after a failure.
struct CachedDelegation {
    delegated: Option<ParsedName>,
    expires: Instant,
}

/// Resolves server names to destinations, caching well-known answers.
pub struct Discovery {
    overrides: BTreeMap<OwnedServerName, SocketAddr>,
    dns: Option<TokioResolver>,
    http: reqwest::Client,
    well_known: Mutex<HashMap<String, CachedDelegation>>,
}

impl Discovery {
    /// `http` fetches well-known documents (plain DNS, the federation TLS settings); `dns` looks
    /// up SRV records and may be missing when the system has no resolver configuration.
    pub fn new(
        overrides: BTreeMap<OwnedServerName, SocketAddr>,
        dns: Option<TokioResolver>,
        http: reqwest::Client,
    ) -> Discovery {
        Discovery {
            overrides,
            dns,
            http,
            well_known: Mutex::new(HashMap::new()),
        }
    }

    /// Where and how to reach `server`.
    pub async fn resolve(&self, server: &ServerName) -> Result<Destination, InvalidServerName> {
        let parsed = parse_server_name(server.as_str())?;
        if let Some(addr) = self.overrides.get(server) {
            return Ok(Destination {
                target: Target::Addr(*addr),
                tls_name: parsed.host.tls_form(),
                host_header: server.as_str().to_owned(),
            });
        }
        let hostname = match destination_from_name(server.as_str(), &parsed) {
            Ok(destination) => return Ok(destination),
            Err(hostname) => hostname,
        };
        let query = match self.delegation(&hostname).await {
            Some(delegated) => match destination_from_delegation(&delegated) {
                Ok(destination) => return Ok(destination),
                Err(query) => query,
            },
            None => SrvQuery {
                hostname: hostname.clone(),
                host_header: hostname.clone(),
            },
        };
        let srv = self.srv(&query.hostname).await;
        Ok(destination_from_srv(query, srv))
    }

    /// The well-known delegation of `hostname`, from the cache or fetched.
    async fn delegation(&self, hostname: &str) -> Option<ParsedName> {
        let now = Instant::now();
        if let Some(cached) = self.lock_cache().get(hostname)
            && cached.expires > now
        {
            return cached.delegated.clone();
        }
        let (delegated, lifetime) = match self.fetch_well_known(hostname).await {
            Ok((delegated, lifetime)) => (Some(delegated), lifetime),
            Err(reason) => {
                tracing::debug!(server.name = hostname, %reason, "no usable .well-known/matrix/server");
                (None, WELL_KNOWN_ERROR_TTL)
            }
        };
        let mut cache = self.lock_cache();
        if cache.len() >= WELL_KNOWN_CACHE_PRUNE_AT {
            cache.retain(|_, entry| entry.expires > now);
        }
        cache.insert(
            hostname.to_owned(),
            CachedDelegation {
                delegated: delegated.clone(),
                expires: now + lifetime,
            },
        );
        delegated
    }

    async fn fetch_well_known(&self, hostname: &str) -> Result<(ParsedName, Duration), String> {
        let url = format!("https://{hostname}/.well-known/matrix/server");
        let mut response = self
            .http
            .get(&url)
            .timeout(WELL_KNOWN_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let lifetime = well_known_lifetime(
            response
                .headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > WELL_KNOWN_MAX_BYTES {
                return Err("the document is too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let delegated = document
            .get("m.server")
            .and_then(|v| v.as_str())
            .ok_or("no m.server string")?;
        let parsed = parse_server_name(delegated).map_err(|e| e.to_string())?;
        Ok((parsed, lifetime))
    }

    /// The best SRV record for `hostname`: `_matrix-fed._tcp` first, then `_matrix._tcp`.
    async fn srv(&self, hostname: &str) -> Option<(String, u16)> {
        let dns = self.dns.as_ref()?;
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            // A fully qualified name skips the resolver's search domains.
            let name = format!("{service}.{hostname}.");
            let Ok(lookup) = dns.srv_lookup(name.as_str()).await else {
                continue;
            };
            let records = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => {
                        let target = srv.target.to_ascii();
                        let target = target.trim_end_matches('.').to_ascii_lowercase();
                        Some((srv.priority, srv.weight, target, srv.port))
                    }
                    _ => None,
                });
            if let Some(best) = best_srv(records) {
                return Some(best);
            }
        }
        None
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedDelegation>> {
        self.well_known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &str) -> ParsedName {
        parse_server_name(name).unwrap()
    }

    #[test]
    fn server_names_parse_into_host_and_port() {
        let cases: [(&str, Host, Option<u16>); 6] = [
            ("matrix.org", Host::Name("matrix.org".into()), None),
            (
                "Matrix.ORG:8448",
                Host::Name("matrix.org".into()),
                Some(8448),
            ),
            ("1.2.3.4", Host::Ip("1.2.3.4".parse().unwrap()), None),
            (
                "1.2.3.4:1234",
                Host::Ip("1.2.3.4".parse().unwrap()),
                Some(1234),
            ),
            (
                "[1234:5678::abcd]",
                Host::Ip("1234:5678::abcd".parse().unwrap()),
                None,
            ),
            ("[::1]:5678", Host::Ip("::1".parse().unwrap()), Some(5678)),
        ];
        for (name, host, port) in cases {
            assert_eq!(
                parse_server_name(name).unwrap(),
                ParsedName { host, port },
                "{name}"
            );
        }
    }

    #[test]
    fn invalid_server_names_are_refused() {
        for name in [
            "",
            ":8448",
            "matrix.org:",
            "matrix.org:0",
            "matrix.org:65536",
            "matrix.org:123456",
            "matrix.org:http",
            "under_score.org",
            "space .org",
            "[::1",
            "[not-ip]",
            "[::1]x",
            "a:b:c",
        ] {
            assert!(parse_server_name(name).is_err(), "{name:?} must be refused");
        }
        let long = "a".repeat(256);
        assert!(parse_server_name(&long).is_err());
    }

    #[test]
    fn ip_literals_and_explicit_ports_skip_well_known() {
        let ip = destination_from_name("1.2.3.4", &parsed("1.2.3.4")).unwrap();
        assert_eq!(ip.target, Target::Addr("1.2.3.4:8448".parse().unwrap()));
        assert_eq!(ip.tls_name, "1.2.3.4");
        assert_eq!(ip.host_header, "1.2.3.4");
        assert_eq!(ip.base_url(), "https://1.2.3.4:8448");

        let v6 = destination_from_name("[::1]:9000", &parsed("[::1]:9000")).unwrap();
        assert_eq!(v6.target, Target::Addr("[::1]:9000".parse().unwrap()));
        assert_eq!(v6.host_header, "[::1]:9000");
        assert_eq!(v6.base_url(), "https://[::1]:9000");

        let port = destination_from_name("example.org:1234", &parsed("example.org:1234")).unwrap();
        assert_eq!(
            port.target,
            Target::Host {
                host: "example.org".into(),
                port: 1234
            }
        );
        assert_eq!(port.tls_name, "example.org");
        assert_eq!(port.host_header, "example.org:1234");

        assert_eq!(
            destination_from_name("example.org", &parsed("example.org")),
            Err("example.org".to_string())
        );
    }

    #[test]
    fn a_delegation_names_the_certificate_and_host_header() {
        let to_ip = destination_from_delegation(&parsed("10.0.0.1")).unwrap();
        assert_eq!(to_ip.target, Target::Addr("10.0.0.1:8448".parse().unwrap()));
        assert_eq!(to_ip.host_header, "10.0.0.1");

        let to_port = destination_from_delegation(&parsed("matrix.example.org:443")).unwrap();
        assert_eq!(
            to_port.target,
            Target::Host {
                host: "matrix.example.org".into(),
                port: 443
            }
        );
        assert_eq!(to_port.tls_name, "matrix.example.org");
        assert_eq!(to_port.host_header, "matrix.example.org:443");

        let query = destination_from_delegation(&parsed("matrix.example.org")).unwrap_err();
        let via_srv = destination_from_srv(query.clone(), Some(("srv.example.net".into(), 8449)));
        assert_eq!(
            via_srv.target,
            Target::Host {
                host: "srv.example.net".into(),
                port: 8449
            }
        );
        assert_eq!(via_srv.tls_name, "matrix.example.org");
        assert_eq!(via_srv.host_header, "matrix.example.org");
        let plain = destination_from_srv(query, None);
        assert_eq!(
            plain.target,
            Target::Host {
                host: "matrix.example.org".into(),
                port: 8448
            }
        );
    }

    #[test]
    fn well_known_lifetimes_follow_cache_control_within_bounds() {
        let hour = Duration::from_secs(3600);
        assert_eq!(well_known_lifetime(None), 24 * hour);
        assert_eq!(well_known_lifetime(Some("max-age=7200")), 2 * hour);
        assert_eq!(well_known_lifetime(Some("public, max-age=3600")), hour);
        assert_eq!(well_known_lifetime(Some("max-age=5")), WELL_KNOWN_MIN_TTL);
        assert_eq!(well_known_lifetime(Some("max-age=9999999")), 48 * hour);
        assert_eq!(well_known_lifetime(Some("no-store")), WELL_KNOWN_MIN_TTL);
        assert_eq!(well_known_lifetime(Some("private")), 24 * hour);
    }

    #[test]
    fn the_srv_record_with_the_lowest_priority_and_highest_weight_wins() {
        let records = vec![
            (10, 5, "b.example".to_string(), 1),
            (5, 1, "c.example".to_string(), 2),
            (5, 9, "d.example".to_string(), 3),
            (0, 0, String::new(), 4),
        ];
        assert_eq!(best_srv(records), Some(("d.example".into(), 3)));
        assert_eq!(best_srv(Vec::new()), None);
    }
}
