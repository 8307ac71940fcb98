//! Identifiers in the shapes Meta hands out: `wamid.` message ids, numeric media ids and
//! `fbtrace_id`s. Only the shape is imitated; the content is random.

use base64::Engine as _;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";

/// A `wamid.` id for a message exchanged with `wa_id`. Real ids are the base64 of a small
/// binary record that starts with the contact's number (so an 11-digit number gives the familiar
/// `wamid.HBgL…` prefix) and ends with a random hexadecimal key; this builds the same record.
pub fn wamid(wa_id: &str) -> String {
    let digits: Vec<u8> = wa_id.bytes().filter(u8::is_ascii_digit).take(30).collect();
    let mut record = vec![0x1c, 0x18, digits.len() as u8];
    record.extend_from_slice(&digits);
    record.extend_from_slice(&[0x15, 0x02, 0x00, 0x12, 0x18, 0x14]);
    record.extend((0..20).map(|_| HEX_UPPER[rand::random_range(0..HEX_UPPER.len())]));
    record.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(record)
    )
}

/// A media id: 15 or 16 decimal digits without a leading zero, as the Graph API gives.
pub fn media_id() -> String {
    let len = rand::random_range(15..=16);
    let mut id = String::with_capacity(len);
    id.push(char::from(b'1' + rand::random_range(0..9u8)));
    for _ in 1..len {
        id.push(char::from(b'0' + rand::random_range(0..10u8)));
    }
    id
}

/// An `fbtrace_id`: eleven letters and digits.
pub fn fbtrace_id() -> String {
    (0..11)
        .map(|_| char::from(ALPHANUMERIC[rand::random_range(0..ALPHANUMERIC.len())]))
        .collect()
}

/// A random token of `len` letters and digits (verification challenges, download hashes).
pub fn token(len: usize) -> String {
    (0..len)
        .map(|_| char::from(ALPHANUMERIC[rand::random_range(0..ALPHANUMERIC.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wamid_has_the_familiar_prefix_and_embeds_the_number() {
        let id = wamid("16505551234");
        assert!(id.starts_with("wamid.HBgL"), "{id}");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(id.trim_start_matches("wamid."))
            .unwrap();
        assert_eq!(&raw[3..14], b"16505551234");
        assert_ne!(wamid("16505551234"), id, "ids are unique");
    }

    #[test]
    fn media_ids_are_numeric() {
        for _ in 0..50 {
            let id = media_id();
            assert!((15..=16).contains(&id.len()));
            assert!(id.bytes().all(|b| b.is_ascii_digit()));
            assert!(!id.starts_with('0'));
        }
    }

    #[test]
    fn fbtrace_ids_are_eleven_alphanumerics() {
        let id = fbtrace_id();
        assert_eq!(id.len(), 11);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
