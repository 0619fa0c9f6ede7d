//! The rouille adapter over real HTTP (a rouille server on a free loopback
//! port), on every enabled backend.
#![cfg(feature = "rouille")]

mod adapter_support;
mod common;

use adapter_support::{
    count_events, get, hostile_cookie_headers, send, serve_rouille, try_send, Jar, Server,
};
use common::{count, Harness};
use rouille::{router, Request, Response};
use stored_session::adapters::rouille::with_session;
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::{EventKind, SessionId};

fn serve(sessions: Sessions) -> Server {
    serve_rouille(move |request| app(&sessions, request))
}

/// The demo's routes, plus `/peek` (reads only) and `/break` (the table
/// disappears before the commit).
fn app(sessions: &Sessions, request: &Request) -> Response {
    router!(request,
        (GET) (/health) => { Response::text("ok") },
        (GET) (/) => {
            with_session(sessions, request, |session| {
                let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
                session.insert("visits", &visits)?;
                let user = session.get::<String>("user")?.unwrap_or_else(|| "anonymous".into());
                Ok(Response::text(format!("visits: {visits}\nuser: {user}\n")))
            })
        },
        (GET) (/peek) => {
            with_session(sessions, request, |session| {
                let visits = session.get::<u64>("visits")?.unwrap_or(0);
                Ok(Response::text(format!("visits: {visits}")))
            })
        },
        (POST) (/login) => {
            with_session(sessions, request, |session| {
                let user = rouille::input::post::raw_urlencoded_post_input(request)
                    .ok()
                    .and_then(|f| f.into_iter().find(|(k, _)| k == "user"))
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let s = session.load()?;
                s.renew();
                s.insert("user", &user)?;
                s.set_user(user.clone());
                Ok(Response::text(format!("logged in as {user}")))
            })
        },
        (POST) (/logout) => {
            with_session(sessions, request, |session| {
                session.destroy();
                Ok(Response::text("logged out"))
            })
        },
        (GET) (/break) => {
            with_session(sessions, request, |session| {
                session.insert("doomed", &1)?;
                drop_table(sessions);
                Ok(Response::text("should not be sent"))
            })
        },
        _ => Response::empty_404()
    )
}

fn drop_table(sessions: &Sessions) {
    use diesel::RunQueryDsl;
    crate::with_conn!(sessions.store().database(), |c| {
        diesel::sql_query("DROP TABLE stored_sessions")
            .execute(c)
            .unwrap()
    });
}

fn sessions(h: &Harness, policy: CookiePolicy) -> Sessions {
    Sessions::with_policy(h.store(), policy).unwrap()
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap()[3..].to_owned()
}

fn visit_login_logout_cycle(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new().with_secure(false));
    let store = sessions.store().clone();
    let server = serve(sessions);
    let mut jar = Jar::new("id");

    // First visit: a new session, its cookie set with the policy's flags.
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "visits: 1\nuser: anonymous\n");
    let set = r
        .session_cookie("id")
        .expect("a new session sets its cookie");
    assert_eq!(
        set,
        format!(
            "id={}; HttpOnly; SameSite=Lax; Path=/",
            jar.value.as_deref().unwrap()
        )
    );
    assert!(SessionId::parse(jar.value.as_deref().unwrap()).is_some());
    let first = jar.value.clone().unwrap();

    // Second visit: same session, no cookie change.
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 2\nuser: anonymous\n");
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());

    // Login: a new id, the data kept, the old id dead.
    let r = jar.send(server.addr, "POST", "/login", b"user=alice");
    assert_eq!(r.body, "logged in as alice");
    let renewed = jar.value.clone().unwrap();
    assert_ne!(renewed, first);
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 3\nuser: alice\n");
    let stale = format!("Cookie: id={first}");
    let r = send(server.addr, "GET", "/peek", &[stale.as_bytes()], b"");
    assert_eq!(r.body, "visits: 0");
    assert!(r.session_cookie("id").unwrap().starts_with("id=;"));
    assert_eq!(count(store.database()), 1);

    // Logout: the row is deleted and the cookie removed with the same scope.
    let r = jar.send(server.addr, "POST", "/logout", b"");
    assert_eq!(r.body, "logged out");
    let removal = r.session_cookie("id").unwrap();
    assert!(
        removal.starts_with(
            "id=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970"
        ),
        "{removal}"
    );
    assert_eq!(jar.value, None);
    assert_eq!(count(store.database()), 0);

    // The logged-out id gives a fresh session.
    let old = format!("Cookie: id={renewed}");
    let r = send(server.addr, "GET", "/", &[old.as_bytes()], b"");
    assert_eq!(r.body, "visits: 1\nuser: anonymous\n");
    assert_ne!(cookie_value(&r.session_cookie("id").unwrap()), renewed);
}

fn untouched_session_costs_no_query_and_sets_no_cookie(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new());
    let store = sessions.store().clone();
    let server = serve(sessions);
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let live = jar.header().unwrap();
    let reads = count_events(&store, EventKind::Read);
    let unknown = format!("Cookie: id={}", SessionId::generate().as_cookie_value());
    for headers in [vec![], vec![live.as_slice()], vec![unknown.as_bytes()]] {
        let r = send(server.addr, "GET", "/health", &headers, b"");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        assert!(r.set_cookies().is_empty());
    }
    assert_eq!(get(&reads), 0, "/health must not query the session");
    // A route that only reads: one query, still no cookie.
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert_eq!(r.body, "visits: 1");
    assert!(r.set_cookies().is_empty());
    assert_eq!(get(&reads), 1);
}

fn hostile_cookie_headers_give_a_fresh_session(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new());
    let store = sessions.store().clone();
    let server = serve(sessions);
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let valid = format!("id={}", jar.value.clone().unwrap());
    for (what, headers) in hostile_cookie_headers(&valid) {
        let refs: Vec<&[u8]> = headers.iter().map(|h| h.as_slice()).collect();
        let Some(r) = try_send(server.addr, "GET", "/peek", &refs, b"") else {
            // tiny_http (rouille's HTTP layer) hangs up on header bytes that
            // are not ASCII before any handler runs; nothing else may.
            assert_eq!(what, "non-UTF-8 bytes", "{what}: no response");
            continue;
        };
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(r.body, "visits: 0", "{what}: the live session was adopted");
    }
    // The live session was neither adopted nor harmed.
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 2\nuser: anonymous\n");
    assert_eq!(count(store.database()), 1);

    // Malformed values cost no query.
    let reads = count_events(&store, EventKind::Read);
    for bad in [
        &b"Cookie: id="[..],
        b"Cookie: id=2::abc",
        b"Cookie: id=short",
    ] {
        let r = send(server.addr, "GET", "/peek", &[bad], b"");
        assert_eq!((r.status, r.body.as_str()), (200, "visits: 0"));
        // The junk cookie is cleared.
        assert!(r.session_cookie("id").unwrap().starts_with("id=;"));
    }
    assert_eq!(get(&reads), 0);
}

fn policy_attributes_on_the_wire(h: &Harness) {
    let policy = CookiePolicy::new()
        .with_name("sid")
        .with_host_prefix(true)
        .with_max_age(Some(std::time::Duration::from_secs(3600)));
    let server = serve(sessions(h, policy));
    let mut jar = Jar::new("__Host-sid");
    let r = jar.send(server.addr, "GET", "/", b"");
    let set = r.session_cookie("__Host-sid").unwrap();
    assert!(
        set.ends_with("; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=3600"),
        "{set}"
    );
    // A cookie under the bare name is not ours.
    let bare = format!("Cookie: sid={}", jar.value.clone().unwrap());
    let r = send(server.addr, "GET", "/peek", &[bare.as_bytes()], b"");
    assert_eq!(r.body, "visits: 0");
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 2\nuser: anonymous\n");
    let r = jar.send(server.addr, "POST", "/logout", b"");
    let removal = r.session_cookie("__Host-sid").unwrap();
    assert!(
        removal.starts_with("__Host-sid=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0"),
        "{removal}"
    );
}

/// The adapter follows `CookieAction::Refresh`: a cookie with `Max-Age` is
/// sent again (same id) when the store touched the row, not otherwise; a
/// session cookie (no `Max-Age`) is never resent for a touch.
fn persistent_cookie_is_resent_exactly_when_the_idle_clock_moves(h: &Harness) {
    let policy = CookiePolicy::new().with_max_age(Some(std::time::Duration::from_secs(3600)));
    let server = serve(sessions(h, policy));
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let id = jar.value.clone().unwrap();
    // Within touch_after (300 s by default): a read resends nothing.
    h.advance(100);
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert!(r.set_cookies().is_empty());
    // Past it: the read touches the row, and the same id goes out again.
    h.advance(300);
    let r = jar.send(server.addr, "GET", "/peek", b"");
    let set = r
        .session_cookie("id")
        .expect("the touch resends the cookie");
    assert_eq!(cookie_value(&set), id);
    assert!(set.ends_with("; Max-Age=3600"), "{set}");
    // Touched just now: nothing again.
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert!(r.set_cookies().is_empty());

    // Without Max-Age, a touch resends nothing.
    let server = serve(sessions(h, CookiePolicy::new()));
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    h.advance(400);
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert_eq!(r.body, "visits: 1");
    assert!(r.set_cookies().is_empty());
}

fn database_failures_are_500s_and_set_no_cookie(h: &Harness) {
    let server = serve(sessions(h, CookiePolicy::new()));
    let r = send(server.addr, "GET", "/break", &[], b"");
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "internal server error\n");
    assert!(r.set_cookies().is_empty());
    // With the table gone, a load fails too (500), while a route that never
    // touches the session still answers.
    let cookie = format!("Cookie: id={}", SessionId::generate().as_cookie_value());
    let r = send(server.addr, "GET", "/peek", &[cookie.as_bytes()], b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "internal server error\n")
    );
    assert!(r.set_cookies().is_empty());
    let r = send(server.addr, "GET", "/health", &[cookie.as_bytes()], b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

fn client_metadata_follows_the_store_policy(h: &Harness) {
    // Policy on: the peer address (truncated) and the agent are recorded.
    let store = h.store_with_metadata();
    let server = serve(Sessions::with_policy(store.clone(), CookiePolicy::new()).unwrap());
    let agent = b"User-Agent: MetaTest/1.0 (rouille)";
    let form = b"Content-Type: application/x-www-form-urlencoded";
    let r = send(server.addr, "POST", "/login", &[agent, form], b"user=mia");
    assert_eq!(r.body, "logged in as mia");
    let cookie = format!(
        "Cookie: {}",
        r.session_cookie("id").unwrap().split(';').next().unwrap()
    );
    let list = store
        .sessions_of("mia", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].ip.as_deref(), Some("127.0.0.0"));
    assert_eq!(
        list[0].user_agent.as_deref(),
        Some("MetaTest/1.0 (rouille)")
    );
    // The same client again costs no write; a new agent is recorded.
    let writes = count_events(&store, EventKind::Write);
    let r = send(
        server.addr,
        "GET",
        "/peek",
        &[cookie.as_bytes(), agent],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(&writes), 0);
    let r = send(
        server.addr,
        "GET",
        "/peek",
        &[cookie.as_bytes(), b"User-Agent: Other/2"],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(get(&writes), 1);
    let list = store
        .sessions_of("mia", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].user_agent.as_deref(), Some("Other/2"));
    // A visitor who never stores anything gets no row for their metadata.
    let r = send(server.addr, "GET", "/peek", &[agent], b"");
    assert!(r.set_cookies().is_empty());
    assert_eq!(count(store.database()), 1);
    drop(server);

    // Default policy: nothing is recorded.
    let plain = h.store();
    let server = serve(Sessions::with_policy(plain.clone(), CookiePolicy::new()).unwrap());
    let r = send(server.addr, "POST", "/login", &[agent, form], b"user=noah");
    assert_eq!(r.body, "logged in as noah");
    let list = plain
        .sessions_of("noah", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(
        (list[0].ip.as_deref(), list[0].user_agent.as_deref()),
        (None, None)
    );
}

fn forwarded_client_ip_only_from_trusted_proxies(h: &Harness) {
    let store = h.store_with_metadata();
    adapter_support::forwarded_client_ip_cases(&store, &|sessions| {
        let server = serve(sessions);
        (server.addr, Box::new(server))
    });
}

backend_suite!(
    forwarded_client_ip_only_from_trusted_proxies,
    client_metadata_follows_the_store_policy,
    visit_login_logout_cycle,
    untouched_session_costs_no_query_and_sets_no_cookie,
    hostile_cookie_headers_give_a_fresh_session,
    policy_attributes_on_the_wire,
    database_failures_are_500s_and_set_no_cookie,
    persistent_cookie_is_resent_exactly_when_the_idle_clock_moves,
);
