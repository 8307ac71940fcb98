//! The only module with SQL. It owns the SQLite database: the schema (applied from `migrations/`),
//! one writer thread that commits queued work in batches (group commit), and a small pool of
//! read-only connections used off the async runtime.
//!
//! Callers hand in named, synchronous closures: `Db::write("name", |txn| …)` and
//! `Db::read(|conn| …)`. Each write closure runs inside its own savepoint, so a closure that fails
//! leaves no trace while the other closures of the same batch still commit; the first closure of
//! a transaction runs without one, since its failure can roll back the whole transaction, which
//! holds nothing else yet. (A savepoint copies every page a write first touches into its journal,
//! spilled to a temporary file past 64 KiB: most of the cost of a write that touches a page per
//! room member, as a message's push actions do.) A write's future
//! resolves only after the batch it belongs to is durably committed, which is what lets the API
//! acknowledge a request: what was acknowledged survives `kill -9`.
//!
//! Table groups live in their own files, with functions named `verb_noun_txn` (writes, given the
//! open transaction) and `verb_noun` (reads, given a read connection).

pub mod account_data;
pub mod appservice_queue;
pub mod backfill;
pub mod client_txns;
pub mod dag;
pub mod dehydrated_devices;
pub mod directory;
pub mod e2e_keys;
pub mod event_stream;
pub mod events;
pub mod federation_queue;
pub mod filters;
pub mod key_backup;
pub mod media;
mod migrate;
pub mod openid;
mod pool;
pub mod presence;
pub mod push_actions;
pub mod pushers;
pub mod receipts;
pub mod received;
pub mod registration_tokens;
pub mod relations;
pub mod remote_rooms;
pub mod reports;
pub mod room_servers;
pub mod rooms;
pub mod server_keys;
pub mod state;
pub mod timestamps;
pub mod to_device;
pub mod tokens;
pub mod uiaa;
pub mod users;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::config::{DatabaseConfig, Synchronous};
pub use rusqlite::Connection as Conn;

/// The most closures committed in one transaction. Larger batches amortise the fsync further but
/// delay the first caller of the batch; 256 keeps a batch well under a millisecond of work.
const MAX_BATCH: usize = 256;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "the database schema is version {found}, newer than this plexus knows ({known}); \
         run a newer plexus or restore a backup"
    )]
    SchemaTooNew { found: u32, known: u32 },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("a database reader task failed: {0}")]
    ReaderFailed(String),
    /// A write closure refused to go on; the service that raised it knows what it means. Its
    /// savepoint is rolled back, so nothing of the closure is written.
    #[error("write aborted: {0}")]
    Aborted(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What the writer thread runs: given whether to use a savepoint of its own (`guarded`), it runs
/// the closure inside the open transaction and returns how to report its result once the batch's
/// commit has succeeded or failed, and whether it failed.
type Job = Box<dyn FnOnce(&Connection, bool) -> (Completion, bool) + Send>;
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// A handle on the database. Cloning is cheap; the writer thread stops when the last handle is
/// dropped, after committing everything queued before.
/// Called on the writer thread after every committed batch, with the writer's connection, before
/// any of the batch's callers learns of the commit: in-memory views of the data (the recent
/// events `/sync` serves from memory) follow every commit, in commit order.
pub type CommitObserver = std::sync::Arc<dyn Fn(&Connection) + Send + Sync>;

#[derive(Clone)]
pub struct Db {
    writer: mpsc::Sender<Job>,
    observer: std::sync::Arc<std::sync::OnceLock<CommitObserver>>,
    readers: std::sync::Arc<pool::ReaderPool>,
    writer_thread: std::sync::Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and starts
    /// the writer thread.
    pub fn open(path: &Path, config: &DatabaseConfig) -> Result<Db> {
        let mut conn = open_connection(path, OpenFlags::default(), config)?;
        migrate::apply(&mut conn)?;
        let mut log = wal::LogLength::watch(&mut conn)?;
        let checkpointer = wal::Checkpointer::start(
            open_connection(path, OpenFlags::default(), config)?,
            log.commits(),
        )?;
        let readers = pool::ReaderPool::open(path, config)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let observer = std::sync::Arc::new(std::sync::OnceLock::<CommitObserver>::new());
        let writer_observer = observer.clone();
        let handle = std::thread::Builder::new()
            .name("plexus-db-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, &writer_observer, &mut log);
                checkpointer.stop();
            })
            .map_err(|e| StorageError::Aborted(format!("cannot start writer thread: {e}")))?;
        Ok(Db {
            writer: tx,
            observer,
            readers: std::sync::Arc::new(readers),
            writer_thread: std::sync::Arc::new(std::sync::Mutex::new(Some(handle))),
        })
    }

    /// Sets the one observer of commits (see `CommitObserver`); a second call is refused.
    pub fn set_commit_observer(&self, observer: CommitObserver) -> Result<()> {
        self.observer
            .set(observer)
            .map_err(|_| StorageError::Aborted("a commit observer is already set".into()))
    }

    /// Runs `f` on the writer thread inside a transaction and resolves once it is committed.
    pub async fn write<T, F>(&self, name: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(name, f).await
    }

    /// Queues `f` for the writer thread now and returns a future of its committed result. Writes
    /// run in the order they were submitted, so a caller may queue a write, release its own lock,
    /// and only then wait for the commit.
    pub fn submit<T, F>(
        &self,
        name: &'static str,
        f: F,
    ) -> impl Future<Output = Result<T>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::debug_span!("db.write", write.name = name);
        let job: Job = Box::new(move |conn: &Connection, guarded: bool| {
            let _entered = span.enter();
            let outcome = if guarded {
                run_in_savepoint(conn, f)
            } else {
                f(conn)
            };
            let failed = outcome.is_err();
            let completion: Completion = Box::new(move |commit: Result<()>| {
                let result = match (outcome, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(e),
                    (Ok(v), Ok(())) => Ok(v),
                };
                let _ = tx.send(result);
            });
            (completion, failed)
        });
        let sent = self
            .writer
            .send(job)
            .map_err(|_| StorageError::WriterStopped);
        async move {
            sent?;
            rx.await.map_err(|_| StorageError::WriterStopped)?
        }
    }

    /// Runs `f` with a read-only connection on the blocking thread pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let permit = readers.acquire().await?;
        tokio::task::spawn_blocking(move || readers.with_connection(permit, f))
            .await
            .map_err(|e| StorageError::ReaderFailed(e.to_string()))?
    }

    /// Runs `f` with a read-only connection on the calling thread when one is idle, else like
    /// [`Db::read`]. Only for reads that take microseconds (a few indexed lookups on hot pages):
    /// for them the hand-off to the blocking pool and back costs more than the read, and the
    /// async worker is held no longer than by the hand-off itself.
    pub async fn read_small<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        match self.readers.try_acquire() {
            Some(permit) => self.readers.with_connection(permit, f),
            None => self.read(f).await,
        }
    }

    /// Waits until every write queued so far is committed and the writer thread has stopped. Used
    /// at shutdown; other clones of the handle must be dropped first for the thread to end.
    pub fn close(self) {
        let Db {
            writer,
            writer_thread,
            readers,
            observer,
        } = self;
        drop(observer);
        drop(writer);
        drop(readers);
        if let Some(slot) = std::sync::Arc::into_inner(writer_thread)
            && let Ok(Some(handle)) = slot.into_inner()
        {
            let _ = handle.join();
        }
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE_CAPACITY: usize = 512;

fn open_connection(path: &Path, flags: OpenFlags, config: &DatabaseConfig) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StorageError::Open {
        path: path.to_owned(),
        source,
    })?;
    let synchronous = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Keep query plans stable: without this, SQLite expires a cached statement whenever its
    // bindings are cleared (rusqlite clears them on returning it to the cache), and every use of a
    // cached statement pays for a fresh prepare. `docs/benchmarks.md` measured it at about 30% of
    // the server's CPU under sync load.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Room for every distinct statement the server prepares (about 150), so that none is evicted
    // and prepared again; rusqlite keeps only 16 by default.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))?;
    Ok(conn)
}

/// Runs one transaction-control statement (`BEGIN`, `COMMIT`, `SAVEPOINT`, …) from the statement
/// cache: `execute_batch` would parse it again each time, which was a visible share of a small
/// read's cost.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    control(conn, "SAVEPOINT job")?;
    let outcome = f(conn);
    if outcome.is_err() {
        control(conn, "ROLLBACK TO job")?;
    }
    control(conn, "RELEASE job")?;
    outcome
}

/// The writer thread: takes the first queued job, then whatever else is already waiting (up to
/// `MAX_BATCH`), runs them in one transaction and commits once.
fn writer_loop(
    conn: Connection,
    jobs: mpsc::Receiver<Job>,
    observer: &std::sync::OnceLock<CommitObserver>,
    log: &mut wal::LogLength,
) {
    while let Ok(first) = jobs.recv() {
        let started = Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            // Dropping the jobs unblocks their callers with `WriterStopped`.
            tracing::error!(error = %e, batch.size = size, "cannot begin write transaction");
            continue;
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(size);
        // Whether the transaction holds no write yet: the next job then runs without a savepoint.
        let mut empty = true;
        for job in batch {
            let (completion, failed) = job(&conn, !empty);
            completions.push(completion);
            if empty && failed {
                // Nothing else ran in this transaction: undo it and begin afresh.
                let restarted =
                    control(&conn, "ROLLBACK").and_then(|()| control(&conn, "BEGIN IMMEDIATE"));
                if let Err(e) = restarted {
                    tracing::error!(error = %e, "cannot begin write transaction");
                    break;
                }
            } else {
                empty = false;
            }
        }
        let commit = control(&conn, "COMMIT").map_err(StorageError::from);
        match &commit {
            Ok(()) => {
                if let Some(observe) = observer.get() {
                    observe(&conn);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "write batch failed to commit");
                let _ = control(&conn, "ROLLBACK");
            }
        }
        for complete in completions {
            let report = match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StorageError::Aborted(format!("commit failed: {e}"))),
            };
            complete(report);
        }
        log.keep_short(&conn);
        tracing::trace!(
            batch.size = size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "committed"
        );
    }
}

/// An in-memory database with every migration applied, for unit tests of table groups.
#[cfg(test)]
pub(crate) fn migrated_in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory SQLite opens");
    migrate::apply(&mut conn).expect("migrations apply");
    conn
}

/// The stored JSON of a test event with these DAG edges (what `dag` and `backfill` read them from).
#[cfg(test)]
pub(crate) fn json_with_edges(prev_events: &[String], auth_events: &[&str]) -> String {
    serde_json::json!({ "prev_events": prev_events, "auth_events": auth_events }).to_string()
}

/// A test message `id` from `@a:x` in `!r:x` at depth 1 and time 0, on `prev` and stored as
/// `json`; tests change any other field with `NewEvent { depth: 5, ..test_message(…) }`.
#[cfg(test)]
pub(crate) fn test_message<'a>(
    id: &'a str,
    prev: &'a [String],
    json: &'a str,
) -> events::NewEvent<'a> {
    events::NewEvent {
        event_id: id,
        room_id: "!r:x",
        sender: "@a:x",
        kind: "m.room.message",
        state_key: None,
        membership: None,
        depth: 1,
        origin_server_ts: 0,
        json,
        prev_events: prev,
        state_before: None,
        txn: None,
    }
}

/// Milliseconds since the Unix epoch, the unit every timestamp column uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_temp() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("test.db"), &DatabaseConfig::default()).unwrap();
        (dir, db)
    }

    async fn count(db: &Db) -> i64 {
        db.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM registration_tokens", [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    fn insert(token: &str) -> impl FnOnce(&Connection) -> Result<()> + Send + 'static {
        let token = token.to_owned();
        move |txn| {
            txn.execute(
                "INSERT INTO registration_tokens (token, created_ts) VALUES (?1, 0)",
                [token],
            )?;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_write_leaves_nothing_while_its_batch_neighbours_commit() {
        let (_dir, db) = open_temp();
        let writes = (0..50).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                if i == 25 {
                    db.write("half_then_fail", |txn| {
                        insert("partial")(txn)?;
                        Err::<(), _>(StorageError::Aborted("refused".into()))
                    })
                    .await
                } else {
                    db.write("insert", insert(&format!("t{i}"))).await
                }
            })
        });
        let results: Vec<_> = futures_join(writes).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(count(&db).await, 49);
        let partial = db
            .read(|c| registration_tokens::get_token(c, "partial"))
            .await
            .unwrap();
        assert!(
            partial.is_none(),
            "the failed closure's insert must be rolled back"
        );
    }

    #[tokio::test]
    async fn a_failing_write_leaves_nothing_first_in_its_batch_or_later() {
        let (_dir, db) = open_temp();
        // Alone, it opens its transaction without a savepoint; the rollback must undo it and
        // leave the writer able to go on.
        let alone = db
            .write("half_then_fail", |txn| {
                insert("alone")(txn)?;
                Err::<(), _>(StorageError::Aborted("refused".into()))
            })
            .await;
        assert!(alone.is_err());
        db.write("insert", insert("after")).await.unwrap();
        // Mixed into batches at any place, failing and succeeding ones.
        let writes = (0..60).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => {
                        db.write("half_then_fail", move |txn| {
                            insert(&format!("partial{i}"))(txn)?;
                            Err::<(), _>(StorageError::Aborted("refused".into()))
                        })
                        .await
                    }
                    1 => db.write("insert", insert(&format!("l{i}"))).await,
                    _ => db.write("insert", insert(&format!("t{i}"))).await,
                }
            })
        });
        let results: Vec<_> = futures_join(writes).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 20);
        assert_eq!(
            count(&db).await,
            41,
            "40 writes that succeeded, and `after`"
        );
        let partial: i64 = db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM registration_tokens
                     WHERE token LIKE 'partial%' OR token = 'alone'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(partial, 0, "no failed write may leave a row");
    }

    #[tokio::test]
    async fn acknowledged_writes_are_on_disk_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let db = Db::open(&path, &DatabaseConfig::default()).unwrap();
        db.write("insert", insert("kept")).await.unwrap();
        // Reopen through a separate connection without closing the first handle, as after a crash.
        let other = Db::open(&path, &DatabaseConfig::default()).unwrap();
        let found = other
            .read(|c| registration_tokens::get_token(c, "kept"))
            .await
            .unwrap();
        assert!(found.is_some());
        db.close();
        other.close();
    }

    async fn futures_join<T: Send + 'static>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
