//! The admin page through its rouille and `http` glue, on every enabled
//! backend: rendering, lookup, revoking one / a user / everything, CSRF
//! refusals, escaping.
#![cfg(all(feature = "admin", feature = "rouille", feature = "http"))]

mod adapter_support;
mod common;

use std::io::Read;

use adapter_support::{send, serve_rouille, Server};
use common::{count, Harness};
use stored_session::admin::{self, Admin, CSRF_COOKIE, CSRF_COOKIE_SECURE};
use stored_session::{CookieAction, Keyring, Page, SessionStore};

/// Which glue a request goes through.
#[derive(Debug, Clone, Copy)]
enum Glue {
    Rouille,
    Http,
}

const GLUES: [Glue; 2] = [Glue::Rouille, Glue::Http];

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Glue {
    fn call(
        self,
        admin: &Admin,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        match self {
            Glue::Rouille => {
                let headers = headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                let request = rouille::Request::fake_http(method, target, headers, body.to_vec());
                let response = admin::rouille::handle(admin, &request);
                let mut text = String::new();
                let (mut reader, _) = response.data.into_reader_and_size();
                reader.read_to_string(&mut text).unwrap();
                Reply {
                    status: response.status_code,
                    headers: response
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    body: text,
                }
            }
            Glue::Http => {
                let mut builder = http::Request::builder().method(method).uri(target);
                for (n, v) in headers {
                    builder = builder.header(*n, *v);
                }
                let request = builder.body(body.to_vec()).unwrap();
                let response: http::Response<String> = admin::http::handle(admin, &request);
                Reply {
                    status: response.status().as_u16(),
                    headers: response
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                    body: response.body().clone(),
                }
            }
        }
    }
}

/// A browser's view: the nonce cookie it holds.
struct Browser<'a> {
    admin: &'a Admin,
    glue: Glue,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(admin: &'a Admin, glue: Glue) -> Self {
        Browser {
            admin,
            glue,
            cookie: None,
        }
    }

    fn get(&mut self, target: &str) -> Reply {
        let cookie = self.cookie.clone();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let reply = self.glue.call(self.admin, "GET", target, &headers, b"");
        if let Some(set) = reply.header("Set-Cookie") {
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        reply
    }

    fn post(&self, target: &str, form: &str) -> Reply {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = &self.cookie {
            headers.push(("Cookie", c.as_str()));
        }
        self.glue
            .call(self.admin, "POST", target, &headers, form.as_bytes())
    }
}

/// Percent-encodes a form value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every `value` of hidden inputs named `name`, in page order.
fn hidden(page: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    page.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &page[at + marker.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

fn token(page: &str) -> String {
    let tokens = hidden(page, "csrf");
    assert!(!tokens.is_empty(), "no CSRF field on the page");
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    tokens[0].clone()
}

fn sign_in(store: &SessionStore, user: &str, agent: &str, ip: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.set_user(user);
    s.set_client(Some(ip.parse().unwrap()), Some(agent));
    s.insert("k", &1).unwrap();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

/// Alice on three devices, Bob on one, an anonymous visitor.
fn seed(store: &SessionStore) -> Vec<String> {
    let alice = (0..3)
        .map(|i| sign_in(store, "alice", &format!("Device/{i}"), "198.51.100.77"))
        .collect();
    sign_in(store, "bob", "Bob/1", "203.0.113.5");
    let mut anon = store.load(None).unwrap();
    anon.insert("cart", "pear").unwrap();
    let _ = store.save(&mut anon).unwrap();
    alice
}

fn renders_statistics_and_chart(h: &Harness) {
    let store = h.store_with_metadata();
    sign_in(&store, "alice", "A/1", "198.51.100.1");
    sign_in(&store, "bob", "B/1", "198.51.100.2");
    h.advance(3 * 3600);
    seed(&store);
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let mut browser = Browser::new(&admin, glue);
        let r = browser.get("/admin/");
        assert_eq!(r.status, 200, "{glue:?}");
        assert_eq!(
            r.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{glue:?}"
        );
        let csp = r.header("Content-Security-Policy").unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
        // Served over HTTPS (the default): a `__Host-` cookie for the whole site.
        let set = r.header("Set-Cookie").unwrap();
        assert!(set.starts_with(&format!("{CSRF_COOKIE_SECURE}=")), "{set}");
        assert_eq!(
            attributes(set),
            ["HttpOnly", "Path=/", "SameSite=Strict", "Secure"],
            "{set}"
        );
        let page = &r.body;
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.to_lowercase().contains("<script"), "no script at all");
        // Live: alice 4, bob 2, one anonymous; two users.
        assert!(
            page.contains("<dt>Live sessions</dt><dd>7<small>"),
            "{glue:?}"
        );
        assert!(page.contains("<dt>Users</dt><dd>2<small>"));
        assert!(!page.contains("<dt>Unreadable</dt>"), "every session opens");
        // The chart: 24 hourly groups; 2 created three hours ago, 5 now.
        assert_eq!(page.matches("<g class=\"hour\"").count(), 24);
        let created: Vec<u64> = page
            .match_indices("data-created=\"")
            .map(|(at, m)| {
                let rest = &page[at + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(created.len(), 24);
        assert_eq!((created[20], created[23]), (2, 5), "{created:?}");
        assert_eq!(created.iter().sum::<u64>(), 7);
        assert!(page.contains("<svg id=\"activity\""));
        // Forms: lookup by GET, revoke-all by POST with a token and a tick box.
        assert!(page.contains("<form method=\"get\" action=\"/admin/\""));
        assert!(page.contains("<form method=\"post\" action=\"/admin/revoke-all\""));
        assert_eq!(hidden(page, "csrf").len(), 1);
        // The bare mount path renders too, and a known cookie is kept.
        let again = browser.get("/admin");
        assert_eq!(again.status, 200);
        assert!(again.header("Set-Cookie").is_none());
        assert_eq!(token(&again.body), token(page));
    }
}

fn lookup_lists_a_users_sessions(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let mut browser = Browser::new(&admin, glue);
        let r = browser.get("/admin/?user=alice");
        assert_eq!(r.status, 200);
        let page = &r.body;
        assert!(
            page.contains("3 live sessions of <code>alice</code>"),
            "{glue:?}"
        );
        assert_eq!(page.matches("<tr class=\"session\">").count(), 3);
        assert_eq!(page.matches("198.51.100.0").count(), 3);
        assert!(
            !page.contains("198.51.100.77"),
            "the IP is stored truncated"
        );
        for i in 0..3 {
            assert!(page.contains(&format!("Device/{i}")));
        }
        assert!(!page.contains("Bob/1"));
        let handles = hidden(page, "handle");
        assert_eq!(handles.len(), 3);
        let listed: Vec<String> = store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .into_iter()
            .map(|i| i.handle.to_string())
            .collect();
        assert_eq!(handles, listed);
        assert!(page.contains("action=\"/admin/revoke-user\""));
        assert!(page.contains("value=\"alice\""));
        // Unknown user: an empty list, no revoke-user form.
        let r = browser.get("/admin/?user=nobody");
        assert!(r.body.contains("0 live sessions of <code>nobody</code>"));
        assert!(r.body.contains("No live sessions."));
        assert!(!r.body.contains("revoke-user"));
        // Query decoding: `+` and `%xx`.
        sign_in(&store, "carol smith", "C/1", "192.0.2.1");
        let r = browser.get("/admin/?user=carol+smith");
        assert!(r
            .body
            .contains("1 live session of <code>carol smith</code>"));
        let r = browser.get("/admin/?user=carol%20smith");
        assert!(r
            .body
            .contains("1 live session of <code>carol smith</code>"));
        store.revoke_user("carol smith").unwrap();
    }
}

fn everything_shown_is_escaped(h: &Harness) {
    let store = h.store_with_metadata();
    let user = r#"<b>"eve"&'x'</b>"#;
    let mut s = store.load(None).unwrap();
    s.set_user(user);
    s.set_client(
        Some("192.0.2.1".parse().unwrap()),
        Some(r#"<script>alert("ua")</script>"#),
    );
    s.set_meta("<i>place</i>", Some(r#""><img src=x onerror=alert(1)>"#));
    s.insert("k", &1).unwrap();
    let _ = store.save(&mut s).unwrap();
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let mut browser = Browser::new(&admin, glue);
        let r = browser.get(&format!("/admin/?user={}", enc(user)));
        let page = &r.body;
        assert_eq!(r.status, 200);
        for raw in [
            "<b>",
            "<script>",
            "<img",
            "<i>",
            "\"eve\"",
            "onerror=alert(1)>",
        ] {
            assert!(!page.contains(raw), "{glue:?}: {raw} unescaped");
        }
        assert!(page.contains("&lt;b&gt;&quot;eve&quot;&amp;&#39;x&#39;&lt;/b&gt;"));
        assert!(page.contains("&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt;"));
        assert!(
            page.contains("&lt;i&gt;place&lt;/i&gt;: &quot;&gt;&lt;img src=x onerror=alert(1)&gt;")
        );
        // The escaped id round-trips through the revoke-user form.
        let form = format!("csrf={}&user={}&confirm=yes", token(page), enc(user));
        let r = browser.post("/admin/revoke-user", &form);
        assert_eq!(r.status, 303);
        let location = r.header("Location").unwrap();
        assert!(location.is_ascii() && !location.contains('<'), "{location}");
        assert!(store
            .sessions_of(user, None, Default::default())
            .unwrap()
            .sessions
            .is_empty());
        // Recreate for the next glue.
        let mut s = store.load(None).unwrap();
        s.set_user(user);
        s.set_client(None, Some(r#"<script>alert("ua")</script>"#));
        s.set_meta("<i>place</i>", Some(r#""><img src=x onerror=alert(1)>"#));
        let _ = store.save(&mut s).unwrap();
    }
}

fn revoking_one_session(h: &Harness) {
    let store = h.store_with_metadata();
    let alice = seed(&store);
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let before = count(store.database());
        let mut browser = Browser::new(&admin, glue);
        let page = browser.get("/admin/?user=alice").body;
        let handles = hidden(&page, "handle");
        let target = handles[0].clone();
        let form = format!("csrf={}&user=alice&handle={}", token(&page), enc(&target));
        let r = browser.post("/admin/revoke", &form);
        assert_eq!(r.status, 303, "{glue:?}: {}", r.body);
        assert_eq!(
            r.header("Location"),
            Some("/admin/?user=alice&done=revoked")
        );
        assert_eq!(count(store.database()), before - 1);
        let left = store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions;
        assert_eq!(left.len(), handles.len() - 1);
        assert!(left.iter().all(|i| i.handle.as_str() != target));
        let r = browser.get("/admin/?user=alice&done=revoked");
        assert!(r.body.contains("The session was ended."));
        assert_eq!(r.body.matches("<tr class=\"session\">").count(), left.len());
        // The same handle again ends nothing.
        let r = browser.post("/admin/revoke", &form);
        assert_eq!(r.header("Location"), Some("/admin/?user=alice&done=gone"));
        assert_eq!(count(store.database()), before - 1);
        // Another user's name with this handle ends nothing.
        let bob_form = format!(
            "csrf={}&user=bob&handle={}",
            token(&page),
            enc(&left[0].handle.to_string())
        );
        let r = browser.post("/admin/revoke", &bob_form);
        assert_eq!(r.header("Location"), Some("/admin/?user=bob&done=gone"));
        assert_eq!(count(store.database()), before - 1);
        // A missing handle is a 400, nothing changes.
        let r = browser.post(
            "/admin/revoke",
            &format!("csrf={}&user=alice", token(&page)),
        );
        assert_eq!(r.status, 400);
        assert_eq!(count(store.database()), before - 1);
    }
    // Exactly one of alice's cookies per glue is dead.
    let dead = alice
        .iter()
        .filter(|c| store.load(Some(c)).unwrap().is_new())
        .count();
    assert_eq!(dead, 2);
}

fn revoking_a_user(h: &Harness) {
    let store = h.store_with_metadata();
    for glue in GLUES {
        seed(&store);
        let admin = Admin::new(store.clone());
        let mut browser = Browser::new(&admin, glue);
        let page = browser.get("/admin/?user=alice").body;
        assert!(page.contains("Yes, end all 3 sessions of this user"));
        let before = count(store.database());
        // Without the confirmation tick: 400, nothing changes.
        let r = browser.post(
            "/admin/revoke-user",
            &format!("csrf={}&user=alice", token(&page)),
        );
        assert_eq!(r.status, 400, "{glue:?}");
        assert!(r.body.contains("confirmation"));
        assert_eq!(count(store.database()), before);
        let r = browser.post(
            "/admin/revoke-user",
            &format!("csrf={}&user=alice&confirm=yes", token(&page)),
        );
        assert_eq!(r.status, 303);
        assert_eq!(
            r.header("Location"),
            Some("/admin/?user=alice&done=user&n=3")
        );
        assert_eq!(count(store.database()), before - 3);
        assert!(store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .is_empty());
        assert_eq!(
            store
                .sessions_of("bob", None, Default::default())
                .unwrap()
                .sessions
                .len(),
            1
        );
        let r = browser.get("/admin/?user=alice&done=user&n=3");
        assert!(r.body.contains("Ended 3 sessions of this user."));
        store.revoke_all().unwrap();
    }
}

fn revoking_everything(h: &Harness) {
    let store = h.store_with_metadata();
    for glue in GLUES {
        seed(&store);
        let admin = Admin::new(store.clone()).with_mount_path("/ops/sessions/");
        let mut browser = Browser::new(&admin, glue);
        let page = browser.get("/ops/sessions/").body;
        assert!(page.contains("action=\"/ops/sessions/revoke-all\""));
        let r = browser.post(
            "/ops/sessions/revoke-all",
            &format!("csrf={}", token(&page)),
        );
        assert_eq!(r.status, 400, "{glue:?}");
        assert_eq!(count(store.database()), 5);
        let r = browser.post(
            "/ops/sessions/revoke-all",
            &format!("csrf={}&confirm=yes", token(&page)),
        );
        assert_eq!(r.status, 303);
        assert_eq!(r.header("Location"), Some("/ops/sessions/?done=all&n=5"));
        assert_eq!(count(store.database()), 0);
        let r = browser.get("/ops/sessions/?done=all&n=5");
        assert!(r.body.contains("Ended every session: 5 in all."));
        assert!(r.body.contains("<dt>Live sessions</dt><dd>0<small>"));
    }
}

fn posts_without_a_valid_token_are_refused(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    let admin = Admin::new(store.clone());
    // Same keys, another process: its tokens are accepted (same derivation).
    let twin = Admin::new(store.clone());
    // Other keys: its tokens are not.
    let stranger =
        Admin::new(SessionStore::builder(Keyring::generate()).build(store.database().clone()));
    let before = count(store.database());
    for glue in GLUES {
        let mut browser = Browser::new(&admin, glue);
        let page = browser.get("/admin/?user=alice").body;
        let good = token(&page);
        let handle = hidden(&page, "handle")[0].clone();
        let forms = [
            (
                "/admin/revoke",
                format!("user=alice&handle={}", enc(&handle)),
            ),
            ("/admin/revoke-user", "user=alice&confirm=yes".to_owned()),
            ("/admin/revoke-all", "confirm=yes".to_owned()),
        ];
        let mut stranger_browser = Browser::new(&stranger, glue);
        let foreign = token(&stranger_browser.get("/admin/").body);
        let mut other_browser = Browser::new(&admin, glue);
        let other_token = token(&other_browser.get("/admin/").body);
        for (path, form) in &forms {
            let refused = |r: Reply, what: &str| {
                assert_eq!(r.status, 403, "{glue:?} {path}: {what}");
                assert!(r.body.contains("security token is missing or invalid"));
                assert_eq!(count(store.database()), before, "{what} changed something");
            };
            refused(browser.post(path, form), "no token");
            refused(browser.post(path, &format!("csrf=&{form}")), "empty token");
            refused(
                browser.post(path, &format!("csrf=AAAA&{form}")),
                "wrong token",
            );
            refused(
                browser.post(path, &format!("csrf={foreign}&{form}")),
                "other keys",
            );
            refused(
                browser.post(path, &format!("csrf={other_token}&{form}")),
                "another browser's token",
            );
            // The right token without the cookie it belongs to.
            let cookieless = Browser::new(&admin, glue);
            refused(
                cookieless.post(path, &format!("csrf={good}&{form}")),
                "no cookie",
            );
            // A valid pair from another site's page (the browser says so).
            let mut headers = vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Sec-Fetch-Site", "cross-site"),
            ];
            let cookie = browser.cookie.clone().unwrap();
            headers.push(("Cookie", cookie.as_str()));
            let body = format!("csrf={good}&{form}");
            refused(
                glue.call(&admin, "POST", path, &headers, body.as_bytes()),
                "cross-site",
            );
            // GET never changes anything.
            let r = browser.get(&format!("{path}?csrf={good}&{form}"));
            assert_eq!(r.status, 405);
            assert_eq!(r.header("Allow"), Some("POST"));
            assert_eq!(count(store.database()), before);
        }
        // A twin (same keys) accepts the token: one revoke works.
        let mut twin_browser = Browser::new(&twin, glue);
        twin_browser.cookie = browser.cookie.clone();
        let r = twin_browser.post("/admin/revoke", &format!("csrf={good}&{}", forms[0].1));
        assert_eq!(r.status, 303);
        assert_eq!(count(store.database()), before - 1);
        sign_in(&store, "alice", "Device/x", "198.51.100.77");
        // An oversized form is refused before parsing.
        let big = format!("csrf={good}&pad={}", "x".repeat(admin::MAX_BODY));
        assert_eq!(browser.post("/admin/revoke-all", &big).status, 413);
        assert_eq!(count(store.database()), before);
    }
}

fn lookup_pages_a_users_sessions(h: &Harness) {
    let store = h.store_with_metadata();
    for i in 0..55 {
        sign_in(&store, "alice", &format!("Device/{i}"), "198.51.100.77");
    }
    sign_in(&store, "bob", "Bob/1", "203.0.113.5");
    let mut listed = Vec::new();
    let mut page = store.sessions_of("alice", None, Page::default()).unwrap();
    listed.extend(page.sessions.iter().map(|i| i.handle.to_string()));
    let rest = store
        .sessions_of(
            "alice",
            None,
            Page {
                limit: 50,
                after: page.next.take(),
            },
        )
        .unwrap();
    listed.extend(rest.sessions.iter().map(|i| i.handle.to_string()));
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let mut browser = Browser::new(&admin, glue);
        let r = browser.get("/admin/?user=alice");
        assert_eq!(r.status, 200, "{glue:?}");
        let first = &r.body;
        assert!(
            first.contains("50 live sessions of <code>alice</code> on this page, newest first"),
            "{glue:?}"
        );
        assert_eq!(first.matches("<tr class=\"session\">").count(), 50);
        assert!(first.contains("Device/54") && !first.contains("Device/4<"));
        assert!(!first.contains("id=\"first-page\""));
        assert!(first.contains("Yes, end all sessions (not only this page) of this user"));
        let marker = "id=\"next-page\" rel=\"next\" href=\"";
        let at = first.find(marker).expect("a next-page link") + marker.len();
        let href = first[at..at + first[at..].find('"').unwrap()].replace("&amp;", "&");
        assert!(href.starts_with("/admin/?user=alice&after="), "{href}");
        let r = browser.get(&href);
        assert_eq!(r.status, 200);
        let second = &r.body;
        assert!(second.contains("5 live sessions of <code>alice</code> on this page"));
        assert_eq!(second.matches("<tr class=\"session\">").count(), 5);
        assert!(second.contains("Device/0<") && !second.contains("Device/54"));
        assert!(second.contains("id=\"first-page\" href=\"/admin/?user=alice\""));
        assert!(!second.contains("id=\"next-page\""));
        let mut handles = hidden(first, "handle");
        handles.extend(hidden(second, "handle"));
        assert_eq!(handles, listed, "every session once, newest first");
        // A cursor that is not alice's: 400, never a panic or a 500.
        let bob_first = store.sessions_of("bob", None, Page::first(1)).unwrap();
        assert!(bob_first.next.is_none());
        for bad in ["garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "%00"] {
            let r = browser.get(&format!("/admin/?user=alice&after={bad}"));
            assert_eq!(r.status, 400, "{glue:?} {bad}");
            assert!(r.body.contains("Invalid page link"));
        }
        let cursor = href.split("after=").nth(1).unwrap();
        let r = browser.get(&format!("/admin/?user=bob&after={cursor}"));
        assert_eq!(r.status, 400, "alice's cursor for bob");
    }
}

/// The admin page's rouille glue on a real server (loopback TCP).
fn serve(admin: Admin) -> Server {
    serve_rouille(move |request| admin::rouille::handle(&admin, request))
}

/// The attributes of a `Set-Cookie` value (all of them: no `Domain`, no
/// `Max-Age`), sorted (their order means nothing).
fn attributes(set_cookie: &str) -> Vec<&str> {
    let mut attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    attributes.sort_unstable();
    attributes
}

/// `name=value` of the `Set-Cookie` for `name` in a real HTTP reply.
fn cookie_pair(reply: &adapter_support::Reply, name: &str) -> String {
    reply
        .session_cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

const FORM: &[u8] = b"Content-Type: application/x-www-form-urlencoded";

fn csrf_tokens_expire(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    let server = serve(Admin::new(store.clone()));
    let addr = server.addr;
    let r = send(addr, "GET", "/admin/?user=alice", &[], b"");
    assert_eq!(r.status, 200);
    let cookie = format!("Cookie: {}", cookie_pair(&r, CSRF_COOKIE_SECURE));
    let old = token(&r.body);
    let post = |path: &str, body: String| {
        send(
            addr,
            "POST",
            path,
            &[cookie.as_bytes(), FORM],
            body.as_bytes(),
        )
    };
    let before = count(store.database());
    // 59 min 59 s later the token still works (a harmless revoke: "gone").
    h.advance(3599);
    let r = post(
        "/admin/revoke",
        format!("csrf={old}&user=alice&handle=nope"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    // One hour after the page was rendered it is refused; nothing changes.
    h.advance(1);
    let r = post(
        "/admin/revoke-user",
        format!("csrf={old}&user=alice&confirm=yes"),
    );
    assert_eq!(r.status, 403, "an expired token was accepted");
    assert!(r.body.contains("security token is missing or invalid"));
    assert_eq!(count(store.database()), before);
    // A reload gives a fresh token (same nonce cookie), which works.
    let r = send(addr, "GET", "/admin/?user=alice", &[cookie.as_bytes()], b"");
    assert!(r.session_cookie(CSRF_COOKIE_SECURE).is_none());
    let fresh = token(&r.body);
    assert_ne!(fresh, old);
    let r = post(
        "/admin/revoke-user",
        format!("csrf={fresh}&user=alice&confirm=yes"),
    );
    assert_eq!(r.status, 303);
    assert_eq!(count(store.database()), before - 3);
    // A shorter lifetime is honoured too.
    let short = serve(Admin::new(store.clone()).with_csrf_ttl(std::time::Duration::from_secs(60)));
    let r = send(short.addr, "GET", "/admin/", &[], b"");
    let cookie = format!("Cookie: {}", cookie_pair(&r, CSRF_COOKIE_SECURE));
    let t = token(&r.body);
    h.advance(60);
    let r = send(
        short.addr,
        "POST",
        "/admin/revoke-all",
        &[cookie.as_bytes(), FORM],
        format!("csrf={t}&confirm=yes").as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(count(store.database()), before - 3);
}

fn csrf_tokens_are_bound_to_the_admin_login(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    let server = serve(Admin::new(store.clone()).with_login_cookie("app_admin"));
    let addr = server.addr;
    let r = send(
        addr,
        "GET",
        "/admin/?user=alice",
        &[b"Cookie: app_admin=login-one"],
        b"",
    );
    assert_eq!(r.status, 200);
    let nonce = cookie_pair(&r, CSRF_COOKIE_SECURE);
    let minted = token(&r.body);
    let body = format!("csrf={minted}&user=alice&confirm=yes");
    let before = count(store.database());
    for (login, what) in [
        ("; app_admin=login-two", "another login"),
        ("", "no login"),
        ("; app_admin=login-one-", "a longer login"),
        ("; App_admin=login-one", "another cookie name"),
    ] {
        let cookie = format!("Cookie: {nonce}{login}");
        let r = send(
            addr,
            "POST",
            "/admin/revoke-user",
            &[cookie.as_bytes(), FORM],
            body.as_bytes(),
        );
        assert_eq!(
            r.status, 403,
            "{what}: a token of another login was accepted"
        );
        assert_eq!(count(store.database()), before, "{what}");
    }
    // The same login's page minted it: accepted.
    let cookie = format!("Cookie: {nonce}; app_admin=login-one");
    let r = send(
        addr,
        "POST",
        "/admin/revoke-user",
        &[cookie.as_bytes(), FORM],
        body.as_bytes(),
    );
    assert_eq!(r.status, 303);
    assert_eq!(count(store.database()), before - 3);
}

fn nonce_cookie_is_host_prefixed_over_https(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    // Over HTTPS (the default): __Host-, Secure, Path=/, no Domain.
    let secure = serve(Admin::new(store.clone()));
    let r = send(secure.addr, "GET", "/admin/", &[], b"");
    let set = r
        .session_cookie(CSRF_COOKIE_SECURE)
        .expect("a __Host- cookie");
    assert!(set.starts_with("__Host-stored_session_admin="), "{set}");
    assert_eq!(
        attributes(&set),
        ["HttpOnly", "Path=/", "SameSite=Strict", "Secure"],
        "{set}"
    );
    assert!(r.session_cookie(CSRF_COOKIE).is_none());
    // Plain HTTP (a demo): no prefix, scoped to the mount path, not Secure.
    let plain = serve(Admin::new(store.clone()).with_secure_cookie(false));
    let r = send(plain.addr, "GET", "/admin/", &[], b"");
    let set = r.session_cookie(CSRF_COOKIE).expect("a plain cookie");
    assert_eq!(
        attributes(&set),
        ["HttpOnly", "Path=/admin", "SameSite=Strict"],
        "{set}"
    );
    // A nonce planted without the prefix (a sibling subdomain or a
    // plain-HTTP response can set that one) is never read over HTTPS, even
    // with the token minted for it; nor is an encoded prefix.
    let nonce = cookie_pair(&r, CSRF_COOKIE);
    let value = nonce.split_once('=').unwrap().1;
    let minted = token(&r.body);
    let before = count(store.database());
    for planted in [
        format!("Cookie: {CSRF_COOKIE}={value}"),
        format!("Cookie: %5F%5FHost-stored_session_admin={value}"),
        format!("Cookie: __host-stored_session_admin={value}"),
        format!("Cookie: __Host-stored_session_admin ={value}x"),
    ] {
        let r = send(
            secure.addr,
            "POST",
            "/admin/revoke-all",
            &[planted.as_bytes(), FORM],
            format!("csrf={minted}&confirm=yes").as_bytes(),
        );
        assert_eq!(r.status, 403, "{planted}");
        assert_eq!(count(store.database()), before);
        // And a GET with it gets a fresh __Host- cookie.
        let r = send(secure.addr, "GET", "/admin/", &[planted.as_bytes()], b"");
        assert!(r.session_cookie(CSRF_COOKIE_SECURE).is_some(), "{planted}");
    }
    // Under its exact name the same nonce and token work.
    let cookie = format!("Cookie: {CSRF_COOKIE_SECURE}={value}");
    let r = send(
        secure.addr,
        "POST",
        "/admin/revoke-all",
        &[cookie.as_bytes(), FORM],
        format!("csrf={minted}&confirm=yes").as_bytes(),
    );
    assert_eq!(r.status, 303);
    assert_eq!(count(store.database()), 0);
}

/// Sessions sealed under a key that is not on the store's ring (the keys
/// were changed) are shown apart from the ones it can open.
fn shows_sessions_the_keyring_cannot_open(h: &Harness) {
    let store = h.store_with_metadata();
    seed(&store);
    let elsewhere = SessionStore::builder(Keyring::generate())
        .config(h.config())
        .build(store.database().clone());
    sign_in(&elsewhere, "carol", "C/1", "192.0.2.1");
    sign_in(&elsewhere, "carol", "C/2", "192.0.2.1");
    let admin = Admin::new(store.clone());
    for glue in GLUES {
        let page = Browser::new(&admin, glue).get("/admin/").body;
        assert!(
            page.contains("<dt>Live sessions</dt><dd>7<small>"),
            "{glue:?}"
        );
        assert!(
            page.contains(
                "<dt>Unreadable</dt><dd>2<small>of those: sealed under a key not on the ring</small>"
            ),
            "{glue:?}"
        );
    }
}

backend_suite!(
    shows_sessions_the_keyring_cannot_open,
    renders_statistics_and_chart,
    lookup_lists_a_users_sessions,
    everything_shown_is_escaped,
    revoking_one_session,
    revoking_a_user,
    revoking_everything,
    posts_without_a_valid_token_are_refused,
    lookup_pages_a_users_sessions,
    csrf_tokens_expire,
    csrf_tokens_are_bound_to_the_admin_login,
    nonce_cookie_is_host_prefixed_over_https,
);
