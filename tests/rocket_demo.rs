//! The Rocket demo's routes over real HTTP, on every enabled backend: the
//! same behaviour as the rouille demo (`tests/demo.rs`): the login's flash
//! shown once, cross-site POSTs refused with 403 while curl's pass, CSRF
//! tokens checked when sent, and the per-user session list.
//! The example's source is compiled into this test as a module.

mod adapter_support;
mod common;
mod demo_support;
#[allow(dead_code)]
#[path = "../examples/rocket_demo.rs"]
mod rocket_demo;

use adapter_support::{send, serve_rocket, RocketServer};
use common::Harness;
use demo_support::{browser, get};
use stored_session::adapters::{CookiePolicy, Sessions};

fn start(h: &Harness) -> (RocketServer, Sessions) {
    let sessions = Sessions::with_policy(
        h.store_with_metadata(),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap();
    (serve_rocket(rocket_demo::app(sessions.clone())), sessions)
}

fn flash_and_forgery(h: &Harness) {
    let (server, sessions) = start(h);
    demo_support::flash_and_forgery(server.addr, sessions.store());
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
    demo_support::remember_me(h, server.addr);
}

backend_suite!(remember_me, flash_and_forgery, session_list);
