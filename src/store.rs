//! `SessionStore`: the policy layer (expiry, write rules, merging, events).

use std::fmt;
use std::sync::Arc;

use crate::backend::{
    Applied, Binding, Cutoffs, Database, NewRow, Plan, PoolOptions, RenewResult, Row, UserLock,
};
use crate::codec::{LoadedPayload, PayloadRef};
use crate::config::Config;
use crate::crypto::{Macs, OpenError, Salt, SaltChoice, Sealer};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind, Events, RejectReason, Stopwatch, SubscriptionId};
use crate::expiry::{CookieLifetime, Expiry};
use crate::id::{SessionId, StoredId};
use crate::metadata::ClientRecorder;
use crate::session::{Record, Session};
use crate::wipe::WipedBytes;
use crate::Keyring;

/// How many fresh ids an insert tries before giving up on unique-key
/// collisions (with 256-bit ids a second try never happens in practice).
const INSERT_ATTEMPTS: usize = 3;

/// The encrypted, database-backed session store.
///
/// Cheap to clone (an `Arc` inside), `Send + Sync`: build one at start-up and
/// share it. Every method blocks on the database; in async code call it from
/// a blocking task.
///
/// ```
/// use stored_session::{CookieAction, Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
///
/// // First request: no cookie. Store something; commit says which cookie to set.
/// let mut session = store.load(None)?;
/// session.insert("user_id", &42u64)?;
/// let cookie = match store.save(&mut session)? {
///     CookieAction::Set(id, _lifetime) => id,
///     other => unreachable!("{other:?}"),
/// };
///
/// // Next request: the browser sends the cookie back.
/// let session = store.load(Some(cookie.as_cookie_value()))?;
/// assert_eq!(session.get::<u64>("user_id")?, Some(42));
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    sealer: Sealer,
    /// The user binding and reference keys (see `crypto::hmac`).
    macs: Macs,
    config: Config,
    events: Events,
    /// What sessions record about their client beyond the metadata policy
    /// (location, device, network); `None` when nothing.
    client: Option<Arc<ClientRecorder>>,
}

/// What the response must do with the session cookie after a
/// [`save`](SessionStore::save).
///
/// [`Set`](CookieAction::Set) and [`Refresh`](CookieAction::Refresh) carry
/// the cookie's lifetime, which follows the session's
/// [`Expiry`](crate::Expiry): the adapter's policy default, a
/// browser-session cookie, or a `Max-Age` of the session's remaining life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the cookie must be set or removed on the response"]
pub enum CookieAction {
    /// Leave the cookie alone.
    Keep,
    /// Set the session cookie to this id, with this lifetime: a new or
    /// renewed session, or one whose [`Expiry`](crate::Expiry) changed (the
    /// same id, written again so the cookie gets or loses its `Max-Age`).
    Set(SessionId, CookieLifetime),
    /// Remove the session cookie (destroyed, emptied, or it named a session
    /// that no longer exists).
    Remove,
    /// The id is unchanged but the store moved the session's idle clock (a
    /// data write or a touch, see [`Config::touch_after`]) and with it the
    /// session's deadline: a persistent cookie (one whose lifetime has a
    /// `Max-Age`, see [`CookieLifetime::max_age`]) should be sent again
    /// with this id and lifetime so its expiry follows the session's. A
    /// browser-session cookie (no `Max-Age`) may be left alone, as for
    /// [`Keep`](CookieAction::Keep).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, CookieAction, CookieLifetime, Keyring, ManualClock, SessionStore};
    ///
    /// let clock = ManualClock::starting_now();
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .config(Config::default().touch_after(Duration::from_secs(60)).clock(clock.clock()))
    ///     .open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.insert("k", &1)?;
    /// let CookieAction::Set(id, lifetime) = store.save(&mut session)? else { unreachable!() };
    /// assert_eq!(lifetime, CookieLifetime::PolicyDefault); // the session kept Expiry::Default
    ///
    /// // Within `touch_after`: the idle clock stays, nothing to resend.
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// assert_eq!(store.save(&mut session)?, CookieAction::Keep);
    ///
    /// // Later, a read alone touches the row: resend the same id.
    /// clock.advance(Duration::from_secs(61));
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// assert_eq!(store.save(&mut session)?, CookieAction::Refresh(id, CookieLifetime::PolicyDefault));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    Refresh(SessionId, CookieLifetime),
}

/// Builds a [`SessionStore`] from three parts: the keys (given to
/// [`SessionStore::builder`]), the policy ([`Config`], through
/// [`config`](StoreBuilder::config)) and the connection settings
/// ([`PoolOptions`], through [`pool`](StoreBuilder::pool)), then the
/// database ([`open`](StoreBuilder::open) a URL or
/// [`build`](StoreBuilder::build) on a pool). Each setting has exactly one
/// place: the policy's fields on `Config`, the pool's on `PoolOptions`.
///
/// ```
/// use std::time::Duration;
/// use stored_session::{Config, Keyring, PoolOptions, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate())
///     .config(Config::default().idle_timeout(Some(Duration::from_secs(3600))))
///     .pool(PoolOptions::default().max_size(4))
///     .open_migrated("sqlite::memory:")?;
/// # let _ = store;
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreBuilder {
    keyring: Keyring,
    config: Config,
    pool: PoolOptions,
}

impl StoreBuilder {
    /// Sets the store's policy (expiry, limits, clock, events, metadata):
    /// see [`Config`]. Default: `Config::default()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .config(Config::default().idle_timeout(Some(Duration::from_secs(3600))))
    ///     .open_migrated("sqlite::memory:")?;
    /// assert_eq!(store.config().idle_timeout, Some(Duration::from_secs(3600)));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the connection settings: the pool that
    /// [`open`](StoreBuilder::open) creates, and the client-side deadline
    /// ([`PoolOptions::operation_timeout`], which also applies to
    /// [`build`](StoreBuilder::build)). Default: `PoolOptions::default()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Keyring, PoolOptions, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .pool(PoolOptions::default().max_size(4).acquire_timeout(Duration::from_secs(2)))
    ///     .open_migrated("sqlite::memory:")?;
    /// # let _ = store;
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn pool(mut self, options: PoolOptions) -> Self {
        self.pool = options;
        self
    }

    /// Builds the store on an existing pool (any `Pool<ConnectionManager<_>>`
    /// of an enabled backend, or a [`Database`]).
    ///
    /// Give the pool `test_on_check_out(false)`: the store recovers from dead
    /// connections itself, and the check adds a round trip to every
    /// operation. On MySQL, set a strict `sql_mode` in a connection
    /// customizer (`stored_session::STRICT_SQL_MODE`, feature `mysql`), as
    /// [`open`](StoreBuilder::open) does.
    ///
    /// The builder's client-side deadline applies to this pool
    /// ([`PoolOptions::operation_timeout`]); its connection and server-side
    /// timeouts do not (see [`PoolOptions`] for what to set yourself).
    ///
    /// It makes no query, so it does not run the start-up check
    /// ([`Config::startup_check`]): call [`SessionStore::check`] once the
    /// table is migrated.
    pub fn build(self, database: impl Into<Database>) -> SessionStore {
        let events = Events::new(self.config.log_events);
        let client = ClientRecorder::new(&self.config, &self.keyring);
        SessionStore {
            inner: Arc::new(Inner {
                client,
                db: database
                    .into()
                    .with_operation_timeout(self.pool.operation_timeout),
                macs: Macs::new(&self.keyring),
                sealer: Sealer::new(self.keyring, self.config.key_cache_size),
                config: self.config,
                events,
            }),
        }
    }

    /// Opens a pool from a URL and builds the store on it. Accepted:
    /// `postgres://…`, `postgresql://…`, `mysql://…`, `mariadb://…`,
    /// `sqlite://path`, `sqlite::memory:`, or a plain SQLite file path.
    ///
    /// Then runs the start-up check ([`SessionStore::check`]: the table
    /// exists, the keyring opens the most recent sessions) as
    /// [`Config::startup_check`] says: by default
    /// ([`StartupCheck::Warn`](crate::StartupCheck::Warn)) it logs what it
    /// finds and never fails, so a store opened before
    /// [`run_migrations`](SessionStore::run_migrations) still opens (with a
    /// warning that the table is missing; [`open_migrated`](StoreBuilder::open_migrated)
    /// migrates first).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unsupported URL or a backend whose feature is
    /// off; [`Error::Connection`] at once, with the driver's reason, when the
    /// database cannot be reached or opened (see [`Database::open`]);
    /// [`Error::PoolTimeout`] only if the pool then cannot check out a
    /// connection within the acquire timeout. With feature `geoip`,
    /// [`Error::Config`] when `Config::geoip` is `None` and the file named
    /// by `STORED_SESSION_GEOIP` is missing or not a MaxMind DB. With
    /// [`StartupCheck::Fail`](crate::StartupCheck::Fail), the check's errors:
    /// [`Error::MissingTable`], [`Error::KeyringMismatch`], database and pool
    /// failures.
    pub fn open(self, url: &str) -> Result<SessionStore> {
        let policy = self.config.startup_check;
        let store = self.open_unchecked(url)?;
        store.startup_check(policy)?;
        Ok(store)
    }

    /// [`open`](StoreBuilder::open) without the start-up check.
    #[allow(unused_mut)] // `mut` for the `geoip` feature only
    fn open_unchecked(mut self, url: &str) -> Result<SessionStore> {
        #[cfg(feature = "geoip")]
        if self.config.geoip.is_none() {
            self.config.geoip = crate::GeoIp::from_env()?;
        }
        let db = Database::open(url, &self.pool)?;
        Ok(self.build(db))
    }

    /// Opens a pool as [`open`](StoreBuilder::open) does, runs the embedded
    /// migrations, then the start-up check (as [`Config::startup_check`]
    /// says; the table exists by then, so it is about the keys).
    ///
    /// # Errors
    ///
    /// As [`open`](StoreBuilder::open), plus [`Error::Migration`].
    pub fn open_migrated(self, url: &str) -> Result<SessionStore> {
        let policy = self.config.startup_check;
        let store = self.open_unchecked(url)?;
        store.run_migrations()?;
        store.startup_check(policy)?;
        Ok(store)
    }
}

impl SessionStore {
    /// Starts building a store that encrypts with `keyring`.
    pub fn builder(keyring: Keyring) -> StoreBuilder {
        StoreBuilder {
            keyring,
            config: Config::default(),
            pool: PoolOptions::default(),
        }
    }

    /// Creates or updates the `stored_sessions` table with the migrations
    /// embedded in this crate (idempotent). Uses Diesel's
    /// `__diesel_schema_migrations` bookkeeping, so it agrees with the diesel
    /// CLI run on `migrations/<backend>`. Returns the names of the
    /// migrations it applied, oldest first (empty when the table was up to
    /// date), as [`Database::run_migrations`] does.
    ///
    /// ```
    /// use stored_session::{Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate()).open("sqlite::memory:")?;
    /// assert!(!store.run_migrations()?.is_empty());
    /// assert!(store.run_migrations()?.is_empty());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] when a migration fails.
    pub fn run_migrations(&self) -> Result<Vec<String>> {
        self.inner.db.run_migrations()
    }

    /// The database the store writes to.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The store's policy.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The keys the store encrypts with.
    pub fn keyring(&self) -> &Keyring {
        self.inner.sealer.keyring()
    }

    /// Registers a subscriber that receives every [`Event`]. Several may be
    /// registered; each is called synchronously on the thread doing the work.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let id = store.subscribe(move |event| sink.lock().unwrap().push(event.name()));
    /// let mut session = store.load(None)?;
    /// session.insert("k", &1)?;
    /// let _ = store.save(&mut session)?;
    /// assert_eq!(*seen.lock().unwrap(), ["session_write.stored_session"]);
    /// assert!(store.unsubscribe(id));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn subscribe(&self, subscriber: impl Fn(&Event) + Send + Sync + 'static) -> SubscriptionId {
        self.inner.events.subscribe(subscriber)
    }

    /// Removes a subscriber; returns whether it was registered.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.events.unsubscribe(id)
    }

    /// Turns the built-in `log` subscriber on or off.
    pub fn set_log_events(&self, on: bool) {
        self.inner.events.set_log(on)
    }

    /// Starts timing an operation for its event.
    pub(crate) fn stopwatch(&self) -> Stopwatch {
        self.inner.events.stopwatch()
    }

    pub(crate) fn emit(&self, event: Event) {
        self.inner.events.emit(event)
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.config.clock.unix()
    }

    pub(crate) fn cutoffs(&self, now: i64) -> Cutoffs {
        self.inner.config.cutoffs(now)
    }

    /// Loads the session named by a cookie value. Always yields a usable
    /// session: the stored one, or a fresh empty one when the cookie is
    /// absent, malformed (no query is made), unknown, expired or fails to
    /// decrypt. A fresh session never reuses the presented id, and it is
    /// not written until it holds data.
    ///
    /// Each rejected cookie emits a [`EventKind::Rejected`] event with its
    /// [`RejectReason`]. One case differs: a session sealed under a key
    /// that is not on the keyring ([`RejectReason::UnknownKey`]) is a
    /// configuration problem, not tampering. It is logged at error level
    /// (hashed id and key id only), its row is left alone, and the fresh
    /// session counts as one for which no cookie was presented: saved
    /// empty, it answers [`CookieAction::Keep`] rather than
    /// [`Remove`](CookieAction::Remove), so the browser keeps the cookie
    /// and the session opens again once its key is back on the ring. (A
    /// request that stores data in the fresh session gets a new id,
    /// [`CookieAction::Set`], as any new session does; that visitor's old
    /// session then stays in the table until it expires.)
    ///
    /// # Errors
    ///
    /// Only database and pool failures.
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let session = store.load(Some("not a valid id"))?;
    /// assert!(session.is_new());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn load(&self, cookie: Option<&str>) -> Result<Session> {
        let now = self.now();
        let Some(value) = cookie else {
            return Ok(self.fresh(now, false));
        };
        let started = self.stopwatch();
        let Some(id) = SessionId::parse(value) else {
            self.reject(None, RejectReason::Malformed, started);
            return Ok(self.fresh(now, true));
        };
        let sid = id.stored_id();
        let row = self.inner.db.load(&sid, self.cutoffs(now))?;
        self.emit(Event::new(
            EventKind::Read,
            Some(sid),
            started.elapsed(),
            u64::from(row.is_some()),
        ));
        let Some(row) = row else {
            self.reject(Some(sid), RejectReason::NotFound, started);
            return Ok(self.fresh(now, true));
        };
        match self.open_row(&sid, row, now) {
            Ok((payload, meta)) => {
                let mut session =
                    Session::loaded(id, meta.record(sid), payload, self.inner.config.metadata);
                session.attach_client_recorder(self.inner.client.clone());
                Ok(session)
            }
            Err(Unopened {
                reason: RejectReason::UnknownKey,
                unknown_key,
            }) => {
                // A configuration problem, not an attack: keep the row and
                // leave the cookie alone (the fresh session does not count
                // as having presented one, so an empty save is `Keep`), so
                // the session opens again once its key is back on the ring.
                let key = unknown_key.map_or_else(|| "?".to_owned(), |id| format!("{id:08x}"));
                log::error!(
                    target: "stored_session",
                    "rejected stored session {sid}: UnknownKey: it was sealed under key {key}, \
                     which is not on the keyring (a configuration problem, not tampering: \
                     were the keys changed?); the session and its cookie are kept, \
                     and this request gets a fresh session"
                );
                self.reject(Some(sid), RejectReason::UnknownKey, started);
                Ok(self.fresh(now, false))
            }
            Err(Unopened { reason, .. }) => {
                log::warn!(target: "stored_session", "rejected stored session {sid}: {reason:?}; issuing a fresh session");
                self.reject(Some(sid), reason, started);
                Ok(self.fresh(now, true))
            }
        }
    }

    fn fresh(&self, now: i64, had_cookie: bool) -> Session {
        let mut session = Session::fresh(now, had_cookie, self.inner.config.metadata);
        session.attach_client_recorder(self.inner.client.clone());
        session
    }

    /// Whether the store uses the client's IP address and user agent
    /// (recorded, located, labelled or compared): what the adapters keep
    /// of a request for [`Session::set_client`].
    #[cfg_attr(not(feature = "adapters"), allow(dead_code))]
    pub(crate) fn client_wanted(&self) -> (bool, bool) {
        let policy = self.inner.config.metadata;
        match &self.inner.client {
            Some(client) => (client.wants_ip(), client.wants_user_agent()),
            None => (policy.ip != crate::IpTracking::Off, policy.user_agent),
        }
    }

    fn reject(&self, sid: Option<StoredId>, reason: RejectReason, started: Stopwatch) {
        let mut e = Event::new(EventKind::Rejected, sid, started.elapsed(), 0);
        e.reason = Some(reason);
        self.emit(e);
    }

    /// Decrypts and decodes a row, checking the authenticated creation time.
    /// The decrypted buffer is zeroized once decoded.
    pub(crate) fn open_row(
        &self,
        sid: &StoredId,
        row: Row,
        now: i64,
    ) -> std::result::Result<(LoadedPayload, RowMeta), Unopened> {
        let mut data = WipedBytes(row.data);
        let (plaintext, opened) = self
            .inner
            .sealer
            .open(sid, row.version, &mut data.0)
            .map_err(|e: OpenError| {
                log::debug!(target: "stored_session", "envelope of {sid} did not open: {e:?}");
                match e {
                    // Not tampering: the ring lacks the key that sealed it.
                    OpenError::UnknownKey(key_id) => Unopened {
                        reason: RejectReason::UnknownKey,
                        unknown_key: Some(key_id),
                    },
                    _ => RejectReason::Tampered.into(),
                }
            })?;
        let payload = LoadedPayload::decode(plaintext).ok_or(RejectReason::Undecodable)?;
        if payload.created_at != row.created_at {
            // The plain column was changed behind the store's back.
            return Err(RejectReason::Tampered.into());
        }
        if payload.created_at <= self.inner.config.lifetime_cutoff(now) {
            return Err(RejectReason::Expired.into());
        }
        // The session's own deadline, from the authenticated payload: moving
        // the `expires_at` column does not extend it either.
        if Expiry::from_stored(payload.expiry)
            .at()
            .is_some_and(|at| at <= now)
        {
            return Err(RejectReason::Expired.into());
        }
        Ok((
            payload,
            RowMeta {
                version: row.version,
                salt: opened.salt,
                updated_at: row.updated_at,
                stale_key: opened.legacy || !self.inner.sealer.is_current(opened.key_id),
            },
        ))
    }

    /// Writes what the request did to the session, following the write rules:
    ///
    /// * nothing changed: no write (or a touch of `updated_at` alone when the
    ///   idle clock is older than [`Config::touch_after`]);
    /// * data changed: a compare-and-swap `UPDATE … WHERE version = ?` (which
    ///   moves the idle clock too when it is older than `touch_after`); if
    ///   another request wrote first, its version is reloaded, this request's
    ///   own changed and removed keys are re-applied, and the write retried;
    /// * new session with data: `INSERT` under a fresh id;
    /// * [`renew`](Session::renew): insert under a new id and delete the old
    ///   row in one transaction;
    /// * [`destroy`](Session::destroy), or emptied: `DELETE`; values put in
    ///   after `destroy` are inserted as a new, anonymous session
    ///   ([`CookieAction::Set`]).
    ///
    /// A session whose row disappeared meanwhile (logged out elsewhere,
    /// revoked, trimmed, expired) is never recreated: the result is
    /// [`CookieAction::Remove`], and the `Session` is emptied of its values,
    /// user binding and metadata (a later insert starts an anonymous one).
    ///
    /// Every write and touch also stores the session's deadline (from its
    /// [`Expiry`](crate::Expiry), sliding by its own idle window); a changed
    /// expiry moves the idle clock and the deadline at once, and a session
    /// whose own deadline ([`Expiry::At`](crate::Expiry::At),
    /// [`Expiry::Idle`](crate::Expiry::Idle)) has already passed is ended
    /// as by [`destroy`](Session::destroy).
    ///
    /// The result says everything the response must do with the cookie:
    /// [`Set`](CookieAction::Set) it (a new id, or the same one after the
    /// expiry changed), [`Remove`](CookieAction::Remove) it,
    /// [`Refresh`](CookieAction::Refresh) it (same id, the idle clock moved:
    /// resend a persistent cookie so its `Max-Age` restarts), or
    /// [`Keep`](CookieAction::Keep) it; `Set` and `Refresh` carry the
    /// cookie's [`CookieLifetime`].
    ///
    /// After a successful save the session is clean and may be used and
    /// saved again.
    ///
    /// Where and what the client is (`Config::geoip` and `Config::devices`,
    /// features `geoip` and `devices`): a save that creates the session
    /// or logs in (renews it, or binds it to a user) records the location,
    /// network and device of the client reported to
    /// [`Session::set_client`] first. A session whose client moved to
    /// another network ([`Session::client_change`]) is saved with its new
    /// network and location, then an [`EventKind::ClientChanged`] event is
    /// emitted.
    ///
    /// # Errors
    ///
    /// [`Error::PayloadTooLarge`] (nothing written), database and pool
    /// failures ([`Error::Database`], [`Error::PoolTimeout`],
    /// [`Error::Timeout`]), or [`Error::IdsExhausted`] when no unused id
    /// could be drawn for a new or renewed session. A write conflict is
    /// never an error: it is resolved under the row's lock.
    #[doc(alias = "commit")]
    pub fn save(&self, session: &mut Session) -> Result<CookieAction> {
        let now = self.now();
        let binds_user = session.binds_user();
        let expiry_changed = session.expiry_changed();
        let idle_clock_before = session.record().map(|r| r.updated_at);
        // Location, device and network are recorded at a creation (also of
        // the anonymous session that follows a `destroy`) and at a login.
        if session.has_content()
            && (session.is_new()
                || session.is_destroyed()
                || session.renew_requested()
                || binds_user)
        {
            session.record_client();
        }
        let action = self.save_inner(session, now)?;
        if binds_user {
            self.enforce_session_cap(session); // Config::max_sessions_per_user (users.rs)
        }
        if let Some(change) = session.take_client_change() {
            if let Some(sid) = session.stored_id() {
                let mut e = Event::new(
                    EventKind::ClientChanged,
                    Some(sid),
                    std::time::Duration::ZERO,
                    0,
                );
                e.client_change = Some(change);
                self.emit(e);
            }
        }
        session.mark_clean();
        // The one place that gives the cookie its lifetime, and says whether
        // the idle clock moved: a write or a touch of the same row left it
        // elsewhere than this request read it.
        let lifetime = self.cookie_lifetime(session, now);
        Ok(match (action, session.id(), session.record()) {
            (CookieAction::Set(id, _), _, _) => CookieAction::Set(id, lifetime),
            (CookieAction::Keep, Some(id), Some(_)) if expiry_changed => {
                CookieAction::Set(id.clone(), lifetime)
            }
            (CookieAction::Keep, Some(id), Some(r)) if Some(r.updated_at) != idle_clock_before => {
                CookieAction::Refresh(id.clone(), lifetime)
            }
            (action, _, _) => action,
        })
    }

    /// The deadline (`expires_at`) of `session`'s row with its idle clock
    /// at `updated_at`.
    fn deadline(&self, session: &Session, updated_at: i64) -> Option<i64> {
        session
            .expiry()
            .deadline(&self.inner.config, session.payload().created_at, updated_at)
    }

    /// The cookie lifetime of `session` as it was just saved.
    fn cookie_lifetime(&self, session: &Session, now: i64) -> CookieLifetime {
        let deadline = session
            .record()
            .and_then(|r| self.deadline(session, r.updated_at));
        session.expiry().cookie_lifetime(deadline, now)
    }

    /// Ends the session named by a cookie value without loading it: for
    /// "sign this device out" endpoints and APIs that hold a session id but
    /// no [`Session`]. Returns whether a session was ended; a malformed id
    /// ends nothing and costs no query. A request still holding that
    /// session cannot bring it back (see [`save`](SessionStore::save)).
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    ///
    /// ```
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.insert("k", &1)?;
    /// let CookieAction::Set(id, _) = store.save(&mut session)? else { unreachable!() };
    /// assert!(store.destroy(id.as_cookie_value())?);
    /// assert!(store.load(Some(id.as_cookie_value()))?.is_new());
    /// assert!(!store.destroy("not an id")?);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn destroy(&self, cookie_value: &str) -> Result<bool> {
        let Some(id) = SessionId::parse(cookie_value) else {
            return Ok(false);
        };
        self.delete_row(id.stored_id())
    }

    /// Deletes the row `sid` whatever its version (ending a session from
    /// outside a request: by id, or by a user's handle), with its event;
    /// whether there was one.
    pub(crate) fn delete_row(&self, sid: StoredId) -> Result<bool> {
        let started = self.stopwatch();
        let rows = self.inner.db.delete(&sid, None)?;
        self.emit(Event::new(
            EventKind::Delete,
            Some(sid),
            started.elapsed(),
            rows as u64,
        ));
        Ok(rows == 1)
    }

    /// The write rules; `Set` carries a placeholder lifetime, which `save`
    /// replaces.
    fn save_inner(&self, session: &mut Session, now: i64) -> Result<CookieAction> {
        // A session whose own deadline has passed (or an idle window of
        // zero) ends now, as a destroyed one does.
        if session.expiry().is_own()
            && !session.is_destroyed()
            && self.deadline(session, now).is_some_and(|d| d <= now)
        {
            session.destroy();
        }
        let Some(record) = session.record().cloned() else {
            // A session without a row.
            if session.is_destroyed() || !session.has_content() {
                return Ok(if session.settled_without_row() {
                    CookieAction::Remove
                } else {
                    CookieAction::Keep
                });
            }
            return self.insert_new(session, now);
        };

        if session.is_destroyed() {
            let started = self.stopwatch();
            let rows = self.inner.db.delete(&record.sid, None)?;
            self.emit(Event::new(
                EventKind::Delete,
                Some(record.sid),
                started.elapsed(),
                rows as u64,
            ));
            // `destroy` wiped the session; what was put in after it starts
            // a new, anonymous session under a new id.
            session.row_deleted(now);
            if session.has_content() {
                return self.insert_new(session, now);
            }
            let _ = session.settled_without_row();
            return Ok(CookieAction::Remove);
        }
        if session.renew_requested() {
            return self.renew(session, record, now);
        }
        if session.needs_write() {
            return self.write(session, record, now);
        }
        if self.touch_due(record.updated_at, now) {
            let started = self.stopwatch();
            let rows = self.inner.db.touch(
                &record.sid,
                now,
                self.deadline(session, now),
                self.cutoffs(now),
            )?;
            self.emit(Event::new(
                EventKind::Touch,
                Some(record.sid),
                started.elapsed(),
                rows as u64,
            ));
            if rows == 0 {
                return Ok(self.gone(session, now));
            }
            session.touched(now);
        }
        Ok(CookieAction::Keep)
    }

    /// Whether the idle clock (`updated_at`) is old enough to be moved: it
    /// is refreshed at most once per [`Config::touch_after`], by a touch or
    /// along with a data write, so the idle timeout is precise to within
    /// `touch_after` and most writes leave the indexed column alone.
    fn touch_due(&self, updated_at: i64, now: i64) -> bool {
        let touch_after =
            i64::try_from(self.inner.config.touch_after.as_secs()).unwrap_or(i64::MAX);
        now.saturating_sub(updated_at) >= touch_after
    }

    /// The row vanished under us: never recreate it.
    fn gone(&self, session: &mut Session, now: i64) -> CookieAction {
        if let Some(r) = session.record() {
            log::debug!(target: "stored_session", "session {} is gone; not recreating it", r.sid);
        }
        session.ended(now);
        CookieAction::Remove
    }

    /// Seals a payload for `sid` at row version `version` (the version the
    /// write stores) under the salt `salt` chooses, enforcing the size cap.
    /// Returns the envelope and its salt.
    fn seal(
        &self,
        sid: &StoredId,
        version: i64,
        salt: SaltChoice,
        payload: &PayloadRef<'_>,
    ) -> Result<(Vec<u8>, Salt)> {
        let (envelope, salt) =
            self.inner
                .sealer
                .seal_with(sid, version, salt, payload.encoded_len_hint(), |out| {
                    payload.encode_into(out)
                })?;
        if envelope.len() > self.inner.config.max_payload {
            return Err(Error::PayloadTooLarge {
                size: envelope.len(),
                max: self.inner.config.max_payload,
            });
        }
        Ok((envelope, salt))
    }

    fn insert_new(&self, session: &mut Session, now: i64) -> Result<CookieAction> {
        let payload = session.payload();
        let user_key = self.user_key_of(session);
        for _ in 0..INSERT_ATTEMPTS {
            let started = self.stopwatch();
            let id = SessionId::generate();
            let sid = id.stored_id();
            let (envelope, salt) = self.seal(&sid, 1, SaltChoice::Fresh, &payload)?;
            let row = NewRow {
                sid: sid.as_bytes(),
                data: &envelope,
                version: 1,
                user_key: user_key.as_ref().map(|k| k.as_slice()),
                created_at: payload.created_at,
                updated_at: now,
                expires_at: self.deadline(session, now),
            };
            if self.inner.db.insert(&row)? {
                self.emit(Event::new(
                    EventKind::Write,
                    Some(sid),
                    started.elapsed(),
                    1,
                ));
                session.stored_as(id.clone(), salt, now);
                return Ok(CookieAction::Set(id, CookieLifetime::PolicyDefault));
            }
        }
        Err(Error::IdsExhausted)
    }

    /// Renew, fast path: delete the old row at the version this request read
    /// and insert the new one, in one transaction.
    fn renew(&self, session: &mut Session, record: Record, now: i64) -> Result<CookieAction> {
        if session.has_content() {
            for _ in 0..INSERT_ATTEMPTS {
                let started = self.stopwatch();
                let id = SessionId::generate();
                let sid = id.stored_id();
                let payload = session.payload();
                let (envelope, salt) = self.seal(&sid, 1, SaltChoice::Fresh, &payload)?;
                let user_key = self.user_key_of(session);
                let row = NewRow {
                    sid: sid.as_bytes(),
                    data: &envelope,
                    version: 1,
                    user_key: user_key.as_ref().map(|k| k.as_slice()),
                    created_at: payload.created_at,
                    updated_at: now,
                    expires_at: self.deadline(session, now),
                };
                let lock = user_key.as_ref().map(UserLock::of);
                match self.inner.db.renew(&record.sid, record.version, &row, lock) {
                    Ok(RenewResult::Done) => {
                        return Ok(self.renewed(session, record.sid, id, salt, now, started));
                    }
                    Ok(RenewResult::Conflict) => break,
                    Err(e) if crate::backend::is_unique_violation(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        self.write_locked(session, record.sid, now, true)
    }

    /// Data write, fast path: one compare-and-swap statement at the version
    /// this request read.
    fn write(&self, session: &mut Session, record: Record, now: i64) -> Result<CookieAction> {
        let started = self.stopwatch();
        if !session.has_content() {
            let rows = self.inner.db.delete(&record.sid, Some(record.version))?;
            if rows == 1 {
                self.emit(Event::new(
                    EventKind::Delete,
                    Some(record.sid),
                    started.elapsed(),
                    1,
                ));
                session.ended(now);
                return Ok(CookieAction::Remove);
            }
        } else {
            let (envelope, _) = self.seal(
                &record.sid,
                record.version + 1,
                SaltChoice::Keep(record.salt),
                &session.payload(),
            )?;
            // The binding column only moves when the binding changed or the
            // session is being re-sealed under a new key (which re-keys its
            // HMAC): no HMAC and no index rewrite on an ordinary write.
            let rebind = session.user_changed() || record.stale_key;
            let binding = if rebind {
                Binding::Set(self.user_key_of(session))
            } else {
                Binding::Keep
            };
            // The idle clock moves when it is due, or when the expiry
            // changed (the deadline must follow the new choice now).
            let touch = (self.touch_due(record.updated_at, now) || session.expiry_changed())
                .then(|| (now, self.deadline(session, now)));
            let rows = self.inner.db.update(
                &record.sid,
                record.version,
                envelope,
                touch,
                binding,
                self.cutoffs(now),
            )?;
            if rows == 1 {
                self.emit(Event::new(
                    EventKind::Write,
                    Some(record.sid),
                    started.elapsed(),
                    1,
                ));
                session.written(
                    record.version + 1,
                    touch.map_or(record.updated_at, |(now, _)| now),
                );
                return Ok(CookieAction::Keep);
            }
        }
        self.write_locked(session, record.sid, now, false)
    }

    /// Slow path after a conflict: another request wrote (or deleted) this
    /// session since it was read. Under the row lock, reload it, re-apply
    /// this request's own changed and removed keys, and write. A row that is
    /// gone stays gone.
    fn write_locked(
        &self,
        session: &mut Session,
        sid: StoredId,
        now: i64,
        renew: bool,
    ) -> Result<CookieAction> {
        let started = self.stopwatch();
        // A renew holds the user's lock against a concurrent revocation.
        let lock = if renew {
            self.user_key_of(session).as_ref().map(UserLock::of)
        } else {
            None
        };
        let applied = self
            .inner
            .db
            .locked(&sid, self.cutoffs(now), lock, &mut |row| {
                self.plan_locked(session, &sid, row, now, renew)
            })?;
        match applied {
            Applied::Nothing => {
                if renew {
                    self.emit(Event::new(EventKind::Renew, None, started.elapsed(), 0));
                } else {
                    self.emit(Event::new(
                        EventKind::Write,
                        Some(sid),
                        started.elapsed(),
                        0,
                    ));
                }
                Ok(self.gone(session, now))
            }
            Applied::Deleted { rows } => {
                self.emit(Event::new(
                    EventKind::Delete,
                    Some(sid),
                    started.elapsed(),
                    rows as u64,
                ));
                session.ended(now);
                Ok(CookieAction::Remove)
            }
            Applied::Updated { version, rows } => {
                self.emit(Event::new(
                    EventKind::Write,
                    Some(sid),
                    started.elapsed(),
                    rows as u64,
                ));
                session.written(version, now);
                Ok(CookieAction::Keep)
            }
            Applied::Renewed { id, salt } => Ok(self.renewed(session, sid, id, salt, now, started)),
        }
    }

    /// The locked write's decision, made once on the row read under lock:
    /// nothing (gone or unreadable), delete (emptied), renew, or update, with
    /// this request's changes re-applied on top of that row.
    fn plan_locked(
        &self,
        session: &mut Session,
        sid: &StoredId,
        row: Option<Row>,
        now: i64,
        renew: bool,
    ) -> Result<Plan> {
        let Some(row) = row else {
            return Ok(Plan::Nothing);
        };
        let Ok((base, meta)) = self.open_row(sid, row, now) else {
            return Ok(Plan::Nothing);
        };
        session.rebase(base, meta.record(*sid));
        let user_key = self.user_key_of(session);
        if !session.has_content() {
            return Ok(Plan::Delete);
        }
        let payload = session.payload();
        // Both plans move the idle clock to `now`; the deadline follows the
        // merged session's expiry.
        let expires_at = self.deadline(session, now);
        if renew {
            let id = SessionId::generate();
            let (data, salt) = self.seal(&id.stored_id(), 1, SaltChoice::Fresh, &payload)?;
            Ok(Plan::Renew {
                id,
                salt,
                data,
                user_key,
                created_at: payload.created_at,
                now,
                expires_at,
            })
        } else {
            let (data, _) =
                self.seal(sid, meta.version + 1, SaltChoice::Keep(meta.salt), &payload)?;
            Ok(Plan::Update {
                data,
                version: meta.version,
                now,
                expires_at,
                user_key,
            })
        }
    }

    /// Book-keeping after a successful renew; the cookie to set.
    fn renewed(
        &self,
        session: &mut Session,
        previous: StoredId,
        id: SessionId,
        salt: Salt,
        now: i64,
        started: Stopwatch,
    ) -> CookieAction {
        let sid = id.stored_id();
        let mut e = Event::new(EventKind::Renew, Some(sid), started.elapsed(), 1);
        e.previous_sid = Some(previous);
        self.emit(e);
        session.stored_as(id.clone(), salt, now);
        CookieAction::Set(id, CookieLifetime::PolicyDefault)
    }

    /// The `user_key` column value for the session's user binding, under
    /// the current key (so a rewrite after a rotation moves the binding to
    /// the new key).
    fn user_key_of(&self, session: &Session) -> Option<[u8; 32]> {
        session.user_id().map(|u| self.inner.macs.user_key(u))
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.inner.sealer
    }

    pub(crate) fn macs(&self) -> &Macs {
        &self.inner.macs
    }
}

/// Why `open_row` did not open a row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unopened {
    pub(crate) reason: RejectReason,
    /// For [`RejectReason::UnknownKey`], the id of the key that sealed it.
    pub(crate) unknown_key: Option<u32>,
}

impl From<RejectReason> for Unopened {
    fn from(reason: RejectReason) -> Self {
        Unopened {
            reason,
            unknown_key: None,
        }
    }
}

/// What `open_row` learned about a row besides its payload.
pub(crate) struct RowMeta {
    pub(crate) version: i64,
    salt: Salt,
    updated_at: i64,
    stale_key: bool,
}

impl RowMeta {
    /// The session's record of the row `sid`.
    fn record(&self, sid: StoredId) -> Record {
        Record {
            sid,
            version: self.version,
            salt: self.salt,
            updated_at: self.updated_at,
            stale_key: self.stale_key,
        }
    }
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("database", &self.inner.db)
            .field("keyring", self.inner.sealer.keyring())
            .field("config", &self.inner.config)
            .field("events", &self.inner.events)
            .finish()
    }
}
