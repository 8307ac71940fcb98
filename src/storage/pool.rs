//! The pool of read-only SQLite connections. Reads never wait for the writer (WAL mode), only for
//! a free connection. Each `Db::read` job runs in one read transaction, so it sees one consistent
//! snapshot of the database however many statements it runs.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Result, StorageError, control, open_connection};
use crate::config::DatabaseConfig;

pub(super) struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    permits: std::sync::Arc<Semaphore>,
}

impl ReaderPool {
    pub(super) fn open(path: &Path, config: &DatabaseConfig) -> Result<ReaderPool> {
        let count = config.read_connections.max(1);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let idle = (0..count)
            .map(|_| {
                let conn = open_connection(path, flags, config)?;
                conn.execute_batch("PRAGMA query_only = ON;")?;
                Ok(conn)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ReaderPool {
            idle: Mutex::new(idle),
            permits: std::sync::Arc::new(Semaphore::new(count)),
        })
    }

    /// Waits for a free connection; the permit guarantees `with_connection` finds one idle.
    pub(super) async fn acquire(&self) -> Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::WriterStopped)
    }

    /// A free connection's permit, if one is idle now.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    pub(super) fn with_connection<T>(
        &self,
        permit: OwnedSemaphorePermit,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let conn = self
            .idle
            .lock()
            .map_err(|_| StorageError::ReaderFailed("reader pool poisoned".into()))?
            .pop()
            .ok_or_else(|| StorageError::ReaderFailed("no idle reader despite a permit".into()))?;
        // One read transaction per job: every statement of the job sees the same snapshot, and
        // the database's read lock is taken once instead of once per statement.
        let outcome = match control(&conn, "BEGIN DEFERRED") {
            Ok(()) => {
                let outcome = f(&conn);
                let end = if outcome.is_ok() {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                if let Err(e) = control(&conn, end) {
                    tracing::warn!(error = %e, "ending a read transaction failed");
                    let _ = control(&conn, "ROLLBACK");
                }
                outcome
            }
            Err(e) => Err(e.into()),
        };
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        drop(permit);
        outcome
    }
}
