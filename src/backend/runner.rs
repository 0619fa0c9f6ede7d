//! Running one operation on a pooled connection: checkout, discarding a
//! connection that broke or is stuck, and running the operation again after
//! a lost connection (once) or a deadlock (a few times, with backoff). Also
//! how database errors are classified for that (deadlock, unique violation).

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::result::DatabaseErrorKind;

use super::dialect::Dialect;
use super::rows::{Plan, Row};
use crate::error::{Error, Result};

/// How many times an operation is run again after the database aborted it
/// to break a deadlock (see [`run`]).
const DEADLOCK_RETRIES: u32 = 6;

/// When an operation that failed runs again (see [`run`]).
#[derive(Debug, Default)]
pub(crate) struct Retries {
    retried: bool,
    deadlocks: u32,
}

impl Retries {
    /// Whether to run the operation again after `e`, and after what pause.
    /// A timeout is never retried.
    pub(crate) fn next(&mut self, e: &Error) -> Option<Duration> {
        if e.is_connection_failure() {
            if self.retried {
                return None;
            }
            log::warn!(target: "stored_session", "session database connection lost; retrying once on a new connection: {e}");
            self.retried = true;
            Some(Duration::ZERO)
        } else if is_deadlock(e) && self.deadlocks < DEADLOCK_RETRIES {
            log::debug!(target: "stored_session", "session statement chosen as a deadlock victim; running it again: {e}");
            self.deadlocks += 1;
            // Back off with jitter so the two sides of the deadlock do
            // not meet again at once: 1-2 ms, doubling per attempt.
            let jitter = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() % 1_000_000)
                .unwrap_or(0);
            let base = Duration::from_millis(1u64 << self.deadlocks.min(6));
            Some(base + Duration::from_nanos(u64::from(jitter)))
        } else {
            None
        }
    }
}

/// The plan callback of operations that have none: leave the row alone.
pub(crate) fn no_plan(_: Option<Row>) -> Result<Plan> {
    Ok(Plan::Nothing)
}

/// Checks a connection out (no `SELECT 1` on checkout: that would double a
/// load's round trips) and runs `f` on the caller's thread, with `plan` as
/// its write-plan callback. If the connection turns out to be dead, it is
/// marked broken so the pool drops it, and `f` runs once more on a fresh
/// connection (a MySQL connection is also discarded after any server
/// error, see [`Dialect::STICKY_STATEMENT_ERRORS`]). If the database chose
/// `f` as the victim of a deadlock
/// (InnoDB does between a logout's `DELETE` and a concurrent renew's
/// `DELETE` + `INSERT`), it rolled `f`'s work back, so `f` runs again (a
/// few times at most) instead of failing the request.
///
/// SQLite always runs here; PostgreSQL and MySQL do when they have no
/// client-side deadline (see [`deadline::run`](super::deadline::run), which has the same retries
/// on a worker thread).
pub(crate) fn run<C, T>(
    pool: &Pool<ConnectionManager<C>>,
    plan: Option<&mut dyn FnMut(Option<Row>) -> Result<Plan>>,
    mut f: impl FnMut(&mut C, &mut dyn FnMut(Option<Row>) -> Result<Plan>) -> Result<T>,
) -> Result<T>
where
    C: R2D2Connection + Connection<TransactionManager = AnsiTransactionManager> + Dialect + 'static,
{
    let mut no = no_plan;
    let plan: &mut dyn FnMut(Option<Row>) -> Result<Plan> = match plan {
        Some(plan) => plan,
        None => &mut no,
    };
    let mut retries = Retries::default();
    loop {
        let mut conn = pool.get().map_err(|e| Error::PoolTimeout {
            timeout: pool.connection_timeout(),
            message: e.to_string(),
        })?;
        match f(&mut conn, &mut *plan) {
            Err(e) => {
                let broken = discard_after::<C>(&e);
                if broken {
                    // The connection is unusable: flag it so r2d2 discards
                    // it on return instead of handing it to the next request.
                    AnsiTransactionManager::transaction_manager_status_mut(&mut *conn)
                        .set_in_error();
                }
                drop(conn);
                if broken {
                    replace_broken(pool);
                }
                match retries.next(&e) {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(e),
                }
            }
            ok => return ok,
        }
    }
}

/// After a broken connection was dropped: r2d2 0.8 does not wake the
/// callers waiting for a connection then (it does when a connection comes
/// back or a new one is made), so they would sleep through their whole
/// acquire timeout although there is room for a new connection. A
/// zero-timeout checkout starts one (or hands back an idle one, which wakes
/// a waiter as it returns).
pub(crate) fn replace_broken<C: R2D2Connection + 'static>(pool: &Pool<ConnectionManager<C>>) {
    drop(pool.get_timeout(Duration::ZERO));
}

/// Whether the database aborted (and rolled back) the work to break a
/// deadlock or a serialization conflict, so that running it again may
/// succeed:
///
/// * SQLSTATE 40001 (`serialization_failure`) on PostgreSQL and MySQL
///   error 1213 (`ER_LOCK_DEADLOCK`), which Diesel reports by code as
///   [`DatabaseErrorKind::SerializationFailure`], whatever the language
///   of the server's messages;
/// * PostgreSQL's SQLSTATE 40P01 (`deadlock_detected`): Diesel 2.3 keeps
///   the SQLSTATE of other errors to itself (its `DatabaseErrorInformation`
///   has the message, detail, hint, table, column and constraint), so it is
///   recognised by its text, in any language the server speaks (see
///   `postgres::is_deadlock`);
/// * any other message that says "deadlock" (MySQL's 1213 through the
///   text protocol, and the translations that keep the word).
fn is_deadlock(e: &Error) -> bool {
    match e {
        Error::Database(diesel::result::Error::DatabaseError(kind, info)) => {
            matches!(kind, DatabaseErrorKind::SerializationFailure)
                || is_pg_deadlock(&**info)
                || info.message().to_ascii_lowercase().contains("deadlock")
        }
        _ => false,
    }
}

/// PostgreSQL's 40P01, in any language (see `postgres::is_deadlock`).
#[cfg(feature = "postgres")]
fn is_pg_deadlock(info: &(dyn diesel::result::DatabaseErrorInformation + Send + Sync)) -> bool {
    super::postgres::is_deadlock(info.message(), info.details())
}

#[cfg(not(feature = "postgres"))]
fn is_pg_deadlock(_: &(dyn diesel::result::DatabaseErrorInformation + Send + Sync)) -> bool {
    false
}

/// Whether a connection that returned `e` must be discarded rather than
/// lent out again: it is dead, or (see [`Dialect::STICKY_STATEMENT_ERRORS`])
/// one of its cached statements is stuck on an error.
pub(crate) fn discard_after<C: Dialect>(e: &Error) -> bool {
    e.is_connection_failure()
        || (C::STICKY_STATEMENT_ERRORS
            && matches!(e, Error::Database(diesel::result::Error::DatabaseError(..))))
}

/// Whether the statement failed on a unique constraint (a duplicate id).
pub(crate) fn is_unique_violation(e: &Error) -> bool {
    matches!(
        e,
        Error::Database(diesel::result::Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}
