//! The headers that make serving user files safe, and HTTP range requests: which content types a
//! browser may show inline, `Content-Disposition` with the file name encoded so it can never break
//! out of the header (RFC 6266 with RFC 5987's `filename*`), and `Range: bytes=…` parsing.

use std::fmt::Write;

/// The types the specification lists as safe to show inline; everything else is an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The `Content-Security-Policy` of every media response: nothing in a file runs or loads.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
     style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// The `Content-Type` sent: the stored one when it is a well-formed `type/subtype` (parameters
/// kept), `application/octet-stream` otherwise.
pub fn content_type(stored: Option<&str>) -> String {
    let Some(stored) = stored.map(str::trim) else {
        return "application/octet-stream".into();
    };
    let essence = stored.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let well_formed = essence
        .split_once('/')
        .is_some_and(|(t, s)| token(t) && token(s));
    let printable = stored.bytes().all(|b| (0x20..0x7f).contains(&b));
    if well_formed && printable {
        stored.to_owned()
    } else {
        "application/octet-stream".into()
    }
}

/// Whether a content type may be shown inline.
pub fn is_inline(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// `Content-Disposition`: `inline` for safe types, `attachment` otherwise, with the file name as
/// a plain ASCII `filename` (unsafe characters replaced) and, when it is not plain ASCII, the
/// exact name percent-encoded in `filename*`.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let Some(name) = filename.filter(|n| !n.is_empty()) else {
        return kind.to_owned();
    };
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    let mut value = format!("{kind}; filename=\"{plain}\"");
    if plain != name {
        value.push_str("; filename*=utf-8''");
        for byte in name.bytes() {
            // RFC 5987 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                value.push(byte as char);
            } else {
                let _ = write!(value, "%{byte:02X}");
            }
        }
    }
    value
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole file (also for syntax this server ignores, as RFC 9110
    /// allows, and for several ranges at once).
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// No byte of the range is in the file: 416.
    Unsatisfiable,
}

/// Parses a `Range` header for a file of `len` bytes: one `bytes=` range of the forms `a-b`,
/// `a-` and `-n`.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (
        number(first),
        number(last),
        first.is_empty(),
        last.is_empty(),
    ) {
        (Some(start), _, _, true) => {
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: len - 1,
                }
            }
        }
        (Some(start), Some(end), _, _) => {
            if start > end {
                RangeRequest::Full
            } else if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        (None, Some(suffix), true, _) => {
            if suffix == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        _ => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_types_are_inline() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(
            content_disposition("text/plain; charset=utf-8", None),
            "inline"
        );
        assert_eq!(content_disposition("text/html", None), "attachment");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("application/octet-stream", None),
            "attachment"
        );
    }

    #[test]
    fn file_names_cannot_break_out_of_the_header() {
        assert_eq!(
            content_disposition("image/png", Some("cat.png")),
            "inline; filename=\"cat.png\""
        );
        assert_eq!(
            content_disposition("text/html", Some("a\"; b=c.html")),
            "attachment; filename=\"a_; b=c.html\"; filename*=utf-8''a%22%3B%20b%3Dc.html"
        );
        assert_eq!(
            content_disposition("text/plain", Some("café 100%.txt")),
            "inline; filename=\"caf_ 100_.txt\"; filename*=utf-8''caf%C3%A9%20100%25.txt"
        );
        let value = content_disposition("text/plain", Some("x\r\ny"));
        assert!(!value.contains('\r') && !value.contains('\n'), "{value}");
        assert!(http::HeaderValue::from_str(&value).is_ok());
    }

    #[test]
    fn content_types_are_sent_only_when_well_formed() {
        assert_eq!(content_type(Some("image/png")), "image/png");
        assert_eq!(
            content_type(Some("text/plain; charset=utf-8")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(None), "application/octet-stream");
        assert_eq!(content_type(Some("nonsense")), "application/octet-stream");
        assert_eq!(content_type(Some("text/é")), "application/octet-stream");
    }

    #[test]
    fn ranges_are_parsed_as_rfc_9110_says() {
        use RangeRequest::*;
        let cases = [
            (None, 100, Full),
            (Some("bytes=0-9"), 100, Part { start: 0, end: 9 }),
            (Some("bytes=90-"), 100, Part { start: 90, end: 99 }),
            (Some("bytes=-10"), 100, Part { start: 90, end: 99 }),
            (Some("bytes=-500"), 100, Part { start: 0, end: 99 }),
            (Some("bytes=50-500"), 100, Part { start: 50, end: 99 }),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=5-1"), 100, Full),
            (Some("bytes=0-1,5-6"), 100, Full),
            (Some("items=0-1"), 100, Full),
            (Some("bytes=a-b"), 100, Full),
            (Some("bytes=+1-2"), 100, Full),
        ];
        for (header, len, expected) in cases {
            assert_eq!(parse_range(header, len), expected, "{header:?}");
        }
    }
}
