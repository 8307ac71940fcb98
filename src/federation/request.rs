//! Request authentication of the Server-Server API: the `X-Matrix` `Authorization` header. The
//! signed object is the canonical JSON `{method, uri, origin, destination, content?}` of the
//! request, signed with the origin server's ed25519 key (ruma builds and checks it). Pure: the
//! caller supplies keys; fetching them is `keys`' work.

use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap};
use ruma::{ServerName, ServerSigningKeyId};

/// Why a request could not be signed or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum RequestAuthError {
    #[error("the request body is not JSON: {0}")]
    Body(String),
    #[error("the request was signed for {0}, not for this server")]
    WrongDestination(String),
    #[error("the signature does not match the request: {0}")]
    BadSignature(String),
}

/// The `Authorization` header value for a request to `destination`: `uri` is the path and query
/// exactly as sent, `body` the JSON content (empty for none).
pub fn authorization(
    method: &http::Method,
    uri: &str,
    body: &[u8],
    origin: &ServerName,
    destination: &ServerName,
    keypair: &Ed25519KeyPair,
) -> Result<String, RequestAuthError> {
    let request = http_request(method, uri, body)?;
    let input = XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), keypair);
    let signed = XMatrix::sign_http_request(&request, input)
        .map_err(|e| RequestAuthError::Body(e.to_string()))?;
    Ok(format!(
        "X-Matrix origin={},destination={},key={},sig={}",
        quoted(origin.as_str()),
        quoted(destination.as_str()),
        quoted(signed.key.as_str()),
        quoted(&signed.sig.encode()),
    ))
}

/// Checks a parsed `X-Matrix` header against the request it came with, using the origin's key
/// `key_id` → `public_key`. The header's destination, when present, must be `us`.
pub fn verify(
    header: &XMatrix,
    method: &http::Method,
    uri: &str,
    body: &[u8],
    us: &ServerName,
    key_id: &ServerSigningKeyId,
    public_key: &Base64,
) -> Result<(), RequestAuthError> {
    if let Some(destination) = &header.destination
        && destination != us
    {
        return Err(RequestAuthError::WrongDestination(destination.to_string()));
    }
    let request = http_request(method, uri, body)?;
    let mut keys = PublicKeyMap::new();
    keys.insert(
        header.origin.to_string(),
        [(key_id.to_string(), public_key.clone())]
            .into_iter()
            .collect(),
    );
    header
        .verify_http_request(&request, us, &keys)
        .map_err(|e| RequestAuthError::BadSignature(e.to_string()))
}

fn http_request<'a>(
    method: &http::Method,
    uri: &str,
    body: &'a [u8],
) -> Result<http::Request<&'a [u8]>, RequestAuthError> {
    if !body.is_empty() {
        // Checked here so that a non-JSON body is named as such rather than as a bad signature.
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|e| RequestAuthError::Body(e.to_string()))?;
    }
    http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(body)
        .map_err(|e| RequestAuthError::Body(format!("bad request line: {e}")))
}

/// A quoted-string of RFC 9110: quotes and backslashes escaped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::signing_key::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::new(
            format!("k{seed}"),
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        )
        .unwrap()
    }

    fn name(s: &str) -> &ServerName {
        s.try_into().unwrap()
    }

    struct Signed {
        header: XMatrix,
        public_key: Base64,
    }

    fn sign(body: &[u8], destination: &str) -> Signed {
        let signer = key(1);
        let text = authorization(
            &http::Method::PUT,
            "/_matrix/federation/v1/send/1?x=%40a",
            body,
            name("origin.test"),
            name(destination),
            signer.keypair(),
        )
        .unwrap();
        assert!(
            text.starts_with("X-Matrix origin=\"origin.test\",destination="),
            "{text}"
        );
        Signed {
            header: XMatrix::parse(&text).unwrap(),
            public_key: Base64::parse(signer.public_key_base64()).unwrap(),
        }
    }

    fn check(signed: &Signed, uri: &str, body: &[u8]) -> Result<(), RequestAuthError> {
        verify(
            &signed.header,
            &http::Method::PUT,
            uri,
            body,
            name("dest.test"),
            &signed.header.key,
            &signed.public_key,
        )
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let body = br#"{"pdus":[],"edus":[]}"#;
        let signed = sign(body, "dest.test");
        assert_eq!(signed.header.origin, "origin.test");
        assert_eq!(signed.header.key, "ed25519:k1");
        let uri = "/_matrix/federation/v1/send/1?x=%40a";
        check(&signed, uri, body).unwrap();
        // Key order and whitespace do not matter: the content is compared as canonical JSON.
        check(&signed, uri, br#"{ "edus": [], "pdus": [] }"#).unwrap();

        let err = check(&signed, uri, br#"{"pdus":[1],"edus":[]}"#).unwrap_err();
        assert!(matches!(err, RequestAuthError::BadSignature(_)), "{err}");
        let err = check(&signed, "/_matrix/federation/v1/send/2?x=%40a", body).unwrap_err();
        assert!(matches!(err, RequestAuthError::BadSignature(_)), "{err}");
        let err = check(&signed, uri, b"").unwrap_err();
        assert!(matches!(err, RequestAuthError::BadSignature(_)), "{err}");
        let err = check(&signed, uri, b"not json").unwrap_err();
        assert!(matches!(err, RequestAuthError::Body(_)), "{err}");
    }

    #[test]
    fn a_request_for_another_server_or_with_another_key_is_refused() {
        let signed = sign(b"", "elsewhere.test");
        let err = check(&signed, "/_matrix/federation/v1/send/1?x=%40a", b"").unwrap_err();
        assert!(
            matches!(err, RequestAuthError::WrongDestination(_)),
            "{err}"
        );

        let mut signed = sign(b"", "dest.test");
        signed.public_key = Base64::parse(key(2).public_key_base64()).unwrap();
        let err = check(&signed, "/_matrix/federation/v1/send/1?x=%40a", b"").unwrap_err();
        assert!(matches!(err, RequestAuthError::BadSignature(_)), "{err}");
    }

    #[test]
    fn headers_parse_quoted_unquoted_and_spaced() {
        for text in [
            r#"X-Matrix origin="a.test",destination="b.test",key="ed25519:1",sig="dGVzdA""#,
            r#"X-Matrix origin=a.test,destination=b.test,key="ed25519:1",sig=dGVzdA"#,
            r#"X-Matrix origin="a.test" , destination="b.test",  key="ed25519:1",sig="dGVzdA==""#,
            r#"x-matrix ORIGIN="a.test",destination="b.test",key="ed25519:1",sig="dGVzdA""#,
        ] {
            let header = XMatrix::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(header.origin, "a.test", "{text}");
            assert_eq!(
                header.destination.as_deref().map(|d| d.as_str()),
                Some("b.test")
            );
            assert_eq!(header.key, "ed25519:1");
            assert_eq!(header.sig.as_bytes(), b"test");
        }
        for text in [
            r#"Bearer abc"#,
            r#"X-Matrix destination="b.test",key="ed25519:1",sig="dGVzdA""#,
            r#"X-Matrix origin="a.test",origin="c.test",key="ed25519:1",sig="dGVzdA""#,
            r#"X-Matrix origin="not a name",key="ed25519:1",sig="dGVzdA""#,
        ] {
            assert!(XMatrix::parse(text).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
