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
//! extension: the [`SocketAddr`] of the connection's peer, which the server
//! inserts (when that peer is one of the [`Sessions`]'
//! [trusted proxies](Sessions::with_trusted_proxies), the client's address
//! is read from its forwarding header, see
//! [`TrustedProxies::client_ip`](super::TrustedProxies::client_ip)), or a
//! [`ClientAddr`] the application inserts, which is used as it is.
//!
//! Without either extension no IP address is recorded; the `User-Agent`
//! header always reaches [`LazySession::set_client`].
//!
//! A failed load, a handler's `Err` and a failed commit are answered with
//! the [`Sessions`]' error response ([`Sessions::with_error_handler`], by
//! default `413` for an oversized session, `503` for an outage, `500`
//! otherwise) and logged at `error` level; [`begin_request`] and
//! [`finish`] give the typed error to code that wants to answer it itself.
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

use ::http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE, USER_AGENT, VARY,
};
use ::http::{HeaderMap, Request, Response, StatusCode};

use super::{cache_headers, ErrorResponse, LazySession, Sessions, Stage};
use crate::error::{Error, Result};

/// Runs `handler` with the request and its lazily loaded session, then
/// commits the session and adds its `Set-Cookie` to the response (with the
/// cache headers [`finish`] adds).
///
/// A handler `Err` (a session failure) or a failed commit is answered with
/// [`Sessions::error_response`]: the application's error handler, or by
/// default `413` for a session over
/// [`Config::max_payload`](crate::Config::max_payload), `503` when retrying
/// later may work and `500` otherwise. A failed load passed on with `?`
/// counts as [`Stage::Load`], any other handler error as
/// [`Stage::Handler`], a failed commit as [`Stage::Commit`]: then the
/// handler's changes were not saved, so its response is dropped and no
/// `Set-Cookie` is sent (see [the adapters' failures](super#failures)).
/// Every failure is logged at `error` level.
pub fn handle<B, R, F>(sessions: &Sessions, request: Request<B>, handler: F) -> Response<R>
where
    F: FnOnce(Request<B>, &mut LazySession) -> Result<Response<R>>,
    R: From<String>,
{
    let mut session = begin_request(sessions, &request);
    let (error, stage) = match handler(request, &mut session) {
        Ok(mut response) => match finish_staged(session, &mut response) {
            Ok(()) => return response,
            Err(failed) => failed,
        },
        Err(error) => {
            let stage = session.handler_failed(&error);
            (error, stage)
        }
    };
    error_response(sessions.error_response(&error, stage))
}

/// The client's IP address as the application decided it, as a request
/// extension: [`handle`] and [`begin_request`] record it under the store's
/// [`MetadataPolicy`](crate::MetadataPolicy) as it is, in place of the
/// peer's [`SocketAddr`] extension, and read no forwarding header for it
/// (the [`Sessions`]' [trusted proxies](Sessions::with_trusted_proxies)
/// apply to the `SocketAddr` only).
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
/// `Cookie` headers, loaded on first use, with the client's address and
/// `User-Agent` passed to [`LazySession::set_client`]. The address is a
/// [`ClientAddr`] extension's, or else the peer's [`SocketAddr`]
/// extension's, or, when that peer is a trusted proxy, the client's address
/// in its forwarding header
/// ([`TrustedProxies::client_ip`](super::TrustedProxies::client_ip)).
pub fn begin_request<B>(sessions: &Sessions, request: &Request<B>) -> LazySession {
    let mut session = begin(sessions, request.headers());
    let extensions = request.extensions();
    let ip = match extensions.get::<ClientAddr>() {
        Some(ClientAddr(ip)) => Some(*ip),
        None => extensions.get::<SocketAddr>().map(|peer| {
            sessions.trusted_proxies().client_ip(peer.ip(), |name| {
                request
                    .headers()
                    .get_all(name)
                    .into_iter()
                    .map(HeaderValue::as_bytes)
            })
        }),
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
/// As [`LazySession::finish`] (already logged at `error` level); the
/// response is left unchanged, but must not be sent: answer with
/// [`error_response`] of [`Sessions::error_response`] (with
/// [`Stage::Commit`]) instead.
pub fn finish<R>(session: LazySession, response: &mut Response<R>) -> Result<()> {
    finish_staged(session, response).map_err(|(error, _)| error)
}

/// [`finish`], with the stage that failed.
fn finish_staged<R>(
    session: LazySession,
    response: &mut Response<R>,
) -> Result<(), (Error, Stage)> {
    if let Some(cookie) = session.finish_staged()? {
        let value = match HeaderValue::try_from(cookie.header_value()) {
            Ok(value) => value,
            Err(_) => {
                let error = Error::Config("the session cookie is not a valid header value".into());
                super::log_failure(Stage::Commit, None, &error);
                return Err((error, Stage::Commit));
            }
        };
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

/// A session failure's [`ErrorResponse`] (from [`Sessions::error_response`])
/// as an `http` response: its status, `Content-Type`, headers and body,
/// nothing else.
///
/// ```
/// use stored_session::adapters::{http::error_response, ErrorResponse};
///
/// let response: http::Response<String> =
///     error_response(ErrorResponse::json(507, "{}").with_header("Retry-After", "60"));
/// assert_eq!(response.status(), 507);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.headers()["retry-after"], "60");
/// ```
pub fn error_response<R: From<String>>(response: ErrorResponse) -> Response<R> {
    let mut out = Response::new(R::from(response.body().to_owned()));
    *out.status_mut() =
        StatusCode::from_u16(response.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    // `ErrorResponse` admits only valid names and values.
    if let Ok(value) = HeaderValue::from_str(response.content_type()) {
        headers.insert(CONTENT_TYPE, value);
    }
    for (name, value) in response.headers() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    out
}

/// Applies the CSRF check of [`Sessions::csrf`] to an `http` request (see
/// [`LazySession::verify_csrf`]): `Ok(None)` when it passes (safe methods
/// always do, without loading the session), `Ok(Some(response))` with the
/// `403` to send when it is refused. Pass the form field your code parsed
/// (`csrf_token` by default), or `None` when the token comes in the
/// `X-CSRF-Token` header. Without a `Host` header (HTTP/2), the URI's
/// authority stands for it.
///
/// ```
/// use stored_session::adapters::{http::{begin_request, check_csrf}, Sessions};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let sessions = Sessions::new(store);
/// let request = http::Request::post("/transfer")
///     .header("Host", "bank.test")
///     .header("Sec-Fetch-Site", "cross-site")
///     .body(())
///     .unwrap();
/// let mut session = begin_request(&sessions, &request);
/// let refused: Option<http::Response<String>> = check_csrf(&mut session, &request, None)?;
/// assert_eq!(refused.map(|r| r.status().as_u16()), Some(403));
/// # Ok::<(), stored_session::Error>(())
/// ```
///
/// # Errors
///
/// As [`LazySession::load`], for an unsafe method.
pub fn check_csrf<B, R: From<String>>(
    session: &mut LazySession,
    request: &Request<B>,
    form_token: Option<&str>,
) -> Result<Option<Response<R>>> {
    let lookup = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .or_else(|| {
                name.eq_ignore_ascii_case("host")
                    .then(|| request.uri().authority().map(|a| a.as_str()))
                    .flatten()
            })
    };
    Ok(session
        .verify_csrf(request.method().as_str(), lookup, form_token)?
        .err()
        .map(|rejection| error_response(super::csrf_refused(rejection))))
}
