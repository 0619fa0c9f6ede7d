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

use super::{cache_headers, error_body, log_failure, LazySession, Sessions};
use crate::error::{Error, Result};

/// Runs `handler` with the request's session and commits it afterwards.
///
/// The handler returns `Ok(response)` to send that response (with the
/// session's `Set-Cookie` added when one is due), or `Err` for a session
/// failure (the database or pool), which becomes a plain 500 (503 when the
/// pool had no free connection) without committing anything. A failed
/// commit also becomes a 500/503: the handler's changes were not saved.
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
            log_failure("handling", &error);
            error_response(&error)
        }
    }
}

/// The first half of [`with_session`]: the request's lazily loaded session.
///
/// The client's address (`Request::remote_addr`, the TCP peer) and
/// `User-Agent` are passed to [`LazySession::set_client`], so they are
/// recorded when the session loads if the store's
/// [`MetadataPolicy`](crate::MetadataPolicy) says so (by default nothing
/// is). Behind a reverse proxy, call `set_client` again with the forwarded
/// address before using the session.
pub fn begin(sessions: &Sessions, request: &Request) -> LazySession {
    let mut session = sessions.begin(
        request
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| value),
    );
    session.set_client(
        Some(request.remote_addr().ip()),
        request.header("User-Agent"),
    );
    session
}

/// The second half of [`with_session`]: commits the session and adds its
/// `Set-Cookie` to `response`, with `Cache-Control: private` (unless the
/// response has its own `Cache-Control`) and `Vary: Cookie` (merged into
/// its `Vary`) so that no shared cache stores it. A response that sets no
/// cookie is left unchanged. A failed commit replaces the response with a
/// 500 (503 on pool exhaustion).
pub fn finish(session: LazySession, mut response: Response) -> Response {
    match session.finish() {
        Ok(Some(cookie)) => {
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
        Ok(None) => response,
        Err(error) => {
            log_failure("commit", &error);
            error_response(&error)
        }
    }
}

/// Whether a rouille response header is named `name` (names are
/// case-insensitive).
fn is(header: &(Cow<'static, str>, Cow<'static, str>), name: &str) -> bool {
    header.0.eq_ignore_ascii_case(name)
}

/// The plain-text 500 (or 503, when no pooled connection was free in time)
/// sent for a session failure. The error's details are logged, not sent.
pub fn error_response(error: &Error) -> Response {
    let status = error.http_status();
    Response::text(error_body(status)).with_status_code(status)
}
