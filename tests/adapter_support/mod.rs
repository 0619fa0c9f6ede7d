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
