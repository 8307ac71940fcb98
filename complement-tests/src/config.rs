//! The harness's model of `plexus.toml`: a flat map from dotted keys (`registration.open`) to
//! TOML values, rendered into a file just before the server starts. It knows nothing about
//! which keys the server accepts; tests may set unknown keys on purpose.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A TOML value. Tables render inline (`{ per_second = 0.5, burst = 2 }`).
#[derive(Clone, Debug, PartialEq)]
pub enum Toml {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Toml>),
    Table(Vec<(String, Toml)>),
}

impl Toml {
    /// An inline table, e.g. `Toml::table([("per_second", 0.5.into()), ("burst", 2.into())])`.
    pub fn table<K: Into<String>>(entries: impl IntoIterator<Item = (K, Toml)>) -> Toml {
        Toml::Table(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn render(&self, out: &mut String) {
        match self {
            Toml::Bool(b) => write!(out, "{b}").unwrap(),
            Toml::Int(i) => write!(out, "{i}").unwrap(),
            // `{:?}` always keeps a decimal point (`1.0`), which TOML needs to read a float.
            Toml::Float(f) => write!(out, "{f:?}").unwrap(),
            Toml::Str(s) => render_string(s, out),
            Toml::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Toml::Table(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    out.push_str(if i > 0 { ", " } else { " " });
                    render_key(key, out);
                    out.push_str(" = ");
                    value.render(out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// A key of an inline table: bare when TOML allows it, quoted otherwise (a server name such as
/// `hs1.test` would otherwise read as the dotted key `hs1` → `test`).
fn render_key(key: &str, out: &mut String) {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(key);
    } else {
        render_string(key, out);
    }
}

fn render_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<bool> for Toml {
    fn from(v: bool) -> Self {
        Toml::Bool(v)
    }
}
impl From<i32> for Toml {
    fn from(v: i32) -> Self {
        Toml::Int(v.into())
    }
}
impl From<i64> for Toml {
    fn from(v: i64) -> Self {
        Toml::Int(v)
    }
}
impl From<u32> for Toml {
    fn from(v: u32) -> Self {
        Toml::Int(v.into())
    }
}
impl From<u64> for Toml {
    fn from(v: u64) -> Self {
        Toml::Int(i64::try_from(v).expect("integer fits in a TOML integer"))
    }
}
impl From<f64> for Toml {
    fn from(v: f64) -> Self {
        Toml::Float(v)
    }
}
impl From<&str> for Toml {
    fn from(v: &str) -> Self {
        Toml::Str(v.to_owned())
    }
}
impl From<String> for Toml {
    fn from(v: String) -> Self {
        Toml::Str(v)
    }
}
impl<T: Into<Toml>> From<Vec<T>> for Toml {
    fn from(v: Vec<T>) -> Self {
        Toml::Array(v.into_iter().map(Into::into).collect())
    }
}

/// A config file as dotted keys: `server_name` is a top-level key, `rate_limits.login` is the key
/// `login` in the `[rate_limits]` table.
#[derive(Clone, Debug, Default)]
pub struct Config {
    entries: BTreeMap<String, Toml>,
}

impl Config {
    /// The configuration every harness server starts from: open dummy registration, shared-secret
    /// registration, no rate limits, one loopback listener on an ephemeral port.
    pub fn harness_default(server_name: &str, shared_secret: &str) -> Config {
        let mut config = Config::default();
        config.set("server_name", server_name);
        config.set("listen", vec!["127.0.0.1:0"]);
        config.set("registration.open", true);
        config.set("registration.shared_secret", shared_secret);
        config.set("rate_limits.enabled", false);
        config.set("log.level", "info");
        config
    }

    pub fn set(&mut self, key: &str, value: impl Into<Toml>) {
        self.entries.insert(key.to_owned(), value.into());
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub fn get(&self, key: &str) -> Option<&Toml> {
        self.entries.get(key)
    }

    /// Renders the file: top-level keys first, then one `[table]` per dotted prefix.
    pub fn render(&self) -> String {
        let mut tables: BTreeMap<&str, Vec<(&str, &Toml)>> = BTreeMap::new();
        for (key, value) in &self.entries {
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            tables.entry(table).or_default().push((leaf, value));
        }
        let mut out = String::new();
        for (table, entries) in tables {
            if !table.is_empty() {
                write!(out, "\n[{table}]\n").unwrap();
            }
            for (leaf, value) in entries {
                write!(out, "{leaf} = ").unwrap();
                value.render(&mut out);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_top_level_keys_before_tables() {
        let mut config = Config::default();
        config.set(
            "rate_limits.login",
            Toml::table([("per_second", 0.5.into()), ("burst", 2.into())]),
        );
        config.set("server_name", "hs1.localhost");
        config.set("listen", vec!["127.0.0.1:0"]);
        config.set("data_dir", "/tmp/a \"quoted\" dir");
        assert_eq!(
            config.render(),
            "data_dir = \"/tmp/a \\\"quoted\\\" dir\"\nlisten = [\"127.0.0.1:0\"]\n\
             server_name = \"hs1.localhost\"\n\n[rate_limits]\n\
             login = { per_second = 0.5, burst = 2 }\n"
        );
    }

    #[test]
    fn inline_table_keys_are_quoted_when_not_bare() {
        let mut out = String::new();
        Toml::table([("hs1.test", "127.0.0.1:1".into()), ("plain_key", 1.into())]).render(&mut out);
        assert_eq!(out, "{ \"hs1.test\" = \"127.0.0.1:1\", plain_key = 1 }");
    }

    #[test]
    fn floats_keep_a_decimal_point() {
        let mut out = String::new();
        Toml::Float(1.0).render(&mut out);
        assert_eq!(out, "1.0");
    }
}
