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
//!    no live session, or a refreshed `Max-Age` cookie. When it fails, the
//!    response is [`Sessions::error_response`] instead (see
//!    [Failures](#failures)).
//!
//! # Failures
//!
//! When the session cannot be loaded, when the handler returns a
//! [`crate::Error`], or when the commit at the end of the request fails
//! (a session over [`Config::max_payload`](crate::Config::max_payload), a
//! database outage), the adapter answers with an [`ErrorResponse`]: the
//! application's, from the one error handler it sets with
//! [`Sessions::with_error_handler`] (it gets the typed error and the
//! [`Stage`]), or by default [`ErrorResponse::for_error`]: `413` for
//! [`Error::PayloadTooLarge`], `503` when
//! retrying later may work (no pooled connection in time, a database that
//! did not answer in time or dropped the connection), `500` otherwise, with
//! a one-line plain-text body; the details go to the log, never to the
//! client. Every adapter honours the same handler.
//!
//! Every failed load and commit, and every error a handler returns, is
//! logged through `log` at `error` level under the target `stored_session`,
//! with the session's hashed id (`2::…`, as in the store's events) and never
//! its cookie value, whether or not an error handler is set:
//!
//! ```text
//! session commit failed (sid: "2::9f86d0…"): session payload of 2097224 bytes exceeds the maximum of 1048576 bytes
//! ```
//!
//! What a failed commit means for the response and the cookie: nothing the
//! handler changed in the session was saved, so the handler's response
//! (its status, headers, cookies and body, which may say "saved" or
//! "logged out") is dropped and the error response is sent in its place
//! (in Rocket the security headers Rocket's `Shield` set, and `Server`,
//! are kept). No `Set-Cookie` for the session is sent: the browser keeps
//! the cookie it had, which still names the session as it was before the
//! request (after a failed [`destroy`](crate::Session::destroy) the visitor
//! is still signed in; after a failed [`renew`](crate::Session::renew) the
//! old id still works; a new session gets no cookie). After an
//! [`Error::Timeout`] the database may have applied
//! the write all the same; the cookie the browser kept then may name no
//! session, and it gets a fresh one on its next request.
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
//! | adapter | IP address (the peer) | user agent |
//! |---|---|---|
//! | `rouille` | `Request::remote_addr()` (the TCP peer) | `User-Agent` header |
//! | `rocket` | `Request::remote()` (the TCP peer; Rocket's `ip_header`, `X-Real-IP` by default, is not read) | `User-Agent` header |
//! | `http` | a `SocketAddr` request extension the server inserts (the peer), unless the application inserted a [`ClientAddr`](http::ClientAddr), which is used as it is | `User-Agent` header |
//!
//! # Behind a proxy
//!
//! Behind a reverse proxy (nginx, HAProxy, a load balancer, a CDN) the TCP
//! peer is the proxy. Name your proxies with
//! [`Sessions::with_trusted_proxies`], and every adapter takes the client's
//! address from their forwarding header, through the one rule of
//! [`TrustedProxies::client_ip`]: a request whose peer is not a trusted
//! proxy is the client's own, its `X-Forwarded-For` and `Forwarded`
//! headers ignored; from a trusted proxy, the header's entries are read from
//! the right, skipping trusted proxies, and the first other address is the
//! client's (the left-most entries are whatever the client sent, so they are
//! never believed). Only one header is read, `X-Forwarded-For` unless
//! [`ForwardedHeader::Forwarded`] is chosen: the one your proxies write.
//! Nothing is trusted by default, since any client can send these headers.
//!
//! ```
//! use stored_session::adapters::{Sessions, TrustedProxies};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//! // nginx on the same host, and the load balancers of the private network.
//! let sessions = Sessions::new(store)
//!     .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1").with("10.0.0.0/8"))?;
//! # let _ = sessions;
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! An application can still call [`LazySession::set_client`] itself before
//! the session is first used (the last call before loading wins).
//!
//! | feature | module | shape |
//! |---|---|---|
//! | `rouille` | `adapters::rouille` | wrap a handler: `rouille::with_session` |
//! | `rocket` | `adapters::rocket` | a fairing (`rocket::SessionFairing`) and a request guard (`rocket::SessionGuard`) |
//! | `http` | `adapters::http` | `http::Request` in, `http::Response` out: `http::handle` |
//!
//! Another framework needs only the three calls above (and
//! [`Sessions::error_response`] for a failure):
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

use crate::csrf::{Csrf, CsrfRejection};
use crate::error::{Error, Result};
use crate::id::{SessionId, StoredId};
use crate::session::Session;
use crate::store::{CookieAction, SessionStore};

mod cookie;
mod failure;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod proxies;
#[cfg(feature = "rocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "rocket")))]
pub mod rocket;
#[cfg(feature = "rouille")]
#[cfg_attr(docsrs, doc(cfg(feature = "rouille")))]
pub mod rouille;

pub(crate) use self::cookie::Presented;
pub use self::cookie::{CookiePolicy, SetCookie, HOST_PREFIX};
pub(crate) use self::failure::log_failure;
use self::failure::{respond, ErrorHandler};
pub use self::failure::{ErrorResponse, Stage};
pub use self::proxies::{ForwardedHeader, TrustedProxies};
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
    /// The application's error handler; `None`: [`ErrorResponse::for_error`].
    on_error: Option<ErrorHandler>,
    /// The CSRF rules the adapters' checks apply.
    csrf: Arc<Csrf>,
    /// The reverse proxies whose forwarding header names the client.
    proxies: Arc<TrustedProxies>,
}

impl Sessions {
    /// Serves `store` under the default [`CookiePolicy`] (`id`, HttpOnly,
    /// SameSite=Lax, Secure, Path=/, session cookie).
    pub fn new(store: SessionStore) -> Self {
        Sessions {
            store,
            policy: Arc::new(CookiePolicy::default()),
            on_error: None,
            csrf: Arc::new(Csrf::new()),
            proxies: Arc::default(),
        }
    }

    /// Serves `store` under `policy`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the policy is invalid (see
    /// [`CookiePolicy::validate`]).
    pub fn with_policy(store: SessionStore, policy: CookiePolicy) -> Result<Self> {
        policy.validate()?;
        Ok(Sessions {
            store,
            policy: Arc::new(policy),
            on_error: None,
            csrf: Arc::new(Csrf::new()),
            proxies: Arc::default(),
        })
    }

    /// Answers every failed session operation with `handler`'s response,
    /// on every adapter built from these sessions: a load that failed, a
    /// handler that returned a [`crate::Error`], a commit that failed (see
    /// [the module docs](self#failures)). The handler gets the typed error
    /// and the [`Stage`] it happened in; the default, without a handler, is
    /// [`ErrorResponse::for_error`] (`413` for [`Error::PayloadTooLarge`],
    /// `503` when retrying later may work, `500` otherwise). A handler that
    /// panics gets the default response. The failure is logged at `error`
    /// level whether or not a handler is set.
    ///
    /// The handler runs on the request's thread (in Rocket, on an async
    /// worker): keep it quick, and do not block on the session store in it.
    ///
    /// ```
    /// use stored_session::adapters::{ErrorResponse, Sessions, Stage};
    /// use stored_session::{Error, Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let sessions = Sessions::new(store).with_error_handler(|error, stage| match error {
    ///     Error::PayloadTooLarge { .. } => {
    ///         ErrorResponse::json(413, r#"{"error":"your cart is too big to save"}"#)
    ///     }
    ///     _ if ErrorResponse::for_error(error).status() == 503 => {
    ///         ErrorResponse::json(503, r#"{"error":"try again shortly"}"#)
    ///             .with_header("Retry-After", "5")
    ///     }
    ///     _ => ErrorResponse::json(500, format!(r#"{{"error":"session {stage} failed"}}"#)),
    /// });
    /// let response = sessions.error_response(&Error::IdsExhausted, Stage::Commit);
    /// assert_eq!(response.body(), r#"{"error":"session commit failed"}"#);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn with_error_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(&Error, Stage) -> ErrorResponse + Send + Sync + 'static,
    {
        self.on_error = Some(Arc::new(handler));
        self
    }

    /// Reads the client's address from `proxies`' forwarding header
    /// (`X-Forwarded-For` unless set otherwise) when the request comes from
    /// one of them, on every adapter built from these sessions (see
    /// [Behind a proxy](self#behind-a-proxy)). By default no proxy is
    /// trusted: the client's address is the TCP peer's, whatever the
    /// request's headers say.
    ///
    /// ```
    /// use stored_session::adapters::{Sessions, TrustedProxies};
    /// use stored_session::{Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let sessions = Sessions::new(store)
    ///     .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1").with("10.0.0.0/8"))?;
    /// assert!(sessions.trusted_proxies().contains("10.20.30.40".parse().unwrap()));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when an entry of `proxies` is not an address or a
    /// CIDR network (see [`TrustedProxies::validate`]).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Result<Self> {
        proxies.validate()?;
        self.proxies = Arc::new(proxies);
        Ok(self)
    }

    /// The trusted reverse proxies (none by default).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// The response for a failed session operation: the error handler's
    /// (see [`with_error_handler`](Sessions::with_error_handler)), or the
    /// default [`ErrorResponse::for_error`]. The adapters call this; glue
    /// for another framework does the same, then logs nothing more (the
    /// failed load or commit was logged already).
    pub fn error_response(&self, error: &Error, stage: Stage) -> ErrorResponse {
        respond(self.on_error.as_ref(), error, stage)
    }

    /// Sets the CSRF rules the adapters' checks apply (form field, header,
    /// extra allowed origins; see [`Csrf`]). Default: `Csrf::new()`.
    ///
    /// ```
    /// use stored_session::adapters::Sessions;
    /// use stored_session::csrf::Csrf;
    /// use stored_session::{Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let sessions = Sessions::new(store)
    ///     .with_csrf(Csrf::new().with_allowed_origin("https://app.example.com")?);
    /// assert_eq!(sessions.csrf().allowed_origins().count(), 1);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn with_csrf(mut self, csrf: Csrf) -> Self {
        self.csrf = Arc::new(csrf);
        self
    }

    /// The CSRF rules (see [`with_csrf`](Sessions::with_csrf)).
    pub fn csrf(&self) -> &Csrf {
        &self.csrf
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
            pending: Vec::new(),
            load_failed: false,
        }
    }

    /// Loads the session a request presented (no query for a malformed or
    /// absent cookie).
    /// A failure is logged at `error` level with the presented id's hash.
    pub(crate) fn load(&self, presented: &Presented) -> Result<Session> {
        self.store
            .load(presented.as_load_arg())
            .inspect_err(|error| {
                let sid = presented
                    .as_load_arg()
                    .and_then(SessionId::parse)
                    .map(|id| id.stored_id());
                log_failure(Stage::Load, sid, error);
            })
    }

    /// The client metadata worth keeping for the store (its policy, GeoIP
    /// database, device labels), or `None` when it uses none (the
    /// default): then nothing is copied.
    pub(crate) fn client(&self, ip: Option<IpAddr>, user_agent: Option<&str>) -> Option<Client> {
        // Kept when the policy records them, or the store locates,
        // labels or compares them (features `geoip`, `devices`).
        let (want_ip, want_user_agent) = self.store.client_wanted();
        let ip = ip.filter(|_| want_ip);
        let user_agent = user_agent.filter(|_| want_user_agent).map(str::to_owned);
        (ip.is_some() || user_agent.is_some()).then_some(Client { ip, user_agent })
    }

    /// Commits a loaded session and turns the store's verdict into the
    /// `Set-Cookie` the response needs. A failure is logged at `error`
    /// level with the session's hashed id.
    pub(crate) fn commit(&self, session: &mut Session) -> Result<Option<SetCookie>> {
        let action = self.store.save(session).inspect_err(|error| {
            log_failure(Stage::Commit, session.stored_id(), error);
        })?;
        Ok(match action {
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

/// The response to a refused CSRF check: `403`, a fixed one-line reason
/// (nothing from the request). Every adapter's check answers with it.
#[cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]
pub(crate) fn csrf_refused(rejection: CsrfRejection) -> ErrorResponse {
    log::info!(target: "stored_session", "refused a request: {}", rejection.reason());
    ErrorResponse::text(
        rejection.http_status(),
        format!("forbidden: {}\n", rejection.reason()),
    )
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("store", &self.store)
            .field("policy", &self.policy)
            .field(
                "error_handler",
                &if self.on_error.is_some() {
                    "custom"
                } else {
                    "default"
                },
            )
            .field("trusted_proxies", &self.proxies)
            .finish()
    }
}

/// One request's session, loaded from the database on first use.
///
/// It has the methods of [`Session`] a handler needs, with the same
/// names:
///
/// * the reads ([`get`](LazySession::get), [`user_id`](LazySession::user_id),
///   [`contains_key`](LazySession::contains_key), …) and the edits whose
///   result depends on the stored values ([`insert`](LazySession::insert),
///   [`remove`](LazySession::remove), [`take`](LazySession::take)) load
///   the session first, so they return a `Result` (a failed load);
/// * the edits that only record what the request wants
///   ([`set_user`](LazySession::set_user), [`clear_user`](LazySession::clear_user),
///   [`set_meta`](LazySession::set_meta), [`clear`](LazySession::clear),
///   [`renew`](LazySession::renew), [`destroy`](LazySession::destroy))
///   return what [`Session`]'s do and touch no database: they are applied,
///   in the order they were made, when the session loads, at the latest in
///   [`finish`](LazySession::finish) (where a failed load is then
///   reported).
///
/// [`load`](LazySession::load) gives the full [`Session`]. A request that
/// uses none of these costs no query, and [`finish`](LazySession::finish)
/// sets no cookie.
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
/// // On login: bind the user and move to a new id.
/// session.set_user("alice");
/// session.renew();
/// assert_eq!(session.user_id()?, Some("alice"));
/// assert!(session.finish()?.is_some());
/// # Ok::<(), stored_session::Error>(())
/// ```
pub struct LazySession {
    sessions: Sessions,
    presented: Presented,
    session: Option<Session>,
    /// Client metadata to record once the session is loaded.
    client: Option<Client>,
    /// Edits made before the session was loaded, applied on load in order.
    pending: Vec<Pending>,
    /// The last attempt to load the session failed.
    load_failed: bool,
}

/// An edit recorded before the session was loaded.
enum Pending {
    SetUser(String),
    ClearUser,
    SetMeta(String, Option<String>),
    SetExpiry(crate::Expiry),
    Clear,
    Renew,
    Destroy,
}

impl Pending {
    fn apply(&self, session: &mut Session) {
        match self {
            Pending::SetUser(user) => session.set_user(user.as_str()),
            Pending::ClearUser => session.clear_user(),
            Pending::SetMeta(name, value) => session.set_meta(name, value.as_deref()),
            Pending::SetExpiry(expiry) => session.set_expiry(*expiry),
            Pending::Clear => session.clear(),
            Pending::Renew => session.renew(),
            Pending::Destroy => session.destroy(),
        }
    }
}

impl Drop for Pending {
    /// A user id or metadata never applied does not linger in freed memory
    /// (as [`Session`] does with its own).
    fn drop(&mut self) {
        match self {
            Pending::SetUser(user) => crate::wipe::string(user),
            Pending::SetMeta(_, Some(value)) => crate::wipe::string(value),
            _ => {}
        }
    }
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
    /// The session, loaded now if this is its first use (with the edits
    /// made before, see [`LazySession`], applied).
    ///
    /// # Errors
    ///
    /// Database and pool failures only; a bad or unknown cookie gives a
    /// fresh session. The failure is logged at `error` level, and
    /// [`load_failed`](LazySession::load_failed) tells it until a later
    /// attempt succeeds.
    pub fn load(&mut self) -> Result<&mut Session> {
        let session = match self.session.take() {
            Some(session) => session,
            None => {
                let loaded = self.sessions.load(&self.presented);
                self.load_failed = loaded.is_err();
                let mut session = loaded?;
                if let Some(client) = self.client.take() {
                    client.apply(&mut session);
                }
                for edit in self.pending.drain(..) {
                    edit.apply(&mut session);
                }
                session
            }
        };
        Ok(self.session.insert(session))
    }

    /// The loaded session, or the pending edit recorded for the next load.
    fn edit(&mut self, edit: Pending) {
        match self.session.as_mut() {
            Some(session) => edit.apply(session),
            None => self.pending.push(edit),
        }
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

    /// The sessions (store, cookie policy, error handler) this request is
    /// served under.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Whether the session was loaded (used) in this request.
    pub fn is_loaded(&self) -> bool {
        self.session.is_some()
    }

    /// The session if it was loaded, without loading it.
    pub fn loaded(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether the last attempt to load the session failed (and none
    /// succeeded since). The adapters use it to report a handler's `Err`
    /// as [`Stage::Load`] rather than [`Stage::Handler`].
    pub fn load_failed(&self) -> bool {
        self.load_failed && self.session.is_none()
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

    /// [`Session::take`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load) and [`Session::take`].
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        self.load()?.take(key)
    }

    /// [`Session::contains_key`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn contains_key(&mut self, key: &str) -> Result<bool> {
        Ok(self.load()?.contains_key(key))
    }

    /// [`Session::keys`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn keys(&mut self) -> Result<impl Iterator<Item = &str>> {
        Ok(self.load()?.keys())
    }

    /// [`Session::len`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn len(&mut self) -> Result<usize> {
        Ok(self.load()?.len())
    }

    /// [`Session::is_empty`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.load()?.is_empty())
    }

    /// [`Session::user_id`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn user_id(&mut self) -> Result<Option<&str>> {
        Ok(self.load()?.user_id())
    }

    /// [`Session::expiry`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn expiry(&mut self) -> Result<crate::Expiry> {
        Ok(self.load()?.expiry())
    }

    /// [`Session::meta`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn meta(&mut self, name: &str) -> Result<Option<&str>> {
        Ok(self.load()?.meta(name))
    }

    /// [`Session::location`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn location(&mut self) -> Result<Option<crate::Location>> {
        Ok(self.load()?.location())
    }

    /// [`Session::device`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn device(&mut self) -> Result<Option<&str>> {
        Ok(self.load()?.device())
    }

    /// [`Session::client_change`]: whether this request's client is on
    /// another network (or in another country) than the one recorded for
    /// the session, loading first if needed (the adapters have reported the
    /// client by then).
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn client_change(&mut self) -> Result<Option<crate::ClientChange>> {
        Ok(self.load()?.client_change())
    }

    /// [`Session::is_new`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn is_new(&mut self) -> Result<bool> {
        Ok(self.load()?.is_new())
    }

    /// [`Session::stored_id`] (the hashed id, safe to log), loading first
    /// if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn stored_id(&mut self) -> Result<Option<StoredId>> {
        Ok(self.load()?.stored_id())
    }

    /// [`Session::created_at`], loading first if needed.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn created_at(&mut self) -> Result<chrono::DateTime<chrono::Utc>> {
        Ok(self.load()?.created_at())
    }

    /// [`Session::flash`]: a message for a later request (loads first).
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load), and [`Error::Encode`].
    pub fn flash<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<()> {
        self.load()?.flash(key, value)
    }

    /// [`Session::take_flash`]: reads a flash once (loads first).
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load), and [`Error::Decode`].
    pub fn take_flash<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        self.load()?.take_flash(key)
    }

    /// [`Session::flashes`]: reads every waiting flash once (loads first).
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load), and [`Error::Decode`].
    pub fn flashes<T: DeserializeOwned>(
        &mut self,
    ) -> Result<std::collections::BTreeMap<String, T>> {
        self.load()?.flashes()
    }

    /// [`Session::csrf_token`]: the session's CSRF token, created on first
    /// use (loads first). Put it in every form as the field
    /// [`Csrf::field`] or send it in the header [`Csrf::header`].
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load).
    pub fn csrf_token(&mut self) -> Result<String> {
        Ok(self.load()?.csrf_token())
    }

    /// Applies [`Sessions::csrf`]'s rules to a request (see
    /// [`Csrf::verify`]): a safe method (`GET`, `HEAD`, `OPTIONS`,
    /// `TRACE`) passes without loading the session; any other must come
    /// from this site (Fetch Metadata / `Origin`) and carry the session's
    /// token in the header or `form_token` (the form field your code
    /// parsed). The outer `Result` is a failed load; the inner one the
    /// verdict, a rejection to answer with `403` (the adapters' `csrf_*`
    /// helpers build that response).
    ///
    /// ```
    /// use stored_session::adapters::Sessions;
    /// use stored_session::csrf::CsrfRejection;
    /// use stored_session::{Keyring, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let sessions = Sessions::new(store);
    /// let mut session = sessions.begin(None::<&str>);
    /// let token = session.csrf_token()?;
    /// let headers = |name: &str| (name == "Sec-Fetch-Site").then_some("same-origin");
    /// assert_eq!(session.verify_csrf("GET", headers, None)?, Ok(()));
    /// assert_eq!(session.verify_csrf("POST", headers, Some(&token))?, Ok(()));
    /// assert_eq!(
    ///     session.verify_csrf("POST", headers, Some("forged"))?,
    ///     Err(CsrfRejection::InvalidToken)
    /// );
    /// let cross = |name: &str| (name == "Sec-Fetch-Site").then_some("cross-site");
    /// assert_eq!(session.verify_csrf("POST", cross, Some(&token))?, Err(CsrfRejection::CrossSite));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load), for an unsafe method.
    pub fn verify_csrf<'h>(
        &mut self,
        method: &str,
        headers: impl Fn(&str) -> Option<&'h str>,
        form_token: Option<&str>,
    ) -> Result<std::result::Result<(), CsrfRejection>> {
        if crate::csrf::is_safe_method(method) {
            return Ok(Ok(()));
        }
        let csrf = self.sessions.csrf.clone();
        let session = self.load()?;
        Ok(csrf.verify(session, method, headers, form_token))
    }

    /// [`Session::set_user`]: binds the session to `user_id` (applied when
    /// the session loads, at the latest in [`finish`](LazySession::finish)).
    pub fn set_user(&mut self, user_id: impl Into<String>) {
        self.edit(Pending::SetUser(user_id.into()));
    }

    /// [`Session::clear_user`] (applied when the session loads, at the
    /// latest in [`finish`](LazySession::finish)).
    pub fn clear_user(&mut self) {
        self.edit(Pending::ClearUser);
    }

    /// [`Session::set_meta`] (applied when the session loads, at the latest
    /// in [`finish`](LazySession::finish)).
    pub fn set_meta(&mut self, name: &str, value: Option<&str>) {
        self.edit(Pending::SetMeta(name.to_owned(), value.map(str::to_owned)));
    }

    /// [`Session::set_expiry`]: how long the session lives, and the
    /// cookie's lifetime with it ("remember me"; applied when the session
    /// loads, at the latest in [`finish`](LazySession::finish)).
    pub fn set_expiry(&mut self, expiry: crate::Expiry) {
        self.edit(Pending::SetExpiry(expiry));
    }

    /// [`Session::clear`] (applied when the session loads, at the latest in
    /// [`finish`](LazySession::finish)).
    pub fn clear(&mut self) {
        self.edit(Pending::Clear);
    }

    /// [`Session::renew`]: a new id at commit (call on login; applied when
    /// the session loads, at the latest in [`finish`](LazySession::finish)).
    pub fn renew(&mut self) {
        self.edit(Pending::Renew);
    }

    /// [`Session::destroy`]: at commit the row is deleted and the cookie
    /// removed (call on logout). Like [`Session::destroy`] it returns
    /// nothing: the row must be known to be deleted, so an unloaded session
    /// is loaded in [`finish`](LazySession::finish), where a failure is
    /// reported; if the session is loaded later in the request, everything
    /// it held is gone at once, as with [`Session::destroy`].
    pub fn destroy(&mut self) {
        self.edit(Pending::Destroy);
    }

    /// Ends the request: commits the session if it was loaded (or loads it
    /// first when edits are pending) and returns the `Set-Cookie` the
    /// response must carry, if any. A session never used costs nothing and
    /// returns `None`.
    ///
    /// # Errors
    ///
    /// As [`load`](LazySession::load) and [`SessionStore::save`]: nothing
    /// the handler did was saved, so answer with an error response (see
    /// [`Sessions::error_response`]) rather than the handler's response,
    /// and send no `Set-Cookie`. The failure is logged at `error` level.
    pub fn finish(self) -> Result<Option<SetCookie>> {
        self.finish_staged().map_err(|(error, _)| error)
    }

    /// [`finish`](LazySession::finish), telling a failed load of pending
    /// edits ([`Stage::Load`]) from a failed commit ([`Stage::Commit`]).
    pub(crate) fn finish_staged(mut self) -> Result<Option<SetCookie>, (Error, Stage)> {
        if self.session.is_none() && !self.pending.is_empty() {
            self.load().map_err(|error| (error, Stage::Load))?;
        }
        match self.session.as_mut() {
            Some(session) => self
                .sessions
                .commit(session)
                .map_err(|error| (error, Stage::Commit)),
            None => Ok(None),
        }
    }

    /// The stage of a failure the handler returned, and its log line: a
    /// failed load was logged already; any other error is logged here, with
    /// the session's hashed id when it is known.
    #[cfg(any(feature = "rouille", feature = "http"))]
    pub(crate) fn handler_failed(&self, error: &Error) -> Stage {
        if self.load_failed() {
            return Stage::Load;
        }
        let sid = self.session.as_ref().and_then(Session::stored_id);
        log_failure(Stage::Handler, sid, error);
        Stage::Handler
    }
}

impl fmt::Debug for LazySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazySession")
            .field("presented", &self.presented)
            .field("session", &self.session)
            .field("pending_edits", &self.pending.len())
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
