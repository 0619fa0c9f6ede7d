//! Responses that set or clear the session cookie are never cached by
//! shared caches, in every adapter, over real HTTP (rouille's server,
//! Rocket launched on a loopback port, the `http` glue behind a `std::net`
//! server), on every backend: `Cache-Control: private` unless the handler
//! set its own (then left alone), and `Vary: Cookie`, merged into the
//! handler's `Vary` as one header and never twice. Responses that set no
//! cookie are left as the handler made them.
#![cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]

mod adapter_support;
mod common;

use std::net::SocketAddr;

use adapter_support::{send, Reply};
use common::Harness;
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::Session;

/// What a route answers: a body and the headers the handler sets itself.
type Answer = (String, Vec<(&'static str, &'static str)>);

/// Every adapter's routes, over the loaded session (`/health` never loads it
/// and is served outside the session wrapper).
fn route(path: &str, session: &mut Session) -> stored_session::Result<Answer> {
    let app = |headers: &[(&'static str, &'static str)]| headers.to_vec();
    Ok(match path {
        // A first write: the cookie is set.
        "/login" => {
            session.renew();
            session.insert("user", "alice")?;
            ("in".into(), app(&[]))
        }
        // Logout: the cookie is removed.
        "/logout" => {
            session.destroy();
            ("out".into(), app(&[]))
        }
        // The handler's own cache policy, on a response that sets the cookie.
        "/own-cache" => {
            session.insert("k", &1)?;
            (
                "own".into(),
                app(&[("Cache-Control", "no-store, max-age=0")]),
            )
        }
        // The handler's own Vary: merged.
        "/vary" => {
            session.insert("k", &2)?;
            ("vary".into(), app(&[("Vary", "Accept-Encoding")]))
        }
        // The handler's own Vary already names Cookie: left alone.
        "/vary-cookie" => {
            session.insert("k", &3)?;
            ("vary-cookie".into(), app(&[("Vary", "Origin, cookie")]))
        }
        // Reads only: no cookie, headers untouched.
        "/peek" => {
            let user = session.get::<String>("user")?.unwrap_or_default();
            (
                format!("user: {user}"),
                app(&[("Vary", "Accept-Encoding"), ("X-App", "1")]),
            )
        }
        _ => ("?".into(), app(&[])),
    })
}

/// The values of every header called `name`.
fn all(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let line = cookie.map(|c| format!("Cookie: {c}"));
    let headers: Vec<&[u8]> = line.iter().map(|l| l.as_bytes()).collect();
    let reply = send(addr, "GET", path, &headers, b"");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply
}

/// The checks, against the server at `addr`.
fn check(h: &Harness, addr: SocketAddr) {
    let private = vec!["private".to_owned()];
    let vary_cookie = vec!["Cookie".to_owned()];

    // Sets the cookie: private, Vary: Cookie.
    let login = get(addr, "/login", None);
    let set = login.session_cookie("id").expect("login sets the cookie");
    let pair = set.split(';').next().unwrap().to_owned();
    assert_eq!(all(&login, "Cache-Control"), private, "login");
    assert_eq!(all(&login, "Vary"), vary_cookie, "login");

    // Reads only: no cookie, and the handler's headers exactly as it set them.
    let peek = get(addr, "/peek", Some(&pair));
    assert_eq!(peek.body, "user: alice");
    assert!(peek.set_cookies().is_empty());
    assert_eq!(all(&peek, "Cache-Control"), Vec::<String>::new(), "peek");
    assert_eq!(all(&peek, "Vary"), ["Accept-Encoding"], "peek");
    assert_eq!(all(&peek, "X-App"), ["1"], "peek");

    // Never touches the session: nothing added.
    let health = get(addr, "/health", Some(&pair));
    assert!(health.set_cookies().is_empty());
    assert_eq!(
        all(&health, "Cache-Control"),
        Vec::<String>::new(),
        "health"
    );
    assert_eq!(all(&health, "Vary"), Vec::<String>::new(), "health");

    // A write to the session the cookie already names sets no cookie (a
    // session cookie, its id unchanged): nothing is added to the response.
    let own = get(addr, "/own-cache", Some(&pair));
    assert!(own.set_cookies().is_empty());
    assert_eq!(all(&own, "Cache-Control"), ["no-store, max-age=0"], "own");
    assert_eq!(all(&own, "Vary"), Vec::<String>::new(), "own, no cookie");
    // With no cookie presented the write sets one: the handler's own
    // Cache-Control is kept as it is, Vary: Cookie added.
    let own = get(addr, "/own-cache", None);
    assert!(own.session_cookie("id").is_some());
    assert_eq!(all(&own, "Cache-Control"), ["no-store, max-age=0"], "own");
    assert_eq!(all(&own, "Vary"), vary_cookie, "own");

    // Vary merged into one header, Cookie once.
    let vary = get(addr, "/vary", None);
    assert!(vary.session_cookie("id").is_some());
    assert_eq!(all(&vary, "Vary"), ["Accept-Encoding, Cookie"], "vary");
    assert_eq!(all(&vary, "Cache-Control"), private, "vary");
    let vary = get(addr, "/vary-cookie", None);
    assert!(vary.session_cookie("id").is_some());
    assert_eq!(all(&vary, "Vary"), ["Origin, cookie"], "vary-cookie");
    assert_eq!(all(&vary, "Cache-Control"), private, "vary-cookie");

    // A cookie naming no live session is removed: private too.
    let unknown = format!(
        "id={}",
        stored_session::SessionId::generate().as_cookie_value()
    );
    let stale = get(addr, "/peek", Some(&unknown));
    let removal = stale.session_cookie("id").expect("a removal");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(all(&stale, "Cache-Control"), private, "stale");
    assert_eq!(all(&stale, "Vary"), ["Accept-Encoding, Cookie"], "stale");

    // Logout removes the cookie: private, Vary: Cookie.
    let logout = get(addr, "/logout", Some(&pair));
    let removal = logout
        .session_cookie("id")
        .expect("logout removes the cookie");
    assert!(removal.starts_with("id=;"), "{removal}");
    assert_eq!(all(&logout, "Cache-Control"), private, "logout");
    assert_eq!(all(&logout, "Vary"), vary_cookie, "logout");
    eprintln!("{:?}: cache headers checked", h.backend);
}

fn sessions(h: &Harness) -> Sessions {
    Sessions::with_policy(h.store(), CookiePolicy::new().with_secure(false)).unwrap()
}

#[cfg(feature = "rouille")]
fn rouille_cache_headers(h: &Harness) {
    use stored_session::adapters::rouille::with_session;
    let sessions = sessions(h);
    let server = adapter_support::serve_rouille(move |request| {
        if request.url() == "/health" {
            return rouille::Response::text("ok");
        }
        with_session(&sessions, request, |session| {
            let (body, headers) = route(&request.url(), session.load()?)?;
            let mut response = rouille::Response::text(body);
            for (name, value) in headers {
                response.headers.push((name.into(), value.into()));
            }
            Ok(response)
        })
    });
    check(h, server.addr);
}

#[cfg(feature = "rocket")]
mod rocket_app {
    use super::*;
    use rocket::response::{self, Responder};
    use rocket::{get, routes, Request, Response};
    use stored_session::adapters::rocket::{SessionFairing, SessionGuard};

    pub struct WithHeaders(Answer);

    impl<'r> Responder<'r, 'static> for WithHeaders {
        fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
            let (body, headers) = self.0;
            let mut response = Response::build();
            response.sized_body(body.len(), std::io::Cursor::new(body));
            for (name, value) in headers {
                response.raw_header_adjoin(name, value);
            }
            response.ok()
        }
    }

    #[get("/health")]
    fn health() -> &'static str {
        "ok"
    }

    #[get("/<path>")]
    fn any(path: &str, session: SessionGuard<'_>) -> stored_session::Result<WithHeaders> {
        route(&format!("/{path}"), &mut session.lock()).map(WithHeaders)
    }

    pub fn server(sessions: Sessions) -> adapter_support::RocketServer {
        adapter_support::serve_rocket(
            rocket::build()
                .mount("/", routes![any, health])
                .attach(SessionFairing::new(sessions)),
        )
    }
}

#[cfg(feature = "rocket")]
fn rocket_cache_headers(h: &Harness) {
    let server = rocket_app::server(sessions(h));
    check(h, server.addr);
}

#[cfg(feature = "http")]
fn http_cache_headers(h: &Harness) {
    use http::header::{HeaderName, HeaderValue};
    use stored_session::adapters::http::handle;
    let sessions = sessions(h);
    let server = adapter_support::serve_http(move |request| {
        if request.uri().path() == "/health" {
            return http::Response::new(b"ok".to_vec());
        }
        handle(&sessions, request, |request, session| {
            let (body, headers) = route(request.uri().path(), session.load()?)?;
            let mut response = http::Response::new(body.into_bytes());
            for (name, value) in headers {
                response.headers_mut().append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static(value),
                );
            }
            Ok(response)
        })
    });
    check(h, server.addr);
}

#[cfg(feature = "rouille")]
mod rouille_suite {
    use super::*;
    backend_suite!(rouille_cache_headers);
}

#[cfg(feature = "rocket")]
mod rocket_suite {
    use super::*;
    backend_suite!(rocket_cache_headers);
}

#[cfg(feature = "http")]
mod http_suite {
    use super::*;
    backend_suite!(http_cache_headers);
}
