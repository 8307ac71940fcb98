//! Opt-outs: a contact who writes `STOP` is not sent anything until they write `START`. Kept in
//! the bridge's own table (`whatsapp_opt_outs`) in the store's SQLite file, beside the toolkit's
//! tables (which it does not touch), so it survives restarts.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bridge_toolkit::Error;
use rusqlite::{Connection, OptionalExtension, params};

/// What an inbound text means for the opt-out state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
}

/// `STOP` / `START` (and their usual synonyms), alone in the message, any case.
pub fn keyword(text: &str) -> Option<Keyword> {
    match text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_uppercase()
        .as_str()
    {
        "STOP" | "UNSUBSCRIBE" | "STOPALL" | "OPT OUT" | "OPTOUT" => Some(Keyword::Stop),
        "START" | "UNSTOP" | "SUBSCRIBE" | "OPT IN" => Some(Keyword::Start),
        _ => None,
    }
}

#[derive(Clone)]
pub struct OptOuts {
    conn: Arc<Mutex<Connection>>,
}

impl OptOuts {
    pub fn open(path: &Path) -> Result<OptOuts, Error> {
        let conn = Connection::open(path)?;
        OptOuts::init(conn)
    }

    pub fn open_in_memory() -> Result<OptOuts, Error> {
        OptOuts::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<OptOuts, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS whatsapp_opt_outs (
                 wa_id TEXT PRIMARY KEY NOT NULL,
                 since_ms INTEGER NOT NULL
             );",
        )?;
        Ok(OptOuts {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    pub fn is_opted_out(&self, wa_id: &str) -> Result<bool, Error> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM whatsapp_opt_outs WHERE wa_id = ?1",
                params![wa_id],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
        })
    }

    /// Everyone opted out now, with when they wrote STOP (Unix milliseconds), earliest first.
    pub fn list(&self) -> Result<Vec<(String, u64)>, Error> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT wa_id, since_ms FROM whatsapp_opt_outs ORDER BY since_ms, wa_id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        })
    }

    /// Records the contact's choice; answers whether it changed.
    pub fn set(&self, wa_id: &str, opted_out: bool, now_ms: u64) -> Result<bool, Error> {
        self.with(|c| {
            let changed = if opted_out {
                c.execute(
                    "INSERT OR IGNORE INTO whatsapp_opt_outs (wa_id, since_ms) VALUES (?1, ?2)",
                    params![wa_id, now_ms as i64],
                )?
            } else {
                c.execute(
                    "DELETE FROM whatsapp_opt_outs WHERE wa_id = ?1",
                    params![wa_id],
                )?
            };
            Ok(changed > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_start_toggle_the_opt_out() {
        assert_eq!(keyword(" stop "), Some(Keyword::Stop));
        assert_eq!(keyword("Start!"), Some(Keyword::Start));
        assert_eq!(keyword("please stop the reminders"), None);
        let opt_outs = OptOuts::open_in_memory().unwrap();
        assert!(!opt_outs.is_opted_out("447700900123").unwrap());
        assert!(opt_outs.set("447700900123", true, 1).unwrap());
        assert!(!opt_outs.set("447700900123", true, 2).unwrap());
        assert!(opt_outs.is_opted_out("447700900123").unwrap());
        assert!(opt_outs.set("15550002222", true, 2).unwrap());
        // The first STOP's time is kept.
        assert_eq!(
            opt_outs.list().unwrap(),
            vec![
                ("447700900123".to_owned(), 1),
                ("15550002222".to_owned(), 2)
            ]
        );
        assert!(opt_outs.set("447700900123", false, 3).unwrap());
        assert!(!opt_outs.is_opted_out("447700900123").unwrap());
        assert_eq!(
            opt_outs.list().unwrap(),
            vec![("15550002222".to_owned(), 2)]
        );
    }
}
