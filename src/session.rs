//! The in-memory session a request works with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, LoadedPayload, PayloadRef};
use crate::crypto::Salt;
use crate::error::Result;
use crate::expiry::Expiry;
use crate::id::{SessionId, StoredId};
use crate::metadata::{ClientChange, ClientRecorder, ClientState, Location, MetadataPolicy};
use crate::wipe;

/// What the store knows about the row a session was loaded from.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub sid: StoredId,
    pub version: i64,
    pub salt: Salt,
    pub updated_at: i64,
    /// Sealed with an older key: re-encrypt on the next write.
    pub stale_key: bool,
}

/// One visitor's session: a map from string keys to serde values, plus what
/// the request did to it (changed, renewed, destroyed).
///
/// Get one from [`SessionStore::load`](crate::SessionStore::load); hand it back
/// to [`SessionStore::save`](crate::SessionStore::save) at the end of the
/// request. Values are MessagePack-encoded on [`insert`](Session::insert), so a
/// value that cannot be serialized fails there, not at commit.
///
/// ```
/// # use stored_session::{Keyring, SessionStore};
/// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let mut session = store.load(None)?;
/// session.insert("user_id", &42u64)?;
/// session.insert("roles", &vec!["admin", "editor"])?;
/// assert_eq!(session.get::<u64>("user_id")?, Some(42));
/// assert_eq!(session.get::<Vec<String>>("roles")?.unwrap().len(), 2);
/// assert!(session.remove("roles"));
/// assert_eq!(session.get::<u64>("missing")?, None);
/// # Ok::<(), stored_session::Error>(())
/// ```
pub struct Session {
    /// The row it was read from or last written to (the original), `None`
    /// when there is none.
    record: Option<Record>,
    /// The public id, once this process knows it (loaded, inserted or renewed).
    id: Option<SessionId>,
    /// The request presented a session cookie (valid or not).
    had_cookie: bool,
    created_at: i64,
    /// The current values.
    data: BTreeMap<String, Vec<u8>>,
    /// The application user the session is bound to.
    user: Option<String>,
    /// Client metadata and application fields (encrypted with the data).
    meta: BTreeMap<String, String>,
    /// How long the session lives (encrypted with the data).
    expiry: Expiry,
    /// Flash messages as they will be stored: those waiting when the session
    /// was loaded, minus those read, plus those set (see `flash`).
    flashes: BTreeMap<String, Vec<u8>>,
    /// The CSRF token, once one was asked for (see `csrf_token`).
    csrf: Option<String>,
    /// What this request did to it (the delta against the original).
    changes: Changes,
    /// What `set_client` records (from the store's config).
    metadata_policy: MetadataPolicy,
    /// The client of this request beyond the policy: location, device,
    /// network comparison (see `metadata::ClientState`).
    client: ClientState,
}

/// What a request did to its session since it was loaded or last saved.
#[derive(Debug, Default)]
struct Changes {
    /// Keys set, and keys removed.
    changed: BTreeSet<String>,
    removed: BTreeSet<String>,
    /// Every value was removed.
    cleared: bool,
    /// The user binding changed.
    user: bool,
    /// Metadata fields set or removed.
    meta: BTreeSet<String>,
    /// The expiry changed.
    expiry: bool,
    /// Flash keys set (for a later request), and flash keys read (removed).
    flashes_set: BTreeSet<String>,
    flashes_taken: BTreeSet<String>,
    /// The CSRF token was created or rotated.
    csrf: bool,
    renew: bool,
    destroyed: bool,
}

impl Changes {
    /// Whether the stored payload differs from the original: the one
    /// definition of "dirty" (values, user binding, metadata).
    fn edits_payload(&self) -> bool {
        self.cleared
            || self.user
            || !self.changed.is_empty()
            || !self.removed.is_empty()
            || !self.meta.is_empty()
            || self.expiry
            || !self.flashes_set.is_empty()
            || !self.flashes_taken.is_empty()
            || self.csrf
    }
}

impl Session {
    /// A session without a row.
    pub(crate) fn fresh(now: i64, had_cookie: bool, metadata_policy: MetadataPolicy) -> Self {
        Session {
            record: None,
            id: None,
            had_cookie,
            created_at: now,
            data: BTreeMap::new(),
            user: None,
            meta: BTreeMap::new(),
            expiry: Expiry::Default,
            flashes: BTreeMap::new(),
            csrf: None,
            changes: Changes::default(),
            metadata_policy,
            client: ClientState::default(),
        }
    }

    /// A session read from its row; `record.sid` is `id`'s stored id.
    pub(crate) fn loaded(
        id: SessionId,
        record: Record,
        payload: LoadedPayload,
        metadata_policy: MetadataPolicy,
    ) -> Session {
        let mut session = Session::fresh(payload.created_at, true, metadata_policy);
        session.id = Some(id);
        session.record = Some(record);
        session.data = payload.data;
        session.meta = payload.meta;
        session.user = payload.user;
        session.expiry = Expiry::from_stored(payload.expiry);
        session.flashes = payload.flashes;
        session.csrf = payload.csrf;
        session
    }

    // ---- The store's view of the delta, and its book-keeping. ----

    /// Records location, device and network as the store's `recorder`
    /// says (`None`: only what the metadata policy says).
    pub(crate) fn attach_client_recorder(
        &mut self,
        recorder: Option<std::sync::Arc<ClientRecorder>>,
    ) {
        self.client.attach(recorder);
    }

    /// At a creation or a login: records the location, network tag and
    /// device of the client this request reported.
    pub(crate) fn record_client(&mut self) {
        for (name, value) in self.client.record() {
            self.put_meta(name, value);
        }
    }

    /// The client change to report once the save succeeded; reported, it
    /// is forgotten (a later save of the same session does not repeat it).
    pub(crate) fn take_client_change(&mut self) -> Option<ClientChange> {
        let change = self.client.change();
        self.client.reset();
        change
    }

    /// The row the session was read from or last written to.
    pub(crate) fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// The public id, when known (loaded, inserted or renewed).
    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    /// Whether [`renew`](Session::renew) was called.
    pub(crate) fn renew_requested(&self) -> bool {
        self.changes.renew
    }

    /// Whether this request changed the user binding.
    pub(crate) fn user_changed(&self) -> bool {
        self.changes.user
    }

    /// Whether this request changed the expiry.
    pub(crate) fn expiry_changed(&self) -> bool {
        self.changes.expiry
    }

    /// Whether this request bound the session to a user.
    pub(crate) fn binds_user(&self) -> bool {
        self.changes.user && self.user.is_some()
    }

    /// Whether the stored row must be rewritten: the payload changed, or
    /// it is sealed under an old key.
    pub(crate) fn needs_write(&self) -> bool {
        self.changes.edits_payload() || self.record.as_ref().is_some_and(|r| r.stale_key)
    }

    /// What gets encrypted, borrowing the session's values (no copy).
    pub(crate) fn payload(&self) -> PayloadRef<'_> {
        PayloadRef {
            created_at: self.created_at,
            data: &self.data,
            meta: &self.meta,
            user: self.user.as_deref(),
            expiry: self.expiry.stored(),
            flashes: &self.flashes,
            csrf: self.csrf.as_deref(),
        }
    }

    /// A session without a row is settled: nothing to write. Returns
    /// whether the request presented a cookie (which must then go).
    pub(crate) fn settled_without_row(&mut self) -> bool {
        self.changes.destroyed = false;
        std::mem::take(&mut self.had_cookie)
    }

    /// The destroyed session's row was deleted: what was put in after
    /// `destroy` starts a new, anonymous session under a new id.
    pub(crate) fn row_deleted(&mut self, now: i64) {
        self.record = None;
        self.id = None;
        self.changes.destroyed = false;
        self.created_at = now;
    }

    /// Written as a new row under `id` (inserted or renewed).
    pub(crate) fn stored_as(&mut self, id: SessionId, salt: Salt, now: i64) {
        self.record = Some(Record {
            sid: id.stored_id(),
            version: 1,
            salt,
            updated_at: now,
            stale_key: false,
        });
        self.id = Some(id);
        self.had_cookie = true;
    }

    /// The payload was written at `version`, leaving the idle clock at
    /// `updated_at`.
    pub(crate) fn written(&mut self, version: i64, updated_at: i64) {
        if let Some(r) = self.record.as_mut() {
            r.version = version;
            r.updated_at = updated_at;
            r.stale_key = false;
        }
    }

    /// The idle clock alone moved to `now`.
    pub(crate) fn touched(&mut self, now: i64) {
        if let Some(r) = self.record.as_mut() {
            r.updated_at = now;
        }
    }

    /// The session's row is gone (deleted by this request, or found gone):
    /// nothing of it survives, and a later insert starts an anonymous one.
    pub(crate) fn ended(&mut self, now: i64) {
        self.created_at = now;
        self.record = None;
        self.id = None;
        self.had_cookie = false;
        self.changes.destroyed = false;
        self.wipe();
    }

    /// Re-applies this request's own changes on top of a newer version
    /// (`base`, stored as `record`) after a write conflict.
    pub(crate) fn rebase(&mut self, base: LoadedPayload, record: Record) {
        // What is replaced is wiped, as the session's drop would wipe it.
        let mut data = base.data;
        self.merge_into(&mut data);
        wipe_values(&mut std::mem::replace(&mut self.data, data));
        let (mut meta, mut user) = (base.meta, base.user);
        self.merge_meta_into(&mut meta, &mut user);
        for value in std::mem::replace(&mut self.meta, meta).values_mut() {
            wipe::string(value);
        }
        if let Some(mut old) = std::mem::replace(&mut self.user, user) {
            wipe::string(&mut old);
        }
        if !self.changes.expiry {
            self.expiry = Expiry::from_stored(base.expiry);
        }
        let mut flashes = base.flashes;
        self.merge_flashes_into(&mut flashes);
        wipe_values(&mut std::mem::replace(&mut self.flashes, flashes));
        // The newer token, unless this request set its own; the other goes.
        let mut other = base.csrf;
        if !self.changes.csrf {
            std::mem::swap(&mut self.csrf, &mut other);
        }
        if let Some(mut token) = other {
            wipe::string(&mut token);
        }
        self.record = Some(record);
    }

    /// Reads the value under `key`, decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.data.get(key) {
            Some(bytes) => codec::decode_value(key, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`. Storing a value equal to the one already
    /// there does not mark the session changed.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](crate::Error::Encode) when `value` cannot be serialized.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<()> {
        let key = key.into();
        let bytes = codec::encode_value(value)?;
        if self.data.get(&key) == Some(&bytes) {
            return Ok(());
        }
        self.changes.removed.remove(&key);
        self.changes.changed.insert(key.clone());
        if let Some(mut old) = self.data.insert(key, bytes) {
            wipe::bytes(&mut old);
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        if let Some(mut old) = self.data.remove(key) {
            wipe::bytes(&mut old);
            self.changes.changed.remove(key);
            self.changes.removed.insert(key.to_owned());
            true
        } else {
            false
        }
    }

    /// Removes `key` and returns its value decoded as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) when the value is not a `T`
    /// (the key is removed all the same).
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        let value = self.get(key);
        self.remove(key);
        value
    }

    /// Whether `key` holds a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the session holds no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Removes every value. The row stays (under the same id) unless the
    /// session ends up empty at commit (no values, user binding, flash
    /// message or CSRF token), in which case it is deleted. Flash messages
    /// and the CSRF token are not values: they stay (use
    /// [`destroy`](Session::destroy) to end everything).
    pub fn clear(&mut self) {
        if !self.data.is_empty() || self.record.is_some() {
            self.changes.cleared = true;
        }
        wipe_values(&mut self.data);
        self.changes.changed.clear();
        self.changes.removed.clear();
    }

    /// Moves the session to a new id at commit, keeping its data: call it on
    /// login and on any privilege change (prevents session fixation). The
    /// old id stops working in the same transaction. Only the id changes:
    /// the session keeps its creation time, so renewing never extends the
    /// absolute lifetime ([`Config::max_lifetime`](crate::Config)).
    ///
    /// The [CSRF token](Session::csrf_token), if the session has one, is
    /// replaced by a fresh one at once: forms rendered after `renew` carry
    /// the new token, and tokens handed out before it stop verifying.
    /// Values, the user binding and [flash messages](Session::flash) are kept.
    pub fn renew(&mut self) {
        self.changes.renew = true;
        if self.csrf.is_some() {
            self.replace_csrf_token();
        }
    }

    /// Ends the session (logout): at commit its row is deleted and the
    /// cookie removed. Everything it held is gone at once, in this request
    /// too: its values, its user binding and its metadata. Values inserted
    /// after `destroy` start a new, anonymous session under a new id (for
    /// example a "you have been signed out" message).
    ///
    /// ```
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// # let mut session = store.load(None)?;
    /// session.set_user("alice");
    /// session.insert("cart", &3)?;
    /// # let _ = store.save(&mut session)?;
    /// session.destroy();
    /// assert_eq!(session.user_id(), None);
    /// assert!(session.is_empty());
    /// assert_eq!(store.save(&mut session)?, CookieAction::Remove);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn destroy(&mut self) {
        self.changes.destroyed = true;
        self.wipe();
    }

    /// Forgets every value, the user binding and the metadata, and what the
    /// request had changed: nothing of an ended session survives in memory.
    fn wipe(&mut self) {
        wipe_values(&mut self.data);
        if let Some(mut user) = self.user.take() {
            wipe::string(&mut user);
        }
        for value in self.meta.values_mut() {
            wipe::string(value);
        }
        self.meta.clear();
        self.expiry = Expiry::Default;
        wipe_values(&mut self.flashes);
        if let Some(mut token) = self.csrf.take() {
            wipe::string(&mut token);
        }
        self.client.reset();
        let destroyed = self.changes.destroyed;
        self.changes = Changes {
            destroyed,
            ..Changes::default()
        };
    }

    /// Binds the session to an application user id, for per-user listing and
    /// "sign out everywhere". Only a keyed hash (HMAC) of the id is stored,
    /// in an indexed column; the id itself never reaches the database. The
    /// binding survives [`renew`](Session::renew).
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.set_user("user-42");
    /// session.renew(); // on login
    /// let _ = store.save(&mut session)?;
    /// assert_eq!(store.sessions_of("user-42", Some(&session), Default::default())?.sessions.len(), 1);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn set_user(&mut self, user_id: impl Into<String>) {
        let user_id = user_id.into();
        if self.user.as_deref() != Some(user_id.as_str()) {
            self.user = Some(user_id);
            self.changes.user = true;
        }
    }

    /// Removes the user binding (e.g. on logout without destroying the session).
    pub fn clear_user(&mut self) {
        if self.user.is_some() {
            self.user = None;
            self.changes.user = true;
        }
    }

    /// The user id the session is bound to, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Sets how long this session lives (see [`Expiry`]): the store's
    /// limits, its own idle window ("remember me"), an absolute deadline,
    /// or a browser-session cookie. The choice is stored encrypted with the
    /// session and survives [`renew`](Session::renew); at
    /// [`save`](crate::SessionStore::save) it becomes the row's deadline,
    /// which every later touch slides by the session's own idle window.
    ///
    /// Changing it is a write: the save moves the idle clock, recomputes the
    /// deadline and returns [`CookieAction::Set`](crate::CookieAction::Set)
    /// with the new [`CookieLifetime`](crate::CookieLifetime), so the
    /// browser's cookie gets (or loses) its `Max-Age`. Setting the value
    /// the session already has changes nothing. A session that holds no
    /// values and no user is still not stored.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, CookieAction, CookieLifetime, Expiry, Keyring, ManualClock, SessionStore};
    ///
    /// let clock = ManualClock::starting_now();
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .config(Config::default().idle_timeout(Some(Duration::from_secs(3600))).clock(clock.clock()))
    ///     .open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.insert("cart", &3)?;
    /// session.set_expiry(Expiry::BrowserSession);
    /// let CookieAction::Set(id, lifetime) = store.save(&mut session)? else { unreachable!() };
    /// assert_eq!(lifetime, CookieLifetime::Session); // no Max-Age, no Expires
    ///
    /// // The server still ends it after the store's idle timeout.
    /// clock.advance(Duration::from_secs(3601));
    /// assert!(store.load(Some(id.as_cookie_value()))?.is_new());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn set_expiry(&mut self, expiry: Expiry) {
        // Whole seconds, as stored.
        let expiry = Expiry::from_stored(expiry.stored());
        if self.expiry != expiry {
            self.expiry = expiry;
            self.changes.expiry = true;
        }
    }

    /// How long this session lives: what [`set_expiry`](Session::set_expiry)
    /// chose, here or in an earlier request; [`Expiry::Default`] for a
    /// session that never chose.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Records the client's IP address and user agent, as far as the store's
    /// [`MetadataPolicy`](crate::MetadataPolicy) allows (nothing by default).
    /// The adapters call this for you. A value equal to the stored one is not
    /// a change, so a returning visitor costs no write.
    ///
    /// With a GeoIP database ([`Config::geoip`](crate::Config), feature
    /// `geoip`) or device labels ([`Config::devices`](crate::Config),
    /// feature `devices`), the session also records where and what the
    /// client is when it is created and at each login (see
    /// [`location`](Session::location), [`device`](Session::device)); for a
    /// session loaded from its row, a client on another network than the
    /// recorded one is reported by [`client_change`](Session::client_change).
    pub fn set_client(&mut self, ip: Option<std::net::IpAddr>, user_agent: Option<&str>) {
        let loaded = self.record.is_some();
        for (name, value) in self.client.observe(&self.meta, loaded, ip, user_agent) {
            self.put_meta(name, value);
        }
        let policy = self.metadata_policy;
        if let Some(ip) = ip.and_then(|ip| policy.ip(ip)) {
            self.put_meta(crate::metadata::IP, Some(ip));
        }
        if let Some(ua) = user_agent.and_then(|ua| policy.user_agent(ua)) {
            self.put_meta(crate::metadata::USER_AGENT, Some(ua));
        }
    }

    /// Sets an application metadata field (e.g. a coarse location the app
    /// computed), shown in [`SessionInfo`](crate::SessionInfo) listings and
    /// stored encrypted. `None` removes it. The names `ip` and `user_agent`
    /// and those starting with `client.` belong to the store
    /// ([`set_client`](Session::set_client)) and are ignored here.
    pub fn set_meta(&mut self, name: &str, value: Option<&str>) {
        if !crate::metadata::is_reserved(name) {
            self.put_meta(name, value.map(str::to_owned));
        }
    }

    /// Where the session's client was when it was created, at its last
    /// login, or when it last moved to another network, as the store's
    /// GeoIP database placed it (feature `geoip`); `None` without one, or
    /// for an address the database does not place.
    pub fn location(&self) -> Option<Location> {
        Location::from_meta(&self.meta)
    }

    /// The device label recorded when the session was created or at its
    /// last login ("Firefox on Linux", feature `devices` with
    /// [`Config::devices`](crate::Config)).
    pub fn device(&self) -> Option<&str> {
        self.meta(crate::metadata::DEVICE)
    }

    /// How the client this request reported to
    /// [`set_client`](Session::set_client) (the adapters call it) moved
    /// since the session's network was recorded: to another network
    /// ([`ClientChange::Network`]), or to another country as well
    /// ([`ClientChange::Country`]). For an application that challenges
    /// (asks for the password again) or alerts. `None` for a new session,
    /// on the same network (IPv4 /24, IPv6 /48), or when the store compares
    /// no networks (it does when it records IP addresses,
    /// [`Config::metadata`](crate::Config), or has a GeoIP database). The
    /// store also emits an
    /// [`EventKind::ClientChanged`](crate::EventKind::ClientChanged) event
    /// when it saves the session.
    ///
    /// The session's recorded network and location follow the client (they
    /// are saved with the session): a move is reported once, not on every
    /// later request from the new network. To keep challenging until the
    /// user answers, mark the session yourself (e.g. insert a flag that
    /// the password check removes).
    pub fn client_change(&self) -> Option<ClientChange> {
        self.client.change()
    }

    /// A metadata field (`ip`, `user_agent`, or the application's own).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta.get(name).map(String::as_str)
    }

    fn put_meta(&mut self, name: &str, value: Option<String>) {
        if self.meta.get(name) == value.as_ref() {
            return;
        }
        match value {
            Some(v) => self.meta.insert(name.to_owned(), v),
            None => self.meta.remove(name),
        };
        self.changes.meta.insert(name.to_owned());
    }

    /// Whether there is anything worth storing: values, a user binding,
    /// a flash message or a CSRF token. (Client metadata alone never
    /// creates a row.)
    pub(crate) fn has_content(&self) -> bool {
        !self.data.is_empty()
            || self.user.is_some()
            || !self.flashes.is_empty()
            || self.csrf.is_some()
    }

    /// Whether the session has no stored row yet.
    pub fn is_new(&self) -> bool {
        self.record.is_none()
    }

    /// Whether this request changed the session (values, user binding,
    /// metadata, flash messages set or read, the CSRF token created or
    /// rotated, renew or destroy).
    pub fn is_modified(&self) -> bool {
        self.changes.edits_payload() || self.changes.renew || self.changes.destroyed
    }

    /// Whether [`destroy`](Session::destroy) was called.
    pub fn is_destroyed(&self) -> bool {
        self.changes.destroyed
    }

    /// The hashed id of the stored row, safe to log. `None` for a new session.
    pub fn stored_id(&self) -> Option<StoredId> {
        self.record.as_ref().map(|r| r.sid)
    }

    /// When the session was created. [`renew`](Session::renew) keeps it:
    /// the absolute lifetime ([`Config::max_lifetime`](crate::Config)) runs
    /// from here however often the id changes.
    pub fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.created_at, 0).unwrap_or_default()
    }

    /// Leaves a flash message for a later request: `value` is stored under
    /// `key` and [`take_flash`](Session::take_flash) or
    /// [`flashes`](Session::flashes) in a later request returns it once,
    /// removing it. Typical use: set it before a redirect, show it on the
    /// page the browser is redirected to ("saved", "welcome back").
    ///
    /// * **For a later request, not this one.** A flash set by this request
    ///   is not returned by `take_flash`/`flashes` in this request (as
    ///   Rails' `flash`, not `flash.now`): a layout that always renders
    ///   flashes does not swallow the message meant for the page after the
    ///   redirect. To show a message in this response, pass it to your
    ///   template directly. (After a [`save`](crate::SessionStore::save),
    ///   a later load or the same `Session` sees it.)
    /// * **One per key, kept until read.** Setting a key again replaces the
    ///   waiting message under it. A message nobody reads waits as long as
    ///   the session lives; [`destroy`](Session::destroy) drops it,
    ///   [`renew`](Session::renew) and [`clear`](Session::clear) keep it.
    /// * **Merged per key.** Two overlapping requests that each set a flash
    ///   both keep theirs, and a flash read by one request stays read
    ///   whatever another request writes meanwhile (the store's per-key
    ///   merge, as for values). Two overlapping requests that both loaded
    ///   the session before either saved may both read the same message.
    /// * Flashes are stored encrypted with the values, apart from them:
    ///   [`get`](Session::get), [`keys`](Session::keys) and
    ///   [`len`](Session::len) do not see them, and any key is allowed.
    ///
    /// ```
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// // POST /profile: save, then redirect.
    /// let mut session = store.load(None)?;
    /// session.flash("notice", "Profile saved")?;
    /// assert_eq!(session.take_flash::<String>("notice")?, None); // not in this request
    /// let CookieAction::Set(id, _) = store.save(&mut session)? else { unreachable!() };
    ///
    /// // GET /profile: shown once.
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// assert_eq!(session.take_flash::<String>("notice")?.as_deref(), Some("Profile saved"));
    /// # let _ = store.save(&mut session)?;
    ///
    /// // Reload: gone.
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// assert!(session.flashes::<String>()?.is_empty());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](crate::Error::Encode) when `value` cannot be
    /// serialized (nothing is stored).
    pub fn flash<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<()> {
        let key = key.into();
        let bytes = codec::encode_value(value)?;
        self.changes.flashes_taken.remove(&key);
        self.changes.flashes_set.insert(key.clone());
        if let Some(mut old) = self.flashes.insert(key, bytes) {
            wipe::bytes(&mut old);
        }
        Ok(())
    }

    /// Reads the flash message under `key` left by an earlier request, and
    /// removes it: the removal is saved with the session, so no later
    /// request sees it again. `None` when there is none, or when the only
    /// one was set by this request (see [`flash`](Session::flash)).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) when the message is not a
    /// `T` (it is removed all the same).
    pub fn take_flash<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        if self.changes.flashes_set.contains(key) {
            return Ok(None);
        }
        let Some(mut bytes) = self.flashes.remove(key) else {
            return Ok(None);
        };
        self.changes.flashes_taken.insert(key.to_owned());
        let value = codec::decode_value(key, &bytes).map(Some);
        wipe::bytes(&mut bytes);
        value
    }

    /// Reads every flash message left by earlier requests, by key, and
    /// removes them (as [`take_flash`](Session::take_flash) does for one).
    /// Messages set by this request stay for a later one.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.flash("alert", "Card declined")?;
    /// session.flash("notice", "Order kept in your cart")?;
    /// let CookieAction::Set(id, _) = store.save(&mut session)? else { unreachable!() };
    ///
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// let shown: BTreeMap<String, String> = session.flashes()?;
    /// assert_eq!(shown.keys().collect::<Vec<_>>(), ["alert", "notice"]);
    /// assert!(session.flashes::<String>()?.is_empty()); // read once
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) for the first message (in
    /// key order) that is not a `T`; every waiting message is removed all
    /// the same.
    pub fn flashes<T: DeserializeOwned>(&mut self) -> Result<BTreeMap<String, T>> {
        let waiting: Vec<String> = self
            .flashes
            .keys()
            .filter(|k| !self.changes.flashes_set.contains(*k))
            .cloned()
            .collect();
        let mut out = BTreeMap::new();
        let mut first_error = None;
        for key in waiting {
            match self.take_flash(&key) {
                Ok(Some(value)) => {
                    out.insert(key, value);
                }
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The session's CSRF token, created on first use: 256 random bits as
    /// 43 URL-safe characters (`A-Z a-z 0-9 - _`), safe in a form field, a
    /// header or a `<meta>` tag without escaping. Put it in every form
    /// (field `csrf_token`) or send it as `X-CSRF-Token`, and check unsafe
    /// requests with [`Csrf::verify`](crate::csrf::Csrf::verify).
    ///
    /// The token is the same in every request of the session, is stored
    /// encrypted with the session (never in a cookie of its own, never
    /// logged, not in `Debug`), changes on [`renew`](Session::renew) (call
    /// it on login) and ends with the session. Creating it makes the
    /// session worth storing: an anonymous visitor who is shown a form
    /// gets a session row and cookie, so that the form's POST can be
    /// checked.
    ///
    /// ```
    /// # use stored_session::{CookieAction, Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// let token = session.csrf_token();
    /// assert_eq!(token.len(), 43);
    /// let form = format!(r#"<input type="hidden" name="csrf_token" value="{token}">"#);
    /// # let _ = form;
    /// let CookieAction::Set(id, _) = store.save(&mut session)? else { unreachable!() };
    ///
    /// let mut session = store.load(Some(id.as_cookie_value()))?;
    /// assert_eq!(session.csrf_token(), token); // stable across requests
    /// session.renew(); // login
    /// assert_ne!(session.csrf_token(), token); // rotated
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator fails, as
    /// [`SessionId::generate`](crate::SessionId::generate).
    pub fn csrf_token(&mut self) -> String {
        match &self.csrf {
            Some(token) => token.clone(),
            None => self.replace_csrf_token(),
        }
    }

    /// The stored CSRF token, without creating one (for the verifier).
    pub(crate) fn csrf_secret(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    /// Draws a new CSRF token, forgetting the old one; the new token.
    fn replace_csrf_token(&mut self) -> String {
        let token =
            crate::id::random_text().expect("operating system random number generator failed");
        if let Some(mut old) = self.csrf.replace(token.clone()) {
            wipe::string(&mut old);
        }
        self.changes.csrf = true;
        token
    }

    /// Re-applies this request's flash changes on top of a newer version's
    /// after a write conflict: what it read stays removed, what it set is
    /// written, every other key is the newer version's.
    fn merge_flashes_into(&self, base: &mut BTreeMap<String, Vec<u8>>) {
        for key in &self.changes.flashes_taken {
            wipe_removed(base.remove(key));
        }
        for key in &self.changes.flashes_set {
            if let Some(v) = self.flashes.get(key) {
                wipe_removed(base.insert(key.clone(), v.clone()));
            }
        }
    }

    /// Re-applies this request's metadata and user changes on top of a newer
    /// version's after a write conflict.
    fn merge_meta_into(&self, meta: &mut BTreeMap<String, String>, user: &mut Option<String>) {
        for name in &self.changes.meta {
            let old = match self.meta.get(name) {
                Some(v) => meta.insert(name.clone(), v.clone()),
                None => meta.remove(name),
            };
            if let Some(mut old) = old {
                wipe::string(&mut old);
            }
        }
        if self.changes.user {
            if let Some(old) = user.as_mut() {
                wipe::string(old);
            }
            user.clone_from(&self.user);
        }
    }

    /// The request's own changes, for re-applying them on top of a newer
    /// version after a write conflict.
    fn merge_into(&self, base: &mut BTreeMap<String, Vec<u8>>) {
        if self.changes.cleared {
            wipe_values(base);
        }
        for key in &self.changes.removed {
            wipe_removed(base.remove(key));
        }
        for key in &self.changes.changed {
            if let Some(v) = self.data.get(key) {
                wipe_removed(base.insert(key.clone(), v.clone()));
            }
        }
    }

    /// Forget the request's changes after they were written.
    pub(crate) fn mark_clean(&mut self) {
        let destroyed = self.changes.destroyed;
        self.changes = Changes {
            destroyed,
            ..Changes::default()
        };
    }
}

/// Wipes a value taken out of a map, if there was one.
fn wipe_removed(value: Option<Vec<u8>>) {
    if let Some(mut value) = value {
        wipe::bytes(&mut value);
    }
}

/// Wipes every value of `values` (see [`wipe::bytes`]), then empties it.
fn wipe_values(values: &mut BTreeMap<String, Vec<u8>>) {
    for value in values.values_mut() {
        wipe::bytes(value);
    }
    values.clear();
}

impl Drop for Session {
    /// Decrypted values, the user id, the metadata, the flash messages and
    /// the CSRF token do not outlive the session in freed memory.
    fn drop(&mut self) {
        for value in self.data.values_mut() {
            wipe::bytes(value);
        }
        if let Some(user) = self.user.as_mut() {
            wipe::string(user);
        }
        for value in self.meta.values_mut() {
            wipe::string(value);
        }
        for value in self.flashes.values_mut() {
            wipe::bytes(value);
        }
        if let Some(token) = self.csrf.as_mut() {
            wipe::string(token);
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.stored_id())
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("modified", &self.is_modified())
            .field("renew", &self.changes.renew)
            .field("destroyed", &self.changes.destroyed)
            .finish_non_exhaustive()
    }
}
