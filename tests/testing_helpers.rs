//! The `testing` helpers, used the way an application's own tests use them:
//! against real apps on each adapter. (The helpers run on in-memory SQLite by
//! design; the adapters themselves are tested on every backend elsewhere.)
#![cfg(feature = "testing")]

use std::time::Duration;

use stored_session::testing::{TestStore, TEST_START};

const DAY: u64 = 24 * 60 * 60;

#[test]
fn store_basics() {
    let test = TestStore::new();
    assert_eq!(test.clock().now().timestamp(), TEST_START);
    let cookie = test.create_session(|s| {
        s.insert("user", "alice")?;
        s.insert("cart", &vec![1, 2, 3])
    });
    assert_eq!(cookie.name(), "id");
    assert_eq!(cookie.header(), format!("id={}", cookie.value()));
    let session = test.session(&cookie).expect("live session");
    assert_eq!(
        session.get::<Vec<i32>>("cart").unwrap(),
        Some(vec![1, 2, 3])
    );
    assert!(test.session(&test.unknown_cookie()).is_none());
    // Sessions are isolated per TestStore.
    assert!(TestStore::new().session(&cookie).is_none());
    // Expiry follows the manual clock.
    test.advance(Duration::from_secs(29 * DAY));
    assert!(test.session(&cookie).is_some());
    test.advance(Duration::from_secs(2 * DAY));
    assert!(test.session(&cookie).is_none());
}

#[test]
#[should_panic(expected = "not stored")]
fn creating_an_empty_session_is_a_test_bug() {
    TestStore::new().create_session(|_| Ok(()));
}

#[cfg(feature = "rouille")]
mod rouille_app {
    use super::*;
    use rouille::{router, Request, Response};
    use stored_session::adapters::rouille::with_session;
    use stored_session::adapters::{CookiePolicy, Sessions};

    fn app(sessions: &Sessions, request: &Request) -> Response {
        router!(request,
            (GET) (/) => {
                with_session(sessions, request, |s| {
                    let user = s.get::<String>("user")?.unwrap_or_else(|| "anonymous".into());
                    Ok(Response::text(user))
                })
            },
            (POST) (/login) => {
                with_session(sessions, request, |s| {
                    s.renew();
                    s.insert("user", "carol")?;
                    Ok(Response::text("ok"))
                })
            },
            (POST) (/logout) => {
                with_session(sessions, request, |s| {
                    s.destroy();
                    Ok(Response::text("bye"))
                })
            },
            _ => Response::empty_404()
        )
    }

    fn with_cookie(method: &str, url: &str, cookie: &str) -> Request {
        Request::fake_http(method, url, vec![("Cookie".into(), cookie.into())], vec![])
    }

    #[test]
    fn login_read_logout_and_expiry() {
        let test = TestStore::new();
        let sessions = test.sessions();

        let r = app(
            sessions,
            &Request::fake_http("POST", "/login", vec![], vec![]),
        );
        let cookie = test.assert_cookie_set(&r);
        let session = test.session(&cookie).unwrap();
        assert_eq!(
            session.get::<String>("user").unwrap().as_deref(),
            Some("carol")
        );

        let r = app(sessions, &with_cookie("GET", "/", &cookie.header()));
        test.assert_cookie_unchanged(&r);

        // Logging in again from a planted session moves it to a new id.
        let planted = test.create_session(|s| s.insert("user", "mallory"));
        let r = app(sessions, &with_cookie("POST", "/login", &planted.header()));
        let fresh = test.assert_cookie_set(&r);
        assert_ne!(fresh, planted);
        assert!(test.session(&planted).is_none());

        let r = app(sessions, &with_cookie("POST", "/logout", &fresh.header()));
        test.assert_cookie_removed(&r);
        assert!(test.session(&fresh).is_none());

        // An expired session's cookie is removed on the next visit.
        test.advance(Duration::from_secs(31 * DAY));
        let r = app(sessions, &with_cookie("GET", "/", &cookie.header()));
        test.assert_cookie_removed(&r);
    }

    #[test]
    fn assertions_follow_a_custom_policy() {
        let test =
            TestStore::with_policy(CookiePolicy::new().with_name("s").with_host_prefix(true));
        let r = app(
            test.sessions(),
            &Request::fake_http("POST", "/login", vec![], vec![]),
        );
        let cookie = test.assert_cookie_set(&r);
        assert_eq!(cookie.name(), "__Host-s");
        let r = app(
            test.sessions(),
            &with_cookie("POST", "/logout", &cookie.header()),
        );
        test.assert_cookie_removed(&r);
    }

    #[test]
    #[should_panic(expected = "expected the response to set the session cookie")]
    fn assert_cookie_set_fails_when_nothing_is_set() {
        let test = TestStore::new();
        let r = app(
            test.sessions(),
            &Request::fake_http("GET", "/", vec![], vec![]),
        );
        test.assert_cookie_set(&r);
    }

    #[test]
    #[should_panic(expected = "expected no Set-Cookie for the session cookie")]
    fn assert_cookie_unchanged_fails_on_a_new_cookie() {
        let test = TestStore::new();
        let r = app(
            test.sessions(),
            &Request::fake_http("POST", "/login", vec![], vec![]),
        );
        test.assert_cookie_unchanged(&r);
    }
}

#[cfg(feature = "rocket")]
mod rocket_app {
    use super::*;
    use rocket::http::Header;
    use rocket::local::blocking::Client;
    use rocket::{get, post, routes};
    use stored_session::adapters::rocket::{SessionFairing, SessionGuard};

    #[get("/")]
    fn whoami(session: SessionGuard<'_>) -> Result<String, stored_session::Error> {
        Ok(session
            .get::<String>("user")?
            .unwrap_or_else(|| "anonymous".into()))
    }

    #[post("/login")]
    fn login(session: SessionGuard<'_>) -> Result<&'static str, stored_session::Error> {
        session.renew();
        session.insert("user", "dave")?;
        Ok("ok")
    }

    #[post("/logout")]
    fn logout(session: SessionGuard<'_>) -> &'static str {
        session.destroy();
        "bye"
    }

    fn client(test: &TestStore) -> Client {
        let rocket = rocket::custom(rocket::Config::figment().merge(("log_level", "off")))
            .attach(SessionFairing::new(test.sessions().clone()))
            .mount("/", routes![whoami, login, logout]);
        Client::untracked(rocket).unwrap()
    }

    #[test]
    fn login_read_logout_and_expiry() {
        let test = TestStore::new();
        let client = client(&test);

        let r = client.post("/login").dispatch();
        let cookie = test.assert_cookie_set(&r);
        assert_eq!(
            test.session(&cookie)
                .unwrap()
                .get::<String>("user")
                .unwrap()
                .as_deref(),
            Some("dave")
        );

        let r = client
            .get("/")
            .header(Header::new("Cookie", cookie.header()))
            .dispatch();
        test.assert_cookie_unchanged(&r);
        assert_eq!(r.into_string().as_deref(), Some("dave"));

        // Rocket's own cookie API works too.
        let r = client
            .get("/")
            .cookie((cookie.name().to_owned(), cookie.value().to_owned()))
            .dispatch();
        assert_eq!(r.into_string().as_deref(), Some("dave"));

        let r = client
            .post("/logout")
            .header(Header::new("Cookie", cookie.header()))
            .dispatch();
        test.assert_cookie_removed(&r);
        assert!(test.session(&cookie).is_none());

        let made = test.create_session(|s| s.insert("user", "erin"));
        test.advance(Duration::from_secs(31 * DAY));
        let r = client
            .get("/")
            .header(Header::new("Cookie", made.header()))
            .dispatch();
        test.assert_cookie_removed(&r);
        assert_eq!(r.into_string().as_deref(), Some("anonymous"));
    }
}

#[cfg(feature = "http")]
mod http_app {
    use super::*;
    use http::{header::COOKIE, Request, Response};
    use stored_session::adapters::http::handle;
    use stored_session::adapters::Sessions;

    fn app(sessions: &Sessions, request: Request<()>) -> Response<String> {
        handle(sessions, request, |request, session| {
            if request.method() == http::Method::POST {
                session.insert("user", "frank")?;
                return Ok(Response::new("ok".to_owned()));
            }
            let user = session
                .get::<String>("user")?
                .unwrap_or_else(|| "anonymous".into());
            Ok(Response::new(user))
        })
    }

    #[test]
    fn set_read_and_remove() {
        let test = TestStore::new();
        let r = app(test.sessions(), Request::post("/").body(()).unwrap());
        let cookie = test.assert_cookie_set(&r);
        let r = app(
            test.sessions(),
            Request::get("/")
                .header(COOKIE, cookie.header())
                .body(())
                .unwrap(),
        );
        test.assert_cookie_unchanged(&r);
        assert_eq!(r.body(), "frank");
        let r = app(
            test.sessions(),
            Request::get("/")
                .header(COOKIE, test.unknown_cookie().header())
                .body(())
                .unwrap(),
        );
        test.assert_cookie_removed(&r);
    }
}
