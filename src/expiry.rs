//! Per-session expiry: what a session chose ([`Expiry`]), the deadline that
//! gives its row (the indexed `expires_at` column), and the cookie lifetime
//! that follows from it ([`CookieLifetime`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// How long one session lives: chosen per session with
/// [`Session::set_expiry`](crate::Session::set_expiry), stored inside its
/// encrypted payload (so it survives [`renew`](crate::Session::renew)), and
/// turned at every write and touch into the row's deadline, which every load,
/// write and trim checks in SQL:
///
/// > deadline = min(last activity + idle window, creation + [`Config::max_lifetime`], absolute deadline)
///
/// The sliding refresh (the touch of the idle clock at most once per
/// [`Config::touch_after`]) always uses the session's own idle window.
/// [`Config::max_lifetime`] caps every session, whatever it chose: a
/// per-session expiry can end a session earlier than the store's limits
/// allow, or idle longer, but never outlive the absolute lifetime.
///
/// The cookie follows: see [`CookieLifetime`] and
/// [`CookieAction`](crate::CookieAction).
///
/// "Remember me": 30 days idle instead of the store's default, and a
/// persistent cookie whose `Max-Age` is the session's remaining life.
///
/// ```
/// use std::time::Duration;
/// use stored_session::{Config, CookieAction, CookieLifetime, Expiry, Keyring, SessionStore};
///
/// const DAY: u64 = 24 * 3600;
/// let store = SessionStore::builder(Keyring::generate())
///     .config(Config::default()
///         .idle_timeout(Some(Duration::from_secs(2 * 3600))) // the default: 2 hours idle
///         .max_lifetime(Some(Duration::from_secs(90 * DAY))))
///     .open_migrated("sqlite::memory:")?;
///
/// let mut session = store.load(None)?;
/// session.set_user("alice");
/// session.set_expiry(Expiry::Idle(Duration::from_secs(30 * DAY))); // "remember me" was ticked
/// session.renew();
/// let CookieAction::Set(id, lifetime) = store.save(&mut session)? else { unreachable!() };
/// assert_eq!(lifetime, CookieLifetime::MaxAge(Duration::from_secs(30 * DAY)));
/// # #[cfg(feature = "adapters")]
/// # {
/// // What the adapters send:
/// let cookie = stored_session::adapters::CookiePolicy::new().session_cookie(&id, lifetime);
/// assert!(cookie.header_value().contains("Max-Age=2592000"));
/// # }
///
/// // Next request: the choice came back with the session.
/// let session = store.load(Some(id.as_cookie_value()))?;
/// assert_eq!(session.expiry(), Expiry::Idle(Duration::from_secs(30 * DAY)));
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Expiry {
    /// The store's limits ([`Config::idle_timeout`],
    /// [`Config::max_lifetime`]), and the cookie lifetime of the adapter's
    /// policy ([`CookieLifetime::PolicyDefault`]). Every session starts
    /// with it.
    #[default]
    Default,
    /// This idle window instead of [`Config::idle_timeout`] ("remember
    /// me"); [`Config::max_lifetime`] still applies. The cookie gets a
    /// `Max-Age` of the session's remaining life, renewed with every touch.
    /// Whole seconds; `Idle(Duration::ZERO)` ends the session at its next
    /// save.
    Idle(Duration),
    /// Ends the session at this time at the latest (whole seconds), on top
    /// of the store's limits. The cookie gets a `Max-Age` of the session's
    /// remaining life. A time already past ends the session at its next
    /// save, as [`destroy`](crate::Session::destroy) does.
    At(DateTime<Utc>),
    /// A browser-session cookie (no `Max-Age`, no `Expires`: gone when the
    /// browser closes), whatever the adapter's policy says; the server
    /// still enforces the store's idle timeout and absolute lifetime.
    BrowserSession,
}

/// The session cookie's lifetime, carried by
/// [`CookieAction::Set`](crate::CookieAction::Set) and
/// [`CookieAction::Refresh`](crate::CookieAction::Refresh): what the
/// session's [`Expiry`] says the `Set-Cookie` should carry.
///
/// ```
/// use std::time::Duration;
/// use stored_session::CookieLifetime;
///
/// let policy = Some(Duration::from_secs(3600)); // the adapter's configured Max-Age
/// assert_eq!(CookieLifetime::PolicyDefault.max_age(policy), policy);
/// assert_eq!(CookieLifetime::Session.max_age(policy), None);
/// let remembered = CookieLifetime::MaxAge(Duration::from_secs(86_400));
/// assert_eq!(remembered.max_age(policy), Some(Duration::from_secs(86_400)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CookieLifetime {
    /// Whatever the adapter's cookie policy is configured with
    /// ([`Expiry::Default`]): `CookiePolicy::with_max_age`, a
    /// browser-session cookie unless set.
    PolicyDefault,
    /// A browser-session cookie: no `Max-Age`, no `Expires`
    /// ([`Expiry::BrowserSession`]).
    Session,
    /// A persistent cookie with this `Max-Age`: the session's remaining
    /// life at the time of the save ([`Expiry::Idle`], [`Expiry::At`]).
    MaxAge(Duration),
}

impl CookieLifetime {
    /// The `Max-Age` to write, given the policy's configured one (`None`: a
    /// browser-session cookie).
    pub fn max_age(self, policy: Option<Duration>) -> Option<Duration> {
        match self {
            CookieLifetime::PolicyDefault => policy,
            CookieLifetime::Session => None,
            CookieLifetime::MaxAge(age) => Some(age),
        }
    }
}

/// How an [`Expiry`] other than the default is kept in the encrypted
/// payload (`"e"`; absent for [`Expiry::Default`], so payloads of sessions
/// that never chose one are byte for byte what they were).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredExpiry {
    /// Idle window, seconds.
    #[serde(rename = "i")]
    Idle(u64),
    /// Absolute deadline, Unix seconds.
    #[serde(rename = "a")]
    At(i64),
    /// Browser-session cookie.
    #[serde(rename = "b")]
    BrowserSession,
}

impl Expiry {
    /// The payload form (`None` for the default).
    pub(crate) fn stored(self) -> Option<StoredExpiry> {
        match self {
            Expiry::Default => None,
            Expiry::Idle(d) => Some(StoredExpiry::Idle(d.as_secs())),
            Expiry::At(t) => Some(StoredExpiry::At(t.timestamp())),
            Expiry::BrowserSession => Some(StoredExpiry::BrowserSession),
        }
    }

    /// Back from the payload form. A deadline beyond what `DateTime` holds
    /// is read as the latest it holds (never a panic).
    pub(crate) fn from_stored(stored: Option<StoredExpiry>) -> Expiry {
        match stored {
            None => Expiry::Default,
            Some(StoredExpiry::Idle(secs)) => Expiry::Idle(Duration::from_secs(secs)),
            Some(StoredExpiry::At(at)) => {
                Expiry::At(DateTime::from_timestamp(at, 0).unwrap_or(if at < 0 {
                    DateTime::<Utc>::MIN_UTC
                } else {
                    DateTime::<Utc>::MAX_UTC
                }))
            }
            Some(StoredExpiry::BrowserSession) => Expiry::BrowserSession,
        }
    }

    /// Whether the session chose a life of its own (idle window or
    /// deadline) rather than the store's limits.
    pub(crate) fn is_own(self) -> bool {
        matches!(self, Expiry::Idle(_) | Expiry::At(_))
    }

    /// The absolute deadline it sets, Unix seconds, if any.
    pub(crate) fn at(self) -> Option<i64> {
        match self {
            Expiry::At(t) => Some(t.timestamp()),
            _ => None,
        }
    }

    /// The row deadline (`expires_at`, Unix seconds) of a session created
    /// at `created_at` whose idle clock is at `updated_at`, under `config`:
    /// the earliest of idle window, absolute lifetime and own deadline.
    /// `None` when no limit applies at all (only possible with the store's
    /// limits both disabled), which the SQL reads as "the store's limits".
    pub(crate) fn deadline(self, config: &Config, created_at: i64, updated_at: i64) -> Option<i64> {
        let idle = match self {
            Expiry::Idle(d) => Some(d),
            _ => config.idle_timeout,
        };
        [
            idle.map(|d| updated_at.saturating_add(secs(d))),
            config
                .max_lifetime
                .map(|d| created_at.saturating_add(secs(d))),
            self.at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The cookie lifetime of a session with this expiry whose row has the
    /// deadline `deadline`, at `now`.
    pub(crate) fn cookie_lifetime(self, deadline: Option<i64>, now: i64) -> CookieLifetime {
        match (self, deadline) {
            (Expiry::BrowserSession, _) => CookieLifetime::Session,
            (Expiry::Idle(_) | Expiry::At(_), Some(deadline)) => CookieLifetime::MaxAge(
                Duration::from_secs(u64::try_from(deadline.saturating_sub(now)).unwrap_or(0)),
            ),
            _ => CookieLifetime::PolicyDefault,
        }
    }
}

/// Whole seconds as an `i64` (saturating).
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn config(idle: Option<u64>, lifetime: Option<u64>) -> Config {
        Config::default()
            .idle_timeout(idle.map(Duration::from_secs))
            .max_lifetime(lifetime.map(Duration::from_secs))
    }

    #[test]
    fn deadline_is_the_earliest_limit() {
        let c = config(Some(3600), Some(30 * DAY));
        let (created, updated) = (1_000_000, 1_000_500);
        assert_eq!(
            Expiry::Default.deadline(&c, created, updated),
            Some(updated + 3600)
        );
        assert_eq!(
            Expiry::BrowserSession.deadline(&c, created, updated),
            Some(updated + 3600)
        );
        // The session's own idle window replaces the store's...
        let remember = Expiry::Idle(Duration::from_secs(7 * DAY));
        assert_eq!(
            remember.deadline(&c, created, updated),
            Some(updated + 7 * DAY as i64)
        );
        // ...but the absolute lifetime still caps it.
        let long = Expiry::Idle(Duration::from_secs(60 * DAY));
        assert_eq!(
            long.deadline(&c, created, updated),
            Some(created + 30 * DAY as i64)
        );
        let at = Expiry::At(DateTime::from_timestamp(updated + 60, 0).unwrap());
        assert_eq!(at.deadline(&c, created, updated), Some(updated + 60));
        assert_eq!(
            Expiry::Default.deadline(&config(None, None), created, updated),
            None
        );
        assert_eq!(
            Expiry::Idle(Duration::MAX).deadline(&config(None, None), created, updated),
            Some(i64::MAX)
        );
    }

    #[test]
    fn stored_form_round_trips() {
        for e in [
            Expiry::Default,
            Expiry::Idle(Duration::from_secs(30 * DAY)),
            Expiry::At(DateTime::from_timestamp(1_900_000_000, 0).unwrap()),
            Expiry::BrowserSession,
        ] {
            assert_eq!(Expiry::from_stored(e.stored()), e);
        }
        // Out-of-range deadlines are clamped, never a panic.
        assert_eq!(
            Expiry::from_stored(Some(StoredExpiry::At(i64::MAX))),
            Expiry::At(DateTime::<Utc>::MAX_UTC)
        );
    }

    #[test]
    fn cookie_lifetime_follows_the_expiry() {
        let now = 1_000;
        assert_eq!(
            Expiry::Default.cookie_lifetime(Some(5_000), now),
            CookieLifetime::PolicyDefault
        );
        assert_eq!(
            Expiry::BrowserSession.cookie_lifetime(Some(5_000), now),
            CookieLifetime::Session
        );
        assert_eq!(
            Expiry::Idle(Duration::from_secs(9)).cookie_lifetime(Some(5_000), now),
            CookieLifetime::MaxAge(Duration::from_secs(4_000))
        );
        assert_eq!(
            Expiry::Idle(Duration::from_secs(9)).cookie_lifetime(Some(500), now),
            CookieLifetime::MaxAge(Duration::ZERO)
        );
    }
}
