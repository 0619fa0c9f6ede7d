//! `http` adapter: the request cycle over [`http::Request`] and
//! [`http::Response`], for astra and other blocking servers built on the
//! `http` crate's types.
//!
//! [`handle`] wraps a handler; [`begin`] and [`finish`] are its two halves
//! for servers that need to do something in between.
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

use ::http::header::{HeaderValue, COOKIE, SET_COOKIE};
use ::http::{HeaderMap, Request, Response, StatusCode};

use super::{error_body, error_status, log_failure, LazySession, Sessions};
use crate::error::{Error, Result};

/// Runs `handler` with the request and its lazily loaded session, then
/// commits the session and adds its `Set-Cookie` to the response.
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
    let mut session = begin(sessions, request.headers());
    let outcome = handler(request, &mut session).and_then(|mut response| {
        finish(session, &mut response)?;
        Ok(response)
    });
    outcome.unwrap_or_else(|error| {
        log_failure("request", &error);
        error_response(&error)
    })
}

/// Starts the cycle: the session named by the request's `Cookie` headers,
/// loaded on first use.
pub fn begin(sessions: &Sessions, headers: &HeaderMap) -> LazySession {
    sessions.begin(headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes))
}

/// Ends the cycle: commits the session and appends its `Set-Cookie` to
/// `response`, if one is due.
///
/// # Errors
///
/// As [`LazySession::finish`]; the response is left unchanged.
pub fn finish<R>(session: LazySession, response: &mut Response<R>) -> Result<()> {
    if let Some(cookie) = session.finish()? {
        let value = HeaderValue::try_from(cookie.header_value())
            .map_err(|_| Error::Config("the session cookie is not a valid header value".into()))?;
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(())
}

/// The plain-text 500 (or 503) sent for a session failure; details are
/// logged, not sent.
pub fn error_response<R: From<&'static str>>(error: &Error) -> Response<R> {
    let status = error_status(error);
    let mut response = Response::new(R::from(error_body(status)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        ::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
