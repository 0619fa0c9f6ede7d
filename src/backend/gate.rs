//! The SQLite writer gate: the store's writes to SQLite take turns in one
//! in-process queue instead of polling for SQLite's write lock.

#[cfg(feature = "sqlite")]
use std::time::Duration;

use super::database::Database;
#[cfg(feature = "sqlite")]
use crate::error::Error;
use crate::error::Result;

/// The queue of this process's SQLite writers. SQLite lets one connection
/// write at a time, and its busy handler polls for the lock, sleeping up to
/// 100 ms between tries: with many writers in one process a writer can lose
/// every poll until `busy_timeout` runs out and fail with "database is
/// locked" (seen with 16 threads writing one session). The store's SQLite
/// writes wait here instead (woken as soon as the previous one is done), so
/// the busy handler only ever waits for writers outside this process.
///
/// A writer waits here at most the pool's acquire timeout
/// ([`Error::PoolTimeout`] after that): when another process holds the
/// lock, each queued writer fails within acquire + busy timeout instead of
/// one busy timeout after the other.
#[cfg(feature = "sqlite")]
static SQLITE_WRITERS: WriterQueue = WriterQueue {
    state: std::sync::Mutex::new(QueueState {
        busy: false,
        waiting: 0,
    }),
    free: std::sync::Condvar::new(),
};

#[cfg(feature = "sqlite")]
struct WriterQueue {
    state: std::sync::Mutex<QueueState>,
    free: std::sync::Condvar,
}

#[cfg(feature = "sqlite")]
struct QueueState {
    busy: bool,
    waiting: usize,
}

/// A writer's turn in [`SQLITE_WRITERS`]; the next one's starts on drop.
#[cfg(feature = "sqlite")]
pub(crate) struct WriterTurn(());

#[cfg(feature = "sqlite")]
impl WriterQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enter(&'static self, limit: Duration) -> Result<WriterTurn> {
        let mut state = self.state();
        if state.busy {
            let end = std::time::Instant::now() + limit;
            state.waiting += 1;
            while state.busy {
                let left = end.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    state.waiting -= 1;
                    return Err(Error::PoolTimeout {
                        timeout: limit,
                        message: "this process's other SQLite writers held the write lock".into(),
                    });
                }
                state = self
                    .free
                    .wait_timeout(state, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            state.waiting -= 1;
        }
        state.busy = true;
        Ok(WriterTurn(()))
    }
}

#[cfg(feature = "sqlite")]
impl Drop for WriterTurn {
    fn drop(&mut self) {
        let mut state = SQLITE_WRITERS.state();
        state.busy = false;
        let waiting = state.waiting > 0;
        drop(state);
        // Only when someone waits: a notify is a system call.
        if waiting {
            SQLITE_WRITERS.free.notify_one();
        }
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
    /// in-process writer queue (see `SQLITE_WRITERS`; waiting at most the
    /// pool's acquire timeout); elsewhere nothing.
    pub(super) fn write_gate(&self) -> Result<Option<WriteTurn>> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(pool) => SQLITE_WRITERS.enter(pool.connection_timeout()).map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }
}
