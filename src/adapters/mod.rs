//! Web framework adapters over one framework-neutral request cycle.
//!
//! ```text
//! Cookie header(s) ──► LazySession ──(first use: one SELECT)──► &mut Session
//!                                                                  │ handler
//! Set-Cookie ◄── CookiePolicy ◄── CookieAction ◄── SessionStore::save
//! ```
//!
//! Every adapter runs the same cycle through [`Sessions`] (a store plus a
//! [`CookiePolicy`]):
//!
//! 1. [`Sessions::begin`] picks the session cookie out of the request's
//!    `Cookie` headers. Nothing touches the database yet.
//! 2. The handler gets a [`LazySession`]. The session is loaded on first use
//!    only, so a request that never looks at it costs no query and sets no
//!    cookie.
//! 3. [`LazySession::finish`] commits what the handler did and returns the
//!    `Set-Cookie` to send, if any: the new id after a first write or a
//!    [`renew`](crate::Session::renew), a removal after
//!    [`destroy`](crate::Session::destroy) or when the presented cookie named
//!    no live session, or a refreshed `Max-Age` cookie.
//!
//! Bad `Cookie` headers (absent, empty, unparsable, not UTF-8, huge, NUL
//! bytes, or the session cookie twice with different values) never fail a
//! request: the visitor gets a fresh session, and a malformed value costs no
//! query.
//!
//! The session cookie's name is matched byte for byte on the raw `Cookie`
//! headers, in every adapter: no percent-decoding, case folding, quote
//! stripping or Unicode trimming, so `%69%64=…`, `%5F%5FHost-id=…`,
//! `_%5FHost-id=…`, `ID=…` or `"id"=…` never load the session named `id` or
//! `__Host-id` (a name a browser keeps apart from the real cookie, that a
//! sibling subdomain or a plain-HTTP attacker could plant past the
//! `__Host-` prefix, must never be read as it).
//!
//! # Caching
//!
//! A response that sets or removes the session cookie must not be stored
//! by a shared cache (a proxy or CDN would hand one visitor's cookie, or
//! page, to the next). Every adapter adds, to exactly those responses,
//! `Cache-Control: private` unless the handler set a `Cache-Control` of its
//! own (which is then left alone), and `Cookie` to `Vary` (merged into an
//! existing `Vary` as one header, never twice, and not at all when it
//! already names `Cookie` or is `*`). Responses that touch no cookie are
//! left unchanged. Another framework does the same with the
//! [`SetCookie`] that [`LazySession::finish`] returns.
//!
//! # Client metadata
//!
//! Each adapter passes the client's IP address and `User-Agent` to
//! [`LazySession::set_client`], which records them on the session when it
//! is loaded, as far as the store's [`MetadataPolicy`](crate::MetadataPolicy)
//! ([`Config::metadata`](crate::Config::metadata)) allows. The default policy
//! records nothing, and then the call returns at once (no copy, no write).
//! A returning visitor with the same (truncated) address and agent costs no
//! write either. Where the address comes from:
//!
//! | adapter | IP address | user agent |
//! |---|---|---|
//! | `rouille` | `Request::remote_addr()` (the TCP peer) | `User-Agent` header |
//! | `rocket` | `Request::client_ip()` (Rocket's `ip_header`, `X-Real-IP` by default, else the peer) | `User-Agent` header |
//! | `http` | a [`ClientAddr`](http::ClientAddr) (or `SocketAddr`) request extension the server inserts | `User-Agent` header |
//!
//! Behind a reverse proxy the TCP peer is the proxy: call
//! [`LazySession::set_client`] yourself, with the address your trusted
//! proxy forwarded, before the session is first used (the last call before
//! loading wins).
//!
//! | feature | module | shape |
//! |---|---|---|
//! | `rouille` | `adapters::rouille` | wrap a handler: `rouille::with_session` |
//! | `rocket` | `adapters::rocket` | a fairing (`rocket::SessionFairing`) and a request guard (`rocket::SessionGuard`) |
//! | `http` | `adapters::http` | `http::Request` in, `http::Response` out: `http::handle` |
//!
//! Another framework needs only the three calls above:
//!
//! ```
//! use stored_session::adapters::Sessions;
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//! let sessions = Sessions::new(store);
//!
//! // A request without a cookie that stores something.
//! let mut session = sessions.begin(Vec::<&[u8]>::new());
//! session.insert("visits", &1u32)?;
//! let set_cookie = session.finish()?.expect("a new session sets its cookie");
//! let header = set_cookie.header_value(); // the response's Set-Cookie
//! assert!(header.starts_with("id="));
//!
//! // The browser sends it back.
//! let cookie_header = header.split(';').next().unwrap().to_owned();
//! let mut session = sessions.begin([cookie_header.as_bytes()]);
//! assert_eq!(session.get::<u32>("visits")?, Some(1));
//! assert!(session.finish()?.is_none()); // nothing changed: no cookie
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;
use crate::session::Session;
use crate::store::{CookieAction, SessionStore};

mod cookie;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "rocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "rocket")))]
pub mod rocket;
#[cfg(feature = "rouille")]
#[cfg_attr(docsrs, doc(cfg(feature = "rouille")))]
pub mod rouille;

pub(crate) use self::cookie::Presented;
pub use self::cookie::{CookiePolicy, SetCookie, HOST_PREFIX};
/// The `SameSite` attribute values, from the `cookie` crate.
pub use ::cookie::SameSite;

/// A session store together with the cookie policy it is served under: what
/// every adapter is built from. Cheap to clone.
///
/// ```
/// use stored_session::adapters::{CookiePolicy, Sessions};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let sessions = Sessions::with_policy(store, CookiePolicy::new().with_host_prefix(true))?;
/// assert_eq!(sessions.policy().name(), "__Host-id");
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone)]
pub struct Sessions {
    store: SessionStore,
    policy: Arc<CookiePolicy>,
}

impl Sessions {
    /// Serves `store` under the default [`CookiePolicy`] (`id`, HttpOnly,
    /// SameSite=Lax, Secure, Path=/, session cookie).
    pub fn new(store: SessionStore) -> Self {
        Sessions {
            store,
            policy: Arc::new(CookiePolicy::default()),
        }
    }

    /// Serves `store` under `policy`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) when the policy is invalid (see
    /// [`CookiePolicy::validate`]).
    pub fn with_policy(store: SessionStore, policy: CookiePolicy) -> Result<Self> {
        policy.validate()?;
        Ok(Sessions {
            store,
            policy: Arc::new(policy),
        })
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The cookie policy.
    pub fn policy(&self) -> &CookiePolicy {
        &self.policy
    }

    /// Starts a request: finds the session cookie in the request's `Cookie`
    /// header values (pass every `Cookie` header, as raw bytes or text).
    /// Nothing is loaded until the session is first used.
    pub fn begin<I, H>(&self, cookie_headers: I) -> LazySession
    where
        I: IntoIterator<Item = H>,
        H: AsRef<[u8]>,
    {
        self.begin_with(self.policy.find(cookie_headers))
    }

    pub(crate) fn begin_with(&self, presented: Presented) -> LazySession {
        LazySession {
            sessions: self.clone(),
            presented,
            session: None,
            client: None,
        }
    }

    /// Loads the session a request presented (no query for a malformed or
    /// absent cookie).
    pub(crate) fn load(&self, presented: &Presented) -> Result<Session> {
        self.store.load(presented.as_load_arg())
    }

    /// The client metadata worth keeping under the store's policy, or
    /// `None` when the policy records nothing (the default): then nothing is
    /// copied.
    pub(crate) fn client(&self, ip: Option<IpAddr>, user_agent: Option<&str>) -> Option<Client> {
        let policy = self.store.config().metadata;
        let ip = ip.filter(|_| policy.ip != crate::IpTracking::Off);
        let user_agent = user_agent.filter(|_| policy.user_agent).map(str::to_owned);
        (ip.is_some() || user_agent.is_some()).then_some(Client { ip, user_agent })
    }

    /// Commits a loaded session and turns the store's verdict into the
    /// `Set-Cookie` the response needs.
    pub(crate) fn commit(&self, session: &mut Session) -> Result<Option<SetCookie>> {
        Ok(match self.store.save(session)? {
            CookieAction::Set(id, lifetime) => Some(self.policy.session_cookie(&id, lifetime)),
            CookieAction::Remove => Some(self.policy.removal_cookie()),
            // A persistent cookie follows the session's deadline: send it
            // again whenever the store moved the idle clock (write or touch).
            CookieAction::Refresh(id, lifetime)
                if lifetime.max_age(self.policy.max_age()).is_some() =>
            {
                Some(self.policy.session_cookie(&id, lifetime))
            }
            CookieAction::Refresh(..) | CookieAction::Keep => None,
        })
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .finish()
    }
}

/// One request's session, loaded from the database on first use.
///
/// Call [`load`](LazySession::load) for the full [`Session`] API, or the
/// shortcuts ([`get`](LazySession::get), [`insert`](LazySession::insert),
/// [`remove`](LazySession::remove), [`renew`](LazySession::renew),
/// [`destroy`](LazySession::destroy)), which load as needed. If nothing does,
/// the request costs no query and [`finish`](LazySession::finish) sets no
/// cookie.
///
/// ```
/// # use stored_session::adapters::Sessions;
/// # use stored_session::{Keyring, SessionStore};
/// # let sessions = Sessions::new(SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?);
/// let mut session = sessions.begin(["theme=dark"]);
/// assert!(!session.is_loaded());
/// let visits = session.get::<u64>("visits")?.unwrap_or(0);
/// session.insert("visits", &(visits + 1))?;
/// assert!(session.is_loaded());
/// assert!(session.finish()?.is_some());
/// # Ok::<(), stored_session::Error>(())
/// ```
pub struct LazySession {
    sessions: Sessions,
    presented: Presented,
    session: Option<Session>,
    /// Client metadata to record once the session is loaded.
    client: Option<Client>,
}

/// A request's client address and user agent, kept only when the store's
/// metadata policy records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Client {
    ip: Option<IpAddr>,
    user_agent: Option<String>,
}

impl Client {
    /// Records this client on `session` (as its policy allows).
    pub(crate) fn apply(&self, session: &mut Session) {
        session.set_client(self.ip, self.user_agent.as_deref());
    }
}

impl LazySession {
    /// The session, loaded now if this is its first use.
    ///
    /// # Errors
    ///
    /// Database and pool failures only; a bad or unknown cookie gives a
    /// fresh session.
    pub fn load(&mut self) -> Result<&mut Session> {
        let session = match self.session.take() {
            Some(session) => session,
            None => {
                let mut session = self.sessions.load(&self.presented)?;
                if let Some(client) = self.client.take() {
                    client.apply(&mut session);
                }
                session
            }
        };
        Ok(self.session.insert(session))
    }

    /// Records the client's IP address and user agent on the session (see
    /// [`Session::set_client`]), as far as the store's
    /// [`MetadataPolicy`](crate::MetadataPolicy) allows: with the default
    /// policy this does nothing. Before the session is loaded the values are
    /// kept for the load (a later call replaces an earlier one, so an app
    /// behind a proxy can override what the adapter passed); after, they
    /// are applied at once. Recording never loads the session by itself.
    ///
    /// ```
    /// # use stored_session::adapters::Sessions;
    /// # use stored_session::{Config, IpTracking, Keyring, MetadataPolicy, SessionStore};
    /// let policy = MetadataPolicy { ip: IpTracking::Truncated, user_agent: true };
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .config(Config::default().metadata(policy))
    ///     .open_migrated("sqlite::memory:")?;
    /// let sessions = Sessions::new(store);
    /// let mut lazy = sessions.begin(Vec::<&[u8]>::new());
    /// lazy.set_client(Some("203.0.113.9".parse().unwrap()), Some("curl/8.5"));
    /// let session = lazy.load()?;
    /// assert_eq!(session.meta("ip"), Some("203.0.113.0"));
    /// assert_eq!(session.meta("user_agent"), Some("curl/8.5"));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn set_client(&mut self, ip: Option<IpAddr>, user_agent: Option<&str>) {
        let client = self.sessions.client(ip, user_agent);
        match (self.session.as_mut(), client) {
            (Some(session), Some(client)) => client.apply(session),
            (Some(_), None) => {}
            (None, client) => self.client = client,
        }
    }

    /// Whether the session was loaded (used) in this request.
    pub fn is_loaded(&self) -> bool {
        self.session.is_some()
    }

    /// The session if it was loaded, without loading it.
    pub fn loaded(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// [`Session::get`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load) and [`Session::get`].
    pub fn get<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        self.load()?.get(key)
    }

    /// [`Session::insert`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load) and [`Session::insert`].
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<()> {
        self.load()?.insert(key, value)
    }

    /// [`Session::remove`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn remove(&mut self, key: &str) -> Result<bool> {
        Ok(self.load()?.remove(key))
    }

    /// [`Session::renew`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn renew(&mut self) -> Result<()> {
        self.load()?.renew();
        Ok(())
    }

    /// [`Session::destroy`], loading first if needed (the row must be known
    /// to be deleted).
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn destroy(&mut self) -> Result<()> {
        self.load()?.destroy();
        Ok(())
    }

    /// Ends the request: commits the session if it was loaded and returns
    /// the `Set-Cookie` the response must carry, if any. A session never
    /// loaded costs nothing and returns `None`.
    ///
    /// # Errors
    ///
    /// As [`SessionStore::save`]: nothing the handler did was saved, so
    /// answer with an error status rather than the handler's response.
    pub fn finish(mut self) -> Result<Option<SetCookie>> {
        match self.session.as_mut() {
            Some(session) => self.sessions.commit(session),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("presented", &self.presented)
            .field("session", &self.session)
            .finish()
    }
}

/// What a response that sets or removes the session cookie must carry so
/// that no shared cache stores it (see [the module docs](self#caching)).
#[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheHeaders {
    /// Add `Cache-Control: private` (the response has no `Cache-Control`).
    pub(crate) private: bool,
    /// `Some`: replace every `Vary` header with this one value (the
    /// response's own list with `Cookie` added); `None`: its `Vary` already
    /// covers `Cookie` (or is `*`), leave it.
    pub(crate) vary: Option<Vec<u8>>,
}

/// The [`CacheHeaders`] for a response that sets or removes the session
/// cookie, given whether it has a `Cache-Control` header and the values of
/// its `Vary` headers.
#[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
pub(crate) fn cache_headers<'a>(
    has_cache_control: bool,
    vary: impl IntoIterator<Item = &'a [u8]>,
) -> CacheHeaders {
    let mut merged: Vec<u8> = Vec::new();
    for value in vary {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token == b"*" || token.eq_ignore_ascii_case(b"cookie") {
                return CacheHeaders {
                    private: !has_cache_control,
                    vary: None,
                };
            }
            if !token.is_empty() {
                merged.extend_from_slice(token);
                merged.extend_from_slice(b", ");
            }
        }
    }
    merged.extend_from_slice(b"Cookie");
    CacheHeaders {
        private: !has_cache_control,
        vary: Some(merged),
    }
}

/// The body sent with a failure's [`http_status`](crate::Error::http_status).
#[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
pub(crate) fn error_body(status: u16) -> &'static str {
    if status == 503 {
        "service unavailable\n"
    } else {
        "internal server error\n"
    }
}

/// Logs a failed session operation. Errors never carry a session id.
#[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
pub(crate) fn log_failure(what: &str, error: &crate::Error) {
    log::error!(target: "stored_session", "session {what} failed: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, Keyring};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn sessions(policy: CookiePolicy) -> (Sessions, crate::ManualClock) {
        let clock =
            crate::ManualClock::new(chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap());
        let store = SessionStore::builder(Keyring::generate())
            .config(crate::Config::default().clock(clock.clock()))
            .open_migrated("sqlite::memory:")
            .unwrap();
        (Sessions::with_policy(store, policy).unwrap(), clock)
    }

    fn reads(sessions: &Sessions) -> Arc<AtomicUsize> {
        let n = Arc::new(AtomicUsize::new(0));
        let sink = n.clone();
        sessions.store().subscribe(move |e| {
            if e.kind == EventKind::Read {
                sink.fetch_add(1, Ordering::SeqCst);
            }
        });
        n
    }

    fn cookie_pair(set: &SetCookie) -> String {
        let c = set.as_cookie();
        format!("{}={}", c.name(), c.value())
    }

    #[test]
    fn unused_session_costs_nothing() {
        let (sessions, _) = sessions(CookiePolicy::new());
        let reads = reads(&sessions);
        let valid = format!("id={}", crate::SessionId::generate().as_cookie_value());
        let lazy = sessions.begin([valid.as_str()]);
        assert!(lazy.finish().unwrap().is_none());
        assert_eq!(reads.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn max_age_cookie_follows_the_idle_clock() {
        let policy = CookiePolicy::new().with_max_age(Some(Duration::from_secs(86_400)));
        let (sessions, clock) = sessions(policy);
        let mut s = sessions.begin(Vec::<String>::new());
        s.insert("k", &1).unwrap();
        let set = s.finish().unwrap().unwrap();
        assert!(set.header_value().contains("Max-Age=86400"));
        let header = cookie_pair(&set);

        // Read within touch_after: no write, no cookie.
        let mut s = sessions.begin([header.as_str()]);
        assert_eq!(s.get::<i32>("k").unwrap(), Some(1));
        assert!(s.finish().unwrap().is_none());

        // After touch_after the store touches the row: the cookie is re-sent
        // with the same id.
        clock.advance(Duration::from_secs(600));
        let mut s = sessions.begin([header.as_str()]);
        s.load().unwrap();
        let again = s.finish().unwrap().expect("refreshed cookie");
        assert_eq!(cookie_pair(&again), header);
        assert!(again.header_value().contains("Max-Age=86400"));

        // A data write moves the idle clock on the same schedule: not within
        // touch_after of the last refresh (no cookie), but after it.
        clock.advance(Duration::from_secs(10));
        let mut s = sessions.begin([header.as_str()]);
        s.insert("k", &2).unwrap();
        assert!(s.finish().unwrap().is_none());
        clock.advance(Duration::from_secs(600));
        let mut s = sessions.begin([header.as_str()]);
        s.insert("k", &3).unwrap();
        assert_eq!(cookie_pair(&s.finish().unwrap().unwrap()), header);
        let mut s = sessions.begin([header.as_str()]);
        assert_eq!(s.get::<i32>("k").unwrap(), Some(3));
    }

    #[test]
    fn session_cookie_is_not_resent_on_touch() {
        let (sessions, clock) = sessions(CookiePolicy::new());
        let mut s = sessions.begin(Vec::<String>::new());
        s.insert("k", &1).unwrap();
        let header = cookie_pair(&s.finish().unwrap().unwrap());
        clock.advance(Duration::from_secs(600));
        let mut s = sessions.begin([header.as_str()]);
        s.load().unwrap();
        assert!(s.finish().unwrap().is_none());
    }

    #[test]
    fn conflicting_cookies_give_a_fresh_session_and_a_removal() {
        let (sessions, _) = sessions(CookiePolicy::new());
        let reads = reads(&sessions);
        let mut s = sessions.begin(Vec::<String>::new());
        s.insert("k", &1).unwrap();
        let header = cookie_pair(&s.finish().unwrap().unwrap());
        let other = format!("id={}", crate::SessionId::generate().as_cookie_value());
        let mut s = sessions.begin([header.as_str(), other.as_str()]);
        assert!(s.load().unwrap().is_new());
        assert_eq!(reads.load(Ordering::SeqCst), 0);
        assert!(s.finish().unwrap().unwrap().is_removal());
    }

    #[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
    #[test]
    fn cache_headers_merge_vary_once() {
        let none: [&[u8]; 0] = [];
        let plain = cache_headers(false, none);
        assert!(plain.private);
        assert_eq!(plain.vary.as_deref(), Some(&b"Cookie"[..]));
        assert!(!cache_headers(true, none).private);
        let merged = cache_headers(false, [&b"Accept-Encoding"[..], b" Origin ,, Accept "]);
        assert_eq!(
            merged.vary.as_deref(),
            Some(&b"Accept-Encoding, Origin, Accept, Cookie"[..])
        );
        for covered in [&b"cookie"[..], b"Accept, COOKIE", b"*", b"Origin,Cookie"] {
            assert_eq!(cache_headers(false, [covered]).vary, None, "{covered:?}");
        }
        // Not `Cookie`, only containing it.
        let near = cache_headers(false, [&b"Cookies, X-Cookie"[..]]);
        assert_eq!(
            near.vary.as_deref(),
            Some(&b"Cookies, X-Cookie, Cookie"[..])
        );
    }

    #[test]
    fn debug_output_never_shows_the_id() {
        let (sessions, _) = sessions(CookiePolicy::new());
        let id = crate::SessionId::generate();
        let header = format!("id={}", id.as_cookie_value());
        let mut lazy = sessions.begin([header.as_str()]);
        lazy.load().unwrap();
        let text = format!("{lazy:?} {sessions:?}");
        assert!(!text.contains(id.as_cookie_value()), "{text}");
    }
}
