//! Time source for expiry decisions, injectable so tests never sleep.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where the store reads the current time from (Unix seconds).
///
/// [`Clock::system`] is the default; [`ManualClock`] gives tests a clock they
/// move by hand.
///
/// ```
/// use stored_session::Clock;
///
/// let clock = Clock::system();
/// assert!(clock.now().timestamp() > 1_700_000_000);
/// ```
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<AtomicI64>),
    Custom(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>),
}

impl Clock {
    /// The operating system's wall clock.
    pub fn system() -> Self {
        Clock(Source::System)
    }

    /// A clock backed by any function, e.g. one shared with the application.
    ///
    /// ```
    /// let fixed = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    /// let clock = stored_session::Clock::from_fn(move || fixed);
    /// assert_eq!(clock.now(), fixed);
    /// ```
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Source::Custom(Arc::new(f)))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.unix(), 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The current time in whole Unix seconds, as stored in the table.
    pub(crate) fn unix(&self) -> i64 {
        match &self.0 {
            Source::System => Utc::now().timestamp(),
            Source::Manual(t) => t.load(Ordering::SeqCst),
            Source::Custom(f) => f().timestamp(),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Manual(t) => write!(f, "Clock::manual({})", t.load(Ordering::SeqCst)),
            Source::Custom(_) => f.write_str("Clock::from_fn"),
        }
    }
}

/// A clock that moves only when told to. Cloning shares the same time.
///
/// ```
/// use std::time::Duration;
/// use stored_session::ManualClock;
///
/// let manual = ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
/// let clock = manual.clock();
/// manual.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().timestamp(), 1_800_000_060);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.timestamp())))
    }

    /// A clock stopped at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(Utc::now())
    }

    /// The [`Clock`] to hand to the store's configuration.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the time.
    pub fn set(&self, to: DateTime<Utc>) {
        self.0.store(to.timestamp(), Ordering::SeqCst);
    }

    /// The time the clock shows.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }
}
