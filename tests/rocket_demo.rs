//! The Rocket demo's routes over real HTTP, on every enabled backend: the
//! same behaviour as the rouille demo (`tests/demo.rs`): the login's flash
//! shown once, cross-site POSTs refused with 403 while curl's pass, CSRF
//! tokens checked when sent, and the per-user session list.
//! The example's source is compiled into this test as a module.

mod adapter_support;
mod common;
#[allow(dead_code)]
#[path = "../examples/rocket_demo.rs"]
mod rocket_demo;

use std::net::SocketAddr;

use adapter_support::{send, serve_rocket, Jar, Reply, RocketServer};
use common::Harness;
use stored_session::adapters::{CookiePolicy, Sessions};

fn start(h: &Harness) -> (RocketServer, Sessions) {
    let sessions = Sessions::with_policy(
        h.store_with_metadata(),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap();
    (serve_rocket(rocket_demo::app(sessions.clone())), sessions)
}

/// Logs a new browser in as `user`.
fn browser(addr: SocketAddr, user: &str, agent: &str) -> (Jar, String) {
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

fn get(jar: &Jar, addr: SocketAddr, path: &str, agent: &str) -> Reply {
    let cookie = jar.header().unwrap();
    send(addr, "GET", path, &[&cookie, agent.as_bytes()], b"")
}

fn flash_and_forgery(h: &Harness) {
    let (server, sessions) = start(h);
    let addr = server.addr;
    let (jar, agent) = browser(addr, "carol", "Browser/1.0");
    let first = get(&jar, addr, "/", &agent);
    assert!(first.body.contains("user: carol\n"), "{first:?}");
    assert!(first.body.ends_with("flash: welcome carol\n"), "{first:?}");
    let second = get(&jar, addr, "/", &agent);
    assert!(!second.body.contains("flash:"), "{second:?}");

    let before = sessions.store().stats().unwrap().live;
    let form = b"Content-Type: application/x-www-form-urlencoded".as_slice();
    for header in [
        b"Sec-Fetch-Site: cross-site".as_slice(),
        b"Origin: https://evil.example".as_slice(),
    ] {
        let r = send(addr, "POST", "/login", &[header, form], b"user=mallory");
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.set_cookies().is_empty(), "{r:?}");
    }
    assert_eq!(sessions.store().stats().unwrap().live, before);
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

fn session_list(h: &Harness) {
    let (server, _) = start(h);
    let addr = server.addr;
    let (phone, phone_ua) = browser(addr, "alice", "Phone/1.0");
    let (_laptop, _) = browser(addr, "alice", "Laptop/2.0");
    let r = get(&phone, addr, "/sessions", &phone_ua);
    assert_eq!(r.status, 200, "{r:?}");
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(lines.iter().all(|l| l.starts_with("session ")));
    assert_eq!(lines.iter().filter(|l| l.ends_with(" current")).count(), 1);
    let r = send(
        addr,
        "POST",
        "/sessions/revoke-others",
        &[&phone.header().unwrap()],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "revoked 1"), "{r:?}");
}

/// `POST /login` with `remember`: a cookie with a `Max-Age` of at least 30
/// days and a 30-day idle window; without it: a browser-session cookie (no
/// `Max-Age`, no `Expires`) and the demo's 2-hour idle timeout.
fn remember_me(h: &Harness) {
    let config = rocket_demo::config::demo_config()
        .unwrap()
        .clock(h.clock.clock());
    let sessions = Sessions::with_policy(
        h.store_with(h.builder().config(config)),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap();
    let server = serve_rocket(rocket_demo::app(sessions));
    let addr = server.addr;
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

backend_suite!(remember_me, flash_and_forgery, session_list);
