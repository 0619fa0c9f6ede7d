//! Bad HTTP input through each adapter, on every backend: absent, empty,
//! duplicate, oversized (8 KB, 64 KB), non-UTF-8 and NUL `Cookie` headers,
//! and the session cookie under other names, prefixes and encodings.
//!
//! For every case the request goes to a route that counts visits in the
//! session (so it loads and writes it): no panic, no 5xx, a fresh session
//! (`visits: 1` under a new id, never the live session's), and no database
//! read for a value that is not a well-formed id (every read emits
//! `EventKind::Read`). Adapters: rouille and Rocket over real loopback HTTP
//! (their own HTTP layers parse the bytes), `http` types called directly.
#![cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]

mod adapter_support;
mod common;
mod reliability_support;

use common::{count, Harness};
use reliability_support::count_kind;
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::{EventKind, SessionId};

/// What a case must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Not a well-formed id (or none at all): fresh session, no read.
    NoQuery,
    /// A well-formed id naming no session: fresh session, one read.
    Unknown,
}

struct Case {
    what: String,
    /// Raw `Cookie` header values (each one header line).
    headers: Vec<Vec<u8>>,
    expect: Expect,
}

fn case(what: impl Into<String>, headers: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case {
        what: what.into(),
        headers,
        expect,
    }
}

/// The hostile cases, built around the live session's id `live`.
fn cases(live: &str) -> Vec<Case> {
    use Expect::*;
    let other = SessionId::generate();
    let other = other.as_cookie_value();
    let swapped: String = live
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' => c.to_ascii_lowercase(),
            c => c,
        })
        .collect();
    let std_alphabet: String = format!("{}+/", &live[..41]);
    let percent: String = live.bytes().map(|b| format!("%{b:02X}")).collect();
    let b = |s: String| s.into_bytes();
    vec![
        case("absent", vec![], NoQuery),
        case("empty header", vec![b"".to_vec()], NoQuery),
        case("blank header", vec![b"   ".to_vec()], NoQuery),
        case("empty value", vec![b"id=".to_vec()], NoQuery),
        case("name only", vec![b"id".to_vec()], NoQuery),
        case("junk", vec![b";;; = ; ==; id==".to_vec()], NoQuery),
        case(
            "duplicate, different values, one header",
            vec![b(format!("id={live}; id={other}"))],
            NoQuery,
        ),
        case(
            "duplicate, different values, two headers",
            vec![b(format!("id={other}")), b(format!("id={live}"))],
            NoQuery,
        ),
        case(
            "duplicate, live and empty",
            vec![b(format!("id={live}; id="))],
            NoQuery,
        ),
        case(
            "oversized 8 KB value",
            vec![b(format!("id={}", "A".repeat(8 * 1024)))],
            NoQuery,
        ),
        case(
            "oversized 64 KB value",
            vec![b(format!("id={}", "A".repeat(64 * 1024)))],
            NoQuery,
        ),
        case(
            "8 KB of other cookies around a bad id",
            vec![b(format!("pad={}; id=short; x=1", "p".repeat(8 * 1024)))],
            NoQuery,
        ),
        case(
            "live id with the 8 KB value appended",
            vec![b(format!("id={live}{}", "A".repeat(8 * 1024)))],
            NoQuery,
        ),
        case(
            "non-UTF-8 bytes",
            vec![b"x=\xff\xfe; id=\xc3\x28\x80".to_vec()],
            NoQuery,
        ),
        case(
            "non-UTF-8 byte inside a 43-byte value",
            vec![[&b"id="[..], &live.as_bytes()[..42], b"\xff"].concat()],
            NoQuery,
        ),
        case("NUL byte", vec![b"id=abc\0def".to_vec()], NoQuery),
        case(
            "NUL as the 43rd byte",
            vec![[&b"id="[..], &live.as_bytes()[..42], b"\0"].concat()],
            NoQuery,
        ),
        case(
            "live id under __Host-",
            vec![b(format!("__Host-id={live}"))],
            NoQuery,
        ),
        case(
            "live id under __Secure-",
            vec![b(format!("__Secure-id={live}"))],
            NoQuery,
        ),
        case("live id under xid", vec![b(format!("xid={live}"))], NoQuery),
        case("live id under ID", vec![b(format!("ID={live}"))], NoQuery),
        case("live id under Id", vec![b(format!("Id={live}"))], NoQuery),
        case(
            "live id under a percent-encoded name",
            vec![b(format!("%69%64={live}"))],
            NoQuery,
        ),
        case(
            "live id percent-encoded",
            vec![b(format!("id={percent}"))],
            NoQuery,
        ),
        case(
            "live id, standard base64 alphabet",
            vec![b(format!("id={std_alphabet}"))],
            NoQuery,
        ),
        case("live id padded", vec![b(format!("id={live}="))], NoQuery),
        case(
            "live id truncated",
            vec![b(format!("id={}", &live[..42]))],
            NoQuery,
        ),
        case(
            "stored-key form",
            vec![b(format!(
                "id={}",
                SessionId::parse(live).unwrap().stored_id()
            ))],
            NoQuery,
        ),
        case(
            "live id with its case swapped",
            vec![b(format!("id={swapped}"))],
            Unknown,
        ),
        case("unknown id", vec![b(format!("id={other}"))], Unknown),
    ]
}

/// What an adapter answered.
struct Answer {
    status: u16,
    body: String,
    set_cookies: Vec<String>,
}

/// The route every adapter serves at `/`: visits + 1 (loads and writes).
fn visits_body(visits: u64, new: bool) -> String {
    format!("visits: {visits}, new: {new}")
}

/// Checks every case through `send`, then that the live session is intact.
/// Returns the cases the server refused to deliver to the adapter at all.
fn sweep(
    h: &Harness,
    sessions: &Sessions,
    mut send: impl FnMut(&[Vec<u8>]) -> Option<Answer>,
) -> Vec<String> {
    let store = sessions.store().clone();
    // The live session: one visit.
    let first = send(&[]).expect("a plain request is answered");
    assert_eq!(first.body, visits_body(1, true));
    let live = first
        .set_cookies
        .iter()
        .find_map(|c| c.strip_prefix("id="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("the live session's cookie");
    let reads = count_kind(&store, EventKind::Read);
    let mut answered = 0;
    let mut not_delivered = Vec::new();
    for c in cases(&live) {
        let before = count(store.database());
        let reads_before = reads.load(std::sync::atomic::Ordering::SeqCst);
        let Some(answer) = send(&c.headers) else {
            not_delivered.push(c.what);
            continue;
        };
        let reads_made = reads.load(std::sync::atomic::Ordering::SeqCst) - reads_before;
        let what = &c.what;
        assert!(answer.status < 500, "{what}: status {}", answer.status);
        assert_eq!(answer.status, 200, "{what}");
        assert_eq!(
            answer.body,
            visits_body(1, true),
            "{what}: not a fresh session"
        );
        let new_id = answer
            .set_cookies
            .iter()
            .find_map(|c| c.strip_prefix("id="))
            .map(|c| c.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{what}: no cookie for the fresh session"));
        assert!(SessionId::parse(&new_id).is_some(), "{what}");
        assert_ne!(new_id, live, "{what}: the live id was handed out");
        let expected_reads = match c.expect {
            Expect::NoQuery => 0,
            Expect::Unknown => 1,
        };
        assert_eq!(reads_made, expected_reads, "{what}: reads");
        assert_eq!(count(store.database()), before + 1, "{what}: one new row");
        answered += 1;
    }
    // The live session was neither adopted nor harmed.
    let again = send(&[format!("id={live}").into_bytes()]).unwrap();
    assert_eq!(again.body, visits_body(2, false));
    eprintln!(
        "{:?}: {answered} hostile cases answered with a fresh session and no 5xx; \
         not delivered by the server: {not_delivered:?}",
        h.backend
    );
    not_delivered
}

#[cfg(feature = "rouille")]
mod rouille_adapter {
    use super::*;
    use rouille::Response;
    use stored_session::adapters::rouille::with_session;

    fn app(sessions: &Sessions, request: &rouille::Request) -> Response {
        with_session(sessions, request, |session| {
            let s = session.load()?;
            let new = s.is_new();
            let visits = s.get::<u64>("visits")?.unwrap_or(0) + 1;
            s.insert("visits", &visits)?;
            Ok(Response::text(visits_body(visits, new)))
        })
    }

    pub fn bad_input(h: &Harness) {
        let sessions =
            Sessions::with_policy(h.store(), CookiePolicy::new().with_secure(false)).unwrap();
        let served = sessions.clone();
        let server = rouille::Server::new("127.0.0.1:0", move |r| app(&served, r)).unwrap();
        let addr = server.server_addr();
        let (handle, stop) = server.stoppable();
        let not_delivered = sweep(h, &sessions, |headers| {
            let lines: Vec<Vec<u8>> = headers
                .iter()
                .map(|v| [&b"Cookie: "[..], v].concat())
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
            let reply = adapter_support::try_send(addr, "GET", "/", &refs, b"")?;
            let set_cookies = reply.set_cookies();
            Some(Answer {
                status: reply.status,
                body: reply.body,
                set_cookies,
            })
        });
        let _ = stop.send(());
        let _ = handle.join();
        // tiny_http (rouille's HTTP layer) hangs up, before any handler
        // runs, on header bytes that are not ASCII; nothing else may fail
        // to arrive.
        assert_eq!(
            not_delivered,
            ["non-UTF-8 bytes", "non-UTF-8 byte inside a 43-byte value"]
        );
    }
}

#[cfg(feature = "rocket")]
mod rocket_adapter {
    use super::*;
    use rocket::{get, routes};
    use stored_session::adapters::rocket::{SessionFairing, SessionGuard};

    #[get("/")]
    fn index(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
        let mut s = session.lock();
        let new = s.is_new();
        let visits = s.get::<u64>("visits")?.unwrap_or(0) + 1;
        s.insert("visits", &visits)?;
        Ok(visits_body(visits, new))
    }

    pub fn bad_input(h: &Harness) {
        let sessions =
            Sessions::with_policy(h.store(), CookiePolicy::new().with_secure(false)).unwrap();
        let rocket = rocket::custom(rocket::Config::figment().merge(("log_level", "off")))
            .mount("/", routes![index])
            .attach(SessionFairing::new(sessions.clone()));
        let server = adapter_support::serve_rocket(rocket);
        let addr = server.addr;
        let not_delivered = sweep(h, &sessions, |headers| {
            let lines: Vec<Vec<u8>> = headers
                .iter()
                .map(|v| [&b"Cookie: "[..], v].concat())
                .collect();
            let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).collect();
            let reply = adapter_support::try_send(addr, "GET", "/", &refs, b"")?;
            // hyper answers 400, before Rocket sees the request, for a
            // header value it refuses.
            if reply.status == 400 {
                return None;
            }
            let set_cookies = reply.set_cookies();
            Some(Answer {
                status: reply.status,
                body: reply.body,
                set_cookies,
            })
        });
        // hyper refuses NUL bytes in a header; everything else reaches the
        // adapter (Rocket drops a header that is not UTF-8: no cookie).
        assert_eq!(not_delivered, ["NUL byte", "NUL as the 43rd byte"]);
    }
}

#[cfg(feature = "http")]
mod http_adapter {
    use super::*;
    use http::header::{HeaderValue, COOKIE, SET_COOKIE};
    use http::{Request, Response};
    use stored_session::adapters::http::handle;

    pub fn bad_input(h: &Harness) {
        let sessions =
            Sessions::with_policy(h.store(), CookiePolicy::new().with_secure(false)).unwrap();
        let mut refused = Vec::new();
        let not_delivered = sweep(h, &sessions, |headers| {
            let mut request = Request::get("/").body(Vec::<u8>::new()).unwrap();
            for v in headers {
                // `http` refuses header values with NUL, CR or LF: such a
                // request cannot reach the adapter at all.
                let Ok(value) = HeaderValue::from_bytes(v) else {
                    refused.push(String::from_utf8_lossy(v).into_owned());
                    return None;
                };
                request.headers_mut().append(COOKIE, value);
            }
            let response: Response<String> = handle(&sessions, request, |_, session| {
                let s = session.load()?;
                let new = s.is_new();
                let visits = s.get::<u64>("visits")?.unwrap_or(0) + 1;
                s.insert("visits", &visits)?;
                Ok(Response::new(visits_body(visits, new)))
            });
            Some(Answer {
                status: response.status().as_u16(),
                set_cookies: response
                    .headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect(),
                body: response.into_body(),
            })
        });
        // Only the NUL cases are refused by the header type itself.
        assert!(refused.iter().all(|v| v.contains('\0')), "{refused:?}");
        assert_eq!(not_delivered, ["NUL byte", "NUL as the 43rd byte"]);
    }
}

#[cfg(feature = "rouille")]
fn rouille_bad_input(h: &Harness) {
    rouille_adapter::bad_input(h);
}

#[cfg(feature = "rocket")]
fn rocket_bad_input(h: &Harness) {
    rocket_adapter::bad_input(h);
}

#[cfg(feature = "http")]
fn http_bad_input(h: &Harness) {
    http_adapter::bad_input(h);
}

#[cfg(feature = "rouille")]
mod rouille_suite {
    use super::*;
    backend_suite!(rouille_bad_input);
}

#[cfg(feature = "rocket")]
mod rocket_suite {
    use super::*;
    backend_suite!(rocket_bad_input);
}

#[cfg(feature = "http")]
mod http_suite {
    use super::*;
    backend_suite!(http_bad_input);
}
