//! The adapters' CSRF check over real HTTP, on every adapter and every
//! enabled backend: the session's token comes from a page, and an unsafe
//! request passes only with that token (form field or header) and without
//! cross-site browser headers; a request with no browser headers (curl)
//! still needs the token.
#![cfg(any(feature = "rouille", feature = "rocket", feature = "http"))]

mod adapter_support;
mod common;

use std::net::SocketAddr;

use adapter_support::{send, Reply};
use common::Harness;
use stored_session::adapters::{CookiePolicy, Sessions};

const COOKIE: &str = "sid";

fn sessions(h: &Harness) -> Sessions {
    Sessions::with_policy(
        h.store(),
        CookiePolicy::new().with_name(COOKIE).with_secure(false),
    )
    .unwrap()
}

/// The value of `csrf_token=` in an urlencoded body (tokens are URL-safe).
fn form_token(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("csrf_token="))
        .map(str::to_owned)
}

/// Runs every case against a server whose `GET /form` answers the
/// session's token and whose `POST /transfer` answers `sent` after the
/// adapter's CSRF check.
fn check_server(addr: SocketAddr) {
    let page = send(addr, "GET", "/form", &[], b"");
    assert_eq!(page.status, 200, "{page:?}");
    let token = page.body.clone();
    assert_eq!(token.len(), 43, "a 256-bit URL-safe token: {token:?}");
    let cookie = page
        .session_cookie(COOKIE)
        .expect("the token page sets the session cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let cookie_line = format!("Cookie: {pair}");
    let form = b"Content-Type: application/x-www-form-urlencoded".as_slice();
    let post = |headers: &[&[u8]], body: &str| -> Reply {
        let mut all: Vec<&[u8]> = vec![cookie_line.as_bytes(), form];
        all.extend_from_slice(headers);
        send(addr, "POST", "/transfer", &all, body.as_bytes())
    };
    let good = format!("csrf_token={token}&amount=5");

    // The token in the form field, no browser headers (curl): passes.
    let ok = post(&[], &good);
    assert_eq!((ok.status, ok.body.clone()), (200, "sent".into()), "{ok:?}");
    // The token in the header, from a same-origin page: passes.
    let header = format!("X-CSRF-Token: {token}");
    let ok = post(
        &[header.as_bytes(), b"Sec-Fetch-Site: same-origin"],
        "amount=5",
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    // No token, a wrong one, an empty one: refused.
    for body in [
        "amount=5",
        "csrf_token=forged&amount=5",
        "csrf_token=&amount=5",
    ] {
        let refused = post(&[], body);
        assert_eq!(refused.status, 403, "{body}: {refused:?}");
        assert!(!refused.body.contains(&token));
    }
    // Another session's token is refused.
    let other = send(addr, "GET", "/form", &[], b"").body;
    assert_ne!(other, token);
    let refused = post(&[], &format!("csrf_token={other}&amount=5"));
    assert_eq!(refused.status, 403, "{refused:?}");
    // The right token from a cross-site page or a foreign origin: refused.
    let cross = post(&[b"Sec-Fetch-Site: cross-site"], &good);
    assert_eq!(cross.status, 403, "{cross:?}");
    let foreign = post(&[b"Origin: https://evil.example"], &good);
    assert_eq!(foreign.status, 403, "{foreign:?}");
    let same = format!("Origin: http://{addr}");
    let ok = post(&[same.as_bytes()], &good);
    assert_eq!(ok.status, 200, "{ok:?}");
    // A safe method needs nothing.
    let get = send(addr, "GET", "/transfer", &[], b"");
    assert_eq!(get.status, 200, "{get:?}");
}

#[cfg(feature = "rouille")]
fn rouille_csrf(h: &Harness) {
    use stored_session::adapters::rouille::{check_csrf, with_session};
    let sessions = sessions(h);
    let server = adapter_support::serve_rouille(move |request| {
        with_session(&sessions, request, |session| match request.url().as_str() {
            "/form" => Ok(rouille::Response::text(session.csrf_token()?)),
            _ => {
                let mut body = Vec::new();
                if let Some(mut data) = request.data() {
                    std::io::Read::read_to_end(&mut data, &mut body).unwrap();
                }
                if let Some(refused) = check_csrf(session, request, form_token(&body).as_deref())? {
                    return Ok(refused);
                }
                Ok(rouille::Response::text("sent"))
            }
        })
    });
    check_server(server.addr);
}

#[cfg(feature = "http")]
fn http_csrf(h: &Harness) {
    use stored_session::adapters::http::{check_csrf, handle};
    let sessions = sessions(h);
    let server = adapter_support::serve_http(move |request| {
        handle(&sessions, request, |request, session| {
            if request.uri().path() == "/form" {
                return Ok(http::Response::new(session.csrf_token()?.into_bytes()));
            }
            let token = form_token(request.body());
            if let Some(refused) = check_csrf::<_, String>(session, &request, token.as_deref())? {
                let (parts, body) = refused.into_parts();
                return Ok(http::Response::from_parts(parts, body.into_bytes()));
            }
            Ok(http::Response::new(b"sent".to_vec()))
        })
    });
    check_server(server.addr);
}

#[cfg(feature = "rocket")]
mod rocket_app {
    use rocket::form::Form;
    use rocket::{get, post, routes, FromForm};
    use stored_session::adapters::rocket::{CsrfCheck, SessionFairing, SessionGuard};
    use stored_session::adapters::Sessions;
    use stored_session::csrf::CsrfRejection;

    #[derive(FromForm)]
    struct Transfer {
        csrf_token: Option<String>,
        #[allow(dead_code)]
        amount: Option<u64>,
    }

    #[get("/form")]
    fn form(session: SessionGuard<'_>) -> String {
        session.csrf_token()
    }

    #[get("/transfer")]
    fn look() -> &'static str {
        "nothing to do"
    }

    #[post("/transfer", data = "<form>")]
    fn transfer(
        session: SessionGuard<'_>,
        csrf: CsrfCheck,
        form: Form<Transfer>,
    ) -> Result<&'static str, CsrfRejection> {
        csrf.verify(&session, form.csrf_token.as_deref())?;
        Ok("sent")
    }

    pub fn app(sessions: Sessions) -> rocket::Rocket<rocket::Build> {
        rocket::build()
            .attach(SessionFairing::new(sessions))
            .mount("/", routes![form, look, transfer])
    }
}

#[cfg(feature = "rocket")]
fn rocket_csrf(h: &Harness) {
    let server = adapter_support::serve_rocket(rocket_app::app(sessions(h)));
    check_server(server.addr);
}

#[cfg(feature = "rouille")]
mod rouille_suite {
    use super::*;
    backend_suite!(rouille_csrf);
}

#[cfg(feature = "http")]
mod http_suite {
    use super::*;
    backend_suite!(http_csrf);
}

#[cfg(feature = "rocket")]
mod rocket_suite {
    use super::*;
    backend_suite!(rocket_csrf);
}
