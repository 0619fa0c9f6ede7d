//! The SQLite writer gate: the store's writes to SQLite take turns in one
//! in-process queue instead of polling for SQLite's write lock.

#[cfg(feature = "sqlite")]
use std::sync::{Arc, Weak};
#[cfg(feature = "sqlite")]
use std::time::Duration;

#[cfg(feature = "sqlite")]
use super::sqlite::SqlitePool;

use super::database::Database;
#[cfg(feature = "sqlite")]
use crate::error::Error;
use crate::error::Result;

/// The queue of one SQLite database's writers in this process. SQLite lets
/// one connection write at a time, and its busy handler polls for the lock,
/// sleeping up to 100 ms between tries: with many writers in one process a
/// writer can lose every poll until `busy_timeout` runs out and fail with
/// "database is locked" (seen with 16 threads writing one session). The
/// store's SQLite writes take turns here instead, so the busy handler only
/// ever waits for writers outside this process.
///
/// A writer that finds the queue free takes its turn at once. One that
/// finds it taken first polls it with short sleeps (100 µs, doubling up to
/// 1 ms) for up to 5 ms: meanwhile the writer that runs does several
/// writes in a row, without handing the turn to a sleeping thread after
/// each (on two cores, a strict hand-off per write halved the throughput of
/// eight writers). Past that it waits in a `parking_lot` mutex, which hands
/// the turn to its longest waiter at least every 0.5 ms or so: no writer
/// starves, as they could in SQLite's busy handler.
///
/// There is one queue per database file, shared by every store (every
/// pool) of this process on that file, and stores on different files write
/// in parallel. A writer waits here at most the pool's acquire timeout
/// ([`Error::PoolTimeout`] after that): when another process holds the
/// lock, each queued writer fails within acquire + busy timeout instead of
/// one busy timeout after the other.
#[cfg(feature = "sqlite")]
type WriterQueue = parking_lot::Mutex<()>;

/// A writer's turn in its database's queue; the next one's starts on drop.
#[cfg(feature = "sqlite")]
pub(crate) struct WriterTurn {
    _turn: parking_lot::ArcMutexGuard<parking_lot::RawMutex, ()>,
}

/// Waits for a turn in `queue`, at most `limit` (see [`WriterQueue`]).
#[cfg(feature = "sqlite")]
fn enter(queue: &Arc<WriterQueue>, limit: Duration) -> Result<WriterTurn> {
    let start = std::time::Instant::now();
    let turn = queue.try_lock_arc().or_else(|| {
        let mut pause = POLL_FIRST;
        while start.elapsed() + pause < POLL_FOR.min(limit) {
            std::thread::sleep(pause);
            if let Some(turn) = queue.try_lock_arc() {
                return Some(turn);
            }
            pause = (pause * 2).min(POLL_MAX);
        }
        queue.try_lock_arc_for(limit.saturating_sub(start.elapsed()))
    });
    turn.map(|turn| WriterTurn { _turn: turn })
        .ok_or_else(|| Error::PoolTimeout {
            timeout: limit,
            message: "this process's other SQLite writers held the write lock".into(),
        })
}

/// A contended writer's first pause before it tries the queue again.
#[cfg(feature = "sqlite")]
const POLL_FIRST: Duration = Duration::from_micros(100);
/// The longest pause between its tries.
#[cfg(feature = "sqlite")]
const POLL_MAX: Duration = Duration::from_millis(1);
/// How long it polls before it waits in line.
#[cfg(feature = "sqlite")]
const POLL_FOR: Duration = Duration::from_millis(5);

/// The writer queues of the SQLite files this process has open, by
/// canonical path (a queue lives as long as a pool on its file does).
#[cfg(feature = "sqlite")]
static QUEUES: std::sync::Mutex<Vec<(std::path::PathBuf, Weak<WriterQueue>)>> =
    std::sync::Mutex::new(Vec::new());

/// The queue of the database file `pool` opens: shared with every other
/// pool of this process on the same file; a private one for an in-memory
/// database or when the file cannot be named.
#[cfg(feature = "sqlite")]
fn queue_of(pool: &SqlitePool) -> Arc<WriterQueue> {
    #[derive(diesel::QueryableByName)]
    struct Attached {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        file: String,
    }
    let file = pool.get().ok().and_then(|mut conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query("PRAGMA database_list")
            .load::<Attached>(&mut *conn)
            .ok()?
            .into_iter()
            .find(|db| db.name == "main" && !db.file.is_empty())
            .and_then(|db| std::fs::canonicalize(db.file).ok())
    });
    let Some(file) = file else {
        return Arc::default();
    };
    let mut queues = QUEUES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    queues.retain(|(_, queue)| queue.strong_count() > 0);
    if let Some(queue) = queues
        .iter()
        .find(|(path, _)| *path == file)
        .and_then(|(_, queue)| queue.upgrade())
    {
        return queue;
    }
    let queue = Arc::new(WriterQueue::new(()));
    queues.push((file, Arc::downgrade(&queue)));
    queue
}

/// An r2d2 pool of SQLite connections with its database's writer queue.
///
/// Dereferences to the pool, so everything a `Pool` offers (`get`,
/// `state`, `max_size`, …) works on it directly. Made by
/// [`Database::from`] and by [`StoreBuilder::open`](crate::StoreBuilder::open).
#[cfg(feature = "sqlite")]
#[derive(Clone)]
pub struct SqliteConnections {
    pool: SqlitePool,
    writers: Arc<WriterQueue>,
}

#[cfg(feature = "sqlite")]
impl SqliteConnections {
    /// Wraps `pool`, joining the writer queue of its database file.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        let writers = queue_of(&pool);
        SqliteConnections { pool, writers }
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[cfg(feature = "sqlite")]
impl std::ops::Deref for SqliteConnections {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        &self.pool
    }
}

#[cfg(feature = "sqlite")]
impl std::fmt::Debug for SqliteConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConnections")
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// What [`Database::write_gate`] holds.
#[cfg(feature = "sqlite")]
type WriteTurn = WriterTurn;
/// What [`Database::write_gate`] holds (nothing without SQLite).
#[cfg(not(feature = "sqlite"))]
type WriteTurn = ();

impl Database {
    /// Held around each of the store's writes: on SQLite, a turn in the
    /// database file's writer queue (see `WriterQueue`; waiting at most the
    /// pool's acquire timeout); elsewhere nothing.
    pub(super) fn write_gate(&self) -> Result<Option<WriteTurn>> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(conns) => enter(&conns.writers, conns.connection_timeout()).map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }
}
