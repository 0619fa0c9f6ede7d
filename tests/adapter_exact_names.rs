//! The session cookie's name is matched byte for byte on the raw `Cookie`
//! header, in every adapter, through a real server over TCP: rouille (its
//! own server), Rocket (launched on a loopback port, hyper and Rocket's
//! request parsing, not the local client) and the `http` glue (behind a
//! small `std::net` server), on every backend, with and without the
//! `__Host-` prefix.
//!
//! A live session's id is sent under every near miss of the name
//! (`adapter_support::near_names`: percent-encodings such as `%69%64`,
//! `%5F%5FHost-id`, `_%5FHost-id` and `__Host-%69d` in upper- and
//! lower-case hex, case changes, quotes, spaces, Unicode and control
//! whitespace, the bare name under a `__Host-` policy), alone, among other
//! cookies and in a second `Cookie` header. Every time: a fresh session (no
//! data of the live one), no `Set-Cookie` from a route that only reads, and
//! a new id (never the live one) from a route that writes. A request the
//! HTTP layer refuses outright (4xx, or the connection closed) is accepted
//! only for names holding control or non-ASCII bytes.
#![cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]

mod adapter_support;
mod common;

use adapter_support::{near_names, try_send, Reply};
use common::{count, Harness};
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::{Session, SessionId};

/// The two cookie policies: the plain name (over plain HTTP here) and the
/// `__Host-` prefix.
fn policies() -> [CookiePolicy; 2] {
    [
        CookiePolicy::new().with_secure(false),
        CookiePolicy::new().with_host_prefix(true),
    ]
}

/// What every adapter's routes do with the session: `/peek` reads only,
/// `/write` counts a visit.
fn route(path: &str, session: &mut Session) -> stored_session::Result<String> {
    let new = session.is_new();
    let visits = session.get::<u64>("visits")?.unwrap_or(0);
    let visits = if path == "/write" {
        session.insert("visits", &(visits + 1))?;
        visits + 1
    } else {
        visits
    };
    Ok(format!("visits: {visits}, new: {new}"))
}

/// Sends `GET path` with the given raw `Cookie` header values.
fn get(addr: std::net::SocketAddr, path: &str, cookies: &[Vec<u8>]) -> Option<Reply> {
    let lines: Vec<Vec<u8>> = cookies
        .iter()
        .map(|v| [&b"Cookie: "[..], v].concat())
        .collect();
    let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    try_send(addr, "GET", path, &refs, b"")
}

/// The value of the response's `Set-Cookie` for `name`.
fn cookie_value(reply: &Reply, name: &str) -> Option<String> {
    let set = reply.session_cookie(name)?;
    Some(set[name.len() + 1..].split(';').next().unwrap().to_owned())
}

/// Runs every near miss of the policy's name against the server at `addr`.
///
/// `trims_controls`: the HTTP layer trims `\v` and `\f` (with spaces and
/// tabs) around a whole header value before the adapter sees it, as
/// tiny_http (rouille) does; a header value that starts with one of them
/// then never reaches the adapter as sent, so those requests are skipped.
/// Browsers refuse control characters in cookie names, so no page can plant
/// such a cookie.
fn sweep(h: &Harness, sessions: &Sessions, addr: std::net::SocketAddr, trims_controls: bool) {
    let store = sessions.store();
    let name = sessions.policy().name().into_owned();
    let first = get(addr, "/write", &[]).expect("answered");
    assert_eq!(first.body, "visits: 1, new: true");
    let live = cookie_value(&first, &name).expect("the live session's cookie");
    let exact = format!("{name}={live}").into_bytes();
    // The control: the exact name loads the live session.
    let control = get(addr, "/peek", std::slice::from_ref(&exact)).unwrap();
    assert_eq!(control.body, "visits: 1, new: false", "{name}: control");
    assert!(control.set_cookies().is_empty());

    let (mut answered, mut refused, mut trimmed) = (0, 0, 0);
    let names = near_names(&name);
    for near in &names {
        let shown = String::from_utf8_lossy(&near.name).into_owned();
        let pair = [&near.name[..], b"=", live.as_bytes()].concat();
        let shapes: [Vec<Vec<u8>>; 3] = [
            vec![pair.clone()],
            vec![[&b"a=1; "[..], &pair, b"; b=2"].concat()],
            vec![b"a=1".to_vec(), pair.clone()],
        ];
        for headers in shapes {
            let what = format!("{name}: {shown:?} in {:?}", headers.len());
            let last = headers.last().unwrap();
            if trims_controls && matches!(last.first(), Some(0x0b | 0x0c)) {
                trimmed += 1;
                continue;
            }
            let rows = count(store.database());
            let peek = get(addr, "/peek", &headers);
            let peek = match peek {
                Some(r) if r.status < 400 || r.status >= 500 => r,
                other => {
                    let status = other.map(|r| r.status);
                    assert!(
                        near.may_be_refused,
                        "{what}: refused ({status:?}) though it is plain ASCII"
                    );
                    refused += 1;
                    continue;
                }
            };
            assert_eq!(peek.status, 200, "{what}");
            assert_eq!(peek.body, "visits: 0, new: true", "{what}: not fresh");
            assert_eq!(peek.set_cookies(), Vec::<String>::new(), "{what}");
            let write = get(addr, "/write", &headers).expect("answered");
            assert_eq!(write.status, 200, "{what}");
            assert_eq!(write.body, "visits: 1, new: true", "{what}: not fresh");
            assert_eq!(write.set_cookies().len(), 1, "{what}");
            let new_id = cookie_value(&write, &name).expect("the fresh session's cookie");
            assert!(SessionId::parse(&new_id).is_some(), "{what}");
            assert_ne!(new_id, live, "{what}: the live id was handed back");
            assert_eq!(count(store.database()), rows + 1, "{what}: one new row");
            answered += 1;
        }
    }
    // The live session is intact.
    let control = get(addr, "/peek", &[exact]).unwrap();
    assert_eq!(control.body, "visits: 1, new: false", "{name}: afterwards");
    let plain = names.iter().filter(|n| !n.may_be_refused).count();
    assert!(
        answered >= 3 * plain,
        "{answered} answered, {plain} plain names"
    );
    assert!(trimmed <= 4, "{trimmed}");
    eprintln!(
        "{:?} {name}: {answered} near-miss requests got a fresh session, {refused} were \
         refused by the HTTP layer, {trimmed} trimmed by it",
        h.backend
    );
}

#[cfg(feature = "rouille")]
fn rouille_exact_names(h: &Harness) {
    use stored_session::adapters::rouille::with_session;
    for policy in policies() {
        let sessions = Sessions::with_policy(h.store(), policy).unwrap();
        let served = sessions.clone();
        let server = adapter_support::serve_rouille(move |request| {
            with_session(&served, request, |session| {
                let body = route(&request.url(), session.load()?)?;
                Ok(rouille::Response::text(body))
            })
        });
        sweep(h, &sessions, server.addr, true);
    }
}

#[cfg(feature = "rocket")]
mod rocket_app {
    use super::*;
    use rocket::{get, routes};
    use stored_session::adapters::rocket::{SessionFairing, SessionGuard};

    #[get("/<path>")]
    fn any(path: &str, session: SessionGuard<'_>) -> stored_session::Result<String> {
        route(&format!("/{path}"), &mut session.lock())
    }

    pub fn server(sessions: &Sessions) -> adapter_support::RocketServer {
        adapter_support::serve_rocket(
            rocket::build()
                .mount("/", routes![any])
                .attach(SessionFairing::new(sessions.clone())),
        )
    }
}

#[cfg(feature = "rocket")]
fn rocket_exact_names(h: &Harness) {
    for policy in policies() {
        let sessions = Sessions::with_policy(h.store(), policy).unwrap();
        let server = rocket_app::server(&sessions);
        sweep(h, &sessions, server.addr, false);
    }
}

#[cfg(feature = "http")]
fn http_exact_names(h: &Harness) {
    use stored_session::adapters::http::handle;
    for policy in policies() {
        let sessions = Sessions::with_policy(h.store(), policy).unwrap();
        let served = sessions.clone();
        let server = adapter_support::serve_http(move |request| {
            handle(&served, request, |request, session| {
                let body = route(request.uri().path(), session.load()?)?;
                Ok(http::Response::new(body.into_bytes()))
            })
        });
        sweep(h, &sessions, server.addr, false);
    }
}

#[cfg(feature = "rouille")]
mod rouille_suite {
    use super::*;
    backend_suite!(rouille_exact_names);
}

#[cfg(feature = "rocket")]
mod rocket_suite {
    use super::*;
    backend_suite!(rocket_exact_names);
}

#[cfg(feature = "http")]
mod http_suite {
    use super::*;
    backend_suite!(http_exact_names);
}
