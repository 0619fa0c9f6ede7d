//! Shared by the adapter tests: a raw HTTP/1.1 client over `TcpStream` (so
//! tests can send exactly the bytes they want, hostile `Cookie` headers
//! included), a one-cookie jar, and event counting.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stored_session::{EventKind, SessionStore};

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The only `Set-Cookie` for `name`, if any (fails on several).
    pub fn session_cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        let mut found: Vec<String> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.starts_with(&prefix))
            .collect();
        assert!(found.len() <= 1, "several Set-Cookie for {name}: {found:?}");
        found.pop()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
/// `extra_headers` are raw header lines without the CRLF.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[&[u8]],
    body: &[u8],
) -> Reply {
    try_send(addr, method, path, extra_headers, body)
        .expect("the server closed the connection without a response")
}

/// [`send`], but `None` when the server closes the connection without
/// answering (as tiny_http does for header bytes that are not ASCII).
pub fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &[&[u8]],
    body: &[u8],
) -> Option<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = Vec::new();
    request.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    request.extend_from_slice(format!("Host: {addr}\r\nConnection: close\r\n").as_bytes());
    for h in extra_headers {
        request.extend_from_slice(h);
        request.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    stream.write_all(&request).expect("write request");
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) if raw.is_empty() => None,
        Ok(_) => Some(parse(&raw)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && raw.is_empty() => None,
        Err(e) => panic!("reading the response failed: {e}"),
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// A browser's view of one cookie: what the last `Set-Cookie` for it said.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    pub name: String,
    pub value: Option<String>,
}

impl Jar {
    pub fn new(name: &str) -> Self {
        Jar {
            name: name.to_owned(),
            value: None,
        }
    }

    /// Applies the response's `Set-Cookie` for this cookie, if any; returns
    /// what it was.
    pub fn update(&mut self, reply: &Reply) -> Option<String> {
        let set = reply.session_cookie(&self.name)?;
        let pair = set.split(';').next().unwrap();
        let value = &pair[self.name.len() + 1..];
        let removal = value.is_empty() || set.contains("Max-Age=0");
        self.value = (!removal).then(|| value.to_owned());
        Some(set)
    }

    /// The `Cookie` header line to send, if the jar holds the cookie.
    pub fn header(&self) -> Option<Vec<u8>> {
        self.value
            .as_ref()
            .map(|v| format!("Cookie: {}={v}", self.name).into_bytes())
    }

    /// Sends a request carrying the jar's cookie and updates the jar.
    pub fn send(&mut self, addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
        let mut headers: Vec<Vec<u8>> = Vec::new();
        headers.extend(self.header());
        if method == "POST" {
            headers.push(b"Content-Type: application/x-www-form-urlencoded".to_vec());
        }
        let refs: Vec<&[u8]> = headers.iter().map(|h| h.as_slice()).collect();
        let reply = send(addr, method, path, &refs, body);
        self.update(&reply);
        reply
    }
}

/// Counts the store's events of one kind.
pub fn count_events(store: &SessionStore, kind: EventKind) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let sink = n.clone();
    store.subscribe(move |e| {
        if e.kind == kind {
            sink.fetch_add(1, Ordering::SeqCst);
        }
    });
    n
}

pub fn get(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

/// The hostile `Cookie` headers every adapter must survive: each must give a
/// fresh session (or, where the server itself refuses the request, a 4xx),
/// never a 5xx or a panic. `valid` is a live session's cookie pair, which
/// must not be adopted when it is ambiguous.
pub fn hostile_cookie_headers(valid: &str) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let huge = format!("Cookie: id={}", "A".repeat(4000));
    let other_id = format!(
        "id={}",
        stored_session::SessionId::generate().as_cookie_value()
    );
    vec![
        ("empty header", vec![b"Cookie: ".to_vec()]),
        ("empty value", vec![b"Cookie: id=".to_vec()]),
        ("no value", vec![b"Cookie: id".to_vec()]),
        ("junk", vec![b"Cookie: ;;; = ; ==; id==".to_vec()]),
        ("stored-key form", vec![b"Cookie: id=2::abcdef".to_vec()]),
        ("too long", vec![huge.into_bytes()]),
        (
            "two different values in one header",
            vec![format!("Cookie: {valid}; {other_id}").into_bytes()],
        ),
        (
            "two different values in two headers",
            vec![
                format!("Cookie: {other_id}").into_bytes(),
                format!("Cookie: {valid}").into_bytes(),
            ],
        ),
        (
            "non-UTF-8 bytes",
            vec![b"Cookie: x=\xff\xfe; id=\xc3\x28\x80".to_vec()],
        ),
        ("NUL byte", vec![b"Cookie: id=abc\0def".to_vec()]),
        (
            "unknown id",
            vec![format!("Cookie: {other_id}").into_bytes()],
        ),
    ]
}

/// A rouille server on 127.0.0.1, port 0, running `handler`; stopped when dropped.
#[cfg(feature = "rouille")]
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: Option<(std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>)>,
}

#[cfg(feature = "rouille")]
impl Drop for Server {
    fn drop(&mut self) {
        if let Some((handle, stop)) = self.stop.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
    }
}

/// Starts a [`Server`] on a free loopback port.
#[cfg(feature = "rouille")]
pub fn serve_rouille<F>(handler: F) -> Server
where
    F: Send + Sync + 'static + Fn(&rouille::Request) -> rouille::Response,
{
    let server = rouille::Server::new("127.0.0.1:0", handler).expect("bind a loopback port");
    let addr = server.server_addr();
    Server {
        addr,
        stop: Some(server.stoppable()),
    }
}

/// A minimal blocking HTTP/1.1 server for the `http` adapter, on
/// 127.0.0.1, port 0 (the shape of astra and similar servers: one thread per
/// connection, `http::Request` in, `http::Response` out); stopped when
/// dropped. It passes header bytes through untouched (hostile `Cookie`
/// headers reach the adapter), except those `http` itself refuses in a
/// header value (NUL, CR, LF and other controls), which get a 400 as from
/// hyper. The peer address goes in the request's extensions.
#[cfg(feature = "http")]
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "http")]
impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts an [`HttpServer`] running `app`.
#[cfg(feature = "http")]
pub fn serve_http<F>(app: F) -> HttpServer
where
    F: Fn(http::Request<Vec<u8>>) -> http::Response<Vec<u8>> + Send + Sync + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let app = Arc::new(app);
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let app = app.clone();
            std::thread::spawn(move || http_serve_one(stream, &*app));
        }
    });
    HttpServer {
        addr,
        stop,
        thread: Some(thread),
    }
}

#[cfg(feature = "http")]
fn http_serve_one(
    stream: TcpStream,
    app: &dyn Fn(http::Request<Vec<u8>>) -> http::Response<Vec<u8>>,
) {
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let peer = stream.peer_addr().ok();
    let response = match http_read_request(&mut reader) {
        Some(mut request) => {
            // As a server would: the peer address as a request extension.
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            app(request)
        }
        None => {
            let mut r = http::Response::new(b"bad request".to_vec());
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        }
    };
    http_write_response(stream, response);
}

#[cfg(feature = "http")]
fn http_read_request(reader: &mut impl std::io::BufRead) -> Option<http::Request<Vec<u8>>> {
    use http::header::{HeaderName, HeaderValue};
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).ok()?;
    let text = String::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut builder = http::Request::builder()
        .method(method.as_str())
        .uri(path.as_str());
    let mut length = 0usize;
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).ok()?;
        let line = line.strip_suffix(b"\r\n")?;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        // Only the optional whitespace (spaces, tabs) around a value goes.
        let mut value = &line[colon + 1..];
        while let [b' ' | b'\t', rest @ ..] = value {
            value = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        // As hyper does: a header value with forbidden bytes (NUL, CR, LF)
        // fails the request (400).
        let value = HeaderValue::from_bytes(value).ok()?;
        if name == http::header::CONTENT_LENGTH {
            length = value.to_str().ok()?.parse().ok()?;
        }
        builder = builder.header(name, value);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    builder.body(body).ok()
}

#[cfg(feature = "http")]
fn http_write_response(mut stream: TcpStream, response: http::Response<Vec<u8>>) {
    let mut out = format!("HTTP/1.1 {}\r\n", response.status()).into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            response.body().len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(response.body());
    let _ = stream.write_all(&out);
}

/// A Rocket server launched on 127.0.0.1, port 0, on a thread of its own
/// (its own Tokio runtime), as in production: requests arrive over TCP and
/// go through hyper and Rocket's request parsing, not the local client.
/// Shut down (graceful, 1 s grace and mercy) when dropped.
#[cfg(feature = "rocket")]
pub struct RocketServer {
    pub addr: SocketAddr,
    shutdown: Option<rocket::Shutdown>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(feature = "rocket")]
impl Drop for RocketServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.notify();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Launches `rocket` as a [`RocketServer`] (logging off, no Ctrl-C handler).
#[cfg(feature = "rocket")]
pub fn serve_rocket(rocket: rocket::Rocket<rocket::Build>) -> RocketServer {
    use rocket::fairing::AdHoc;
    let figment = rocket
        .figment()
        .clone()
        .merge(("address", "127.0.0.1"))
        .merge(("port", 0))
        .merge(("log_level", "off"))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.grace", 1))
        .merge(("shutdown.mercy", 1));
    let (tx, rx) = std::sync::mpsc::channel();
    let rocket = rocket
        .configure(figment)
        .attach(AdHoc::on_liftoff("test port", move |rocket| {
            Box::pin(async move {
                let _ = tx.send((rocket.config().port, rocket.shutdown()));
            })
        }));
    let thread = std::thread::spawn(move || {
        if let Err(e) = rocket::execute(rocket.launch()) {
            eprintln!("rocket failed: {e}");
        }
    });
    let (port, shutdown) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Rocket did not lift off");
    RocketServer {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// A cookie name that is not the session cookie's, though a lenient
/// server (one that percent-decodes, case-folds, unquotes or trims names)
/// would read it as it.
#[derive(Debug, Clone)]
pub struct NearName {
    pub name: Vec<u8>,
    /// Holds bytes (controls, non-ASCII) that an HTTP layer may refuse
    /// before any handler runs: a refusal is then an acceptable answer.
    pub may_be_refused: bool,
}

/// The near misses of `name` (`id`, `__Host-id`, ...): percent-encodings of
/// every prefix, suffix and single byte (upper- and lower-case hex), case
/// changes, quotes, spaces and other whitespace in and around it, and for a
/// `__Host-` name the attacks of the CVE-2020-8184 class
/// (`%5F%5FHost-id`, `_%5FHost-id`, `__Host-%69d`, the bare name).
pub fn near_names(name: &str) -> Vec<NearName> {
    let bytes = name.as_bytes();
    let enc = |b: u8, lower: bool| {
        if lower {
            format!("%{b:02x}")
        } else {
            format!("%{b:02X}")
        }
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    for lower in [false, true] {
        for k in 1..=bytes.len() {
            // The first k bytes encoded, and the last k.
            let head: String = bytes[..k].iter().map(|&b| enc(b, lower)).collect();
            out.push(format!("{head}{}", &name[k..]).into_bytes());
            let tail: String = bytes[bytes.len() - k..]
                .iter()
                .map(|&b| enc(b, lower))
                .collect();
            out.push(format!("{}{tail}", &name[..bytes.len() - k]).into_bytes());
        }
        for i in 0..bytes.len() {
            out.push(
                format!("{}{}{}", &name[..i], enc(bytes[i], lower), &name[i + 1..]).into_bytes(),
            );
        }
    }
    out.push(name.to_ascii_uppercase().into_bytes());
    out.push(name.to_ascii_lowercase().into_bytes());
    for i in 0..bytes.len() {
        if bytes[i].is_ascii_alphabetic() {
            let mut swapped = bytes.to_vec();
            swapped[i] ^= 0x20;
            out.push(swapped);
        }
    }
    for wrapped in [
        format!("\"{name}\""),
        format!("'{name}'"),
        format!("\"{name}"),
        format!("{name} "),
        format!("{name}\t"),
        format!("{} {}", &name[..1], &name[1..]),
        format!("{name}+"),
        format!("+{name}"),
        format!("{name}%20"),
        format!("%20{name}"),
        format!("{name}%00"),
        format!("{name}."),
        format!("{name}\u{a0}"),
        format!("\u{a0}{name}"),
        format!("\u{feff}{name}"),
        format!("\u{2003}{name}"),
        format!("\u{b}{name}"),
        format!("\u{c}{name}"),
        format!("{name}\u{b}"),
        format!("{name}\u{1}"),
    ] {
        out.push(wrapped.into_bytes());
    }
    out.push([&[0xa0][..], bytes].concat());
    out.push([bytes, &[0xa0][..]].concat());
    if let Some(bare) = name.strip_prefix("__Host-") {
        for other in [
            "%5F%5FHost-",
            "_%5FHost-",
            "%5f%5fHost-",
            "__host-",
            "__HOST-",
            "__Host_",
            "__Host%2D",
            "__Secure-",
            "__Host- ",
            "",
        ] {
            out.push(format!("{other}{bare}").into_bytes());
        }
        out.push(format!("__Host-%69{}", &bare[1..]).into_bytes());
    } else {
        for other in ["__Host-", "__Secure-", "%5F%5FHost-", "_%5FHost-"] {
            out.push(format!("{other}{name}").into_bytes());
        }
    }
    out.sort();
    out.dedup();
    out.retain(|n| n != bytes);
    out.into_iter()
        .map(|name| NearName {
            may_be_refused: name.iter().any(|&b| (b < 0x20 && b != b'\t') || b >= 0x7f),
            name,
        })
        .collect()
}

/// Logs `user` in with `POST /login` (form field `user`) at `addr`, from
/// 127.0.0.1 with the extra `headers`, and returns the IP address recorded
/// on the user's session (truncated as the store's policy says).
pub fn recorded_ip(
    addr: SocketAddr,
    store: &SessionStore,
    user: &str,
    headers: &[&[u8]],
) -> Option<String> {
    let mut all: Vec<&[u8]> = vec![b"Content-Type: application/x-www-form-urlencoded"];
    all.extend_from_slice(headers);
    let reply = send(
        addr,
        "POST",
        "/login",
        &all,
        format!("user={user}").as_bytes(),
    );
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, format!("logged in as {user}").as_str())
    );
    let list = store
        .sessions_of(user, None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list.len(), 1, "{user}");
    list[0].ip.clone()
}

/// The client address every adapter records from a request that comes from
/// 127.0.0.1 with forwarding headers, over real HTTP. `store` records
/// truncated IPs (`Harness::store_with_metadata`); `start` serves the
/// adapter's `POST /login` for the given sessions on a loopback port and
/// returns its address and whatever keeps the server running.
pub fn forwarded_client_ip_cases(
    store: &SessionStore,
    start: &dyn Fn(stored_session::adapters::Sessions) -> (SocketAddr, Box<dyn std::any::Any>),
) {
    use stored_session::adapters::{ForwardedHeader, Sessions, TrustedProxies};
    let sessions = |proxies: TrustedProxies| {
        Sessions::new(store.clone())
            .with_trusted_proxies(proxies)
            .unwrap()
    };
    let xff: &[u8] = b"X-Forwarded-For: 203.0.113.7";
    let forwarded: &[u8] = b"Forwarded: for=\"[2001:db8:cafe::17]:4711\"";

    // No trusted proxy (the default): the peer, whatever the headers say.
    let (addr, server) = start(Sessions::new(store.clone()));
    let ip = recorded_ip(addr, store, "plain", &[xff, forwarded]);
    assert_eq!(ip.as_deref(), Some("127.0.0.0"));
    drop(server);

    // 127.0.0.1 trusted: the client its X-Forwarded-For names.
    let (addr, server) = start(sessions(TrustedProxies::new().with("127.0.0.1")));
    let ip = recorded_ip(addr, store, "behind", &[xff]);
    assert_eq!(ip.as_deref(), Some("203.0.113.0"));
    // A spoofed left-most entry is ignored, in one header line or two.
    let spoofed: &[u8] = b"X-Forwarded-For: 198.51.100.9, 203.0.113.7";
    let ip = recorded_ip(addr, store, "spoof1", &[spoofed]);
    assert_eq!(ip.as_deref(), Some("203.0.113.0"));
    let first: &[u8] = b"X-Forwarded-For: 198.51.100.9";
    let ip = recorded_ip(addr, store, "spoof2", &[first, xff]);
    assert_eq!(ip.as_deref(), Some("203.0.113.0"));
    // Several lines are one list: a trusted hop in the last is skipped.
    let hop: &[u8] = b"X-Forwarded-For: 127.0.0.1";
    let ip = recorded_ip(addr, store, "two-lines", &[xff, hop]);
    assert_eq!(ip.as_deref(), Some("203.0.113.0"));
    // IPv6 (truncated to /48).
    let v6: &[u8] = b"X-Forwarded-For: 2001:db8:cafe::17";
    let ip = recorded_ip(addr, store, "six", &[v6]);
    assert_eq!(ip.as_deref(), Some("2001:db8:cafe::"));
    // `Forwarded` is not the configured header: ignored.
    let ip = recorded_ip(addr, store, "other-header", &[forwarded]);
    assert_eq!(ip.as_deref(), Some("127.0.0.0"));
    // Garbage: the peer.
    let garbage: &[u8] = b"X-Forwarded-For: not-an-ip";
    let ip = recorded_ip(addr, store, "garbage", &[garbage]);
    assert_eq!(ip.as_deref(), Some("127.0.0.0"));
    drop(server);

    // RFC 7239 `Forwarded` chosen: read, and X-Forwarded-For ignored.
    let proxies = TrustedProxies::new()
        .with("127.0.0.0/8")
        .with_header(ForwardedHeader::Forwarded);
    let (addr, server) = start(sessions(proxies));
    let ip = recorded_ip(addr, store, "rfc7239", &[xff, forwarded]);
    assert_eq!(ip.as_deref(), Some("2001:db8:cafe::"));
    let ip = recorded_ip(addr, store, "rfc7239-xff", &[xff]);
    assert_eq!(ip.as_deref(), Some("127.0.0.0"));
    drop(server);

    // Only another network trusted: 127.0.0.1's headers mean nothing.
    let (addr, server) = start(sessions(TrustedProxies::new().with("10.0.0.0/8")));
    let ip = recorded_ip(addr, store, "untrusted", &[xff]);
    assert_eq!(ip.as_deref(), Some("127.0.0.0"));
    drop(server);
}
