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

    /// Parses a pagination token, or a `/sync` token (`s2_…` to `s5_…`: the events position comes
    /// first), since clients may paginate from where a sync left off.
    pub fn parse(text: &str) -> Result<StreamToken> {
        let invalid = || Error::InvalidParam(format!("invalid pagination token {text:?}"));
        match text.split_once('_') {
            Some(("s1", position)) => match position.strip_prefix('m') {
                Some(minus) => minus.parse::<i64>().ok().filter(|m| *m > 0).map(|m| -m),
                None => position.parse::<i64>().ok().filter(|n| *n >= 0),
            }
            .map(|events| StreamToken { events })
            .ok_or_else(invalid),
            // The sync token knows its own versions.
            Some(_) => crate::sync::SyncToken::parse(text)
                .map(|token| StreamToken {
                    events: token.events,
                })
                .map_err(|_| invalid()),
            None => Err(invalid()),
        }
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
