//! Rocket 0.5 adapter: a fairing that manages the store, and a request guard
//! that gives a handler the session.
//!
//! * [`SessionFairing`] puts the [`Sessions`] and its store into Rocket's
//!   managed state (handlers may take `&State<SessionStore>`) and, in
//!   `on_response`, commits the session of every request that asked for one
//!   and adds its `Set-Cookie` with `adjoin_header`.
//! * [`SessionGuard`] loads the session when a handler asks for it. A
//!   handler that does not costs no query and gets no cookie. On load it
//!   records the client's address and `User-Agent`, as far as the store's
//!   [`MetadataPolicy`](crate::MetadataPolicy) allows (by default
//!   nothing). The address is the TCP peer's (`Request::remote()`), or,
//!   when the peer is one of the [`Sessions`]'
//!   [trusted proxies](Sessions::with_trusted_proxies), the client's
//!   address in its forwarding header
//!   ([`TrustedProxies::client_ip`](super::TrustedProxies::client_ip)).
//!   Rocket's own `ip_header` (`X-Real-IP` by default, which any client
//!   can send) is not read.
//! * [`Error`] is a `Responder` (the [`Sessions`]' error response), so
//!   handlers can return `Result<_, stored_session::Error>`.
//!
//! A failed load (the guard fails), a handler's `Err` and a failed commit
//! are answered with the [`Sessions`]' error response
//! ([`Sessions::with_error_handler`], by default `413` for an oversized
//! session, `503` for an outage, `500` otherwise) and logged at `error`
//! level. A failed guard goes through Rocket's catcher for the error
//! response's status; the fairing then puts the error response in place
//! of the catcher's (a handler that takes `Result<SessionGuard<'_>,
//! stored_session::Error>` gets the typed error instead, and its own
//! response is kept unless it has that same status). A failed commit
//! replaces the handler's response in `on_response`: its status, headers
//! and body are dropped, except the security headers Rocket's `Shield` (and
//! `Server`) set, and no `Set-Cookie` is sent (see [the adapters'
//! failures](super#failures)).
//!
//! The store blocks, so every load and commit runs on Tokio's blocking pool
//! (`spawn_blocking`), never on an async worker. A semaphore with one permit
//! per pooled database connection bounds how many run at once: excess
//! requests wait asynchronously instead of piling up threads that would only
//! wait for a connection. That wait is bounded too
//! ([`SessionFairing::with_permit_timeout`], by default the pool's acquire
//! timeout): a request that gets no turn in time is answered 503, so a
//! database that stops answering never makes requests queue forever.
//!
//! Only the raw `Cookie` headers name the session, matched byte for byte:
//! Rocket's own cookie jar percent-decodes names (`%69%64=…` would stand
//! for `id`), so it is never read for a request that came over the network
//! (see [`SessionGuard`] for Rocket's local client). Responses that set or
//! remove the session cookie get `Cache-Control: private` (unless the
//! handler set its own) and `Vary: Cookie`, as with every adapter.
//!
//! ```no_run
//! use rocket::{get, launch, routes};
//! use stored_session::adapters::rocket::{SessionFairing, SessionGuard};
//! use stored_session::adapters::Sessions;
//! use stored_session::{Keyring, SessionStore};
//!
//! #[get("/")]
//! fn index(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
//!     let mut session = session.lock();
//!     let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
//!     session.insert("visits", &visits)?;
//!     Ok(format!("visits: {visits}"))
//! }
//!
//! #[get("/health")]
//! fn health() -> &'static str {
//!     "ok" // no SessionGuard: no query
//! }
//!
//! #[launch]
//! fn rocket() -> _ {
//!     let store = SessionStore::builder(Keyring::from_env().expect("STORED_SESSION_KEYS"))
//!         .open_migrated("sqlite://sessions.db")
//!         .expect("session database");
//!     rocket::build()
//!         .attach(SessionFairing::new(Sessions::new(store)))
//!         .mount("/", routes![index, health])
//! }
//! ```

use std::fmt;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use ::rocket::fairing::{self, Fairing, Info, Kind};
use ::rocket::http::{Header, Status};
use ::rocket::request::{FromRequest, Outcome, Request};
use ::rocket::tokio::sync::Semaphore;
use ::rocket::tokio::task::spawn_blocking;
use ::rocket::tokio::time::timeout;
use ::rocket::{Build, Response, Rocket};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{cache_headers, log_failure, ErrorResponse, Presented, Sessions, Stage};
use crate::backend::Database;
use crate::csrf::{Csrf, CsrfRejection};
use crate::error::{Error, Result};
use crate::id::{SessionId, StoredId};
use crate::session::Session;
use crate::store::SessionStore;

/// What the fairing shares with the guard through managed state.
#[derive(Clone)]
struct Shared {
    sessions: Sessions,
    /// One permit per pooled connection: bounds concurrent blocking work.
    permits: Arc<Semaphore>,
    /// The longest a request waits for a permit.
    permit_timeout: Duration,
}

/// Managed-state wrapper, private so it never clashes with the app's state.
struct Managed(Arc<Shared>);

/// A request's loaded session, kept in Rocket's request-local cache between
/// the guard and `on_response`.
#[derive(Default)]
struct Slot {
    session: OnceLock<Arc<Mutex<Session>>>,
    /// The handler answered with a session [`Error`]: commit nothing, as the
    /// rouille and `http` adapters do when the handler fails.
    failed: AtomicBool,
    /// The guard failed to load the session: the status it failed with (the
    /// catcher's), and the error response to send in the catcher's place.
    load_failure: Mutex<Option<(Status, ErrorResponse)>>,
}

/// The fairing: manages the store and commits sessions in `on_response`.
///
/// Attach one per Rocket instance (it is a singleton fairing). It manages
/// the [`Sessions`] and the [`SessionStore`] as state (unless the app
/// already manages one of that type), so handlers can take
/// `&State<SessionStore>` for listing, revoking and the like.
///
/// ```
/// use stored_session::adapters::{rocket::SessionFairing, CookiePolicy, Sessions};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let sessions = Sessions::with_policy(store, CookiePolicy::new().with_secure(false))?;
/// let rocket = rocket::build().attach(SessionFairing::new(sessions));
/// # let _ = rocket;
/// # Ok::<(), stored_session::Error>(())
/// ```
pub struct SessionFairing {
    shared: Arc<Shared>,
    concurrency: usize,
}

impl SessionFairing {
    /// A fairing serving `sessions`, with as many concurrent blocking session
    /// operations as the store's pool has connections, and a request waiting
    /// for its turn at most as long as the pool's acquire timeout
    /// ([`PoolOptions::acquire_timeout`](crate::PoolOptions::acquire_timeout),
    /// 5 seconds by default; see [`with_permit_timeout`](SessionFairing::with_permit_timeout)).
    pub fn new(sessions: Sessions) -> Self {
        let database = sessions.store().database();
        let permits = pool_size(database).max(1) as usize;
        let permit_timeout = pool_acquire_timeout(database);
        SessionFairing {
            shared: Arc::new(Shared {
                sessions,
                permits: Arc::new(Semaphore::new(permits)),
                permit_timeout,
            }),
            concurrency: permits,
        }
    }

    /// How long a request waits for its turn to load or commit its session
    /// when every permit is taken (as many session operations run at once as
    /// the pool has connections) before it is answered
    /// `503 Service Unavailable`. Default: the pool's acquire timeout.
    ///
    /// A request's worst case is then about this wait plus the pool's
    /// acquire timeout plus the statement's own time, for the load and again
    /// for the commit; with a database that stops answering, every waiting
    /// request ends with a 503 instead of queueing behind the stuck ones.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::adapters::{rocket::SessionFairing, Sessions};
    /// use stored_session::{Keyring, PoolOptions, SessionStore};
    ///
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .pool(PoolOptions::default().acquire_timeout(Duration::from_secs(3)))
    ///     .open_migrated("sqlite::memory:")?;
    /// let fairing = SessionFairing::new(Sessions::new(store));
    /// assert_eq!(fairing.permit_timeout(), Duration::from_secs(3));
    /// let fairing = fairing.with_permit_timeout(Duration::from_secs(1));
    /// assert_eq!(fairing.permit_timeout(), Duration::from_secs(1));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn with_permit_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.shared).permit_timeout = timeout;
        self
    }

    /// The longest a request waits for its turn (see
    /// [`with_permit_timeout`](SessionFairing::with_permit_timeout)).
    pub fn permit_timeout(&self) -> Duration {
        self.shared.permit_timeout
    }

    /// How many session operations may run on the blocking pool at once
    /// (the store's pool size).
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
}

impl fmt::Debug for SessionFairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionFairing")
            .field("sessions", &self.shared.sessions)
            .field("concurrency", &self.concurrency)
            .field("permit_timeout", &self.shared.permit_timeout)
            .finish()
    }
}

/// The most connections the store's pool holds.
fn pool_size(database: &Database) -> u32 {
    match database {
        #[cfg(feature = "sqlite")]
        Database::Sqlite(pool) => pool.max_size(),
        #[cfg(feature = "postgres")]
        Database::Postgres(pool) => pool.max_size(),
        #[cfg(feature = "mysql")]
        Database::Mysql(pool) => pool.max_size(),
    }
}

/// How long the pool waits for a free connection.
fn pool_acquire_timeout(database: &Database) -> Duration {
    match database {
        #[cfg(feature = "sqlite")]
        Database::Sqlite(pool) => pool.connection_timeout(),
        #[cfg(feature = "postgres")]
        Database::Postgres(pool) => pool.connection_timeout(),
        #[cfg(feature = "mysql")]
        Database::Mysql(pool) => pool.connection_timeout(),
    }
}

/// Runs blocking store work on Tokio's blocking pool, at most one task per
/// pooled connection at a time. The permit lives inside the task, so a
/// request abandoned mid-way still holds it until the work is really done.
///
/// # Errors
///
/// [`Error::PoolTimeout`] (a 503) when no permit came free within the
/// fairing's permit timeout, [`Error::TaskAborted`] when the task ended
/// without an answer (both logged here, as the `stage` of `sid`); the
/// work's own errors (logged by the work).
async fn blocking<T, F>(shared: &Shared, stage: Stage, sid: Option<StoredId>, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let mut work_failed = false;
    let outcome = run_blocking(shared, &mut work_failed, work).await;
    if let Err(error) = &outcome {
        if !work_failed {
            log_failure(stage, sid, error);
        }
    }
    outcome
}

/// [`blocking`] without the logging; `work_failed` is set when the error
/// is the work's own.
async fn run_blocking<T, F>(shared: &Shared, work_failed: &mut bool, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let acquire = shared.permits.clone().acquire_owned();
    let permit = match timeout(shared.permit_timeout, acquire).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            return Err(Error::TaskAborted(
                "the session fairing's semaphore was closed",
            ))
        }
        Err(_) => {
            return Err(Error::PoolTimeout {
                timeout: shared.permit_timeout,
                message: "every session worker stayed busy (the database is slow or not answering)"
                    .into(),
            })
        }
    };
    let outcome = spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|_| Error::TaskAborted("a blocking session task panicked or was cancelled"))?;
    *work_failed = outcome.is_err();
    outcome
}

/// Headers that describe the site rather than the handler's page (Rocket's
/// `Server`, and the security policies `Shield` sets): kept when a failed
/// commit replaces the handler's response.
const SITE_HEADERS: &[&str] = &[
    "Server",
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "X-DNS-Prefetch-Control",
    "Permissions-Policy",
    "Referrer-Policy",
    "Expect-CT",
    "Content-Security-Policy",
    "Cross-Origin-Opener-Policy",
    "Cross-Origin-Embedder-Policy",
    "Cross-Origin-Resource-Policy",
];

/// A session failure's [`ErrorResponse`] as a Rocket response: its status,
/// `Content-Type`, headers and body.
fn build_response<'r>(error: &ErrorResponse) -> Response<'r> {
    let body = error.body().to_owned();
    let mut response = Response::build()
        .status(Status::new(error.status()))
        .raw_header("Content-Type", error.content_type().to_owned())
        .sized_body(body.len(), Cursor::new(body))
        .finalize();
    for (name, value) in error.headers() {
        response.adjoin_raw_header(name.to_owned(), value.to_owned());
    }
    response
}

/// Replaces `response` with `error`'s, keeping only the [`SITE_HEADERS`].
fn replace_response(response: &mut Response<'_>, error: &ErrorResponse) {
    let kept: Vec<Header<'static>> = response
        .headers()
        .iter()
        .filter(|h| {
            SITE_HEADERS
                .iter()
                .any(|k| h.name().as_str().eq_ignore_ascii_case(k))
        })
        .map(|h| Header::new(h.name().as_str().to_owned(), h.value().to_owned()))
        .collect();
    let mut fresh = build_response(error);
    for header in kept {
        if !fresh.headers().contains(header.name().as_str()) {
            fresh.set_header(header);
        }
    }
    *response = fresh;
}

fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

#[::rocket::async_trait]
impl Fairing for SessionFairing {
    fn info(&self) -> Info {
        Info {
            name: "stored-session",
            kind: Kind::Ignite | Kind::Response | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        let mut rocket = rocket.manage(Managed(self.shared.clone()));
        if rocket.state::<Sessions>().is_none() {
            rocket = rocket.manage(self.shared.sessions.clone());
        }
        if rocket.state::<SessionStore>().is_none() {
            rocket = rocket.manage(self.shared.sessions.store().clone());
        }
        Ok(rocket)
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let slot = request.local_cache(Slot::default);
        let load_failure = slot
            .load_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((status, error)) = load_failure {
            // The catcher's answer to the failed guard (not a handler's own
            // response to a `Result<SessionGuard, Error>`, unless it chose
            // the same status).
            if response.status() == status {
                replace_response(response, &error);
            }
        }
        let Some(session) = slot.session.get() else {
            return; // the handler never asked for the session
        };
        if slot.failed.load(Ordering::SeqCst) {
            return; // the handler failed: its changes are not saved
        }
        let session = session.clone();
        let sid = lock(&session).stored_id();
        let sessions = self.shared.sessions.clone();
        let commit = move || sessions.commit(&mut lock(&session));
        let committed = blocking(&self.shared, Stage::Commit, sid, commit).await;
        match committed {
            Ok(Some(cookie)) => {
                response.adjoin_header(Header::new("Set-Cookie", cookie.header_value()));
                let cache = cache_headers(
                    response.headers().contains("Cache-Control"),
                    response.headers().get("Vary").map(str::as_bytes),
                );
                if cache.private {
                    response.set_header(Header::new("Cache-Control", "private"));
                }
                if let Some(vary) = cache.vary {
                    let vary = String::from_utf8_lossy(&vary).into_owned();
                    response.set_header(Header::new("Vary", vary));
                }
            }
            Ok(None) => {}
            Err(error) => {
                let answer = self.shared.sessions.error_response(&error, Stage::Commit);
                replace_response(response, &answer);
            }
        }
    }
}

/// Request guard: the request's session, loaded (once per request) when a
/// handler asks for it, committed by [`SessionFairing`] after the handler.
///
/// [`lock`](SessionGuard::lock) gives the full [`Session`]; the shortcuts
/// lock for one call. Do not hold the lock across an `.await` (the compiler
/// refuses it in a Rocket handler, as the future would not be `Send`).
///
/// The session is the one named by the request's raw `Cookie` headers,
/// matched byte for byte (never Rocket's cookie jar, which percent-decodes
/// names). With Rocket's local client, which keeps cookies in the jar and
/// sends no `Cookie` header, the jar's cookie of exactly the configured name
/// is used instead, for requests without any `Cookie` header and without a
/// `.remote(..)` address: both tracked clients and `LocalRequest::cookie`
/// work in tests, and nothing from the network can reach that path.
///
/// A route taking the guard aborts Rocket's launch when the fairing is not
/// attached (the guard is a `Sentinel`). When the database fails, the guard
/// fails with the status of the [`Sessions`]' error response (by default
/// 503 when retrying later may work, 500 otherwise; a status that is not
/// 4xx or 5xx fails it with 500), and the fairing sends that error response
/// in place of the catcher's. Reached some other way without the fairing,
/// it fails with 500.
///
/// ```
/// use rocket::{get, post};
/// use stored_session::adapters::rocket::SessionGuard;
///
/// #[get("/whoami")]
/// fn whoami(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
///     Ok(session.get::<String>("user")?.unwrap_or_else(|| "anonymous".into()))
/// }
///
/// #[post("/logout")]
/// fn logout(session: SessionGuard<'_>) -> &'static str {
///     session.destroy();
///     "logged out"
/// }
/// ```
pub struct SessionGuard<'r> {
    session: &'r Mutex<Session>,
}

impl SessionGuard<'_> {
    /// Exclusive access to the session for this request.
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        lock(self.session)
    }

    /// [`Session::get`].
    ///
    /// # Errors
    ///
    /// As [`Session::get`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.lock().get(key)
    }

    /// [`Session::insert`].
    ///
    /// # Errors
    ///
    /// As [`Session::insert`].
    pub fn insert<T: Serialize + ?Sized>(&self, key: impl Into<String>, value: &T) -> Result<()> {
        self.lock().insert(key, value)
    }

    /// [`Session::remove`].
    pub fn remove(&self, key: &str) -> bool {
        self.lock().remove(key)
    }

    /// [`Session::renew`]: a new id at commit (call on login).
    pub fn renew(&self) {
        self.lock().renew()
    }

    /// [`Session::destroy`]: delete at commit and remove the cookie.
    pub fn destroy(&self) {
        self.lock().destroy()
    }

    /// [`Session::flash`]: a message for a later request.
    ///
    /// # Errors
    ///
    /// As [`Session::flash`].
    pub fn flash<T: Serialize + ?Sized>(&self, key: impl Into<String>, value: &T) -> Result<()> {
        self.lock().flash(key, value)
    }

    /// [`Session::take_flash`]: reads a flash once.
    ///
    /// # Errors
    ///
    /// As [`Session::take_flash`].
    pub fn take_flash<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.lock().take_flash(key)
    }

    /// [`Session::csrf_token`]: the session's CSRF token, created on first use.
    pub fn csrf_token(&self) -> String {
        self.lock().csrf_token()
    }
}

/// The CSRF check of [`Sessions::csrf`] for a Rocket request: a request
/// guard that captures the request's method and the headers the check reads
/// (`Sec-Fetch-Site`, `Origin`, `Host`, the token header); call
/// [`verify`](CsrfCheck::verify) with the session and the form field the
/// handler received. A refusal is a [`CsrfRejection`], which answers `403`
/// as a responder.
///
/// ```no_run
/// # use rocket::{post, form::Form, FromForm};
/// use stored_session::adapters::rocket::{CsrfCheck, SessionGuard};
/// use stored_session::csrf::CsrfRejection;
///
/// #[derive(FromForm)]
/// struct Transfer { csrf_token: Option<String>, amount: u64 }
///
/// #[post("/transfer", data = "<form>")]
/// fn transfer(session: SessionGuard<'_>, csrf: CsrfCheck, form: Form<Transfer>) -> Result<String, CsrfRejection> {
///     csrf.verify(&session, form.csrf_token.as_deref())?;
///     Ok(format!("sent {}", form.amount))
/// }
/// ```
pub struct CsrfCheck {
    csrf: Arc<Csrf>,
    method: String,
    headers: Vec<(String, String)>,
}

impl CsrfCheck {
    /// Applies the check (see [`Csrf::verify`]): safe methods pass; any
    /// other must come from this site and carry the session's token in the
    /// header or `form_token`.
    ///
    /// # Errors
    ///
    /// The [`CsrfRejection`] to answer with (`403`).
    pub fn verify(
        &self,
        session: &SessionGuard<'_>,
        form_token: Option<&str>,
    ) -> std::result::Result<(), CsrfRejection> {
        let lookup = |name: &str| {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        self.csrf
            .verify(&session.lock(), &self.method, lookup, form_token)
    }

    /// The origin half of the check alone (see [`Csrf::verify_origin`]):
    /// for endpoints that rely on Fetch Metadata / `Origin` only. Loads
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`CsrfRejection::CrossSite`] or [`CsrfRejection::ForeignOrigin`].
    pub fn verify_origin(&self) -> std::result::Result<(), CsrfRejection> {
        let lookup = |name: &str| {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        self.csrf.verify_origin(&self.method, lookup)
    }

    /// Whether the request carries a token in the CSRF header.
    pub fn carries_token(&self) -> bool {
        let name = self.csrf.header();
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl fmt::Debug for CsrfCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token header's value is a secret of the session.
        f.debug_struct("CsrfCheck")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

#[::rocket::async_trait]
impl<'r> FromRequest<'r> for CsrfCheck {
    type Error = Error;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(Managed(shared)) = request.rocket().state::<Managed>() else {
            let error = Error::Config("CsrfCheck used without SessionFairing attached".into());
            return Outcome::Error((Status::InternalServerError, error));
        };
        let csrf = shared.sessions.csrf.clone();
        let mut headers = Vec::new();
        for name in ["Sec-Fetch-Site", "Origin", "Host", csrf.header()] {
            if let Some(value) = request.headers().get_one(name) {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        Outcome::Success(CsrfCheck {
            csrf,
            method: request.method().as_str().to_owned(),
            headers,
        })
    }
}

impl<'r, 'o: 'r> ::rocket::response::Responder<'r, 'o> for CsrfRejection {
    fn respond_to(self, _: &'r Request<'_>) -> ::rocket::response::Result<'o> {
        let answer = super::csrf_refused(self);
        Response::build()
            .status(Status::new(answer.status()))
            .header(::rocket::http::ContentType::Plain)
            .sized_body(answer.body().len(), Cursor::new(answer.body().to_owned()))
            .ok()
    }
}

impl fmt::Debug for SessionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.session.try_lock() {
            Ok(session) => f.debug_tuple("SessionGuard").field(&*session).finish(),
            Err(_) => f.write_str("SessionGuard(<locked>)"),
        }
    }
}

/// Aborts launch when a route takes a [`SessionGuard`] but no
/// [`SessionFairing`] is attached: the mistake shows at start-up, not as a
/// 500 on the first request.
impl ::rocket::Sentinel for SessionGuard<'_> {
    fn abort(rocket: &Rocket<::rocket::Ignite>) -> bool {
        let missing = rocket.state::<Managed>().is_none();
        if missing {
            log::error!(target: "stored_session", "a route uses SessionGuard, but SessionFairing is not attached");
        }
        missing
    }
}

/// A session error as a response: the [`Sessions`]' error response
/// ([`Sessions::with_error_handler`], by default `503` when retrying later
/// may work, `500` otherwise) for [`Stage::Handler`], logged at `error`
/// level. So a handler can return `Result<_, stored_session::Error>` and use
/// `?`; when it returns `Err`, the session is not committed (nothing it
/// changed is saved), as with the other adapters.
impl<'r> ::rocket::response::Responder<'r, 'static> for Error {
    fn respond_to(self, request: &'r Request<'_>) -> ::rocket::response::Result<'static> {
        let slot = request.local_cache(Slot::default);
        slot.failed.store(true, Ordering::SeqCst);
        // (`try_lock`: never wait here for a lock a stuck handler holds.)
        let sid = slot
            .session
            .get()
            .and_then(|s| s.try_lock().ok().and_then(|s| s.stored_id()));
        log_failure(Stage::Handler, sid, &self);
        let answer = match request.rocket().state::<Managed>() {
            Some(Managed(shared)) => shared.sessions.error_response(&self, Stage::Handler),
            None => ErrorResponse::for_error(&self),
        };
        Ok(build_response(&answer))
    }
}

/// The session cookie as Rocket sees it.
///
/// A request that came over the network: its raw `Cookie` headers only,
/// the name matched byte for byte. Rocket's cookie jar is never read for
/// it: Rocket fills the jar by percent-decoding each cookie's name, so
/// `%69%64=…`, `_%5FHost-id=…` or `\u{a0}id=…` would stand for the session
/// cookie there (the CVE-2020-8184 class: a sibling subdomain or a
/// plain-HTTP attacker plants a cookie past the `__Host-` prefix).
///
/// Rocket's local client (`rocket::local`), which application tests use,
/// carries cookies (tracked, or added with `LocalRequest::cookie`) in the
/// jar only, never in a header. So the jar's cookie of exactly the
/// configured name is read when, and only when, the request has no `Cookie`
/// header at all and no remote address. A request from Rocket's server
/// always has a remote address, and its jar holds only what its `Cookie`
/// headers held, so neither condition can be met from the network (not
/// even when a fairing strips the `Cookie` headers before the guard runs).
/// A local request that sets `.remote(..)` sends its cookie as a `Cookie`
/// header instead.
fn presented(sessions: &Sessions, request: &Request<'_>) -> Presented {
    let mut headers = request.headers().get("Cookie").peekable();
    if headers.peek().is_some() || request.remote().is_some() {
        return sessions.policy().find(headers);
    }
    match request.cookies().get(&sessions.policy().name()) {
        Some(cookie) => Presented::One(cookie.value().to_owned()),
        None => Presented::Absent,
    }
}

#[::rocket::async_trait]
impl<'r> FromRequest<'r> for SessionGuard<'r> {
    type Error = Error;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(Managed(shared)) = request.rocket().state::<Managed>() else {
            let error = Error::Config("SessionGuard used without SessionFairing attached".into());
            log_failure(Stage::Load, None, &error);
            return Outcome::Error((Status::InternalServerError, error));
        };
        let slot = request.local_cache(Slot::default);
        if let Some(session) = slot.session.get() {
            return Outcome::Success(SessionGuard { session });
        }
        let presented = presented(&shared.sessions, request);
        let sid = presented
            .as_load_arg()
            .and_then(SessionId::parse)
            .map(|id| id.stored_id());
        // Client metadata, copied only when the store's policy records it.
        let ip = request.remote().map(|peer| {
            shared
                .sessions
                .trusted_proxies()
                .client_ip(peer.ip(), |name| {
                    request.headers().get(name).map(str::as_bytes)
                })
        });
        let client = shared
            .sessions
            .client(ip, request.headers().get_one("User-Agent"));
        let sessions = shared.sessions.clone();
        let load = move || {
            let mut session = sessions.load(&presented)?;
            if let Some(client) = client {
                client.apply(&mut session);
            }
            Ok(session)
        };
        match blocking(shared, Stage::Load, sid, load).await {
            Ok(session) => {
                let session = slot.session.get_or_init(|| Arc::new(Mutex::new(session)));
                Outcome::Success(SessionGuard { session })
            }
            Err(error) => {
                let answer = shared.sessions.error_response(&error, Stage::Load);
                let status = match answer.status() {
                    code @ 400..=599 => Status::new(code),
                    _ => Status::InternalServerError,
                };
                *slot
                    .load_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((status, answer));
                Outcome::Error((status, error))
            }
        }
    }
}
