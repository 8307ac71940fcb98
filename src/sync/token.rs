//! The `/sync` token: a named, versioned encoding of the positions of every stream a client
//! syncs, so a stream can be added later without breaking tokens clients hold. Version 5 is
//! `s5_<events>_<account_data>_<receipts>_<typing>_<presence>_<push>_<to_device>_<device_lists>`
//! (`push`: how far the push evaluator had got, so rooms whose unread counts changed since are
//! sent again; `to_device` and `device_lists`: the positions of those two streams); older versions
//! (and `/messages` tokens, `s1_<events>`) parse with the missing positions at zero, and the push
//! position at the event position.

use crate::service::{Error, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: u64,
    pub presence: u64,
    pub push: i64,
    pub to_device: i64,
    pub device_lists: i64,
}

impl SyncToken {
    pub fn encode(&self) -> String {
        format!(
            "s5_{}_{}_{}_{}_{}_{}_{}_{}",
            self.events,
            self.account_data,
            self.receipts,
            self.typing,
            self.presence,
            self.push,
            self.to_device,
            self.device_lists
        )
    }

    pub fn parse(text: &str) -> Result<SyncToken> {
        let invalid = || Error::InvalidParam(format!("invalid sync token {text:?}"));
        let mut parts = text.split('_');
        let fields = match parts.next() {
            Some("s1") => 1,
            Some("s2") => 2,
            Some("s3") => 5,
            Some("s4") => 6,
            Some("s5") => 8,
            _ => return Err(invalid()),
        };
        let numbers: Vec<i64> = parts
            .map(|p| p.parse::<i64>().ok().filter(|n| *n >= 0))
            .collect::<Option<_>>()
            .ok_or_else(invalid)?;
        if numbers.len() != fields {
            return Err(invalid());
        }
        let at = |i: usize| numbers.get(i).copied().unwrap_or(0);
        Ok(SyncToken {
            events: at(0),
            account_data: at(1),
            receipts: at(2),
            typing: at(3) as u64,
            presence: at(4) as u64,
            // Tokens from before the push position existed: counts were current as of their
            // event position.
            push: if fields >= 6 { at(5) } else { at(0) },
            to_device: at(6),
            device_lists: at(7),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_older_versions_parse_and_garbage_is_refused() {
        let token = SyncToken {
            events: 12,
            account_data: 3,
            receipts: 4,
            typing: 5,
            presence: 6,
            push: 7,
            to_device: 8,
            device_lists: 9,
        };
        assert_eq!(SyncToken::parse(&token.encode()).unwrap(), token);
        assert_eq!(
            SyncToken::parse("s1_40").unwrap(),
            SyncToken {
                events: 40,
                push: 40,
                ..SyncToken::default()
            }
        );
        assert_eq!(
            SyncToken::parse("s2_40_7").unwrap(),
            SyncToken {
                events: 40,
                account_data: 7,
                push: 40,
                ..SyncToken::default()
            }
        );
        for bad in [
            "",
            "s2_1",
            "s2_x_1",
            "s3_1_2",
            "s2_-1_0",
            "nonsense",
            "s3_1_2_3_4_5_6",
        ] {
            assert!(SyncToken::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
