//! Trimming: deleting expired sessions in batches.
//!
//! Expired sessions are already invisible (every load filters them out in
//! SQL); trimming reclaims their space. A run walks three index ranges:
//! rows past their own deadline (`expires_at`, which every write and touch
//! sets, whatever idle window or deadline the session chose), rows without
//! one (last written before the `expires_at` column existed) idle longer
//! than the store's idle timeout, and rows older than the store's absolute
//! lifetime. Run [`trim_inactive`] from a cron job
//! or the `stored-session trim` command, or keep a [`Trimmer`] thread in the
//! application. [`Trim::run_on`] trims a [`Database`] without a store (and
//! without keys).

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{Cutoffs, Database, TrimRule};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::store::SessionStore;

/// Default number of rows deleted per batch.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// What a trim run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrimReport {
    /// Rows deleted.
    pub deleted: u64,
    /// Batches (DELETE statements) that deleted at least one row.
    pub batches: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl fmt::Display for TrimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Trimmed {} session(s) in {} batch(es)",
            self.deleted, self.batches
        )
    }
}

/// Deletes every expired session (past its own deadline, see
/// [`Expiry`](crate::Expiry), or past the store's limits, per its
/// [`Config`](crate::Config)) in batches of [`DEFAULT_BATCH_SIZE`], each
/// its own short statement.
///
/// # Errors
///
/// Database and pool failures; rows deleted by earlier batches stay deleted.
///
/// ```
/// # use stored_session::{Keyring, SessionStore};
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let report = stored_session::trim_inactive(&store)?;
/// assert_eq!(report.deleted, 0);
/// println!("{report}"); // Trimmed 0 session(s) in 0 batch(es)
/// # Ok::<(), stored_session::Error>(())
/// ```
pub fn trim_inactive(store: &SessionStore) -> Result<TrimReport> {
    Trim::new().run(store)
}

/// A progress callback, called after every batch with the running totals.
type Progress = Box<dyn FnMut(&TrimReport) + Send>;

/// An expiry rule of a trim run: the base setting (the store's, or the
/// given [`Config`]'s), or an override.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// The base setting.
    Base,
    /// This run's setting (`None` disables the rule).
    Override(Option<Duration>),
}

impl Rule {
    /// The setting in force, given the base setting.
    fn or(self, base: Option<Duration>) -> Option<Duration> {
        match self {
            Rule::Base => base,
            Rule::Override(setting) => setting,
        }
    }
}

/// A configurable trim run: batch size, expiry overrides, progress callback.
/// It runs on a store ([`run`](Trim::run)) or, without keys, on a bare
/// [`Database`] under a [`Config`]'s limits ([`run_on`](Trim::run_on)).
///
/// ```
/// use std::time::Duration;
/// # use stored_session::{Keyring, SessionStore};
/// use stored_session::Trim;
/// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let report = Trim::new()
///     .batch_size(500)
///     .idle_timeout(Some(Duration::from_secs(7 * 24 * 3600)))
///     .on_batch(|so_far| eprintln!("{} deleted", so_far.deleted))
///     .run(&store)?;
/// # let _ = report;
/// # Ok::<(), stored_session::Error>(())
/// ```
#[must_use]
pub struct Trim {
    batch_size: usize,
    idle_timeout: Rule,
    max_lifetime: Rule,
    on_batch: Option<Progress>,
}

impl fmt::Debug for Trim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trim")
            .field("batch_size", &self.batch_size)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for Trim {
    fn default() -> Self {
        Self::new()
    }
}

impl Trim {
    /// A run with the store's (or, for [`run_on`](Trim::run_on), the given
    /// [`Config`]'s) expiry settings and batches of [`DEFAULT_BATCH_SIZE`].
    pub fn new() -> Self {
        Trim {
            batch_size: DEFAULT_BATCH_SIZE,
            idle_timeout: Rule::Base,
            max_lifetime: Rule::Base,
            on_batch: None,
        }
    }

    /// Rows per batch (at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Overrides the store's (or config's) idle timeout for this run
    /// (`None` disables the rule). It applies to the rows without a
    /// deadline of their own (last written before the `expires_at` column
    /// existed); every other row is trimmed at its own deadline, which its
    /// last write or touch computed from its session's idle window.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = Rule::Override(timeout);
        self
    }

    /// Overrides the store's (or config's) absolute lifetime for this run
    /// (`None` disables the rule): rows created longer ago are deleted
    /// whatever their deadline. Rows past their own deadline are deleted
    /// either way.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = Rule::Override(lifetime);
        self
    }

    /// Called after every batch with the running totals (for progress bars).
    pub fn on_batch(mut self, f: impl FnMut(&TrimReport) + Send + 'static) -> Self {
        self.on_batch = Some(Box::new(f));
        self
    }

    /// The cutoffs of this run: `config`'s limits unless overridden, at
    /// the time of `config`'s clock.
    fn cutoffs(&self, config: &Config) -> Cutoffs {
        let mut config = config.clone();
        config.idle_timeout = self.idle_timeout.or(config.idle_timeout);
        config.max_lifetime = self.max_lifetime.or(config.max_lifetime);
        config.cutoffs(config.clock.unix())
    }

    /// How many sessions a run would delete now (a dry run; nothing changes).
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    pub fn count(&self, store: &SessionStore) -> Result<u64> {
        self.count_on(store.database(), store.config())
    }

    /// How many sessions a run on `database` would delete now, under
    /// `config`'s limits and clock where this run does not override them
    /// (a dry run; nothing changes). Needs no store and no keys.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, Database, PoolOptions, Trim};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// db.run_migrations()?;
    /// let config = Config::default().idle_timeout(Some(Duration::from_secs(7 * 24 * 3600)));
    /// assert_eq!(Trim::new().count_on(&db, &config)?, 0);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn count_on(&self, database: &Database, config: &Config) -> Result<u64> {
        database.count_expired(self.cutoffs(config))
    }

    /// Deletes the expired sessions, under the store's limits where this
    /// run does not override them, and emits one
    /// [`EventKind::Trim`](crate::EventKind::Trim) event to the store's
    /// subscribers.
    ///
    /// # Errors
    ///
    /// Database and pool failures; earlier batches stay deleted.
    pub fn run(self, store: &SessionStore) -> Result<TrimReport> {
        let report = self.run_on(store.database(), store.config())?;
        store.emit(Event::new(
            EventKind::Trim,
            None,
            report.elapsed,
            report.deleted,
        ));
        Ok(report)
    }

    /// Deletes the sessions of `database` that are expired under `config`'s
    /// limits and clock where this run does not override them
    /// ([`Config::idle_timeout`], [`Config::max_lifetime`]; its other fields
    /// are not used). Needs no store and no keys; as there is no store,
    /// no event is emitted. [`run`](Trim::run) is this with the store's
    /// database and config, plus the event.
    ///
    /// # Errors
    ///
    /// Database and pool failures; earlier batches stay deleted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, Database, PoolOptions, Trim};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// db.run_migrations()?;
    /// let report = Trim::new()
    ///     .batch_size(500)
    ///     .max_lifetime(None) // only the idle timeout below applies
    ///     .run_on(&db, &Config::default().idle_timeout(Some(Duration::from_secs(3600))))?;
    /// assert_eq!((report.deleted, report.batches), (0, 0));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn run_on(mut self, database: &Database, config: &Config) -> Result<TrimReport> {
        let started = Instant::now();
        let cut = self.cutoffs(config);
        let limit = i64::try_from(self.batch_size).unwrap_or(i64::MAX);
        let mut report = TrimReport::default();
        for (rule, cutoff) in [
            (TrimRule::Deadline, cut.now),
            (TrimRule::Idle, cut.idle),
            (TrimRule::Lifetime, cut.lifetime),
        ] {
            if cutoff == i64::MIN {
                continue; // rule disabled
            }
            loop {
                let ids = database.expired_ids(rule, cut, limit)?;
                if ids.is_empty() {
                    break;
                }
                let deleted = database.delete_expired(&ids, rule, cut)?;
                if deleted > 0 {
                    report.deleted += deleted as u64;
                    report.batches += 1;
                    report.elapsed = started.elapsed();
                    if let Some(f) = self.on_batch.as_mut() {
                        f(&report);
                    }
                } else if ids.len() < self.batch_size {
                    break;
                }
                // A batch in which every row was touched meanwhile deletes
                // nothing; those rows no longer match, so the next select
                // moves on.
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Runs [`trim_inactive`] on its own thread every `interval`.
///
/// A failed run is logged (`log::error!`, target `stored_session`) and the
/// next run happens on schedule: the thread never dies silently. Dropping
/// the `Trimmer` (or calling [`stop`](Trimmer::stop)) stops it promptly,
/// waiting at most for a batch in flight.
///
/// ```
/// use std::time::Duration;
/// # use stored_session::{Keyring, SessionStore};
/// use stored_session::Trimmer;
/// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let trimmer = Trimmer::start(store.clone(), Duration::from_secs(3600));
/// // … the application runs …
/// trimmer.stop();
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug)]
pub struct Trimmer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Trimmer {
    /// Starts the thread with the default batch size. The first run happens
    /// right away.
    pub fn start(store: SessionStore, interval: Duration) -> Self {
        Self::start_with(store, interval, DEFAULT_BATCH_SIZE)
    }

    /// Starts the thread with a given batch size.
    ///
    /// # Panics
    ///
    /// If the operating system refuses to start a thread.
    pub fn start_with(store: SessionStore, interval: Duration, batch_size: usize) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stored-session-trimmer".into())
            .spawn(move || loop {
                match Trim::new().batch_size(batch_size).run(&store) {
                    Ok(report) if report.deleted > 0 => {
                        log::info!(target: "stored_session", "{report} ({:?})", report.elapsed)
                    }
                    Ok(_) => {}
                    Err(e) => log::error!(target: "stored_session", "trimming sessions failed (will retry in {interval:?}): {e}"),
                }
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .expect("could not start the trimmer thread");
        Trimmer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!(target: "stored_session", "the trimmer thread panicked");
            }
        }
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[allow(dead_code)]
fn _error_is_send(e: Error) -> impl Send {
    e
}
