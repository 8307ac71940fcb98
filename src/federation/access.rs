//! Which servers may federate with this one: the `[federation] allow` and `deny` lists of server
//! name patterns, where `*` matches any run of characters. A server must match an `allow` pattern
//! and no `deny` pattern. A pattern is tried against the whole server name and against its host
//! alone, so `*.example.org` also covers `matrix.example.org:8448`. Pure; no IO.

use ruma::ServerName;

/// The allow and deny lists, compiled once at start-up.
#[derive(Debug, Clone)]
pub struct AccessList {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl AccessList {
    pub fn new(allow: &[String], deny: &[String]) -> AccessList {
        let lower = |patterns: &[String]| patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
        AccessList {
            allow: lower(allow),
            deny: lower(deny),
        }
    }

    /// Whether `server` may send requests to, and receive requests from, this server.
    pub fn allows(&self, server: &ServerName) -> bool {
        let name = server.as_str().to_ascii_lowercase();
        let host = server.host().to_ascii_lowercase();
        let matches = |pattern: &String| glob_match(pattern, &name) || glob_match(pattern, &host);
        self.allow.iter().any(matches) && !self.deny.iter().any(matches)
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters (also none).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    // Classic two-pointer wildcard matching: on a mismatch, let the last `*` swallow one more
    // character. Linear in practice and never recursive.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allow: &[&str], deny: &[&str]) -> AccessList {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessList::new(&owned(allow), &owned(deny))
    }

    fn name(s: &str) -> &ServerName {
        s.try_into().unwrap()
    }

    #[test]
    fn patterns_match_with_wildcards() {
        let cases = [
            ("*", "anything.example", true),
            ("example.org", "example.org", true),
            ("example.org", "matrix.example.org", false),
            ("*.example.org", "matrix.example.org", true),
            ("*.example.org", "example.org", false),
            ("hs*.test", "hs1.test", true),
            ("hs*.test", "hs1.other", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_server_must_be_allowed_and_not_denied() {
        let open = list(&["*"], &[]);
        assert!(open.allows(name("hs1.test")));

        let closed = list(&["*.care.example"], &["bad.care.example"]);
        assert!(closed.allows(name("home.care.example")));
        assert!(
            closed.allows(name("home.care.example:8448")),
            "ports are ignored"
        );
        assert!(!closed.allows(name("bad.care.example")));
        assert!(!closed.allows(name("elsewhere.example")));

        let deny_one = list(&["*"], &["HS1.test"]);
        assert!(
            !deny_one.allows(name("hs1.test")),
            "names are case-insensitive"
        );
        assert!(deny_one.allows(name("hs2.test")));
        assert!(!list(&[], &[]).allows(name("hs1.test")));
    }
}
