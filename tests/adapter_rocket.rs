//! The Rocket adapter through Rocket's own local client, on every enabled
//! backend.
#![cfg(feature = "rocket")]

mod adapter_support;
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adapter_support::{count_events, get, hostile_cookie_headers};
use common::{count, Harness};
use rocket::form::{Form, FromForm};
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::{Client, LocalResponse};
use rocket::{get, post, routes, Build, Rocket, State};
use stored_session::adapters::rocket::{SessionFairing, SessionGuard};
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::{EventKind, PoolOptions, SessionId, SessionStore};

#[get("/")]
fn index(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
    let mut s = session.lock();
    let visits = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    s.insert("visits", &visits)?;
    let user = s
        .get::<String>("user")?
        .unwrap_or_else(|| "anonymous".into());
    Ok(format!("visits: {visits}\nuser: {user}\n"))
}

#[get("/peek")]
fn peek(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
    Ok(format!(
        "visits: {}",
        session.get::<u64>("visits")?.unwrap_or(0)
    ))
}

/// Two guards in one handler: one load.
#[get("/twice")]
fn twice(a: SessionGuard<'_>, b: SessionGuard<'_>) -> String {
    a.insert("a", &1).unwrap();
    format!("{}", b.get::<i32>("a").unwrap().unwrap_or(0))
}

#[derive(FromForm)]
struct Login {
    user: String,
}

#[post("/login", data = "<form>")]
fn login(session: SessionGuard<'_>, form: Form<Login>) -> Result<String, stored_session::Error> {
    let mut s = session.lock();
    s.renew();
    s.insert("user", &form.user)?;
    s.set_user(form.user.clone());
    Ok(format!("logged in as {}", form.user))
}

#[post("/logout")]
fn logout(session: SessionGuard<'_>) -> &'static str {
    session.destroy();
    "logged out"
}

#[get("/health")]
fn health() -> &'static str {
    "ok"
}

/// Changes the session, then fails: nothing may be saved.
#[get("/fail")]
fn fail(session: SessionGuard<'_>) -> Result<&'static str, stored_session::Error> {
    session.insert("half-done", &1)?;
    Err(stored_session::Error::Config("the handler gave up".into()))
}

#[get("/break")]
fn broken(session: SessionGuard<'_>, store: &State<SessionStore>) -> &'static str {
    session.insert("doomed", &1).unwrap();
    drop_table(store);
    "should not be sent"
}

fn drop_table(store: &SessionStore) {
    use diesel::RunQueryDsl;
    crate::with_conn!(store.database(), |c| {
        diesel::sql_query("DROP TABLE stored_sessions")
            .execute(c)
            .unwrap()
    });
}

fn quiet() -> Rocket<Build> {
    bare().mount(
        "/",
        routes![index, peek, twice, login, logout, health, broken, fail],
    )
}

fn app(sessions: Sessions) -> Rocket<Build> {
    quiet().attach(SessionFairing::new(sessions))
}

fn sessions(h: &Harness, policy: CookiePolicy) -> Sessions {
    Sessions::with_policy(h.store(), policy).unwrap()
}

fn set_cookie(r: &LocalResponse<'_>, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let found: Vec<&str> = r
        .headers()
        .get("Set-Cookie")
        .filter(|c| c.starts_with(&prefix))
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found.first().map(|s| s.to_string())
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn with_cookie<'c>(
    req: rocket::local::blocking::LocalRequest<'c>,
    cookie: &str,
) -> rocket::local::blocking::LocalRequest<'c> {
    req.header(Header::new("Cookie", cookie.to_owned()))
}

fn visit_login_logout_cycle(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new());
    let store = sessions.store().clone();
    let client = Client::untracked(app(sessions)).unwrap();

    let r = client.get("/").dispatch();
    assert_eq!(r.status(), Status::Ok);
    let set = set_cookie(&r, "id").expect("a new session sets its cookie");
    let first = pair(&set);
    assert_eq!(
        set,
        format!("{first}; HttpOnly; SameSite=Lax; Secure; Path=/")
    );
    assert!(SessionId::parse(&first[3..]).is_some());
    assert_eq!(r.into_string().unwrap(), "visits: 1\nuser: anonymous\n");

    let r = with_cookie(client.get("/"), &first).dispatch();
    assert!(set_cookie(&r, "id").is_none());
    assert_eq!(r.into_string().unwrap(), "visits: 2\nuser: anonymous\n");

    let r = with_cookie(client.post("/login"), &first)
        .header(ContentType::Form)
        .body("user=alice")
        .dispatch();
    let renewed = pair(&set_cookie(&r, "id").unwrap());
    assert_ne!(renewed, first);
    assert_eq!(r.into_string().unwrap(), "logged in as alice");
    let r = with_cookie(client.get("/"), &renewed).dispatch();
    assert_eq!(r.into_string().unwrap(), "visits: 3\nuser: alice\n");
    let r = with_cookie(client.get("/peek"), &first).dispatch();
    assert!(set_cookie(&r, "id").unwrap().starts_with("id=;"));
    assert_eq!(r.into_string().unwrap(), "visits: 0");
    assert_eq!(count(store.database()), 1);

    let r = with_cookie(client.post("/logout"), &renewed).dispatch();
    let removal = set_cookie(&r, "id").unwrap();
    assert!(
        removal.starts_with("id=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0"),
        "{removal}"
    );
    assert_eq!(r.into_string().unwrap(), "logged out");
    assert_eq!(count(store.database()), 0);
}

/// Rocket's tracked client keeps cookies in its jar and sends them through
/// the request's cookie jar, not a `Cookie` header: the guard reads the jar
/// for such requests (no `Cookie` header, no remote address).
fn tracked_client_keeps_the_session(h: &Harness) {
    let client = Client::tracked(app(sessions(h, CookiePolicy::new()))).unwrap();
    for n in 1..=3 {
        let body = client.get("/").dispatch().into_string().unwrap();
        assert_eq!(body, format!("visits: {n}\nuser: anonymous\n"));
    }
    client
        .post("/login")
        .header(ContentType::Form)
        .body("user=bob")
        .dispatch();
    let body = client.get("/").dispatch().into_string().unwrap();
    assert_eq!(body, "visits: 4\nuser: bob\n");
    client.post("/logout").dispatch();
    let body = client.get("/").dispatch().into_string().unwrap();
    assert_eq!(body, "visits: 1\nuser: anonymous\n");
}

/// The local client's jar (the only place it keeps cookies) is read for
/// the exact configured name only, and only for a request without any
/// `Cookie` header and without a remote address: a request from Rocket's
/// server always has both, so its decoding jar is never read.
fn local_client_jar_is_read_for_the_exact_name_only(h: &Harness) {
    use rocket::http::Cookie;
    for policy in [
        CookiePolicy::new(),
        CookiePolicy::new().with_host_prefix(true),
    ] {
        let name = policy.name().into_owned();
        let client = Client::untracked(app(sessions(h, policy))).unwrap();
        let set = set_cookie(&client.get("/").dispatch(), &name).unwrap();
        let live = pair(&set)[name.len() + 1..].to_owned();
        let peek =
            |req: rocket::local::blocking::LocalRequest<'_>| req.dispatch().into_string().unwrap();
        // The exact name in the jar: the session.
        let jar = Cookie::new(name.clone(), live.clone());
        assert_eq!(peek(client.get("/peek").cookie(jar.clone())), "visits: 1");
        // Any other name in the jar: a fresh session.
        for near in adapter_support::near_names(&name) {
            let Ok(other) = String::from_utf8(near.name) else {
                continue;
            };
            let jar = Cookie::new(other.clone(), live.clone());
            assert_eq!(
                peek(client.get("/peek").cookie(jar)),
                "visits: 0",
                "{other:?}"
            );
        }
        // With a Cookie header, only the header counts.
        let req = client.get("/peek").cookie(jar.clone());
        assert_eq!(peek(with_cookie(req, "theme=dark")), "visits: 0");
        // With a remote address (as every request from the server has), the
        // jar is not read.
        let req = client.get("/peek").cookie(jar.clone());
        assert_eq!(
            peek(req.remote("127.0.0.1:4000".parse().unwrap())),
            "visits: 0"
        );
        let req = client
            .get("/peek")
            .remote("127.0.0.1:4000".parse().unwrap());
        assert_eq!(
            peek(with_cookie(req, &format!("{name}={live}"))),
            "visits: 1"
        );
    }
}

fn untouched_session_costs_no_query_and_sets_no_cookie(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new());
    let store = sessions.store().clone();
    let client = Client::untracked(app(sessions)).unwrap();
    let live = pair(&set_cookie(&client.get("/").dispatch(), "id").unwrap());
    let reads = count_events(&store, EventKind::Read);
    let unknown = format!("id={}", SessionId::generate().as_cookie_value());
    for cookie in [None, Some(&live), Some(&unknown)] {
        let mut req = client.get("/health");
        if let Some(c) = cookie {
            req = with_cookie(req, c);
        }
        let r = req.dispatch();
        assert!(r.headers().get("Set-Cookie").next().is_none());
        assert_eq!(r.into_string().unwrap(), "ok");
    }
    assert_eq!(get(&reads), 0);
    // Two guards in one request share one load.
    let r = with_cookie(client.get("/twice"), &live).dispatch();
    assert_eq!(r.into_string().unwrap(), "1");
    assert_eq!(get(&reads), 1);
}

fn hostile_cookie_headers_give_a_fresh_session(h: &Harness) {
    let sessions = sessions(h, CookiePolicy::new());
    let store = sessions.store().clone();
    let client = Client::untracked(app(sessions)).unwrap();
    let valid = pair(&set_cookie(&client.get("/").dispatch(), "id").unwrap());
    for (what, headers) in hostile_cookie_headers(&valid) {
        let mut req = client.get("/peek");
        let mut expressible = true;
        for raw in headers {
            // Rocket's headers are text: a request with non-UTF-8 bytes
            // cannot be built here (Rocket drops such headers from real
            // requests before any guard sees them).
            let Ok(line) = String::from_utf8(raw) else {
                expressible = false;
                break;
            };
            let value = line.strip_prefix("Cookie:").unwrap().trim().to_owned();
            req = req.header(Header::new("Cookie", value));
        }
        if !expressible {
            continue;
        }
        let r = req.dispatch();
        assert_eq!(r.status(), Status::Ok, "{what}");
        assert_eq!(r.into_string().unwrap(), "visits: 0", "{what}");
    }
    let r = with_cookie(client.get("/"), &valid).dispatch();
    assert_eq!(r.into_string().unwrap(), "visits: 2\nuser: anonymous\n");
    assert_eq!(count(store.database()), 1);
}

fn database_failures_are_500s_and_set_no_cookie(h: &Harness) {
    let client = Client::untracked(app(sessions(h, CookiePolicy::new()))).unwrap();
    // A handler that fails with a session error: 500, nothing committed.
    let r = client.get("/fail").dispatch();
    assert_eq!(r.status(), Status::InternalServerError);
    assert!(r.headers().get("Set-Cookie").next().is_none());
    let store = client.rocket().state::<SessionStore>().unwrap().clone();
    assert_eq!(count(store.database()), 0);

    let r = client.get("/break").dispatch();
    assert_eq!(r.status(), Status::InternalServerError);
    assert!(r.headers().get("Set-Cookie").next().is_none());
    assert_eq!(r.into_string().unwrap(), "internal server error\n");
    // With the table gone, a load fails too: the guard answers 500, and a
    // route without the session is unaffected.
    let cookie = format!("id={}", SessionId::generate().as_cookie_value());
    let r = with_cookie(client.get("/peek"), &cookie).dispatch();
    assert_eq!(r.status(), Status::InternalServerError);
    assert!(r.headers().get("Set-Cookie").next().is_none());
    assert_eq!(client.get("/health").dispatch().status(), Status::Ok);
}

/// A guard that reaches `SessionGuard` indirectly, out of the sentinel's sight.
struct Indirect;

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Indirect {
    type Error = ();
    async fn from_request(req: &'r rocket::Request<'_>) -> rocket::request::Outcome<Self, ()> {
        match req.guard::<SessionGuard<'r>>().await {
            rocket::request::Outcome::Success(_) => rocket::request::Outcome::Success(Indirect),
            rocket::request::Outcome::Error((status, _)) => {
                rocket::request::Outcome::Error((status, ()))
            }
            rocket::request::Outcome::Forward(s) => rocket::request::Outcome::Forward(s),
        }
    }
}

#[get("/indirect")]
fn indirect(_s: Indirect) -> &'static str {
    "reached"
}

fn bare() -> Rocket<Build> {
    rocket::custom(rocket::Config::figment().merge(("log_level", "off")))
}

fn missing_fairing_aborts_launch_or_fails_with_500(h: &Harness) {
    // A route taking the guard: launch is refused.
    let err = Client::untracked(bare().mount("/", routes![index])).unwrap_err();
    assert!(
        format!("{err:?}").contains("SessionGuard"),
        "launch should name the guard: {err:?}"
    );
    // Reached indirectly: a 500, never a panic.
    let client = Client::untracked(bare().mount("/", routes![indirect, health])).unwrap();
    assert_eq!(
        client.get("/indirect").dispatch().status(),
        Status::InternalServerError
    );
    assert_eq!(client.get("/health").dispatch().status(), Status::Ok);
    // With the fairing, the same route works.
    let store = h.store();
    let client = Client::untracked(
        bare()
            .attach(SessionFairing::new(Sessions::new(store)))
            .mount("/", routes![indirect]),
    )
    .unwrap();
    assert_eq!(client.get("/indirect").dispatch().status(), Status::Ok);
}

/// Loads and commits run on the blocking pool, at most as many at once as
/// the store's pool has connections. A subscriber that sleeps on every read
/// measures it: the store emits the read event after giving the connection
/// back, so only the fairing's semaphore keeps more than `pool` of them
/// from running at once.
fn blocking_work_is_bounded_by_the_pool_size(h: &Harness) {
    const POOL: u32 = 2;
    const REQUESTS: usize = 12;
    let store = h.store_with(h.builder().pool(PoolOptions::default().max_size(POOL)));
    let sessions = Sessions::new(store.clone());
    let fairing = SessionFairing::new(sessions);
    assert_eq!(fairing.concurrency(), POOL as usize);

    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    store.subscribe(move |e| {
        if e.kind == EventKind::Read {
            let now = l.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            l.fetch_sub(1, Ordering::SeqCst);
        }
    });

    rocket::execute(async move {
        use rocket::local::asynchronous::Client;
        let client = Client::untracked(quiet().attach(fairing)).await.unwrap();
        let cookie = {
            let r = client.get("/").dispatch().await;
            let set = r.headers().get_one("Set-Cookie").unwrap().to_owned();
            pair(&set)
        };
        let requests = (0..REQUESTS).map(|_| {
            client
                .get("/peek")
                .header(Header::new("Cookie", cookie.clone()))
                .dispatch()
        });
        let responses = rocket::futures::future::join_all(requests).await;
        for r in responses {
            assert_eq!(r.status(), Status::Ok);
        }
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=POOL as usize).contains(&peak),
        "{peak} session loads ran at once with a pool of {POOL}"
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

/// The wait for a permit is bounded: with every permit held by a load that
/// does not finish (a subscriber blocks the store's read until the test
/// lets it go, as a database that stops answering would), an extra request
/// is answered 503 within the permit timeout (+ 1 s), over real HTTP, and
/// routes without the session keep answering. By default the timeout is
/// the pool's acquire timeout; `permit_timeout` sets another.
fn permit_wait_is_bounded(h: &Harness) {
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;
    const POOL: u32 = 2;
    let acquire = Duration::from_millis(1500);
    let store = h.store_with(
        h.builder().pool(
            PoolOptions::default()
                .max_size(POOL)
                .acquire_timeout(acquire),
        ),
    );
    let default = SessionFairing::new(Sessions::new(store.clone()));
    assert_eq!(default.permit_timeout(), acquire);
    let explicit = Duration::from_millis(700);
    let set = SessionFairing::new(Sessions::new(store.clone())).with_permit_timeout(explicit);
    assert_eq!(set.permit_timeout(), explicit);

    // Reads block while the gate is closed (at most 20 s, so that a
    // regression fails instead of hanging the suite).
    let gate = Arc::new((Mutex::new((true, 0usize)), Condvar::new()));
    let g = gate.clone();
    store.subscribe(move |e| {
        if e.kind == EventKind::Read {
            let (lock, cvar) = &*g;
            let mut state = lock.lock().unwrap();
            state.1 += 1;
            cvar.notify_all();
            let _ = cvar
                .wait_timeout_while(state, Duration::from_secs(20), |s| s.0)
                .unwrap();
        }
    });
    let set_gate = |closed: bool| {
        let (lock, cvar) = &*gate;
        let mut state = lock.lock().unwrap();
        state.0 = closed;
        state.1 = 0;
        cvar.notify_all();
    };
    let wait_for_blocked = |n: usize| {
        let (lock, cvar) = &*gate;
        let state = lock.lock().unwrap();
        let (state, _) = cvar
            .wait_timeout_while(state, Duration::from_secs(10), |s| s.1 < n)
            .unwrap();
        assert_eq!(state.1, n, "the held loads did not start");
    };
    // A well-formed id: its load reads (and blocks at the gate).
    let cookie = format!("Cookie: id={}", SessionId::generate().as_cookie_value());

    for (fairing, limit) in [(default, acquire), (set, explicit)] {
        set_gate(true);
        let server = adapter_support::serve_rocket(quiet().attach(fairing));
        let addr = server.addr;
        let holders: Vec<_> = (0..POOL)
            .map(|_| {
                let cookie = cookie.clone();
                std::thread::spawn(move || {
                    adapter_support::send(addr, "GET", "/peek", &[cookie.as_bytes()], b"")
                })
            })
            .collect();
        wait_for_blocked(POOL as usize);

        let start = Instant::now();
        let extra = adapter_support::send(addr, "GET", "/peek", &[cookie.as_bytes()], b"");
        let took = start.elapsed();
        assert_eq!(extra.status, 503, "{limit:?}: {}", extra.body);
        assert!(extra.set_cookies().is_empty());
        assert!(
            took >= limit - Duration::from_millis(50) && took < limit + Duration::from_secs(1),
            "{limit:?}: answered after {took:?}"
        );
        // A route without the session is not held up.
        let start = Instant::now();
        let health = adapter_support::send(addr, "GET", "/health", &[], b"");
        assert_eq!(health.status, 200);
        assert!(start.elapsed() < Duration::from_secs(1));

        set_gate(false);
        for holder in holders {
            let reply = holder.join().unwrap();
            assert_eq!(reply.status, 200, "a held request failed");
            assert_eq!(reply.body, "visits: 0");
        }
        // The permits are back: the next request is served.
        let after = adapter_support::send(addr, "GET", "/peek", &[cookie.as_bytes()], b"");
        assert_eq!(after.status, 200);
        eprintln!(
            "{:?}: permit timeout {limit:?}, extra request answered 503 after {took:?}",
            h.backend
        );
    }
}

fn client_metadata_follows_the_store_policy(h: &Harness) {
    // Policy on: the peer (`Request::remote()`) and the agent.
    let store = h.store_with_metadata();
    let client = Client::untracked(app(Sessions::new(store.clone()))).unwrap();
    let login = |client: &Client, user: &str, remote: &str, extra: Option<Header<'static>>| {
        let mut req = client
            .post("/login")
            .remote(remote.parse().unwrap())
            .header(ContentType::Form)
            .header(Header::new("User-Agent", "MetaTest/1.0 (rocket)"))
            .body(format!("user={user}"));
        if let Some(h) = extra {
            req = req.header(h);
        }
        let r = req.dispatch();
        assert_eq!(r.status(), Status::Ok);
    };
    login(&client, "mia", "198.51.100.23:4711", None);
    let list = store
        .sessions_of("mia", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip.as_deref(), Some("198.51.100.0"));
    assert_eq!(list[0].user_agent.as_deref(), Some("MetaTest/1.0 (rocket)"));
    // Rocket's ip_header (X-Real-IP by default), which any client can
    // send, is not read: the peer is recorded.
    let spoof = Header::new("X-Real-IP", "203.0.113.200");
    login(&client, "olga", "127.0.0.1:4711", Some(spoof));
    let list = store
        .sessions_of("olga", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list[0].ip.as_deref(), Some("127.0.0.0"));

    // Default policy: nothing is recorded.
    let plain = h.store();
    let client = Client::untracked(app(Sessions::new(plain.clone()))).unwrap();
    login(&client, "noah", "198.51.100.23:4711", None);
    let list = plain
        .sessions_of("noah", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(
        (list[0].ip.as_deref(), list[0].user_agent.as_deref()),
        (None, None)
    );
}

/// Over real HTTP (Rocket's server, not the local client).
fn forwarded_client_ip_only_from_trusted_proxies(h: &Harness) {
    let store = h.store_with_metadata();
    adapter_support::forwarded_client_ip_cases(&store, &|sessions| {
        let server = adapter_support::serve_rocket(app(sessions));
        (server.addr, Box::new(server))
    });
}

backend_suite!(
    forwarded_client_ip_only_from_trusted_proxies,
    client_metadata_follows_the_store_policy,
    visit_login_logout_cycle,
    tracked_client_keeps_the_session,
    local_client_jar_is_read_for_the_exact_name_only,
    untouched_session_costs_no_query_and_sets_no_cookie,
    hostile_cookie_headers_give_a_fresh_session,
    database_failures_are_500s_and_set_no_cookie,
    missing_fairing_aborts_launch_or_fails_with_500,
    blocking_work_is_bounded_by_the_pool_size,
    permit_wait_is_bounded,
);
