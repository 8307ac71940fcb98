//! Pagination tokens for `/messages`: a named, versioned encoding of a stream position, so fields
//! can be added later without breaking tokens clients hold.

use super::super::{Error, Result};

/// A position in the event stream, as handed to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamToken {
    pub events: i64,
}

impl StreamToken {
    /// Version 1 tokens look like `s1_<events>`; a negative position (backfilled history, see
    /// `storage::backfill`) is written `s1_m<minus the position>`.
    pub fn encode(&self) -> String {
        if self.events < 0 {
            format!("s1_m{}", self.events.unsigned_abs())
        } else {
            format!("s1_{}", self.events)
        }
    }

    /// Parses a pagination token, or a `/sync` token (`s2_…` to `s4_…`: the events position comes
    /// first), since clients may paginate from where a sync left off.
    pub fn parse(text: &str) -> Result<StreamToken> {
        let mut parts = text.split('_');
        let version = parts.next();
        let versioned = matches!(version, Some("s1" | "s2" | "s3" | "s4"));
        parts
            .next()
            .filter(|_| versioned)
            .and_then(|n| match n.strip_prefix('m') {
                Some(minus) if version == Some("s1") => {
                    minus.parse::<i64>().ok().filter(|m| *m > 0).map(|m| -m)
                }
                Some(_) => None,
                None => n.parse::<i64>().ok().filter(|n| *n >= 0),
            })
            .map(|events| StreamToken { events })
            .ok_or_else(|| Error::InvalidParam(format!("invalid pagination token {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = StreamToken { events: 42 };
        assert_eq!(StreamToken::parse(&token.encode()).unwrap(), token);
        assert_eq!(
            StreamToken::parse("s3_7_1_2_3_4").unwrap(),
            StreamToken { events: 7 }
        );
        let backfilled = StreamToken { events: -7 };
        assert_eq!(backfilled.encode(), "s1_m7");
        assert_eq!(StreamToken::parse("s1_m7").unwrap(), backfilled);
        for bad in [
            "", "s1_", "s1_-3", "x1_4", "s9_4", "s1_abc", "s1_m0", "s1_m-2", "s3_m4",
        ] {
            assert!(StreamToken::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
