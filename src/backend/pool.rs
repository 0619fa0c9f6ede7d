//! Pool settings ([`PoolOptions`]) and the steps shared by the backends
//! that open a pool from a URL: timeouts in the units servers take, the
//! first connection that proves the database is reachable (and says why
//! when it is not), and the first checkout.

use std::time::Duration;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use std::sync::Arc;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool, R2D2Connection,
};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::error::{Error, Result};

/// Pool settings used when the store opens its own pool from a URL, and
/// the timeouts that make every store call end within a bound when the
/// database stops answering.
///
/// With the defaults, every database operation on PostgreSQL or MySQL
/// ends, with a result or an error, within the acquire timeout plus the
/// operation timeout (5 s + 5.5 s), less than the acquire timeout plus the
/// statement timeout plus 1 s, even when the server or the network stops
/// answering. On SQLite a write waits at most the acquire timeout for this
/// process's other writers, then at most the busy timeout for another
/// process's lock.
///
/// What applies to a pool you build yourself and pass to
/// [`StoreBuilder::build`](crate::StoreBuilder::build): only
/// `operation_timeout` (the client-side deadline, set by the builder). The
/// connection settings (`connect_timeout`, `tcp_keepalive`) and the
/// server-side timeouts (`statement_timeout`, `lock_timeout`) are applied
/// by [`StoreBuilder::open`](crate::StoreBuilder::open) to the connections
/// it opens; for your own pool, put them in its URL and in a connection
/// customizer (the PostgreSQL parameters and `SET` statements are listed
/// on each field).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Most connections kept open. Default: 8.
    pub max_size: u32,
    /// Longest wait for a free connection before
    /// [`crate::Error::PoolTimeout`]. Default: 5 seconds.
    pub acquire_timeout: Duration,
    /// SQLite `busy_timeout`: how long a writer waits for the lock. Default: 5 seconds.
    pub sqlite_busy_timeout: Duration,
    /// Longest a new connection may take to be established. PostgreSQL:
    /// the libpq `connect_timeout` parameter (whole seconds, rounded up;
    /// libpq waits at least 2 s), added to the URL unless it sets one.
    /// MySQL: not settable through Diesel; the first connection of
    /// [`Database::open`](crate::Database::open) is waited for this long at
    /// most (then [`crate::Error::Connection`]; the attempt goes on, on a
    /// helper thread, until the driver gives up), and a later connection
    /// that never completes occupies one of r2d2's connector threads,
    /// never a caller, which waits `acquire_timeout` at most. Default: 5
    /// seconds.
    pub connect_timeout: Duration,
    /// Longest one statement may run on the server before the server
    /// cancels it with an error (the connection stays usable).
    /// PostgreSQL: `SET statement_timeout` and
    /// `SET idle_in_transaction_session_timeout` (a session idle inside a
    /// transaction that long is ended, releasing its row locks) on each new
    /// connection. MariaDB: `SET SESSION max_statement_time` and
    /// `idle_transaction_timeout` (whole seconds); MySQL: `SET SESSION
    /// max_execution_time` (MySQL applies it to `SELECT`s only). `None`
    /// leaves the server's settings alone. Default: 5 seconds.
    pub statement_timeout: Option<Duration>,
    /// Longest a statement waits for a lock. PostgreSQL: `SET lock_timeout`;
    /// MySQL/MariaDB: `SET SESSION innodb_lock_wait_timeout` (row locks)
    /// and `lock_wait_timeout` (metadata locks), whole seconds, at least 1.
    /// `None` leaves the server's settings alone. Default: 5 seconds.
    pub lock_timeout: Option<Duration>,
    /// The client-side deadline: the longest the store waits for the
    /// database to answer one operation once it holds a connection, for
    /// PostgreSQL and MySQL. Past it the call returns [`crate::Error::Timeout`]
    /// and the connection is abandoned (the pool drops it once its socket
    /// answers or breaks). This is the only timeout that also fires when
    /// the server, or something between, stops answering while the TCP
    /// connection stays up: neither client library has a read timeout that
    /// Diesel can set. Operations then run on a small pool of worker
    /// threads (at most one per connection), which costs two thread
    /// wake-ups per operation: from a few to tens of microseconds,
    /// depending on how busy the machine is (`cargo bench --bench
    /// deadline` measures it). `None` runs them on the caller's thread, as
    /// fast as before and without this guarantee. Keep it above
    /// `statement_timeout`, so that the server reports a slow statement
    /// first and the connection is kept. It also applies to a pool passed
    /// to [`StoreBuilder::build`](crate::StoreBuilder::build). Default:
    /// 5.5 seconds.
    pub operation_timeout: Option<Duration>,
    /// TCP keepalive for PostgreSQL connections, so that the pool notices a
    /// peer that vanished (a crashed host, a dropped route) and a stuck
    /// connection is freed: probes start after this much idle time, repeat
    /// every third of it, and the connection is dropped after 3 unanswered
    /// probes or when sent data stays unacknowledged for twice this time
    /// (libpq `keepalives`, `keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`, `tcp_user_timeout`, each added to the URL unless
    /// it sets it). Not settable through Diesel for MySQL. `None` leaves
    /// libpq's and the system's defaults. Default: 30 seconds.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            lock_timeout: Some(Duration::from_secs(5)),
            operation_timeout: Some(DEFAULT_STATEMENT_TIMEOUT + OPERATION_GRACE),
            tcp_keepalive: Some(Duration::from_secs(30)),
        }
    }
}

impl PoolOptions {
    /// Sets [`PoolOptions::max_size`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::PoolOptions;
    ///
    /// let options = PoolOptions::default()
    ///     .max_size(4)
    ///     .acquire_timeout(Duration::from_secs(2));
    /// assert_eq!((options.max_size, options.acquire_timeout), (4, Duration::from_secs(2)));
    /// ```
    pub fn max_size(mut self, connections: u32) -> Self {
        self.max_size = connections;
        self
    }

    /// Sets [`PoolOptions::acquire_timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::sqlite_busy_timeout`].
    pub fn sqlite_busy_timeout(mut self, timeout: Duration) -> Self {
        self.sqlite_busy_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::statement_timeout`]. With `Some(t)`, an enabled
    /// client-side deadline ([`PoolOptions::operation_timeout`]) moves to
    /// `t` + 0.5 s, so that the server still reports a slow statement first
    /// (set `operation_timeout` after this to choose another value).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::PoolOptions;
    ///
    /// let options = PoolOptions::default().statement_timeout(Some(Duration::from_secs(2)));
    /// assert_eq!(options.operation_timeout, Some(Duration::from_millis(2500)));
    /// ```
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        if let (Some(t), Some(_)) = (timeout, self.operation_timeout) {
            self.operation_timeout = Some(t + OPERATION_GRACE);
        }
        self
    }

    /// Sets [`PoolOptions::lock_timeout`].
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`PoolOptions::tcp_keepalive`].
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }
}

/// The default [`PoolOptions::statement_timeout`].
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much longer than the statement timeout the client waits by default,
/// so that the server's own timeout reports first.
const OPERATION_GRACE: Duration = Duration::from_millis(500);

/// Whole seconds, rounded up, at least 1 (for settings in seconds).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Milliseconds, rounded up, at least 1 (0 would mean "no limit").
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) fn millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000).max(1)
}

/// A connection customizer shared between the first connection of
/// `open` (made on a helper thread) and the pool, so that what it learns
/// once (MariaDB or MySQL) is learnt once.
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(Debug)]
pub(super) struct Shared<S>(pub(super) Arc<S>);

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl<C, S> CustomizeConnection<C, diesel::r2d2::Error> for Shared<S>
where
    C: Send + 'static,
    S: CustomizeConnection<C, diesel::r2d2::Error>,
{
    fn on_acquire(&self, conn: &mut C) -> std::result::Result<(), diesel::r2d2::Error> {
        self.0.on_acquire(conn)
    }
}

/// Makes one connection to `url` and sets it up with `setup`, as the pool
/// will, on a helper thread, and waits at most `timeout` for it: the
/// driver's reason (on one line) when it fails, a note when it does not
/// answer in time. The connection is dropped either way; the pool opens
/// its own.
///
/// This is what makes `open` fail fast and say why: r2d2's own checkout
/// retries a failing connection until the acquire timeout and then
/// reports only that it timed out. A thread that outlives `timeout` (a
/// MySQL server that never answers: libmysqlclient's connect has no
/// timeout Diesel can set) ends when the driver gives up, and drops what
/// it made.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(super) fn first_connection<C, S>(
    url: &str,
    setup: &Arc<S>,
    timeout: Duration,
) -> std::result::Result<(), String>
where
    C: R2D2Connection + 'static,
    S: CustomizeConnection<C, diesel::r2d2::Error>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let manager = ConnectionManager::<C>::new(url);
    let setup = Arc::clone(setup);
    let spawned = std::thread::Builder::new()
        .name("stored-session-connect".into())
        .spawn(move || {
            let result = manager
                .connect()
                .and_then(|mut conn| setup.on_acquire(&mut conn));
            let _ = tx.send(result.map_err(|e| one_line(&e.to_string())));
        });
    if let Err(e) = spawned {
        return Err(format!("could not start a thread to connect: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "no answer within the connect timeout ({timeout:?})"
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("the connecting thread ended without an answer".into())
        }
    }
}

/// A driver's message on one line: libpq's span several (`…failed:
/// Connection refused\n\tIs the server running…`).
pub(super) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finishes a pool the store opened itself, after [`first_connection`]
/// succeeded: one checkout, waited for at most `timeout`, leaves a
/// connection ready in the pool.
///
/// The pools keep no idle minimum (`min_idle(Some(0))`): with one, r2d2
/// replaces checked-out connections on background threads, and a process
/// that exits while such a thread is inside libpq's or libmysqlclient's
/// connection setup can crash in the C libraries' exit handlers.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn checked<C>(
    pool: Pool<ConnectionManager<C>>,
    timeout: Duration,
    what: impl FnOnce() -> String,
) -> Result<Pool<ConnectionManager<C>>>
where
    C: R2D2Connection + 'static,
{
    match pool.get_timeout(timeout) {
        Ok(conn) => {
            drop(conn);
            Ok(pool)
        }
        Err(e) => Err(Error::PoolTimeout {
            timeout,
            message: format!("{}: {e}", what()),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn driver_messages_on_one_line() {
        assert_eq!(
            super::one_line(
                "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\
                 \tIs the server running on that host and accepting TCP/IP connections?\n"
            ),
            "connection to server at \"127.0.0.1\", port 1 failed: Connection refused \
             Is the server running on that host and accepting TCP/IP connections?"
        );
        assert_eq!(super::one_line(""), "");
    }
}
