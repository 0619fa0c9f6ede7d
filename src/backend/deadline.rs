//! The client-side deadline of the network backends.
//!
//! Neither libpq nor the MySQL client library lets Diesel set a read
//! timeout, and none of the server-side or TCP-level timeouts can fire when
//! the peer's kernel keeps acknowledging while nothing answers (a hung
//! server, a frozen middlebox). A thread blocked in the client library
//! cannot be interrupted either. So each operation on a PostgreSQL or MySQL
//! pool runs on a worker thread, and the caller waits for it at most until
//! the deadline ([`PoolOptions::operation_timeout`](super::PoolOptions)).
//!
//! * The caller checks the connection out (bounded by the pool's acquire
//!   timeout) and hands it, with the operation (a `'static + Send` closure
//!   owning its inputs), to an idle worker, or to a new one when none is
//!   idle.
//! * On expiry the caller returns [`Error::Timeout`]. The worker keeps the
//!   connection until the socket answers or breaks. A connection that broke
//!   is marked so, and the pool drops it; one that answered has completed
//!   (or rolled back) its work and goes back to the pool, which wakes a
//!   caller waiting for a connection at once (r2d2 does not wake waiters
//!   when it drops a broken connection, so the worker then asks the pool
//!   to open a replacement).
//! * A worker is busy only while it holds a checked-out connection, and a
//!   new one is started only when every existing one is busy, so a pool
//!   never has more workers than connections: a dead database cannot grow
//!   threads. Idle workers exit after [`IDLE_EXIT`], or when the last clone
//!   of the [`Database`](super::Database) is dropped.
//! * The one operation that calls back into the store mid-transaction (the
//!   locked write plan: read under lock, merge and seal, write) asks the
//!   caller over the same channel, so the plan keeps running on the
//!   caller's thread with its borrows.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection, R2D2Connection};

use super::dialect::Dialect;
use super::rows::{Plan, Row};
use super::runner::{discard_after, no_plan, replace_broken, run_with, Retries};
use crate::error::{Error, Result};

/// How long an idle worker waits for work before it exits.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(60);

/// The workers' thread name (short enough for Linux's 15-byte limit).
pub(crate) const WORKER_NAME: &str = "stored-sess-db";

/// The callback through which an operation asks the caller for a write plan.
pub(crate) type Ask<'a> = &'a mut dyn FnMut(Option<Row>) -> Result<Plan>;

/// An r2d2 pool of a network backend, with the store's client-side deadline
/// for each operation on it.
///
/// Dereferences to the pool, so everything a `Pool` offers (`get`,
/// `state`, `max_size`, …) works on it directly. Made by
/// [`Database::from`](super::Database) and by
/// [`StoreBuilder`](crate::StoreBuilder); the deadline is
/// [`PoolOptions::operation_timeout`](super::PoolOptions::operation_timeout).
pub struct Connections<C: R2D2Connection + 'static> {
    pool: Pool<ConnectionManager<C>>,
    timeout: Option<Duration>,
    workers: Arc<Workers>,
    /// A Galera cluster node (found when the store opened the pool): more
    /// conflicts are retried ([`Retries::galera`]).
    galera: bool,
}

impl<C: R2D2Connection + 'static> Clone for Connections<C> {
    fn clone(&self) -> Self {
        Connections {
            pool: self.pool.clone(),
            timeout: self.timeout,
            workers: self.workers.clone(),
            galera: self.galera,
        }
    }
}

impl<C: R2D2Connection + 'static> std::fmt::Debug for Connections<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("state", &self.pool.state())
            .field("operation_timeout", &self.timeout)
            .finish()
    }
}

impl<C: R2D2Connection + 'static> std::ops::Deref for Connections<C> {
    type Target = Pool<ConnectionManager<C>>;

    fn deref(&self) -> &Self::Target {
        &self.pool
    }
}

impl<C: R2D2Connection + 'static> Connections<C> {
    pub(crate) fn new(pool: Pool<ConnectionManager<C>>, timeout: Option<Duration>) -> Self {
        Connections {
            pool,
            timeout,
            workers: Arc::new(Workers::default()),
            galera: false,
        }
    }

    /// The same pool, known to reach a Galera cluster node (see
    /// [`Retries::galera`]).
    #[cfg(feature = "mysql")]
    pub(crate) fn on_galera(mut self, galera: bool) -> Self {
        self.galera = galera;
        self
    }

    /// The retries of one operation on this pool.
    fn retries(&self) -> Retries {
        if self.galera {
            Retries::galera()
        } else {
            Retries::default()
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool<ConnectionManager<C>> {
        &self.pool
    }

    /// The longest the store waits for the database to answer one
    /// operation once it holds a connection (`None`: no client-side
    /// deadline; operations run on the caller's thread).
    pub fn operation_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The same pool and workers with another deadline.
    pub(crate) fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Runs `f` on a connection of `conns`' pool, within the deadline when
/// there is one (see the module docs), with [`run`](super::runner::run)'s retries.
pub(crate) fn run<C, T, F>(conns: &Connections<C>, plan: Option<Ask<'_>>, f: F) -> Result<T>
where
    C: R2D2Connection
        + Connection<TransactionManager = AnsiTransactionManager>
        + Dialect
        + Send
        + 'static,
    T: Send + 'static,
    F: FnMut(&mut C, Ask<'_>) -> Result<T> + Send + 'static,
{
    let Some(limit) = conns.timeout else {
        return run_with(&conns.pool, conns.retries(), plan, f);
    };
    let mut plan = plan;
    let acquire = conns.pool.connection_timeout();
    // One budget for the whole call, retries included: a retry never
    // makes the call wait longer than one acquire plus one deadline.
    let budget_end = Instant::now() + acquire + limit;
    let mut retries = conns.retries();
    let mut f = f;
    loop {
        let wait = acquire.min(budget_end.saturating_duration_since(Instant::now()));
        let conn = conns
            .pool
            .get_timeout(wait)
            .map_err(|e| Error::PoolTimeout {
                timeout: acquire,
                message: e.to_string(),
            })?;
        let deadline = (Instant::now() + limit).min(budget_end);
        let asking = plan.as_deref_mut();
        let (back, result) = match call(&conns.workers, &conns.pool, conn, f, deadline, asking) {
            Outcome::Done(back, result) => (back, result),
            Outcome::TimedOut => {
                log::warn!(target: "stored_session", "the session database did not answer within {limit:?}; its connection is abandoned");
                return Err(Error::Timeout { timeout: limit });
            }
            Outcome::Lost => {
                return Err(Error::TaskAborted(
                    "the session database worker ended without an answer",
                ))
            }
        };
        f = back;
        match result {
            Err(e) => match retries.next(&e) {
                Some(pause) if Instant::now() + pause + Duration::from_millis(1) < budget_end => {
                    std::thread::sleep(pause);
                }
                _ => return Err(e),
            },
            ok => return ok,
        }
    }
}

/// What a worker sends back to the waiting caller.
enum Reply<F, T> {
    /// The operation needs the write plan for this row.
    Ask(Option<Row>),
    /// The operation ended (the connection is back in the pool, or
    /// discarded); the closure comes back for a retry.
    Done(F, Result<T>),
    /// The operation panicked; the caller resumes the panic.
    Panic(Box<dyn Any + Send>),
}

enum Outcome<F, T> {
    Done(F, Result<T>),
    TimedOut,
    Lost,
}

/// Runs `f` on `conn` on a worker; waits until `deadline` at most.
fn call<'p, C, F, T>(
    workers: &Arc<Workers>,
    pool: &Pool<ConnectionManager<C>>,
    conn: PooledConnection<ConnectionManager<C>>,
    f: F,
    deadline: Instant,
    mut plan: Option<&mut (dyn FnMut(Option<Row>) -> Result<Plan> + 'p)>,
) -> Outcome<F, T>
where
    C: R2D2Connection
        + Connection<TransactionManager = AnsiTransactionManager>
        + Dialect
        + Send
        + 'static,
    T: Send + 'static,
    F: FnMut(&mut C, Ask<'_>) -> Result<T> + Send + 'static,
{
    // Capacity 1 is enough: the worker sends at most one message before it
    // waits for an answer (Ask) or ends (Done, Panic); it never blocks.
    let (reply_tx, reply_rx) = mpsc::sync_channel::<Reply<F, T>>(1);
    // Only an operation with a plan gets a channel for the answers.
    let (answer_tx, answer_rx) = match plan {
        Some(_) => {
            let (tx, rx) = mpsc::sync_channel::<Result<Plan>>(1);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let pool = pool.clone();
    let job: Job = Box::new(move |ready: &mut dyn FnMut()| {
        let mut conn = conn;
        let mut f = f;
        let mut ask = |row: Option<Row>| -> Result<Plan> {
            let Some(answers) = &answer_rx else {
                return no_plan(row);
            };
            reply_tx.send(Reply::Ask(row)).map_err(|_| gone())?;
            answers.recv().unwrap_or_else(|_| Err(gone()))
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *conn, &mut ask)));
        let broken = match &outcome {
            Ok(Err(e)) => discard_after::<C>(e),
            Ok(Ok(_)) => false,
            Err(_) => true,
        };
        if broken {
            AnsiTransactionManager::transaction_manager_status_mut(&mut *conn).set_in_error();
        }
        // Idle before the connection goes back and before the caller
        // wakes: whoever checks the connection out next finds this worker
        // instead of starting another one (so there are never more
        // workers than connections). A job sent meanwhile waits in this
        // worker's channel.
        ready();
        drop(conn);
        if broken {
            replace_broken(&pool);
        }
        let reply = match outcome {
            Ok(result) => Reply::Done(f, result),
            Err(panic) => Reply::Panic(panic),
        };
        let _ = reply_tx.send(reply);
    });
    workers.dispatch(job);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reply_rx.recv_timeout(left) {
            Ok(Reply::Ask(row)) => {
                if let (Some(plan), Some(answers)) = (plan.as_deref_mut(), &answer_tx) {
                    let _ = answers.send(plan(row));
                }
            }
            Ok(Reply::Done(f, result)) => return Outcome::Done(f, result),
            Ok(Reply::Panic(panic)) => resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => return Outcome::TimedOut,
            Err(RecvTimeoutError::Disconnected) => return Outcome::Lost,
        }
    }
}

/// The error an abandoned operation sees when it asks for its write plan
/// (nobody reads it: the caller has returned).
fn gone() -> Error {
    Error::TaskAborted("the caller stopped waiting for the session database")
}

/// A unit of work for a worker; it calls `ready` once it is done with its
/// connection, just before giving it back.
type Job = Box<dyn FnOnce(&mut dyn FnMut()) + Send>;

/// The workers of one pool: the idle ones, most recently used last.
#[derive(Default)]
struct Workers {
    idle: Mutex<Vec<Idle>>,
    next_id: AtomicU64,
}

struct Idle {
    id: u64,
    /// `None` tells the worker to exit.
    tx: mpsc::Sender<Option<Job>>,
}

impl Workers {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `job` to the most recently idle worker, or to a new one.
    fn dispatch(self: &Arc<Self>, mut job: Job) {
        loop {
            let Some(worker) = self.idle().pop() else {
                break;
            };
            match worker.tx.send(Some(job)) {
                Ok(()) => return,
                // That worker has exited: try the next one.
                Err(mpsc::SendError(back)) => match back {
                    Some(back) => job = back,
                    None => return,
                },
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let weak = Arc::downgrade(self);
        let slot = Arc::new(Mutex::new(Some(job)));
        let first = slot.clone();
        let spawned = std::thread::Builder::new()
            .name(WORKER_NAME.into())
            .spawn(move || {
                let job = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(job) = job {
                    work(weak, id, tx, rx, job);
                }
            });
        if let Err(e) = spawned {
            // No thread to be had: run the job here, without a deadline,
            // rather than failing the request.
            log::warn!(target: "stored_session", "could not start a session database worker ({e}); running the operation on the caller's thread");
            let job = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(job) = job {
                job(&mut || {});
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in self
            .idle
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = worker.tx.send(None);
        }
    }
}

/// A worker's life: run a job, become idle, wait for the next one.
fn work(
    workers: Weak<Workers>,
    id: u64,
    tx: mpsc::Sender<Option<Job>>,
    rx: mpsc::Receiver<Option<Job>>,
    mut job: Job,
) {
    loop {
        let mut registered = false;
        job(&mut || {
            if let Some(workers) = workers.upgrade() {
                workers.idle().push(Idle { id, tx: tx.clone() });
                registered = true;
            }
        });
        if !registered {
            // The pool is gone.
            return;
        }
        job = loop {
            match rx.recv_timeout(IDLE_EXIT) {
                Ok(Some(next)) => break next,
                Ok(None) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    let Some(workers) = workers.upgrade() else {
                        return;
                    };
                    let mut idle = workers.idle();
                    if let Some(at) = idle.iter().position(|w| w.id == id) {
                        idle.remove(at);
                        return;
                    }
                    // Taken off the idle list just now: a job is on its way.
                }
            }
        };
    }
}

/// The mechanism on in-memory SQLite connections (the store never runs
/// SQLite here; the tests only need a connection type the build has).
#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use diesel::SqliteConnection;

    use super::*;

    fn conns(max: u32, timeout: Option<Duration>) -> Connections<SqliteConnection> {
        let pool = Pool::builder()
            .max_size(max)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(1))
            .test_on_check_out(false)
            .build_unchecked(ConnectionManager::new(":memory:"));
        Connections::new(pool, timeout)
    }

    #[test]
    fn a_stuck_operation_ends_at_the_deadline_and_its_connection_comes_back() {
        let conns = conns(1, Some(Duration::from_millis(100)));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let started = Instant::now();
        let result: Result<()> = run(&conns, None, move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        });
        let waited = started.elapsed();
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_millis(350), "{waited:?}");
        // The one connection is back once the stuck operation ends: the
        // next call waits for it (acquire timeout 1 s), then succeeds.
        let n: i64 = run(&conns, None, |c, _| {
            use diesel::RunQueryDsl;
            diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("42"))
                .get_result(c)
                .map_err(Error::from)
        })
        .unwrap();
        assert_eq!(n, 42);
        // A timed-out operation was never run again.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_plan_is_computed_on_the_callers_thread() {
        let conns = conns(2, Some(Duration::from_secs(5)));
        let caller = std::thread::current().id();
        let mut asked_on = None;
        let mut plan = |row: Option<Row>| {
            assert!(row.is_none());
            asked_on = Some(std::thread::current().id());
            Ok(Plan::Delete)
        };
        let ran_on = run(&conns, Some(&mut plan), |_, ask| {
            assert!(matches!(ask(None)?, Plan::Delete));
            Ok(std::thread::current().id())
        })
        .unwrap();
        assert_eq!(asked_on, Some(caller));
        assert_ne!(ran_on, caller);
    }

    #[test]
    fn without_a_deadline_operations_run_on_the_callers_thread() {
        let conns = conns(1, None);
        let ran_on = run(&conns, None, |_, _| Ok(std::thread::current().id())).unwrap();
        assert_eq!(ran_on, std::thread::current().id());
    }

    #[test]
    fn workers_are_reused() {
        let conns = conns(4, Some(Duration::from_secs(5)));
        for _ in 0..50 {
            run(&conns, None, |_, _| Ok(())).unwrap();
        }
        assert_eq!(conns.workers.next_id.load(Ordering::SeqCst), 1);
        // Concurrent callers get at most one worker per connection.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        run(&conns, None, |_, _| Ok(())).unwrap();
                    }
                });
            }
        });
        assert!(conns.workers.next_id.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn a_panic_reaches_the_caller_and_the_pool_recovers() {
        let conns = conns(1, Some(Duration::from_secs(5)));
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let _: Result<()> = run(&conns, None, |_, _| panic!("in the operation"));
        }));
        assert!(caught.is_err());
        run(&conns, None, |_, _| Ok(())).unwrap();
    }

    #[test]
    fn workers_run_named_threads_and_do_not_keep_the_pool_alive() {
        let conns = conns(1, Some(Duration::from_secs(5)));
        let worker = run(&conns, None, |_, _| {
            Ok(std::thread::current().name().map(str::to_owned))
        })
        .unwrap();
        assert_eq!(worker.as_deref(), Some(WORKER_NAME));
        let weak = Arc::downgrade(&conns.workers);
        drop(conns);
        assert!(weak.upgrade().is_none());
    }
}
