//! The rouille demo's own routes over real HTTP, on every enabled backend:
//! `/sessions`, `/sessions/revoke-others`, and the `/admin` token gate.
//! The example's source is compiled into this test as a module.
#![cfg(all(feature = "rouille", feature = "admin"))]

mod adapter_support;
mod common;
#[allow(dead_code)]
#[path = "../examples/demo.rs"]
mod demo;
mod demo_support;

use adapter_support::{send, serve_rouille, Jar, Reply, Server};
use common::{count, Harness};
use demo_support::{browser, get};
use stored_session::adapters::{CookiePolicy, Sessions};
use stored_session::admin::CSRF_COOKIE;

fn start(h: &Harness, admin_token: Option<&str>) -> (Server, Sessions) {
    let sessions = Sessions::with_policy(
        h.store_with_metadata(),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap();
    let demo = demo::Demo::new(sessions.clone(), admin_token);
    (
        serve_rouille(move |request| demo::app(&demo, request)),
        sessions,
    )
}

fn sessions_routes(h: &Harness) {
    let (server, sessions) = start(h, None);
    let store = sessions.store();
    let addr = server.addr;
    let (phone, phone_ua) = browser(addr, "alice", "Phone/1.0");
    let (laptop, laptop_ua) = browser(addr, "alice", "Laptop/2.0 (X11)");
    let (tablet, tablet_ua) = browser(addr, "alice", "Tablet/3.0");
    let (bob, bob_ua) = browser(addr, "bob", "Bob/1.0");

    // Login bound the user (set_user), recorded metadata, renewed the id.
    assert_eq!(
        store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        3
    );

    let r = get(&laptop, addr, "/sessions", &laptop_ua);
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("text/plain")));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.body);
    assert!(lines.iter().all(|l| l.starts_with("session ")), "{lines:?}");
    let current: Vec<&&str> = lines.iter().filter(|l| l.ends_with(" current")).collect();
    assert_eq!(current.len(), 1, "{lines:?}");
    assert!(
        current[0].contains("agent Laptop/2.0 (X11) device - location - current"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.contains(" ip 127.0.0.0 ")),
        "{lines:?}"
    );
    for agent in ["Phone/1.0", "Tablet/3.0"] {
        assert!(lines
            .iter()
            .any(|l| l.contains(&format!("agent {agent}")) && !l.ends_with(" current")));
    }
    // The phone sees its own line as current.
    let r = get(&phone, addr, "/sessions", &phone_ua);
    let current: Vec<&str> = r.body.lines().filter(|l| l.ends_with(" current")).collect();
    assert_eq!(current.len(), 1);
    assert!(current[0].contains("agent Phone/1.0"));

    // Not signed in: 401 for both routes; a visitor is never listed.
    let r = send(addr, "GET", "/sessions", &[], b"");
    assert_eq!(r.status, 401);
    let r = send(addr, "POST", "/sessions/revoke-others", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(count(store.database()), 4);

    // Sign out the other devices.
    let cookie = laptop.header().unwrap();
    let r = send(
        addr,
        "POST",
        "/sessions/revoke-others",
        &[&cookie, laptop_ua.as_bytes()],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "revoked 2"));
    for (jar, ua) in [(&phone, &phone_ua), (&tablet, &tablet_ua)] {
        let r = get(jar, addr, "/", ua);
        assert!(r.body.ends_with("user: anonymous\n"), "{}", r.body);
    }
    let r = get(&laptop, addr, "/sessions", &laptop_ua);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("session ") && lines[0].ends_with(" current"));
    // Bob is untouched; nothing left to revoke for alice.
    let r = get(&bob, addr, "/sessions", &bob_ua);
    assert_eq!(r.body.lines().count(), 1);
    let r = send(
        addr,
        "POST",
        "/sessions/revoke-others",
        &[&cookie, laptop_ua.as_bytes()],
        b"",
    );
    assert_eq!(r.body, "revoked 0");
}

fn admin_is_disabled_without_a_token(h: &Harness) {
    for token in [None, Some("")] {
        let (server, _) = start(h, token);
        for (method, path) in [
            ("GET", "/admin"),
            ("GET", "/admin/"),
            ("GET", "/admin/login"),
            ("POST", "/admin/login"),
            ("POST", "/admin/revoke-all"),
        ] {
            let r = send(server.addr, method, path, &[b"Authorization: Bearer "], b"");
            assert_eq!(r.status, 404, "{method} {path}");
        }
    }
}

fn cookie_pair(reply: &Reply, name: &str) -> String {
    reply
        .session_cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).unwrap() + marker.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

fn admin_behind_the_token(h: &Harness) {
    let (server, sessions) = start(h, Some("s3cret-admin-token"));
    let addr = server.addr;
    browser(addr, "alice", "Phone/1.0");
    browser(addr, "alice", "Laptop/2.0");

    // No credentials: a browser is sent to the form, anything else gets 401.
    let r = send(addr, "GET", "/admin/", &[], b"");
    assert_eq!(r.status, 303);
    assert!(r
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("location") && v == "/admin/login"));
    for (method, path) in [("POST", "/admin/revoke-all"), ("GET", "/admin/?user=alice")] {
        for auth in [
            &b"Authorization: Bearer wrong"[..],
            b"Authorization: Bearer s3cret-admin-toke",
            b"Authorization: Bearer s3cret-admin-token2",
            b"Authorization: Basic czNjcmV0LWFkbWluLXRva2Vu",
            b"Cookie: demo_admin=s3cret-admin-token",
        ] {
            let r = send(addr, method, path, &[auth], b"confirm=yes");
            let what = format!("{method} {path} {:?}", String::from_utf8_lossy(auth));
            // 401, or for a GET without Authorization the way to the form.
            let bearerless_get = method == "GET" && auth.starts_with(b"Cookie");
            assert_eq!(r.status, if bearerless_get { 303 } else { 401 }, "{what}");
            assert!(!r.body.contains("live session"), "{what}");
        }
    }
    assert_eq!(count(sessions.store().database()), 2);

    // Bearer token: the page.
    let bearer = b"Authorization: Bearer s3cret-admin-token";
    let r = send(addr, "GET", "/admin/?user=alice", &[bearer], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("2 live sessions of <code>alice</code>"));
    assert!(r.body.contains("Phone/1.0") && r.body.contains("127.0.0.0"));

    // The login form: a wrong token is refused, the right one sets a cookie.
    let r = send(addr, "GET", "/admin/login", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("name=\"token\""));
    let form = b"Content-Type: application/x-www-form-urlencoded";
    let r = send(addr, "POST", "/admin/login", &[form], b"token=nope");
    assert_eq!(r.status, 403);
    assert!(r.session_cookie("demo_admin").is_none());
    let r = send(
        addr,
        "POST",
        "/admin/login",
        &[form],
        b"token=s3cret-admin-token",
    );
    assert_eq!(r.status, 303);
    let set = r.session_cookie("demo_admin").unwrap();
    assert!(
        set.contains("Path=/admin") && set.contains("HttpOnly") && set.contains("SameSite=Strict")
    );
    let admin_cookie = cookie_pair(&r, "demo_admin");
    assert!(
        !admin_cookie.contains("s3cret"),
        "the cookie is not the token"
    );

    // With the cookie: the page, then a CSRF-protected revoke.
    let header = format!("Cookie: {admin_cookie}");
    let r = send(addr, "GET", "/admin/?user=alice", &[header.as_bytes()], b"");
    assert_eq!(r.status, 200);
    let nonce = cookie_pair(&r, CSRF_COOKIE);
    let token = hidden(&r.body, "csrf");
    let both = format!("Cookie: {admin_cookie}; {nonce}");
    let r = send(
        addr,
        "POST",
        "/admin/revoke-user",
        &[both.as_bytes(), form],
        b"user=alice&confirm=yes",
    );
    assert_eq!(r.status, 403, "no CSRF token");
    assert_eq!(count(sessions.store().database()), 2);
    let body = format!("csrf={token}&user=alice&confirm=yes");
    let r = send(
        addr,
        "POST",
        "/admin/revoke-user",
        &[both.as_bytes(), form],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303);
    assert_eq!(count(sessions.store().database()), 0);

    // Each sign-in gets its own cookie, and the page's forms are bound to
    // it: a token from the first sign-in's page fails under a second one.
    browser(addr, "bob", "Phone/1.0");
    let r = send(
        addr,
        "POST",
        "/admin/login",
        &[form],
        b"token=s3cret-admin-token",
    );
    let second = cookie_pair(&r, "demo_admin");
    assert_ne!(second, admin_cookie, "two sign-ins share a cookie");
    let other = format!("Cookie: {second}; {nonce}");
    let body = format!("csrf={token}&user=bob&confirm=yes");
    let r = send(
        addr,
        "POST",
        "/admin/revoke-user",
        &[other.as_bytes(), form],
        body.as_bytes(),
    );
    assert_eq!(r.status, 403, "a form of another sign-in was accepted");
    assert_eq!(count(sessions.store().database()), 1);
    // Its own page's token works; a forged sign-in cookie gets nothing.
    let header = format!("Cookie: {second}; {nonce}");
    let r = send(addr, "GET", "/admin/?user=bob", &[header.as_bytes()], b"");
    assert_eq!(r.status, 200);
    let own = hidden(&r.body, "csrf");
    let body = format!("csrf={own}&user=bob&confirm=yes");
    let (random, _) = second.split_once('.').unwrap();
    let forged = format!("Cookie: {random}.{}; {nonce}", "0".repeat(64));
    let r = send(addr, "GET", "/admin/?user=bob", &[forged.as_bytes()], b"");
    assert_eq!(r.status, 303, "a forged sign-in cookie was let in");
    let r = send(
        addr,
        "POST",
        "/admin/revoke-user",
        &[header.as_bytes(), form],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303);
    assert_eq!(count(sessions.store().database()), 0);
}

/// `GET /sessions` shows 50 sessions, then a `next` line; following it
/// shows the rest, each session exactly once.
fn sessions_are_paged(h: &Harness) {
    let (server, sessions) = start(h, None);
    let store = sessions.store();
    let addr = server.addr;
    let (jar, ua) = browser(addr, "zoe", "Desk/1.0");
    for _ in 0..54 {
        let mut s = store.load(None).unwrap();
        s.set_user("zoe");
        s.renew();
        let _ = store.save(&mut s).unwrap();
    }
    let r = get(&jar, addr, "/sessions", &ua);
    assert_eq!(r.status, 200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 51, "{}", r.body);
    assert!(lines[..50].iter().all(|l| l.starts_with("session ")));
    let next = lines[50].strip_prefix("next ").expect("a next line");
    assert!(next.starts_with("/sessions?after="), "{next}");
    let r = get(&jar, addr, next, &ua);
    assert_eq!(r.status, 200);
    let rest: Vec<&str> = r.body.lines().collect();
    assert_eq!(rest.len(), 5, "{}", r.body);
    assert!(rest.iter().all(|l| l.starts_with("session ")));
    // The browser's own session is the oldest: current, on the last page.
    assert!(rest[4].ends_with(" current"), "{rest:?}");
    let mut handles: Vec<&str> = lines[..50]
        .iter()
        .chain(&rest)
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), 55);
    // A cursor that is not the user's: 400.
    for bad in ["/sessions?after=garbage", "/sessions?after="] {
        let r = get(&jar, addr, bad, &ua);
        assert_eq!(r.status, 400, "{bad}");
    }
    let (other, other_ua) = browser(addr, "yan", "Other/1.0");
    let r = get(&other, addr, next, &other_ua);
    assert_eq!(r.status, 400, "zoe's cursor for yan");
}

fn flash_and_forgery(h: &Harness) {
    let (server, sessions) = start(h, None);
    demo_support::flash_and_forgery(server.addr, sessions.store());
}

/// With a GeoIP database, device labels and a trusted proxy (the demo's
/// `GEOIP_DB`, `devices` feature and `TRUST_PROXY=1`), each line of
/// `GET /sessions` names the device and the location as `City, CC`, and
/// nothing of either is in the table in plaintext.
#[cfg(all(feature = "geoip", feature = "devices"))]
fn sessions_show_device_and_location(h: &Harness) {
    use stored_session::adapters::TrustedProxies;
    use stored_session::GeoIp;

    #[derive(serde::Serialize)]
    struct Names {
        en: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Country {
        iso_code: &'static str,
        names: Names,
    }
    #[derive(serde::Serialize)]
    struct City {
        names: Names,
    }
    #[derive(serde::Serialize)]
    struct Record {
        country: Country,
        city: City,
    }
    let mut db = maxminddb_writer::Database::default();
    db.metadata.ip_version = maxminddb_writer::metadata::IpVersion::V6;
    db.metadata.database_type = "Test-City".into();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".into()];
    let london = db
        .insert_value(Record {
            country: Country {
                iso_code: "GB",
                names: Names {
                    en: "United Kingdom",
                },
            },
            city: City {
                names: Names { en: "London" },
            },
        })
        .unwrap();
    db.insert_node(
        "::81.2.69.0/120"
            .parse::<maxminddb_writer::paths::IpAddrWithMask>()
            .unwrap(),
        london,
    );
    let geoip = GeoIp::from_bytes(db.write_to(Vec::new()).unwrap()).unwrap();

    let config = h
        .config()
        .metadata(demo::config::METADATA)
        .geoip(Some(geoip))
        .devices(true);
    let sessions = Sessions::with_policy(
        h.store_with(h.builder().config(config)),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap()
    .with_trusted_proxies(TrustedProxies::new().with("127.0.0.1"))
    .unwrap();
    let demo = demo::Demo::new(sessions.clone(), None);
    let server = serve_rouille(move |request| demo::app(&demo, request));
    let addr = server.addr;
    let firefox =
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let r = send(
        addr,
        "POST",
        "/login",
        &[
            firefox.as_bytes(),
            b"X-Forwarded-For: 81.2.69.142",
            b"Content-Type: application/x-www-form-urlencoded",
        ],
        b"user=erin",
    );
    assert_eq!(r.body, "logged in as erin", "{r:?}");
    let mut jar = Jar::new("id");
    jar.update(&r);
    let r = get(&jar, addr, "/sessions", firefox);
    let line = r.body.lines().next().unwrap().to_owned();
    assert!(line.starts_with("session "), "{line}");
    assert!(
        line.ends_with(" device Firefox on Linux location London, GB current"),
        "{line}"
    );
    assert!(line.contains(" ip 81.2.69.0 "), "{line}");
    let table: Vec<u8> = common::table_bytes(sessions.store().database());
    assert!(!table.is_empty());
    for needle in ["London", "Firefox", "erin", "81.2.69"] {
        assert!(
            !common::contains(&table, needle.as_bytes()),
            "{needle} in the table"
        );
    }
}

fn remember_me(h: &Harness) {
    let config = demo::config::demo_config().unwrap().clock(h.clock.clock());
    let sessions = Sessions::with_policy(
        h.store_with(h.builder().config(config)),
        CookiePolicy::new().with_secure(false),
    )
    .unwrap();
    let demo = demo::Demo::new(sessions, None);
    let server = serve_rouille(move |request| demo::app(&demo, request));
    demo_support::remember_me(h, server.addr);
}

backend_suite!(
    remember_me,
    flash_and_forgery,
    sessions_routes,
    sessions_are_paged,
    admin_is_disabled_without_a_token,
    admin_behind_the_token,
);

#[cfg(all(feature = "geoip", feature = "devices"))]
mod located {
    use super::*;
    backend_suite!(sessions_show_device_and_location);
}
