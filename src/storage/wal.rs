//! Upkeep of the write-ahead log: copying it back into the database file, and keeping it short.
//!
//! Two parts share the work. SQLite only starts the log over from its beginning when a write
//! begins after a checkpoint that copied *every* frame; under a steady stream of commits a
//! checkpoint on another thread never catches up, and the log grew without bound (to 500 MB in a
//! six-second send benchmark). A longer log costs every commit: appending to the file makes each
//! `fsync` also commit the file's new size to the filesystem journal, which doubled the commit's
//! time. So the writer itself, whenever its commits carry the log past another `RESTART_FRAMES`
//! frames, runs a checkpoint between two batches (no commit can slip in while it copies), and its
//! next write starts the log over, rewriting the same few megabytes of file.
//!
//! The checkpoint thread copies the log into the database file, on its own connection, once
//! writes pause: when a `CHECKPOINT_INTERVAL` went by without a commit. Every start of the log
//! costs the write that makes it an extra `fsync` (of the log's new header), so a thread that
//! checkpointed on a timer during writes made every fifth message of a room with ten a second pay
//! one; an idle server still has its log copied within a second or so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::{Result, StorageError};

/// How long the log may grow under steady writes before the writer checkpoints it: 1,000 frames
/// of 4 KiB (SQLite's own default), about 40 commits of a busy room.
const RESTART_FRAMES: u32 = 1000;

/// How long writes must pause before the checkpoint thread copies the log.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The writer's view of its log length, updated by SQLite after every commit.
pub(super) struct LogLength {
    frames: Arc<AtomicU32>,
    /// Commits so far, for the checkpoint thread.
    commits: Arc<AtomicU64>,
    /// The length when the writer last looked.
    seen: u32,
    /// The length at which the writer checkpoints next.
    due: u32,
}

impl LogLength {
    /// Follows the log length of `conn`, the writer's connection. This replaces SQLite's automatic
    /// checkpoint, which would run inside `COMMIT`, before the batch's callers hear of it.
    pub(super) fn watch(conn: &mut Connection) -> Result<LogLength> {
        let frames = Arc::new(AtomicU32::new(0));
        let commits = Arc::new(AtomicU64::new(0));
        let (hook_frames, hook_commits) = (frames.clone(), commits.clone());
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
            hook_frames.store(pages.max(0) as u32, Ordering::Relaxed);
            hook_commits.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(LogLength {
            frames,
            commits,
            seen: 0,
            due: RESTART_FRAMES,
        })
    }

    /// The writer's commit count, which the checkpoint thread watches for a pause.
    pub(super) fn commits(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    /// Called by the writer between batches: checkpoints once the log is `RESTART_FRAMES` long.
    /// When the checkpoint thread holds the checkpoint lock, it tries again after the next batch;
    /// when a reader still needs old frames (the log cannot start over yet), only a further
    /// `RESTART_FRAMES` on, so that one slow reader does not make every batch checkpoint.
    pub(super) fn keep_short(&mut self, conn: &Connection) {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames < self.seen {
            self.due = RESTART_FRAMES; // the log started over
        }
        self.seen = frames;
        if frames < self.due {
            return;
        }
        match checkpoint(conn) {
            Ok(Copied::NotNow) => {}
            Ok(Copied::AsFarAsReadersAllow) => self.due = frames + RESTART_FRAMES,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint by the writer failed");
                self.due = frames + RESTART_FRAMES;
            }
        }
    }
}

/// What a checkpoint did.
enum Copied {
    /// Another connection was checkpointing; nothing was copied.
    NotNow,
    /// Every frame no reader still needs was copied.
    AsFarAsReadersAllow,
}

/// Copies what it can of the log into the database file without waiting for anyone.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Copied> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(0))?;
    Ok(if busy == 1 {
        Copied::NotNow
    } else {
        Copied::AsFarAsReadersAllow
    })
}

/// Copies the WAL back into the database file on its own connection once a `CHECKPOINT_INTERVAL`
/// went by without a commit, so that commits never wait for it; truncates the WAL when the
/// database closes.
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(conn: Connection, commits: Arc<AtomicU64>) -> Result<Checkpointer> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plexus-db-checkpoint".into())
            .spawn(move || {
                // The commit count at the last tick, and at the last checkpoint.
                let (mut seen, mut copied) = (0, 0);
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    let now = commits.load(Ordering::Relaxed);
                    let paused = now == seen && now != copied;
                    seen = now;
                    if !paused {
                        continue;
                    }
                    match checkpoint(&conn) {
                        Ok(Copied::AsFarAsReadersAllow) => copied = now,
                        Ok(Copied::NotNow) => {}
                        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                    }
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| StorageError::Aborted(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop, thread })
    }

    /// Runs a last checkpoint and waits for the thread to end.
    pub(super) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::super::Db;
    use crate::config::DatabaseConfig;

    /// Under a stream of commits with no pause for the checkpoint thread to catch up, the log
    /// file stays near `RESTART_FRAMES` frames instead of growing with every commit.
    #[tokio::test]
    async fn the_log_stays_short_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let db = Db::open(&path, &DatabaseConfig::default()).unwrap();
        // Each commit adds a 12 KiB row: three frames or more, some 7,500 frames in all.
        let value = "x".repeat(12 * 1024);
        for i in 0..2500 {
            let value = value.clone();
            db.write("insert", move |txn| {
                txn.execute(
                    "INSERT INTO registration_tokens (token, created_ts) VALUES (?1, 0)",
                    [format!("{i}{value}")],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        }
        let log = std::fs::metadata(dir.path().join("test.db-wal"))
            .unwrap()
            .len();
        let frame = 4096 + 24;
        assert!(
            log <= 2 * u64::from(super::RESTART_FRAMES) * frame,
            "the log grew to {log} bytes ({} frames) over 2,500 commits",
            log / frame
        );
        let rows: i64 = db
            .read(
                |c| Ok(c.query_row("SELECT COUNT(*) FROM registration_tokens", [], |r| r.get(0))?),
            )
            .await
            .unwrap();
        assert_eq!(
            rows, 2500,
            "every committed row is kept across the log's restarts"
        );
        db.close();
    }

    /// Commits at a steady pace leave the log alone (each restart of the log costs a write an
    /// extra sync); once they pause, the log is copied into the database file.
    #[tokio::test]
    async fn the_log_is_copied_once_writes_pause_and_not_while_they_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let db = Db::open(&path, &DatabaseConfig::default()).unwrap();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let before = file_len();
        // 40 KiB a commit, one commit every 100 ms for three times the interval: far below the
        // writer's own threshold, so only the checkpoint thread could copy the log.
        let value = "x".repeat(40 * 1024);
        let ticks = 3 * super::CHECKPOINT_INTERVAL.as_millis() / 100;
        for i in 0..ticks {
            let value = format!("{i}{value}");
            db.write("insert", move |txn| {
                txn.execute(
                    "INSERT INTO registration_tokens (token, created_ts) VALUES (?1, 0)",
                    [value],
                )?;
                Ok(())
            })
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(file_len(), before, "no checkpoint while commits go on");
        let deadline = std::time::Instant::now() + 4 * super::CHECKPOINT_INTERVAL;
        while file_len() == before && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            file_len() > before + 40 * 1024,
            "the log was copied into the database file once commits paused"
        );
        db.close();
    }
}
