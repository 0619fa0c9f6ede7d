//! rouille adapter: wrap a handler so that it gets the request's session.
//!
//! rouille is synchronous, so the session is loaded and committed right on
//! the request's thread. The handler receives a [`LazySession`]: the session
//! is loaded on first use, so a route that never touches it costs no query
//! and sets no cookie. After the handler returns, the session is committed
//! and the `Set-Cookie` header, if any, is added to its response.
//!
//! Note: rouille's HTTP layer (tiny_http) closes the connection, before any
//! handler runs, on a header line holding bytes that are not ASCII; every
//! other bad `Cookie` header reaches the adapter and gives a fresh session.
//! tiny_http also trims whitespace, `\v` and `\f` included, around a whole
//! header value, so `Cookie: \vid=…` reaches the adapter as `id=…`; browsers
//! refuse control characters in cookie names, so no page can plant such a
//! cookie. Inside a header the name is matched byte for byte, as with every
//! adapter.
//!
//! Responses that set or remove the session cookie get
//! `Cache-Control: private` (unless the handler set its own) and
//! `Vary: Cookie` (see [`finish`]).
//!
//! A failed load, a handler's `Err` and a failed commit are answered with
//! the [`Sessions`]' error response ([`Sessions::with_error_handler`], by
//! default `413` for an oversized session, `503` for an outage, `500`
//! otherwise) and logged at `error` level; [`begin`] and [`try_finish`]
//! give the typed error to code that wants to answer it itself.
//!
//! ```no_run
//! use rouille::Response;
//! use stored_session::adapters::{rouille::with_session, CookiePolicy, Sessions};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::from_env()?).open_migrated("sqlite://sessions.db")?;
//! let sessions = Sessions::with_policy(store, CookiePolicy::new())?;
//!
//! rouille::start_server("127.0.0.1:8000", move |request| {
//!     with_session(&sessions, request, |session| {
//!         let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
//!         session.insert("visits", &visits)?;
//!         Ok(Response::text(format!("visits: {visits}\n")))
//!     })
//! });
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::borrow::Cow;

use ::rouille::{Request, Response};

use super::{cache_headers, ErrorResponse, LazySession, Sessions};
use crate::error::Result;

/// Runs `handler` with the request's session and commits it afterwards.
///
/// The handler returns `Ok(response)` to send that response (with the
/// session's `Set-Cookie` added when one is due), or `Err` for a session
/// failure, which commits nothing and is answered with
/// [`Sessions::error_response`] (the application's error handler, by
/// default `503` when retrying later may work and `500` otherwise; a failed
/// load passed on with `?` counts as [`Stage::Load`](super::Stage::Load), any other error as
/// [`Stage::Handler`](super::Stage::Handler)). A failed commit is answered the same way
/// ([`Stage::Commit`](super::Stage::Commit), by default `413` for a session over
/// [`Config::max_payload`](crate::Config::max_payload)): the handler's
/// changes were not saved, so its response is dropped and no `Set-Cookie`
/// is sent (see [the adapters' failures](super#failures)). Every failure is
/// logged at `error` level.
///
/// ```
/// use rouille::{Request, Response};
/// use stored_session::adapters::{rouille::with_session, Sessions};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let sessions = Sessions::new(store);
///
/// let request = Request::fake_http("GET", "/", vec![], vec![]);
/// let response = with_session(&sessions, &request, |session| {
///     session.insert("user", "alice")?;
///     Ok(Response::text("hi"))
/// });
/// let set_cookie = response
///     .headers
///     .iter()
///     .find(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
///     .map(|(_, value)| value.to_string())
///     .expect("a new session sets its cookie");
/// assert!(set_cookie.starts_with("id="));
/// # Ok::<(), stored_session::Error>(())
/// ```
pub fn with_session<F>(sessions: &Sessions, request: &Request, handler: F) -> Response
where
    F: FnOnce(&mut LazySession) -> Result<Response>,
{
    let mut session = begin(sessions, request);
    match handler(&mut session) {
        Ok(response) => finish(session, response),
        Err(error) => {
            let stage = session.handler_failed(&error);
            error_response(sessions.error_response(&error, stage))
        }
    }
}

/// The first half of [`with_session`]: the request's lazily loaded session.
///
/// The client's address and `User-Agent` are passed to
/// [`LazySession::set_client`], so they are recorded when the session loads
/// if the store's [`MetadataPolicy`](crate::MetadataPolicy) says so (by
/// default nothing is). The address is the TCP peer's
/// (`Request::remote_addr`), or, when the peer is one of the [`Sessions`]'
/// [trusted proxies](Sessions::with_trusted_proxies), the client's address
/// found in its forwarding header ([`TrustedProxies::client_ip`](super::TrustedProxies::client_ip)).
pub fn begin(sessions: &Sessions, request: &Request) -> LazySession {
    let mut session = sessions.begin(headers(request, "Cookie"));
    let ip = sessions
        .trusted_proxies()
        .client_ip(request.remote_addr().ip(), |name| headers(request, name));
    session.set_client(Some(ip), request.header("User-Agent"));
    session
}

/// The values of every header of `request` called `name` (any case), in
/// order.
fn headers<'r>(request: &'r Request, name: &'r str) -> impl Iterator<Item = &'r str> {
    request
        .headers()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// The second half of [`with_session`]: commits the session and adds its
/// `Set-Cookie` to `response`, with `Cache-Control: private` (unless the
/// response has its own `Cache-Control`) and `Vary: Cookie` (merged into
/// its `Vary`) so that no shared cache stores it. A response that sets no
/// cookie is left unchanged. A failed commit replaces the response with
/// [`Sessions::error_response`] (see [`try_finish`] to handle the typed
/// error yourself).
pub fn finish(session: LazySession, response: Response) -> Response {
    let sessions = session.sessions().clone();
    match session.finish_staged() {
        Ok(cookie) => with_cookie(response, cookie),
        Err((error, stage)) => error_response(sessions.error_response(&error, stage)),
    }
}

/// [`finish`], but a failed commit is returned as the typed error (already
/// logged at `error` level) instead of being answered: nothing the handler
/// changed in the session was saved, so send an error response rather than
/// `response`, and no `Set-Cookie`.
///
/// ```
/// use rouille::{Request, Response};
/// use stored_session::adapters::rouille::{begin, try_finish};
/// use stored_session::adapters::Sessions;
/// use stored_session::{Config, Error, Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate())
///     .config(Config::default().max_payload(1024))
///     .open_migrated("sqlite::memory:")?;
/// let sessions = Sessions::new(store);
/// let request = Request::fake_http("GET", "/", vec![], vec![]);
///
/// let mut session = begin(&sessions, &request);
/// session.insert("notes", &"x".repeat(4096))?;
/// let response = match try_finish(session, Response::text("saved")) {
///     Ok(response) => response,
///     Err(Error::PayloadTooLarge { .. }) => Response::text("too much to keep").with_status_code(413),
///     Err(_) => Response::text("try again").with_status_code(503),
/// };
/// assert_eq!(response.status_code, 413);
/// # Ok::<(), stored_session::Error>(())
/// ```
///
/// # Errors
///
/// As [`LazySession::finish`].
pub fn try_finish(session: LazySession, response: Response) -> Result<Response> {
    Ok(with_cookie(response, session.finish()?))
}

/// Adds the session's `Set-Cookie`, if any, and the cache headers it needs.
fn with_cookie(mut response: Response, cookie: Option<super::SetCookie>) -> Response {
    let Some(cookie) = cookie else {
        return response;
    };
    let headers = &mut response.headers;
    headers.push(("Set-Cookie".into(), cookie.header_value().into()));
    let cache = cache_headers(
        headers.iter().any(|h| is(h, "Cache-Control")),
        headers
            .iter()
            .filter(|h| is(h, "Vary"))
            .map(|(_, v)| v.as_bytes()),
    );
    if cache.private {
        headers.push(("Cache-Control".into(), "private".into()));
    }
    if let Some(vary) = cache.vary {
        headers.retain(|h| !is(h, "Vary"));
        let vary = String::from_utf8_lossy(&vary).into_owned();
        headers.push(("Vary".into(), vary.into()));
    }
    response
}

/// Whether a rouille response header is named `name` (names are
/// case-insensitive).
fn is(header: &(Cow<'static, str>, Cow<'static, str>), name: &str) -> bool {
    header.0.eq_ignore_ascii_case(name)
}

/// A session failure's [`ErrorResponse`] (from [`Sessions::error_response`])
/// as a rouille response: its status, `Content-Type`, headers and body,
/// nothing else.
///
/// ```
/// use stored_session::adapters::{rouille::error_response, ErrorResponse};
///
/// let response = error_response(ErrorResponse::text(503, "later\n").with_header("Retry-After", "5"));
/// assert_eq!(response.status_code, 503);
/// assert!(response.headers.iter().any(|(n, v)| n == "Retry-After" && v == "5"));
/// ```
pub fn error_response(response: ErrorResponse) -> Response {
    let mut out = Response::from_data(
        response.content_type().to_owned(),
        response.body().as_bytes().to_vec(),
    )
    .with_status_code(response.status());
    for (name, value) in response.headers() {
        out.headers
            .push((name.to_owned().into(), value.to_owned().into()));
    }
    out
}

/// Applies the CSRF check of [`Sessions::csrf`] to a rouille request (see
/// [`LazySession::verify_csrf`]): `Ok(None)` when it passes (safe methods
/// always do, without loading the session), `Ok(Some(response))` with the
/// `403` to send when it is refused. Pass the form field your code parsed
/// (`csrf_token` by default), or `None` when the token comes in the
/// `X-CSRF-Token` header.
///
/// ```no_run
/// use stored_session::adapters::rouille::{check_csrf, with_session};
/// # fn serve(sessions: stored_session::adapters::Sessions) {
/// rouille::start_server("127.0.0.1:8000", move |request| {
///     with_session(&sessions, request, |session| {
///         let form = rouille::input::post::raw_urlencoded_post_input(request).unwrap_or_default();
///         let token = form.iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str());
///         if let Some(refused) = check_csrf(session, request, token)? {
///             return Ok(refused);
///         }
///         Ok(rouille::Response::text("done"))
///     })
/// });
/// # }
/// ```
///
/// # Errors
///
/// As [`LazySession::load`], for an unsafe method.
pub fn check_csrf(
    session: &mut LazySession,
    request: &Request,
    form_token: Option<&str>,
) -> Result<Option<Response>> {
    Ok(session
        .verify_csrf(request.method(), |name| request.header(name), form_token)?
        .err()
        .map(|rejection| error_response(super::csrf_refused(rejection))))
}
