//! The checks both demos (rouille: `examples/demo.rs`, Rocket:
//! `examples/rocket_demo.rs`) must pass, over real HTTP: one behaviour,
//! one set of checks, run against each demo's server.
#![allow(dead_code)]

use std::net::SocketAddr;

use crate::adapter_support::{send, Jar, Reply};
use crate::common::Harness;
use stored_session::SessionStore;

/// Logs a new browser in as `user`.
pub fn browser(addr: SocketAddr, user: &str, agent: &str) -> (Jar, String) {
    let mut jar = Jar::new("id");
    let agent_header = format!("User-Agent: {agent}");
    let r = send(
        addr,
        "POST",
        "/login",
        &[
            agent_header.as_bytes(),
            b"Content-Type: application/x-www-form-urlencoded",
        ],
        format!("user={user}").as_bytes(),
    );
    assert_eq!(r.body, format!("logged in as {user}"), "{r:?}");
    jar.update(&r);
    (jar, agent_header)
}

pub fn get(jar: &Jar, addr: SocketAddr, path: &str, agent: &str) -> Reply {
    let cookie = jar.header().unwrap();
    send(addr, "GET", path, &[&cookie, agent.as_bytes()], b"")
}

/// The first page after a login shows the login's flash message, the next
/// one does not; a cross-site POST is refused with 403 before anything is
/// done, curl's passes; a request that sends a CSRF token must send the
/// session's own.
pub fn flash_and_forgery(addr: SocketAddr, store: &SessionStore) {
    let (jar, agent) = browser(addr, "carol", "Browser/1.0");
    let first = get(&jar, addr, "/", &agent);
    assert!(first.body.contains("user: carol\n"), "{first:?}");
    assert!(first.body.ends_with("flash: welcome carol\n"), "{first:?}");
    let second = get(&jar, addr, "/", &agent);
    assert!(!second.body.contains("flash:"), "{second:?}");

    let before = store.stats().unwrap().live;
    let form = b"Content-Type: application/x-www-form-urlencoded".as_slice();
    for header in [
        b"Sec-Fetch-Site: cross-site".as_slice(),
        b"Origin: https://evil.example".as_slice(),
    ] {
        let r = send(addr, "POST", "/login", &[header, form], b"user=mallory");
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.set_cookies().is_empty(), "{r:?}");
    }
    assert_eq!(store.stats().unwrap().live, before);
    let cookie = jar.header().unwrap();
    let r = send(
        addr,
        "POST",
        "/logout",
        &[&cookie, b"Sec-Fetch-Site: cross-site"],
        b"",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(get(&jar, addr, "/", &agent).body.contains("user: carol"));

    let token = get(&jar, addr, "/csrf", &agent).body.trim().to_owned();
    assert_eq!(token.len(), 43);
    let r = send(
        addr,
        "POST",
        "/logout",
        &[&cookie, b"X-CSRF-Token: forged"],
        b"",
    );
    assert_eq!(r.status, 403, "{r:?}");
    let same_origin = format!("Origin: http://{addr}");
    let good = format!("X-CSRF-Token: {token}");
    let r = send(
        addr,
        "POST",
        "/logout",
        &[&cookie, same_origin.as_bytes(), good.as_bytes()],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "logged out"), "{r:?}");
    // A plain curl logout (no body, no browser headers) works too.
    let (jar, agent) = browser(addr, "dave", "curl/8.0");
    let r = send(addr, "POST", "/logout", &[&jar.header().unwrap()], b"");
    assert_eq!((r.status, r.body.as_str()), (200, "logged out"), "{r:?}");
    assert!(get(&jar, addr, "/", &agent)
        .body
        .contains("user: anonymous"));
}

/// `POST /login` with `remember`: a cookie with a `Max-Age` of at least 30
/// days and a 30-day idle window; without it: a browser-session cookie (no
/// `Max-Age`, no `Expires`) and the demos' 2-hour idle timeout. `h` is the
/// harness whose clock the demo's store runs on.
pub fn remember_me(h: &Harness, addr: SocketAddr) {
    let form = b"Content-Type: application/x-www-form-urlencoded".as_slice();
    let login = |body: &str| {
        let r = send(addr, "POST", "/login", &[form], body.as_bytes());
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.session_cookie("id").expect("a session cookie");
        let mut jar = Jar::new("id");
        jar.update(&r);
        (jar, set)
    };
    let max_age = |set: &str| -> Option<u64> {
        set.split(';')
            .find_map(|a| a.trim().strip_prefix("Max-Age="))
            .map(|v| v.parse().unwrap())
    };
    let (kept, set) = login("user=ann&remember=on");
    assert!(max_age(&set).unwrap() >= 30 * 24 * 3600, "{set}");
    let (kept_too, set) = login("user=ann2&remember=1");
    assert!(max_age(&set).unwrap() >= 30 * 24 * 3600, "{set}");
    let (short, set) = login("user=bob");
    assert_eq!(max_age(&set), None, "{set}");
    assert!(!set.contains("Expires"), "{set}");
    let visit = |jar: &Jar| send(addr, "GET", "/", &[&jar.header().unwrap()], b"").body;
    // Three hours later: the browser session idled out, the remembered ones
    // did not; a week later (used daily) the remembered one still lives.
    h.advance(3 * 3600);
    assert!(visit(&short).contains("user: anonymous"));
    assert!(visit(&kept).contains("user: ann\n"));
    for _ in 0..7 {
        h.advance(24 * 3600);
        assert!(visit(&kept).contains("user: ann\n"));
    }
    // Thirty-one idle days end a remembered session too.
    h.advance(31 * 24 * 3600);
    assert!(visit(&kept_too).contains("user: anonymous"));
}
