//! Store policy: expiry, write rules, limits.

use std::time::Duration;

use crate::backend::Cutoffs;
use crate::check::StartupCheck;
use crate::clock::Clock;

/// How a [`SessionStore`](crate::SessionStore) treats sessions.
///
/// Every field has a production default; change what you need:
///
/// ```
/// use std::time::Duration;
/// use stored_session::Config;
///
/// let config = Config::default()
///     .idle_timeout(Some(Duration::from_secs(2 * 60 * 60)))
///     .max_lifetime(Some(Duration::from_secs(7 * 24 * 60 * 60)))
///     .max_payload(64 * 1024);
/// assert_eq!(config.touch_after, Duration::from_secs(300));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// A session unused for this long is gone (enforced in SQL at load),
    /// unless it chose its own idle window
    /// ([`Session::set_expiry`](crate::Session::set_expiry) with
    /// [`Expiry::Idle`](crate::Expiry::Idle)). `None` disables idle expiry.
    /// Default: 30 days.
    ///
    /// Each write and touch stores the session's deadline in its row
    /// (`expires_at`), so a change of this setting reaches a session at its
    /// next write or touch: until then it keeps the deadline it was given.
    pub idle_timeout: Option<Duration>,
    /// A session older than this (since its creation; renewing keeps it) is
    /// gone, however active and whatever expiry it chose. `None` disables
    /// it. Default: 30 days. A shorter setting applies at once to every
    /// session; a longer one reaches each at its next write or touch (see
    /// [`idle_timeout`](Config::idle_timeout)).
    pub max_lifetime: Option<Duration>,
    /// The idle clock (`updated_at`) is refreshed at most this often: an
    /// unchanged session gets a "touch" (one UPDATE of `updated_at` only)
    /// when its clock is older than this, and a data write moves the clock
    /// only then too, so the idle timeout is precise to within this and most
    /// writes leave the indexed column alone. Default: 5 minutes.
    pub touch_after: Duration,
    /// Largest encrypted session accepted, in bytes; a larger one is an
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge) and nothing
    /// is written. Default: 1 MiB.
    pub max_payload: usize,
    /// How many derived record keys to keep in memory. Default: 10,000.
    pub key_cache_size: usize,
    /// Where the time comes from. Default: the system clock.
    pub clock: Clock,
    /// Whether the built-in subscriber logs every event through `log` at
    /// debug level (target `stored_session`). Default: true.
    pub log_events: bool,
    /// Which client metadata sessions record. Default: none.
    pub metadata: crate::MetadataPolicy,
    /// Most live sessions one user may have, or `None` for no limit
    /// (the default). Enforced when a commit binds a session to a user
    /// ([`Session::set_user`](crate::Session::set_user) then
    /// [`save`](crate::SessionStore::save), usually with
    /// [`renew`](crate::Session::renew): a login): the user's oldest live
    /// sessions beyond the cap are revoked, oldest first by when their row
    /// was created (a renew creates a new row). The session being committed
    /// is always kept, and so is any session whose row is newer than it, so
    /// two simultaneous logins never end each other. `Some(0)` counts as
    /// `Some(1)`. The work is bounded: one indexed read of at most `cap + 1`
    /// ids per key on the ring and one ranged `DELETE`. A failure to
    /// enforce the cap is logged (target `stored_session`, level warn) and
    /// does not fail the commit, whose cookie must still reach the browser.
    pub max_sessions_per_user: Option<u32>,
    /// What [`StoreBuilder::open`](crate::StoreBuilder::open) and
    /// [`open_migrated`](crate::StoreBuilder::open_migrated) do with the
    /// start-up check ([`SessionStore::check`](crate::SessionStore::check):
    /// the table exists, and the keyring opens the most recent sessions).
    /// Default: [`StartupCheck::Warn`].
    pub startup_check: StartupCheck,
    /// The GeoIP database that places sessions: with one, a session records
    /// its client's country and city (encrypted, with its metadata) when it
    /// is created, at each login (a save that renews it or binds it to a
    /// user) and when its client moves to another network; see
    /// [`SessionInfo::location`](crate::SessionInfo::location). When `None`
    /// (the default), [`StoreBuilder::open`](crate::StoreBuilder::open) and
    /// [`open_migrated`](crate::StoreBuilder::open_migrated) open the file
    /// named by the environment variable `STORED_SESSION_GEOIP`, if set
    /// ([`GeoIp::from_env`](crate::GeoIp::from_env)).
    #[cfg(feature = "geoip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "geoip")))]
    pub geoip: Option<crate::GeoIp>,
    /// Whether sessions record a device label parsed from the client's
    /// `User-Agent` ("Firefox on Linux"; encrypted, with the metadata) when
    /// they are created and at each login; see
    /// [`SessionInfo::device`](crate::SessionInfo::device). The user agent
    /// itself is recorded only if [`Config::metadata`] says so. Default:
    /// false.
    #[cfg(feature = "devices")]
    #[cfg_attr(docsrs, doc(cfg(feature = "devices")))]
    pub devices: bool,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Some(Duration::from_secs(30 * DAY)),
            max_lifetime: Some(Duration::from_secs(30 * DAY)),
            touch_after: Duration::from_secs(300),
            max_payload: 1024 * 1024,
            key_cache_size: 10_000,
            clock: Clock::system(),
            log_events: true,
            metadata: crate::MetadataPolicy::default(),
            max_sessions_per_user: None,
            startup_check: StartupCheck::default(),
            #[cfg(feature = "geoip")]
            geoip: None,
            #[cfg(feature = "devices")]
            devices: false,
        }
    }
}

impl Config {
    /// Sets [`Config::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`Config::max_lifetime`].
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Sets [`Config::touch_after`].
    pub fn touch_after(mut self, after: Duration) -> Self {
        self.touch_after = after;
        self
    }

    /// Sets [`Config::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`Config::key_cache_size`].
    pub fn key_cache_size(mut self, entries: usize) -> Self {
        self.key_cache_size = entries;
        self
    }

    /// Sets [`Config::clock`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets [`Config::log_events`].
    pub fn log_events(mut self, on: bool) -> Self {
        self.log_events = on;
        self
    }

    /// Sets [`Config::metadata`].
    pub fn metadata(mut self, policy: crate::MetadataPolicy) -> Self {
        self.metadata = policy;
        self
    }

    /// Sets [`Config::max_sessions_per_user`].
    ///
    /// ```
    /// use stored_session::Config;
    ///
    /// let config = Config::default().max_sessions_per_user(Some(10));
    /// assert_eq!(config.max_sessions_per_user, Some(10));
    /// assert_eq!(Config::default().max_sessions_per_user, None);
    /// ```
    pub fn max_sessions_per_user(mut self, cap: Option<u32>) -> Self {
        self.max_sessions_per_user = cap;
        self
    }

    /// Sets [`Config::startup_check`].
    ///
    /// ```
    /// use stored_session::{Config, StartupCheck};
    ///
    /// let config = Config::default().startup_check(StartupCheck::Fail);
    /// assert_eq!(config.startup_check, StartupCheck::Fail);
    /// assert_eq!(Config::default().startup_check, StartupCheck::Warn);
    /// ```
    pub fn startup_check(mut self, policy: StartupCheck) -> Self {
        self.startup_check = policy;
        self
    }

    /// Sets [`Config::geoip`]. A missing or damaged file is an
    /// [`Error::Config`](crate::Error::Config) from
    /// [`GeoIp::open`](crate::GeoIp::open), at start-up.
    ///
    /// ```no_run
    /// use stored_session::{Config, GeoIp};
    ///
    /// let config = Config::default().geoip(Some(GeoIp::open("GeoLite2-City.mmdb")?));
    /// # let _ = config;
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    #[cfg(feature = "geoip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "geoip")))]
    pub fn geoip(mut self, database: Option<crate::GeoIp>) -> Self {
        self.geoip = database;
        self
    }

    /// Sets [`Config::devices`].
    ///
    /// ```
    /// use stored_session::Config;
    ///
    /// assert!(Config::default().devices(true).devices);
    /// assert!(!Config::default().devices);
    /// ```
    #[cfg(feature = "devices")]
    #[cfg_attr(docsrs, doc(cfg(feature = "devices")))]
    pub fn devices(mut self, on: bool) -> Self {
        self.devices = on;
        self
    }

    /// The oldest `updated_at` a live session may have at `now`.
    pub(crate) fn idle_cutoff(&self, now: i64) -> i64 {
        cutoff(now, self.idle_timeout)
    }

    /// The oldest `created_at` a live session may have at `now`.
    pub(crate) fn lifetime_cutoff(&self, now: i64) -> i64 {
        cutoff(now, self.max_lifetime)
    }

    /// Both cutoffs at `now`: a row at or below either is expired.
    pub(crate) fn cutoffs(&self, now: i64) -> Cutoffs {
        Cutoffs {
            idle: self.idle_cutoff(now),
            lifetime: self.lifetime_cutoff(now),
            now,
        }
    }
}

/// Rows with a time `<=` the cutoff are expired. `i64::MIN` disables the check.
fn cutoff(now: i64, limit: Option<Duration>) -> i64 {
    match limit {
        Some(d) => now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        None => i64::MIN,
    }
}
