//! `http` adapter: the request cycle over [`http::Request`] and
//! [`http::Response`], for astra and other blocking servers built on the
//! `http` crate's types.
//!
//! [`handle`] wraps a handler; [`begin_request`] (or [`begin`]) and
//! [`finish`] are its two halves for servers that need to do something in
//! between.
//!
//! The `http` types carry no peer address, so the client's IP address (for
//! [client metadata](super#client-metadata)) comes from a request
//! extension the server inserts: a [`ClientAddr`], or else a
//! [`SocketAddr`] (put the connection's peer address there, or the address
//! a trusted reverse proxy forwarded).
//!
//! Without either extension no IP address is recorded; the `User-Agent`
//! header always reaches [`LazySession::set_client`].
//!
//! ```
//! use http::{header, Request, Response, StatusCode};
//! use stored_session::adapters::{http::handle, Sessions};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//! let sessions = Sessions::new(store);
//!
//! let app = |request: Request<String>| {
//!     handle(&sessions, request, |request, session| {
//!         if request.uri().path() == "/health" {
//!             // Never touches the session: no query, no cookie.
//!             return Ok(Response::new("ok".to_owned()));
//!         }
//!         let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
//!         session.insert("visits", &visits)?;
//!         Ok(Response::new(format!("visits: {visits}")))
//!     })
//! };
//!
//! let first = app(Request::get("/").body(String::new()).unwrap());
//! let cookie = first.headers()[header::SET_COOKIE].to_str().unwrap();
//! let cookie = cookie.split(';').next().unwrap().to_owned();
//!
//! let second = app(Request::get("/").header(header::COOKIE, &cookie).body(String::new()).unwrap());
//! assert_eq!(second.body(), "visits: 2");
//! assert!(second.headers().get(header::SET_COOKIE).is_none());
//!
//! let health = app(Request::get("/health").header(header::COOKIE, &cookie).body(String::new()).unwrap());
//! assert_eq!(health.status(), StatusCode::OK);
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::net::{IpAddr, SocketAddr};

use ::http::header::{HeaderValue, CACHE_CONTROL, COOKIE, SET_COOKIE, USER_AGENT, VARY};
use ::http::{HeaderMap, Request, Response, StatusCode};

use super::{cache_headers, error_body, log_failure, LazySession, Sessions};
use crate::error::{Error, Result};

/// Runs `handler` with the request and its lazily loaded session, then
/// commits the session and adds its `Set-Cookie` to the response (with the
/// cache headers [`finish`] adds).
///
/// A handler `Err` (a session failure) or a failed commit becomes a
/// plain-text 500 (503 when the pool had no free connection in time); a
/// failed commit means the handler's changes were not saved, so its response
/// is not sent.
pub fn handle<B, R, F>(sessions: &Sessions, request: Request<B>, handler: F) -> Response<R>
where
    F: FnOnce(Request<B>, &mut LazySession) -> Result<Response<R>>,
    R: From<&'static str>,
{
    let mut session = begin_request(sessions, &request);
    let outcome = handler(request, &mut session).and_then(|mut response| {
        finish(session, &mut response)?;
        Ok(response)
    });
    outcome.unwrap_or_else(|error| {
        log_failure("request", &error);
        error_response(&error)
    })
}

/// The client's IP address, as a request extension: insert it (from the
/// connection's peer address, or from a trusted proxy's forwarded header)
/// so that [`handle`] and [`begin_request`] can record it under the
/// store's [`MetadataPolicy`](crate::MetadataPolicy).
///
/// ```
/// use stored_session::adapters::http::ClientAddr;
///
/// let mut request = http::Request::get("/").body(()).unwrap();
/// request.extensions_mut().insert(ClientAddr("198.51.100.7".parse().unwrap()));
/// # let _ = request;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// Starts the cycle from a whole request: the session named by its
/// `Cookie` headers, loaded on first use, with the client's address (a
/// [`ClientAddr`] or [`SocketAddr`] extension) and `User-Agent` passed to
/// [`LazySession::set_client`].
pub fn begin_request<B>(sessions: &Sessions, request: &Request<B>) -> LazySession {
    let mut session = begin(sessions, request.headers());
    let extensions = request.extensions();
    let ip = match extensions.get::<ClientAddr>() {
        Some(ClientAddr(ip)) => Some(*ip),
        None => extensions.get::<SocketAddr>().map(SocketAddr::ip),
    };
    if ip.is_some() {
        session.set_client(ip, user_agent(request.headers()));
    }
    session
}

/// Starts the cycle from the headers alone: the session named by the
/// `Cookie` headers, loaded on first use, with the `User-Agent` passed to
/// [`LazySession::set_client`] (no IP address: see [`begin_request`]).
pub fn begin(sessions: &Sessions, headers: &HeaderMap) -> LazySession {
    let mut session = sessions.begin(headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes));
    session.set_client(None, user_agent(headers));
    session
}

/// The `User-Agent` header, when it is visible ASCII.
fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(USER_AGENT).and_then(|v| v.to_str().ok())
}

/// Ends the cycle: commits the session and appends its `Set-Cookie` to
/// `response`, if one is due, with `Cache-Control: private` (unless the
/// response has its own `Cache-Control`) and `Vary: Cookie` (merged into
/// its `Vary`) so that no shared cache stores it. A response that gets no
/// cookie is left unchanged.
///
/// # Errors
///
/// As [`LazySession::finish`]; the response is left unchanged.
pub fn finish<R>(session: LazySession, response: &mut Response<R>) -> Result<()> {
    if let Some(cookie) = session.finish()? {
        let invalid = |_| Error::Config("the session cookie is not a valid header value".into());
        let value = HeaderValue::try_from(cookie.header_value()).map_err(invalid)?;
        let headers = response.headers_mut();
        let cache = cache_headers(
            headers.contains_key(CACHE_CONTROL),
            headers.get_all(VARY).iter().map(HeaderValue::as_bytes),
        );
        headers.append(SET_COOKIE, value);
        if cache.private {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
        if let Some(vary) = cache.vary {
            // The merged list is made of the response's own `Vary` bytes, so
            // it is a valid value; were it not, `Cookie` goes in a line of
            // its own (the same list to a cache).
            match HeaderValue::from_bytes(&vary) {
                Ok(merged) => {
                    headers.insert(VARY, merged);
                }
                Err(_) => {
                    headers.append(VARY, HeaderValue::from_static("Cookie"));
                }
            }
        }
    }
    Ok(())
}

/// The plain-text 500 (or 503) sent for a session failure; details are
/// logged, not sent.
pub fn error_response<R: From<&'static str>>(error: &Error) -> Response<R> {
    let status = error.http_status();
    let mut response = Response::new(R::from(error_body(status)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        ::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
