//! The `http`-types adapter over real HTTP, on every enabled backend.
//!
//! The server is a minimal blocking HTTP/1.1 server written on `std::net`
//! (`adapter_support::serve_http`: the shape of astra and similar servers: one thread per
//! connection, `http::Request` in, `http::Response` out). It passes header
//! bytes through untouched, so hostile `Cookie` headers reach the adapter.
#![cfg(feature = "http")]

mod adapter_support;
mod common;

use std::net::SocketAddr;

use adapter_support::{
    count_events, get, hostile_cookie_headers, send, serve_http as serve, HttpServer as Server, Jar,
};
use common::{count, Harness};
use http::header::{HeaderValue, COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use stored_session::adapters::http::{begin, finish, handle, ClientAddr};
use stored_session::adapters::{CookiePolicy, LazySession, Sessions, TrustedProxies};
use stored_session::{EventKind, Keyring, SessionId, SessionStore};

type Body = Vec<u8>;

fn text(body: impl Into<String>) -> Response<Body> {
    Response::new(body.into().into_bytes())
}

/// The demo's routes, plus `/peek` (reads only) and `/break` (the table
/// disappears before the commit).
fn app(sessions: &Sessions, request: Request<Body>) -> Response<Body> {
    if request.uri().path() == "/health" {
        return text("ok");
    }
    handle(sessions, request, |request, session| {
        match (request.method().as_str(), request.uri().path()) {
            ("GET", "/") => {
                let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
                session.insert("visits", &visits)?;
                let user = session
                    .get::<String>("user")?
                    .unwrap_or_else(|| "anonymous".into());
                Ok(text(format!("visits: {visits}\nuser: {user}\n")))
            }
            ("GET", "/peek") => {
                let visits = session.get::<u64>("visits")?.unwrap_or(0);
                Ok(text(format!("visits: {visits}")))
            }
            ("POST", "/login") => {
                let form = String::from_utf8_lossy(request.body()).into_owned();
                let user = form.strip_prefix("user=").unwrap_or("").to_owned();
                let s = session.load()?;
                s.renew();
                s.insert("user", &user)?;
                s.set_user(user.clone());
                Ok(text(format!("logged in as {user}")))
            }
            ("POST", "/logout") => {
                session.destroy();
                Ok(text("logged out"))
            }
            ("GET", "/break") => {
                session.insert("doomed", &1)?;
                drop_table(sessions);
                Ok(text("should not be sent"))
            }
            _ => {
                let mut r = text("not found");
                *r.status_mut() = StatusCode::NOT_FOUND;
                Ok(r)
            }
        }
    })
}

fn drop_table(sessions: &Sessions) {
    use diesel::RunQueryDsl;
    crate::with_conn!(sessions.store().database(), |c| {
        diesel::sql_query("DROP TABLE stored_sessions")
            .execute(c)
            .unwrap()
    });
}

fn start(h: &Harness, policy: CookiePolicy) -> (Server, Sessions) {
    let sessions = Sessions::with_policy(h.store(), policy).unwrap();
    let shared = sessions.clone();
    (serve(move |r| app(&shared, r)), sessions)
}

fn visit_login_logout_cycle(h: &Harness) {
    let (server, sessions) = start(h, CookiePolicy::new().with_secure(false));
    let mut jar = Jar::new("id");

    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "visits: 1\nuser: anonymous\n")
    );
    let first = jar.value.clone().expect("a new session sets its cookie");
    assert_eq!(
        r.session_cookie("id").unwrap(),
        format!("id={first}; HttpOnly; SameSite=Lax; Path=/")
    );

    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 2\nuser: anonymous\n");
    assert!(r.set_cookies().is_empty());

    let r = jar.send(server.addr, "POST", "/login", b"user=alice");
    assert_eq!(r.body, "logged in as alice");
    let renewed = jar.value.clone().unwrap();
    assert_ne!(renewed, first);
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 3\nuser: alice\n");
    let stale = format!("Cookie: id={first}");
    let r = send(server.addr, "GET", "/peek", &[stale.as_bytes()], b"");
    assert_eq!(r.body, "visits: 0");

    let r = jar.send(server.addr, "POST", "/logout", b"");
    assert_eq!(r.body, "logged out");
    assert!(r
        .session_cookie("id")
        .unwrap()
        .starts_with("id=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"));
    assert_eq!(jar.value, None);
    assert_eq!(count(sessions.store().database()), 0);
}

fn untouched_session_costs_no_query_and_sets_no_cookie(h: &Harness) {
    let (server, sessions) = start(h, CookiePolicy::new());
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let reads = count_events(sessions.store(), EventKind::Read);
    let live = jar.header().unwrap();
    for path in ["/health", "/nowhere"] {
        let r = send(server.addr, "GET", path, &[live.as_slice()], b"");
        assert!(r.set_cookies().is_empty(), "{path}");
    }
    assert_eq!(get(&reads), 0);
}

fn hostile_cookie_headers_give_a_fresh_session(h: &Harness) {
    let (server, sessions) = start(h, CookiePolicy::new());
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let valid = format!("id={}", jar.value.clone().unwrap());
    for (what, headers) in hostile_cookie_headers(&valid) {
        let refs: Vec<&[u8]> = headers.iter().map(|h| h.as_slice()).collect();
        let r = send(server.addr, "GET", "/peek", &refs, b"");
        assert!(r.status < 500, "{what}: {}", r.status);
        if what != "NUL byte" {
            // Everything but NUL reaches the adapter here (non-UTF-8 too).
            assert_eq!((r.status, r.body.as_str()), (200, "visits: 0"), "{what}");
        }
    }
    let r = jar.send(server.addr, "GET", "/", b"");
    assert_eq!(r.body, "visits: 2\nuser: anonymous\n");
    assert_eq!(count(sessions.store().database()), 1);
}

fn database_failures_are_500s_and_set_no_cookie(h: &Harness) {
    let (server, _sessions) = start(h, CookiePolicy::new());
    let r = send(server.addr, "GET", "/break", &[], b"");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "internal server error\n")
    );
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

/// `begin`/`finish` directly on `http` values: non-UTF-8 header bytes and
/// several `Cookie` headers, as `http::HeaderMap` can hold them.
fn begin_and_finish_on_http_values(h: &Harness) {
    let sessions = Sessions::new(h.store());
    let reads = count_events(sessions.store(), EventKind::Read);

    let mut request = Request::new(());
    let headers = request.headers_mut();
    headers.append(COOKIE, HeaderValue::from_bytes(b"a=\xff\xfe").unwrap());
    headers.append(COOKIE, HeaderValue::from_static("b=1"));
    let mut session = begin(&sessions, request.headers());
    session.insert("k", &1).unwrap();
    let mut response = Response::new(());
    finish(session, &mut response).unwrap();
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_eq!(get(&reads), 0, "no cookie of ours: no query");
    let pair = set.split(';').next().unwrap().to_owned();
    assert!(SessionId::parse(&pair[3..]).is_some());

    // Our cookie in the second of two Cookie headers, next to junk bytes.
    let mut request = Request::new(());
    let headers = request.headers_mut();
    headers.append(COOKIE, HeaderValue::from_bytes(b"x=\xc3\x28").unwrap());
    headers.append(
        COOKIE,
        HeaderValue::from_str(&format!("theme=dark; {pair}")).unwrap(),
    );
    let mut session: LazySession = begin(&sessions, request.headers());
    assert_eq!(session.get::<i32>("k").unwrap(), Some(1));
    let mut response = Response::new(());
    finish(session, &mut response).unwrap();
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(get(&reads), 1);
}

fn client_metadata_follows_the_store_policy(h: &Harness) {
    // Policy on, over the wire: the server's `SocketAddr` extension.
    let store = h.store_with_metadata();
    let sessions = Sessions::new(store.clone());
    let shared = sessions.clone();
    let server = serve(move |r| app(&shared, r));
    let agent = b"User-Agent: MetaTest/1.0 (http)";
    let r = send(server.addr, "POST", "/login", &[agent], b"user=mia");
    assert_eq!(r.body, "logged in as mia");
    let list = store
        .sessions_of("mia", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip.as_deref(), Some("127.0.0.0"));
    assert_eq!(list[0].user_agent.as_deref(), Some("MetaTest/1.0 (http)"));

    // A `ClientAddr` extension (e.g. from a trusted proxy header) wins over
    // the peer address; IPv6 is truncated to /48.
    let mut request = Request::post("/login")
        .header(http::header::USER_AGENT, "Proxied/3")
        .body(b"user=olga".to_vec())
        .unwrap();
    request
        .extensions_mut()
        .insert("127.0.0.1:9".parse::<SocketAddr>().unwrap());
    request
        .extensions_mut()
        .insert(ClientAddr("2001:db8:1234:5678::9".parse().unwrap()));
    let response = app(&sessions, request);
    assert_eq!(response.status(), StatusCode::OK);
    let list = store
        .sessions_of("olga", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip.as_deref(), Some("2001:db8:1234::"));
    assert_eq!(list[0].user_agent.as_deref(), Some("Proxied/3"));

    // Without any address extension only the agent is recorded.
    let request = Request::post("/login")
        .header(http::header::USER_AGENT, "NoAddr/1")
        .body(b"user=pia".to_vec())
        .unwrap();
    app(&sessions, request);
    let list = store
        .sessions_of("pia", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip, None);
    assert_eq!(list[0].user_agent.as_deref(), Some("NoAddr/1"));

    // Default policy: nothing is recorded.
    let plain = Sessions::new(h.store());
    let shared = plain.clone();
    let server = serve(move |r| app(&shared, r));
    let r = send(server.addr, "POST", "/login", &[agent], b"user=noah");
    assert_eq!(r.body, "logged in as noah");
    let list = plain
        .store()
        .sessions_of("noah", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(
        (list[0].ip.as_deref(), list[0].user_agent.as_deref()),
        (None, None)
    );
}

/// A restart with another key answers with a fresh session but leaves the
/// browser's cookie alone (no `Set-Cookie` removing it), so the session is
/// back when the right key is; a tampered row's cookie is still removed.
fn a_key_change_keeps_the_cookie(h: &Harness) {
    let policy = || CookiePolicy::new().with_secure(false);
    let (server, _) = start(h, policy());
    let mut jar = Jar::new("id");
    jar.send(server.addr, "GET", "/", b"");
    let value = jar.value.clone().expect("a cookie");
    drop(server);

    let wrong = h.store_with(SessionStore::builder(Keyring::generate()).config(h.config()));
    let wrong = Sessions::with_policy(wrong, policy()).unwrap();
    let shared = wrong.clone();
    let server = serve(move |r| app(&shared, r));
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert_eq!((r.status, r.body.as_str()), (200, "visits: 0"));
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(jar.value.as_deref(), Some(value.as_str()));
    drop(server);

    let (server, sessions) = start(h, policy());
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert_eq!(r.body, "visits: 1");

    let db = sessions.store().database();
    let sid = SessionId::parse(&value).unwrap().stored_id();
    let mut data = common::row(db, &sid).unwrap().data;
    let last = data.len() - 1;
    data[last] ^= 1;
    common::set_data(db, sid.as_bytes(), &data);
    let r = jar.send(server.addr, "GET", "/peek", b"");
    assert_eq!(r.body, "visits: 0");
    assert!(r
        .session_cookie("id")
        .unwrap()
        .starts_with("id=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"));
}

fn forwarded_client_ip_only_from_trusted_proxies(h: &Harness) {
    let store = h.store_with_metadata();
    adapter_support::forwarded_client_ip_cases(&store, &|sessions| {
        let server = serve(move |r| app(&sessions, r));
        (server.addr, Box::new(server))
    });

    // A `ClientAddr` the application inserted is used as it is: no header
    // is read for it, even from a trusted peer.
    let sessions = Sessions::new(store.clone())
        .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1"))
        .unwrap();
    let mut request = Request::post("/login")
        .header("X-Forwarded-For", "203.0.113.7")
        .body(b"user=ines".to_vec())
        .unwrap();
    request
        .extensions_mut()
        .insert("127.0.0.1:9".parse::<SocketAddr>().unwrap());
    request
        .extensions_mut()
        .insert(ClientAddr("198.51.100.77".parse().unwrap()));
    assert_eq!(app(&sessions, request).status(), StatusCode::OK);
    let list = store
        .sessions_of("ines", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip.as_deref(), Some("198.51.100.0"));
}

backend_suite!(
    forwarded_client_ip_only_from_trusted_proxies,
    a_key_change_keeps_the_cookie,
    client_metadata_follows_the_store_policy,
    visit_login_logout_cycle,
    untouched_session_costs_no_query_and_sets_no_cookie,
    hostile_cookie_headers_give_a_fresh_session,
    database_failures_are_500s_and_set_no_cookie,
    begin_and_finish_on_http_values,
);
