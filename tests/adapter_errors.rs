//! Failed session operations through every adapter, over real HTTP, on
//! every enabled backend: a session over `max_payload` is answered 413 by
//! default, a database outage (every pooled connection held elsewhere) 503,
//! and with an error handler set, the handler's own response, for the
//! right `Stage`; the handler's own response and cookies never go out after
//! a failed commit; and every failure is logged at `error` level with the
//! hashed id, never the cookie value.
#![cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]

mod adapter_support;
mod common;
mod log_capture;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use adapter_support::{send, Jar, Reply};
use common::Harness;
use stored_session::adapters::{CookiePolicy, ErrorResponse, Sessions, Stage};
use stored_session::{Database, Error, PoolOptions, SessionId};

// ---- Log capture (installed before any Rocket, which then keeps off). ----

/// The `error` lines of target `stored_session` that name `sid`.
fn errors_about(sid: &str) -> Vec<String> {
    log_capture::lines()
        .iter()
        .filter(|(level, target, line)| {
            *level == log::Level::Error && target == "stored_session" && line.contains(sid)
        })
        .map(|(_, _, line)| line.clone())
        .collect()
}

/// A line of this crate's (target `stored_session`) holding `needle`.
/// (Other crates' lines are not checked: hyper's trace lines print whole
/// responses, `Set-Cookie` included.)
fn any_line_contains(needle: &str) -> Option<String> {
    log_capture::lines()
        .iter()
        .find(|(_, target, line)| target.starts_with("stored_session") && line.contains(needle))
        .map(|(_, _, line)| line.clone())
}

// ---- A database outage: every pooled connection held elsewhere. ----

const POOL: u32 = 2;
const ACQUIRE: Duration = Duration::from_millis(600);
const MAX_PAYLOAD: usize = 4096;

/// Holds all of the pool's connections on other threads until released.
struct Outage {
    db: Database,
    release: Arc<AtomicBool>,
    holders: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Outage {
    fn new(db: Database) -> Arc<Outage> {
        Arc::new(Outage {
            db,
            release: Arc::new(AtomicBool::new(false)),
            holders: Mutex::new(Vec::new()),
        })
    }

    /// Returns once every connection is held.
    fn begin(&self) {
        self.release.store(false, Ordering::SeqCst);
        let barrier = Arc::new(Barrier::new(POOL as usize + 1));
        let mut holders = self.holders.lock().unwrap();
        for _ in 0..POOL {
            let (db, barrier, release) = (self.db.clone(), barrier.clone(), self.release.clone());
            holders.push(std::thread::spawn(move || {
                crate::with_conn!(&db, |_c| {
                    barrier.wait();
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            }));
        }
        barrier.wait();
    }

    fn end(&self) {
        self.release.store(true, Ordering::SeqCst);
        for t in self.holders.lock().unwrap().drain(..) {
            t.join().unwrap();
        }
    }
}

/// The store every test serves: a small pool with a short acquire timeout,
/// and a small `max_payload`.
fn sessions(h: &Harness) -> Sessions {
    let store = h.store_with(
        h.builder()
            .config(h.config().max_payload(MAX_PAYLOAD))
            .pool(
                PoolOptions::default()
                    .max_size(POOL)
                    .acquire_timeout(ACQUIRE),
            ),
    );
    Sessions::with_policy(store, CookiePolicy::new().with_secure(false)).unwrap()
}

/// More than `MAX_PAYLOAD` once encrypted.
fn blob() -> String {
    "x".repeat(2 * MAX_PAYLOAD)
}

/// What the error handler of the custom tests saw.
type Seen = Arc<Mutex<Vec<(Stage, String)>>>;

/// Sessions with an error handler that records what it got and answers:
/// 507 JSON for an oversized session, else a JSON body naming the stage
/// with the default status.
fn with_handler(sessions: Sessions) -> (Sessions, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let sessions = sessions.with_error_handler(move |error, stage| {
        let kind = match error {
            Error::PayloadTooLarge { .. } => "PayloadTooLarge",
            Error::PoolTimeout { .. } => "PoolTimeout",
            Error::Config(_) => "Config",
            _ => "other",
        };
        sink.lock().unwrap().push((stage, kind.to_owned()));
        match error {
            Error::PayloadTooLarge { size, max } => ErrorResponse::json(
                507,
                format!(r#"{{"error":"session too large","size":{size},"max":{max}}}"#),
            )
            .with_header("X-Session-Error", "too-large"),
            _ => ErrorResponse::json(
                ErrorResponse::for_error(error).status(),
                format!(r#"{{"error":"session {stage} failed"}}"#),
            )
            .with_header("Retry-After", "1"),
        }
    });
    (sessions, seen)
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A running server of one adapter, serving the routes every adapter has:
///
/// * `GET /` counts visits (creates the session);
/// * `GET /peek` reads the count;
/// * `GET /big` stores more than `max_payload`, and answers 200 with an
///   `X-Handler` header and a `flash` cookie of its own;
/// * `GET /fail` changes the session, then returns `Error::Config`;
/// * `GET /hold` changes the session, then holds every pooled connection
///   (the outage), so that its commit fails.
struct Running {
    addr: SocketAddr,
    _server: Box<dyn std::any::Any>,
}

fn visits_body(visits: u64) -> String {
    format!("visits: {visits}")
}

#[cfg(feature = "rouille")]
fn rouille_server(sessions: Sessions, outage: Arc<Outage>) -> Running {
    use rouille::{router, Response};
    use stored_session::adapters::rouille::with_session;
    let server = adapter_support::serve_rouille(move |request| {
        with_session(&sessions, request, |session| {
            router!(request,
                (GET) (/) => {
                    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
                    session.insert("visits", &visits)?;
                    Ok(Response::text(visits_body(visits)))
                },
                (GET) (/peek) => {
                    let visits = session.get::<u64>("visits")?.unwrap_or(0);
                    Ok(Response::text(visits_body(visits)))
                },
                (GET) (/big) => {
                    session.insert("blob", &blob())?;
                    Ok(Response::text("saved")
                        .with_additional_header("X-Handler", "yes")
                        .with_additional_header("Set-Cookie", "flash=saved; Path=/"))
                },
                (GET) (/fail) => {
                    session.insert("half-done", &1)?;
                    Err(Error::Config("the handler gave up".into()))
                },
                (GET) (/hold) => {
                    session.insert("held", &1)?;
                    outage.begin();
                    Ok(Response::text("held"))
                },
                _ => Ok(Response::empty_404())
            )
        })
    });
    Running {
        addr: server.addr,
        _server: Box::new(server),
    }
}

#[cfg(feature = "http")]
fn http_server(sessions: Sessions, outage: Arc<Outage>) -> Running {
    use http::{Response, StatusCode};
    use stored_session::adapters::http::handle;
    let text = |body: &str| Response::new(body.as_bytes().to_vec());
    let server = adapter_support::serve_http(move |request| {
        handle(&sessions, request, |request, session| {
            match request.uri().path() {
                "/" => {
                    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
                    session.insert("visits", &visits)?;
                    Ok(text(&visits_body(visits)))
                }
                "/peek" => {
                    let visits = session.get::<u64>("visits")?.unwrap_or(0);
                    Ok(text(&visits_body(visits)))
                }
                "/big" => {
                    session.insert("blob", &blob())?;
                    let mut r = text("saved");
                    r.headers_mut().insert("x-handler", "yes".parse().unwrap());
                    r.headers_mut()
                        .append("set-cookie", "flash=saved; Path=/".parse().unwrap());
                    Ok(r)
                }
                "/fail" => {
                    session.insert("half-done", &1)?;
                    Err(Error::Config("the handler gave up".into()))
                }
                "/hold" => {
                    session.insert("held", &1)?;
                    outage.begin();
                    Ok(text("held"))
                }
                _ => {
                    let mut r = text("not found");
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    Ok(r)
                }
            }
        })
    });
    Running {
        addr: server.addr,
        _server: Box::new(server),
    }
}

#[cfg(feature = "rocket")]
mod rocket_app {
    use super::*;
    use rocket::http::Header;
    use rocket::{get, routes, Responder, State};
    use stored_session::adapters::rocket::{SessionFairing, SessionGuard};

    #[get("/")]
    fn index(session: SessionGuard<'_>) -> Result<String, Error> {
        let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
        session.insert("visits", &visits)?;
        Ok(visits_body(visits))
    }

    #[get("/peek")]
    fn peek(session: SessionGuard<'_>) -> Result<String, Error> {
        Ok(visits_body(session.get::<u64>("visits")?.unwrap_or(0)))
    }

    #[derive(Responder)]
    struct Saved {
        body: &'static str,
        handler: Header<'static>,
        flash: Header<'static>,
    }

    #[get("/big")]
    fn big(session: SessionGuard<'_>) -> Result<Saved, Error> {
        session.insert("blob", &blob())?;
        Ok(Saved {
            body: "saved",
            handler: Header::new("X-Handler", "yes"),
            flash: Header::new("Set-Cookie", "flash=saved; Path=/"),
        })
    }

    #[get("/fail")]
    fn fail(session: SessionGuard<'_>) -> Result<&'static str, Error> {
        session.insert("half-done", &1)?;
        Err(Error::Config("the handler gave up".into()))
    }

    #[get("/hold")]
    fn hold(session: SessionGuard<'_>, outage: &State<Arc<Outage>>) -> Result<&'static str, Error> {
        session.insert("held", &1)?;
        outage.begin();
        Ok("held")
    }

    /// Takes the guard's error itself: its own response is kept.
    #[get("/maybe")]
    fn maybe(session: Result<SessionGuard<'_>, Error>) -> String {
        match session {
            Ok(s) => visits_body(s.get::<u64>("visits").unwrap().unwrap_or(0)),
            Err(Error::PoolTimeout { .. }) => "degraded: no session".into(),
            Err(e) => format!("degraded: {e}"),
        }
    }

    pub fn server(sessions: Sessions, outage: Arc<Outage>) -> Running {
        let rocket = rocket::custom(rocket::Config::figment().merge(("log_level", "off")))
            .mount("/", routes![index, peek, big, fail, hold, maybe])
            .manage(outage)
            .attach(SessionFairing::new(sessions));
        let server = adapter_support::serve_rocket(rocket);
        Running {
            addr: server.addr,
            _server: Box::new(server),
        }
    }
}

type Start = fn(Sessions, Arc<Outage>) -> Running;

/// The checks shared by every adapter, with the default error response.
fn default_responses(h: &Harness, start: Start, adapter: &str) {
    log_capture::install();
    let sessions = sessions(h);
    let outage = Outage::new(sessions.store().database().clone());
    let server = start(sessions, outage.clone());
    let addr = server.addr;
    let mut jar = Jar::new("id");
    let r = jar.send(addr, "GET", "/", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "visits: 1"), "{adapter}");
    let cookie = jar.value.clone().unwrap();
    let sid = SessionId::parse(&cookie).unwrap().stored_id().to_string();

    // Over max_payload: 413, plain text, nothing of the handler's response.
    let r = jar.send(addr, "GET", "/big", b"");
    assert_eq!(r.status, 413, "{adapter}: {r:?}");
    assert_eq!(r.body, "payload too large\n", "{adapter}");
    assert_eq!(
        header(&r, "Content-Type"),
        Some("text/plain; charset=utf-8"),
        "{adapter}"
    );
    assert!(r.set_cookies().is_empty(), "{adapter}: {r:?}");
    assert_eq!(header(&r, "X-Handler"), None, "{adapter}");
    // Nothing was written; the browser's cookie still names the session.
    let r = jar.send(addr, "GET", "/peek", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "visits: 1"), "{adapter}");
    let logged = errors_about(&sid);
    assert!(
        logged.iter().any(|l| l.starts_with("session commit failed")
            && l.contains("exceeds the maximum of 4096 bytes")),
        "{adapter}: {logged:#?}"
    );

    // A handler's own error: 500, nothing saved, logged.
    let r = jar.send(addr, "GET", "/fail", b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "internal server error\n"),
        "{adapter}"
    );
    assert!(r.set_cookies().is_empty(), "{adapter}");
    assert!(
        errors_about(&sid)
            .iter()
            .any(|l| l.starts_with("session handler failed") && l.contains("the handler gave up")),
        "{adapter}: {:#?}",
        errors_about(&sid)
    );

    // The database is out (no connection comes free): a load is a 503.
    outage.begin();
    let r = jar.send(addr, "GET", "/peek", b"");
    outage.end();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "service unavailable\n"),
        "{adapter}"
    );
    assert!(r.set_cookies().is_empty(), "{adapter}");
    assert!(
        errors_about(&sid)
            .iter()
            .any(|l| l.starts_with("session load failed") && l.contains("no database connection")),
        "{adapter}: {:#?}",
        errors_about(&sid)
    );
    // ... and so is a commit.
    let r = jar.send(addr, "GET", "/hold", b"");
    outage.end();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "service unavailable\n"),
        "{adapter}"
    );
    assert!(r.set_cookies().is_empty(), "{adapter}");
    let r = jar.send(addr, "GET", "/peek", b"");
    assert_eq!(r.body, "visits: 1", "{adapter}: the session changed");
    assert_eq!(jar.value.as_deref(), Some(cookie.as_str()));
    let commits = errors_about(&sid)
        .into_iter()
        .filter(|l| l.starts_with("session commit failed"))
        .count();
    assert_eq!(commits, 2, "{adapter}: {:#?}", errors_about(&sid));

    // Never the cookie value, in any of the crate's lines of any test.
    assert_eq!(any_line_contains(&cookie), None, "{adapter}");
}

/// With an error handler: its responses, for the right stage.
fn custom_responses(h: &Harness, start: Start, adapter: &str) {
    log_capture::install();
    let (sessions, seen) = with_handler(sessions(h));
    let outage = Outage::new(sessions.store().database().clone());
    let server = start(sessions, outage.clone());
    let addr = server.addr;
    let mut jar = Jar::new("id");
    jar.send(addr, "GET", "/", b"");
    let cookie = jar.value.clone().unwrap();
    let sid = SessionId::parse(&cookie).unwrap().stored_id().to_string();
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    let r = jar.send(addr, "GET", "/big", b"");
    assert_eq!(r.status, 507, "{adapter}: {r:?}");
    assert!(
        r.body
            .starts_with(r#"{"error":"session too large","size":"#),
        "{adapter}: {}",
        r.body
    );
    assert!(r.body.ends_with(r#","max":4096}"#), "{adapter}: {}", r.body);
    assert_eq!(
        header(&r, "Content-Type"),
        Some("application/json"),
        "{adapter}"
    );
    assert_eq!(
        header(&r, "X-Session-Error"),
        Some("too-large"),
        "{adapter}"
    );
    assert_eq!(header(&r, "X-Handler"), None, "{adapter}");
    assert!(r.set_cookies().is_empty(), "{adapter}: {r:?}");
    assert_eq!(
        take(),
        [(Stage::Commit, "PayloadTooLarge".to_owned())],
        "{adapter}"
    );
    // Logged whether or not a handler is set.
    assert!(
        errors_about(&sid)
            .iter()
            .any(|l| l.starts_with("session commit failed")),
        "{adapter}"
    );

    let r = jar.send(addr, "GET", "/fail", b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, r#"{"error":"session handler failed"}"#),
        "{adapter}"
    );
    assert_eq!(header(&r, "Retry-After"), Some("1"), "{adapter}");
    assert_eq!(take(), [(Stage::Handler, "Config".to_owned())], "{adapter}");

    outage.begin();
    let r = jar.send(addr, "GET", "/peek", b"");
    outage.end();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, r#"{"error":"session load failed"}"#),
        "{adapter}"
    );
    assert_eq!(
        header(&r, "Content-Type"),
        Some("application/json"),
        "{adapter}"
    );
    assert_eq!(
        take(),
        [(Stage::Load, "PoolTimeout".to_owned())],
        "{adapter}"
    );

    let r = jar.send(addr, "GET", "/hold", b"");
    outage.end();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, r#"{"error":"session commit failed"}"#),
        "{adapter}"
    );
    assert_eq!(
        take(),
        [(Stage::Commit, "PoolTimeout".to_owned())],
        "{adapter}"
    );
    assert!(r.set_cookies().is_empty(), "{adapter}");

    // The session is as it was.
    let r = jar.send(addr, "GET", "/peek", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "visits: 1"), "{adapter}");
    assert!(take().is_empty());
    assert_eq!(any_line_contains(&cookie), None, "{adapter}");
}

#[cfg(feature = "rouille")]
fn rouille_default_responses(h: &Harness) {
    default_responses(h, rouille_server, "rouille");
}

#[cfg(feature = "rouille")]
fn rouille_custom_responses(h: &Harness) {
    custom_responses(h, rouille_server, "rouille");
}

#[cfg(feature = "http")]
fn http_default_responses(h: &Harness) {
    default_responses(h, http_server, "http");
}

#[cfg(feature = "http")]
fn http_custom_responses(h: &Harness) {
    custom_responses(h, http_server, "http");
}

#[cfg(feature = "rocket")]
fn rocket_default_responses(h: &Harness) {
    default_responses(h, rocket_app::server, "rocket");
}

#[cfg(feature = "rocket")]
fn rocket_custom_responses(h: &Harness) {
    custom_responses(h, rocket_app::server, "rocket");
}

/// Rocket only: the site headers `Shield` sets survive a failed commit,
/// the handler's do not; a handler that takes `Result<SessionGuard, Error>`
/// answers a failed load itself.
#[cfg(feature = "rocket")]
fn rocket_failure_details(h: &Harness) {
    log_capture::install();
    let sessions = sessions(h);
    let outage = Outage::new(sessions.store().database().clone());
    let server = rocket_app::server(sessions, outage.clone());
    let addr = server.addr;
    let mut jar = Jar::new("id");
    let r = jar.send(addr, "GET", "/", b"");
    assert_eq!(header(&r, "X-Content-Type-Options"), Some("nosniff"));
    let r = jar.send(addr, "GET", "/big", b"");
    assert_eq!(r.status, 413);
    assert_eq!(header(&r, "X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(header(&r, "X-Frame-Options"), Some("SAMEORIGIN"));
    assert_eq!(header(&r, "X-Handler"), None);
    // The failed load reaches the handler, which answers it.
    let cookie = format!("Cookie: id={}", jar.value.clone().unwrap());
    outage.begin();
    let r = send(addr, "GET", "/maybe", &[cookie.as_bytes()], b"");
    outage.end();
    assert_eq!((r.status, r.body.as_str()), (200, "degraded: no session"));
    let r = send(addr, "GET", "/maybe", &[cookie.as_bytes()], b"");
    assert_eq!((r.status, r.body.as_str()), (200, "visits: 1"));
}

#[cfg(feature = "rouille")]
mod rouille_suite {
    use super::*;
    backend_suite!(rouille_default_responses, rouille_custom_responses);
}

#[cfg(feature = "http")]
mod http_suite {
    use super::*;
    backend_suite!(http_default_responses, http_custom_responses);
}

#[cfg(feature = "rocket")]
mod rocket_suite {
    use super::*;
    backend_suite!(
        rocket_default_responses,
        rocket_custom_responses,
        rocket_failure_details
    );
}
