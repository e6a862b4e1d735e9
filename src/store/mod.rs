//! The daemon's state: one SQLite database owned by one thread (the store actor).
//!
//! [`Store`] is the cloneable handle; every request is a closure sent over a bounded
//! channel and run on the store thread, which is the only code that touches SQLite.
//! The thread batches whatever requests are queued into one transaction (each request in
//! its own savepoint) and answers them only after the commit is durable, so a burst of
//! small writes costs one fsync instead of one each, and a caller never acts on a write
//! that could still be lost. Schema lives in `migrations/NN-name/up.sql`, applied at open.
//!
//! Paths are mirror-relative, `/`-separated UTF-8 strings.

pub mod journal;
pub mod known;
pub mod links;
pub mod model;
mod sql;
pub mod sync;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use journal::{Intent, IntentOp};
pub use links::{LinkRecord, StoredOptions};
pub use model::*;
pub use sync::SyncCursor;
pub use view::compact_map;

/// A mirror's row id: every request to the store names the mirror it is about.
pub type MirrorId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: migrating schema: {source}")]
    Migrate {
        path: PathBuf,
        source: rusqlite_migration::Error,
    },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database: stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("state database is closed")]
    Closed,
    /// A write found no room on the state database's file system. SQLite rolled the
    /// transaction back, so the database stays consistent; nothing more can be recorded.
    #[error("state database {}: No space left on device (free space on that file system)", path.display())]
    Full { path: PathBuf },
}

/// Whether an SQLite error means the disk (or the database's size limit) is full.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// Largest number of queued requests committed in one transaction.
const MAX_BATCH: usize = 512;

type Reply = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// Handle to the store actor.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
    /// Set when a write failed for lack of space; cleared by [`Store::clear_full`].
    full: Arc<AtomicBool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn migrations() -> rusqlite_migration::Migrations<'static> {
    rusqlite_migration::Migrations::new(vec![
        rusqlite_migration::M::up(include_str!("../../migrations/01-initial/up.sql")),
        rusqlite_migration::M::up(include_str!("../../migrations/02-root-identity/up.sql")),
        rusqlite_migration::M::up(include_str!("../../migrations/03-entry-ctime/up.sql")),
        rusqlite_migration::M::up(include_str!("../../migrations/04-pause-kind/up.sql")),
        rusqlite_migration::M::up(include_str!("../../migrations/05-sync-cursor/up.sql")),
        rusqlite_migration::M::up(include_str!("../../migrations/06-known-content/up.sql")),
        rusqlite_migration::M::up(include_str!(
            "../../migrations/07-entries-by-remote-id/up.sql"
        )),
    ])
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    // The WAL is checkpointed every 256 pages (1 MiB) instead of SQLite's 1,000 (4 MiB):
    // a first sync commits thousands of small transactions, and on a nearly full disk
    // (a small state partition) a WAL that grows to 4 MiB before its first checkpoint
    // is what runs out of room.
    conn.pragma_update(None, "wal_autocheckpoint", 256)
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    migrations()
        .to_latest(&mut conn)
        .map_err(|source| StoreError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(conn)
}

impl Store {
    /// Opens (creating and migrating) the database and starts the store thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = open_connection(path)?;
        let (tx, rx) = mpsc::channel::<Job>(1024);
        std::thread::Builder::new()
            .name("scaidrive-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            tx,
            path: path.to_path_buf(),
            full: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a write failed for lack of space since the last [`Store::clear_full`].
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Forgets an earlier lack of space (after a write succeeded again).
    pub fn clear_full(&self) {
        self.full.store(false, Ordering::Release);
    }

    /// Runs `f` on the store thread inside the current batch's transaction; the result is
    /// returned once that transaction has committed. An `Err` rolls back only `f`'s writes.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (path, full) = (self.path.clone(), self.full.clone());
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_err| {
                let out = match commit_err {
                    Some(e) if is_disk_full(e) => Err(StoreError::Full { path }),
                    Some(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
                    None => match result {
                        Err(StoreError::Sqlite(e)) if is_disk_full(&e) => {
                            Err(StoreError::Full { path })
                        }
                        other => other,
                    },
                };
                if matches!(out, Err(StoreError::Full { .. })) {
                    full.store(true, Ordering::Release);
                }
                let _ = reply_tx.send(out);
            });
            (ok, reply)
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until every request sent before this call has been committed, then lets the
    /// store thread end once all handles are dropped.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|_| Ok(())).await
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for job in jobs {
                // Without a transaction nothing can run; report the failure to each caller.
                let (_, reply) = job(&conn);
                reply(Some(&e));
            }
            continue;
        }
        for job in jobs {
            let sp = conn.execute_batch("SAVEPOINT job");
            let (ok, reply) = job(&conn);
            if sp.is_ok() {
                if !ok {
                    let _ = conn.execute_batch("ROLLBACK TO job");
                }
                let _ = conn.execute_batch("RELEASE job");
            }
            replies.push(reply);
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => replies.into_iter().for_each(|r| r(None)),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                replies.into_iter().for_each(|r| r(Some(&e)));
            }
        }
    }
    // All handles are gone: checkpoint the WAL so the database file is complete on its own.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

/// Opens the database read-only for inspection when the daemon is not running
/// (`scaidrivectl status`). Returns `None` if it does not exist.
pub fn open_read_only(path: &Path) -> Result<Option<Connection>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_are_valid() {
        migrations().validate().expect("migrations validate");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_request_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.call(move |c| {
                    c.execute(
                        "INSERT INTO kv (key, value) VALUES (?1, 'x')",
                        [format!("k{i}")],
                    )?;
                    if i % 10 == 0 {
                        return Err(StoreError::Corrupt("planned failure".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 5);
        let n: i64 = store
            .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM kv", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 45, "each failed request rolled back alone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .call(|c| Ok(c.execute("INSERT INTO kv VALUES ('a', 'b')", [])?))
                .await
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let v: String = store
            .call(|c| Ok(c.query_row("SELECT value FROM kv WHERE key = 'a'", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(v, "b");
    }
}
