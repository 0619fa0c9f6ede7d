//! The admin page on rouille.
//!
//! ```no_run
//! use rouille::Response;
//! use stored_session::admin::{self, Admin};
//! use stored_session::{Keyring, SessionStore};
//!
//! let store = SessionStore::builder(Keyring::from_env()?).open_migrated("sqlite://sessions.db")?;
//! let admin = Admin::new(store).with_mount_path("/admin");
//!
//! # fn is_admin(_: &rouille::Request) -> bool { true }
//! rouille::start_server("127.0.0.1:8000", move |request| {
//!     if request.url().starts_with("/admin") {
//!         if !is_admin(request) {
//!             // Your own authorization decides who gets the page.
//!             return Response::text("forbidden").with_status_code(403);
//!         }
//!         return admin::rouille::handle(&admin, request);
//!     }
//!     Response::empty_404()
//! });
//! # Ok::<(), stored_session::Error>(())
//! ```

use std::borrow::Cow;
use std::io::Read;

use ::rouille::{Request, Response, ResponseBody};

use super::{Admin, AdminRequest, AdminResponse, MAX_BODY};

/// Serves `request` (its full URL, mount path included) with the admin
/// page. Call it only for requests your authorization let through. Reads a
/// POST's body (at most [`MAX_BODY`] bytes, else `413`); a body the app
/// already consumed counts as empty, so such a POST is refused.
///
/// ```
/// use rouille::Request;
/// use stored_session::admin::{self, Admin};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let admin = Admin::new(store);
/// let response = admin::rouille::handle(&admin, &Request::fake_http("GET", "/admin/", vec![], vec![]));
/// assert_eq!(response.status_code, 200);
/// let refused = admin::rouille::handle(
///     &admin,
///     &Request::fake_http("POST", "/admin/revoke-all", vec![], b"confirm=yes".to_vec()),
/// );
/// assert_eq!(refused.status_code, 403);
/// # Ok::<(), stored_session::Error>(())
/// ```
pub fn handle(admin: &Admin, request: &Request) -> Response {
    let mut body = Vec::new();
    if request.method().eq_ignore_ascii_case("POST") {
        if let Some(data) = request.data() {
            if data
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)
                .is_err()
            {
                return Response::text("bad request\n").with_status_code(400);
            }
            if body.len() > MAX_BODY {
                return into_response(AdminResponse::too_large());
            }
        }
    }
    let url = request.raw_url();
    let mut admin_request = AdminRequest::new(request.method(), url).body(&body);
    for (name, value) in request.headers() {
        if name.eq_ignore_ascii_case("cookie") {
            admin_request = admin_request.cookie_header(value.as_bytes());
        }
    }
    if let Some(site) = request.header("Sec-Fetch-Site") {
        admin_request = admin_request.fetch_site(site);
    }
    into_response(admin.handle(&admin_request))
}

fn into_response(response: AdminResponse) -> Response {
    Response {
        status_code: response.status,
        headers: response
            .headers
            .into_iter()
            .map(|(name, value)| (Cow::Borrowed(name), Cow::Owned(value)))
            .collect(),
        data: ResponseBody::from_string(response.body),
        upgrade: None,
    }
}
