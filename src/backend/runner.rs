//! Running one operation on a pooled connection: checkout, discarding a
//! connection that broke or is stuck, and running the operation again after
//! a lost connection (once) or a deadlock (a few times, with backoff), or on
//! another connection after a Galera node said it is not ready. Also how
//! database errors are classified for that (deadlock, node not ready,
//! unique violation).

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

/// The same on a Galera cluster ([`Retries::galera`]): up to about 1.8 s
/// of pauses (2, 4, … 64 ms, then 64 ms each). An InnoDB deadlock on one
/// server is rare and ends after a retry or two; on Galera every write
/// that loses a certification conflict to another node fails with the
/// same error 1213, and one session written from several nodes at once
/// can lose many times in a row: 8 writers of one session spread over 3
/// nodes needed up to 21 retries for one request (`tests/galera.rs`).
#[cfg(any(feature = "postgres", feature = "mysql"))]
const GALERA_CONFLICT_RETRIES: u32 = 32;

/// When an operation that failed runs again (see [`run`]).
#[derive(Debug)]
pub(crate) struct Retries {
    retried: bool,
    deadlocks: u32,
    /// How many deadlocks (conflicts) are retried.
    deadlock_limit: u32,
    /// Galera: how many times a node answered "not ready" (see
    /// [`is_node_not_ready`]).
    not_ready: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            retried: false,
            deadlocks: 0,
            deadlock_limit: DEADLOCK_RETRIES,
            not_ready: 0,
        }
    }
}

impl Retries {
    /// The retries of an operation on a Galera cluster node: more
    /// conflicts retried (see [`GALERA_CONFLICT_RETRIES`]).
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub(crate) fn galera() -> Self {
        Retries {
            deadlock_limit: GALERA_CONFLICT_RETRIES,
            ..Retries::default()
        }
    }

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
        } else if is_deadlock(e) && self.deadlocks < self.deadlock_limit {
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
        } else if is_node_not_ready(e) {
            self.node_not_ready(e)
        } else {
            None
        }
    }

    /// Galera: a node that is joining, donating, or cut off from the
    /// cluster's quorum answered 1047. Its work was not done (the statement
    /// was refused, or the transaction rolled back); the connection is
    /// discarded ([`discard_after`]) and the operation runs again on
    /// another one, which a proxy in front of the cluster sends to a ready
    /// node. A pool whose every connection reaches that one node keeps
    /// failing: then the call fails after [`NOT_READY_PAUSES`] (2 s in
    /// all), or sooner at the end of the operation's budget (see
    /// [`deadline::run`](super::deadline::run)).
    fn node_not_ready(&mut self, e: &Error) -> Option<Duration> {
        let pause = *NOT_READY_PAUSES.get(self.not_ready as usize)?;
        self.not_ready += 1;
        log::warn!(target: "stored_session", "the session database node is not ready (Galera); running the operation again on another connection in {pause:?}: {e}");
        Some(pause)
    }
}

/// The pauses before each new attempt after a Galera node answered "not
/// ready" (see [`Retries::node_not_ready`]): about 2 s in all, room for a
/// proxy's health check to notice and for a node to finish a short state
/// transfer.
const NOT_READY_PAUSES: [Duration; 8] = [
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(400),
    Duration::from_millis(400),
    Duration::from_millis(400),
];

/// Whether a Galera node refused the work because it is not ready: error
/// 1047 (`ER_UNKNOWN_COM_ERROR`, "WSREP has not yet prepared node for
/// application use"), answered while the node joins the cluster, serves a
/// state transfer, is in a non-primary component (lost its quorum), or
/// rejects queries (`wsrep_reject_queries`). MySQL's client library gives
/// Diesel only the message, so it is matched on that.
fn is_node_not_ready(e: &Error) -> bool {
    match e {
        Error::Database(diesel::result::Error::DatabaseError(_, info)) => info
            .message()
            .to_ascii_lowercase()
            .contains("wsrep has not yet prepared node"),
        _ => false,
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
    f: impl FnMut(&mut C, &mut dyn FnMut(Option<Row>) -> Result<Plan>) -> Result<T>,
) -> Result<T>
where
    C: R2D2Connection + Connection<TransactionManager = AnsiTransactionManager> + Dialect + 'static,
{
    run_with(pool, Retries::default(), plan, f)
}

/// [`run`] with the given retries (a Galera node's, see [`Retries::galera`]).
pub(crate) fn run_with<C, T>(
    pool: &Pool<ConnectionManager<C>>,
    mut retries: Retries,
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
/// lent out again: it is dead, its Galera node is not ready (a new
/// connection may reach another node), or (see [`Dialect::STICKY_STATEMENT_ERRORS`])
/// one of its cached statements is stuck on an error.
pub(crate) fn discard_after<C: Dialect>(e: &Error) -> bool {
    e.is_connection_failure()
        || is_node_not_ready(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::Database(diesel::result::Error::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    /// The texts MariaDB 10.11 with Galera 26.4 sent on the test cluster.
    const NOT_READY: &str = "WSREP has not yet prepared node for application use";
    const CERTIFICATION: &str =
        "Deadlock found when trying to get lock; try restarting transaction";

    #[test]
    fn galera_not_ready_is_retried_on_another_connection_for_about_two_seconds() {
        let e = server_error(DatabaseErrorKind::Unknown, NOT_READY);
        assert!(is_node_not_ready(&e) && !is_deadlock(&e) && !e.is_connection_failure());
        let mut retries = Retries::default();
        let mut total = Duration::ZERO;
        let mut last = Duration::ZERO;
        let mut attempts = 0;
        while let Some(pause) = retries.next(&e) {
            assert!(pause >= last, "pauses never shrink");
            last = pause;
            total += pause;
            attempts += 1;
        }
        assert_eq!(attempts, NOT_READY_PAUSES.len());
        assert_eq!(total, Duration::from_millis(1975));
        // Its own count: a lost connection and a deadlock after it are
        // still retried.
        let lost = server_error(DatabaseErrorKind::ClosedConnection, "server has gone away");
        assert_eq!(retries.next(&lost), Some(Duration::ZERO));
        let deadlock = server_error(DatabaseErrorKind::Unknown, CERTIFICATION);
        assert!(retries.next(&deadlock).is_some());
    }

    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[test]
    fn galera_retries_more_conflicts() {
        let conflict = server_error(DatabaseErrorKind::SerializationFailure, CERTIFICATION);
        let count = |mut retries: Retries| {
            let (mut n, mut total) = (0, Duration::ZERO);
            while let Some(pause) = retries.next(&conflict) {
                n += 1;
                total += pause;
            }
            (n, total)
        };
        let (one_server, _) = count(Retries::default());
        let (galera, pauses) = count(Retries::galera());
        assert_eq!(
            (one_server, galera),
            (DEADLOCK_RETRIES, GALERA_CONFLICT_RETRIES)
        );
        assert!(
            pauses > Duration::from_millis(1790) && pauses < Duration::from_millis(1830),
            "{pauses:?}"
        );
    }

    #[test]
    fn only_the_not_ready_answer_is_classified_so() {
        for other in [
            CERTIFICATION,
            "Unknown command",
            "Lock wait timeout exceeded; try restarting transaction",
            "Query execution was interrupted (max_statement_time exceeded)",
            "Duplicate entry 'x' for key 'sid'",
            "",
        ] {
            let e = server_error(DatabaseErrorKind::Unknown, other);
            assert!(!is_node_not_ready(&e), "{other}");
        }
        assert!(is_node_not_ready(&server_error(
            DatabaseErrorKind::Unknown,
            "wsrep has not yet prepared node for application use"
        )));
        assert!(!is_node_not_ready(&Error::Timeout {
            timeout: Duration::from_secs(1)
        }));
        // 1213 from a certification failure stays a deadlock, retried with
        // its own backoff (and diesel maps the prepared statement's 1213 to
        // SerializationFailure).
        assert!(is_deadlock(&server_error(
            DatabaseErrorKind::Unknown,
            CERTIFICATION
        )));
        assert!(is_deadlock(&server_error(
            DatabaseErrorKind::SerializationFailure,
            CERTIFICATION
        )));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_connection_whose_node_is_not_ready_is_discarded() {
        // SQLite keeps connections after server errors, so only the rule
        // for 1047 discards this one.
        let e = server_error(DatabaseErrorKind::Unknown, NOT_READY);
        assert!(discard_after::<diesel::SqliteConnection>(&e));
        let other = server_error(DatabaseErrorKind::Unknown, CERTIFICATION);
        assert!(!discard_after::<diesel::SqliteConnection>(&other));
    }
}
