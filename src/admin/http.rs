//! The admin page over `http` types (astra and other blocking servers).
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use stored_session::admin::{self, Admin};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//! let admin = Admin::new(store);
//!
//! # fn authorized(_: &Request<Vec<u8>>) -> bool { true }
//! let app = |request: Request<Vec<u8>>| -> Response<Vec<u8>> {
//!     if request.uri().path().starts_with("/admin") {
//!         if !authorized(&request) {
//!             // Your own authorization decides who gets the page.
//!             let mut refused = Response::new(b"forbidden".to_vec());
//!             *refused.status_mut() = StatusCode::FORBIDDEN;
//!             return refused;
//!         }
//!         return admin::http::handle(&admin, &request);
//!     }
//!     Response::new(b"hello".to_vec())
//! };
//!
//! let page = app(Request::get("/admin/?user=alice").body(Vec::new()).unwrap());
//! assert_eq!(page.status(), StatusCode::OK);
//! assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
//! # Ok::<(), stored_session::Error>(())
//! ```

use ::http::header::{HeaderName, HeaderValue, COOKIE};
use ::http::{Request, Response, StatusCode};

use super::{Admin, AdminRequest, AdminResponse, MAX_BODY};

/// Serves `request` (its full URI, mount path included) with the admin
/// page. Call it only for requests your authorization let through. The
/// body is the whole POST body, already read (a body over [`MAX_BODY`]
/// bytes gets `413`).
pub fn handle<B, R>(admin: &Admin, request: &Request<B>) -> Response<R>
where
    B: AsRef<[u8]>,
    R: From<String>,
{
    let body = request.body().as_ref();
    if body.len() > MAX_BODY {
        return into_response(AdminResponse::too_large());
    }
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut admin_request = AdminRequest::new(request.method().as_str(), target).body(body);
    for value in request.headers().get_all(COOKIE) {
        admin_request = admin_request.cookie_header(value.as_bytes());
    }
    if let Some(site) = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        admin_request = admin_request.fetch_site(site);
    }
    into_response(admin.handle(&admin_request))
}

fn into_response<R: From<String>>(response: AdminResponse) -> Response<R> {
    let mut out = Response::new(R::from(response.body));
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            (Ok(name), Ok(value)) => {
                out.headers_mut().append(name, value);
            }
            _ => {
                // Every header the page makes is ASCII; never send a
                // response with one silently missing.
                let mut failed = Response::new(R::from("internal server error\n".to_owned()));
                *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return failed;
            }
        }
    }
    out
}
