//! The admin page in headless Chromium (Debian's `chromium` package), on
//! every enabled backend: it renders (`--dump-dom`, `--screenshot`), a
//! click on a revoke button ends that session, revoking all of a user's
//! sessions works through the confirmation checkbox, and a POST without
//! the CSRF token (or from another site) is refused and changes nothing.
//!
//! Clicks go through the DevTools protocol: a small WebSocket client below,
//! JSON by `serde_json`. The page itself has no JavaScript; the test drives
//! the browser as a person would.
//!
//! Chromium is found as `$CHROMIUM`, else `chromium` or `chromium-browser`
//! on `PATH`. Without it the test is skipped with a note, except under
//! `CI=true`, where it fails.
#![cfg(all(feature = "admin", feature = "rouille"))]

mod adapter_support;
mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use adapter_support::{serve_rouille, Server};
use common::{count, Harness};
use rouille::Response;
use serde_json::{json, Value};
use stored_session::admin::{self, Admin};
use stored_session::{CookieAction, SessionStore};

/// One browser at a time: the machine has two cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// The Chromium binary, or `None` (skip) outside CI.
fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
            std::env::split_paths(&path)
                .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
                .collect::<Vec<_>>()
        }));
    for candidate in candidates {
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Chromium is not installed (apt-get install chromium); the admin page's browser test must run in CI");
    }
    eprintln!("note: Chromium not found ($CHROMIUM, chromium, chromium-browser); skipping the browser test");
    None
}

/// A fresh, empty directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let id = stored_session::SessionId::generate();
        let hex = id.stored_id().to_string();
        let dir = std::env::temp_dir().join(format!("ss-chromium-{tag}-{}", &hex[3..15]));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn base_command(chromium: &Path, profile: &TempDir) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1500",
    ]);
    command.arg(format!("--user-data-dir={}", profile.0.display()));
    command
}

/// Runs a one-shot Chromium (`--dump-dom`, `--screenshot`), at most 60 s.
fn one_shot(chromium: &Path, args: &[&str]) -> String {
    let profile = TempDir::new("shot");
    let mut child = base_command(chromium, &profile)
        .args(args)
        .current_dir(&profile.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// A minimal WebSocket client (RFC 6455): text frames, masked as a client
/// must, continuation frames, ping answered.
struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    fn connect(port: u16, path: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 101 "), "WebSocket handshake: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        WebSocket { reader, writer }
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x13, 0xc7, 0x2e];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).unwrap();
    }

    fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes());
    }

    fn recv_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).expect("DevTools message");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mask = if head[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.reader.read_exact(&mut m).unwrap();
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload).unwrap();
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 text frame");
                    }
                }
                0x8 => panic!("DevTools closed the connection"),
                0x9 => self.send_frame(0xA, &payload),
                _ => {}
            }
        }
    }
}

/// Chromium with the DevTools protocol on one page target.
struct Browser {
    child: Child,
    _profile: TempDir,
    ws: WebSocket,
    next_id: u64,
    events: VecDeque<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET to DevTools' JSON endpoints.
fn devtools_json(port: u16, path: &str) -> Option<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    // DevTools keeps the connection open: read by Content-Length.
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Browser {
    fn launch(chromium: &Path) -> Self {
        let profile = TempDir::new("cdp");
        let child = base_command(chromium, &profile)
            .args(["--remote-debugging-port=0", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut browser_guard = Some(child);
        // Chromium writes the port it chose into DevToolsActivePort.
        let port_file = profile.0.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, ws_path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                    let page = devtools_json(port, "/json/list").and_then(|list| {
                        list.as_array()?
                            .iter()
                            .find(|t| t["type"] == "page")
                            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                            .map(str::to_owned)
                    });
                    if let Some(url) = page {
                        let path = url.splitn(4, '/').nth(3).unwrap_or_default().to_owned();
                        break (port, format!("/{path}"));
                    }
                }
            }
            if Instant::now() > deadline {
                if let Some(mut c) = browser_guard.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!("Chromium's DevTools did not come up within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let ws = WebSocket::connect(port, &ws_path);
        let mut browser = Browser {
            child: browser_guard.take().unwrap(),
            _profile: profile,
            ws,
            next_id: 0,
            events: VecDeque::new(),
        };
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// Sends a command and waits for its result; events meanwhile are kept.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params });
        self.ws.send_text(&message.to_string());
        loop {
            let reply: Value = serde_json::from_str(&self.ws.recv_text()).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
            if reply.get("method").is_some() {
                self.events.push_back(reply);
            }
        }
    }

    fn wait_event(&mut self, method: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
                return self.events.remove(at).unwrap();
            }
            assert!(Instant::now() < deadline, "no {method} within 30 s");
            let event: Value = serde_json::from_str(&self.ws.recv_text()).unwrap();
            self.events.push_back(event);
        }
    }

    /// Evaluates `expression` in the page; its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    fn navigate(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_event("Page.loadEventFired");
    }

    /// Runs `action` (which submits a form) and waits for the next page.
    fn submit(&mut self, action: &str) {
        self.events.clear();
        self.eval(action);
        self.wait_event("Page.loadEventFired");
    }

    fn text(&mut self, selector: &str) -> String {
        let expression = format!(
            "(document.querySelector({}) || {{ textContent: '' }}).textContent",
            serde_json::to_string(selector).unwrap()
        );
        self.eval(&expression)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn count(&mut self, selector: &str) -> u64 {
        let expression = format!(
            "document.querySelectorAll({}).length",
            serde_json::to_string(selector).unwrap()
        );
        self.eval(&expression).as_u64().unwrap()
    }
}

/// The app under test: the admin page at `/admin` (behind no check here:
/// the app's authorization is not what is tested), and `/attack`, a page
/// "on another site" (reached as `localhost` while the admin page is
/// `127.0.0.1`) with a form that tries to revoke everything.
fn serve(admin: Admin) -> Server {
    serve_rouille(move |request| {
        if request.url() == "/attack" {
            // Reached as localhost:PORT; the admin page is 127.0.0.1:PORT.
            let port = request
                .header("Host")
                .and_then(|h| h.rsplit(':').next())
                .unwrap_or("80");
            let target = format!("http://127.0.0.1:{port}/admin/revoke-all");
            return Response::html(format!(
                "<!DOCTYPE html><title>prize</title><form id=\"evil\" method=\"post\" action=\"{}\">\
                 <input name=\"csrf\" value=\"guessed\"><input name=\"confirm\" value=\"yes\"></form>",
                admin::escape_html(&target)
            ));
        }
        admin::rouille::handle(&admin, request)
    })
}

fn sign_in(store: &SessionStore, user: &str, agent: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.set_user(user);
    s.set_client(Some("198.51.100.77".parse().unwrap()), Some(agent));
    s.set_meta("location", Some("Lisbon, PT"));
    s.insert("k", &1).unwrap();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn admin_page_in_chromium(h: &Harness) {
    let Some(chromium) = chromium() else {
        return;
    };
    let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let store = h.store_with_metadata();
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
    ];
    let cookies: Vec<String> = agents.iter().map(|a| sign_in(&store, "alice", a)).collect();
    h.advance(2 * 3600);
    sign_in(&store, "bob", "curl/8.5.0");
    sign_in(&store, "<script>alert(1)</script>", "Evil/1");
    // Plain HTTP on loopback: the nonce cookie cannot be Secure.
    let server = serve(Admin::new(store.clone()).with_secure_cookie(false));
    let page = format!("http://127.0.0.1:{}/admin/?user=alice", server.addr.port());

    // 1. It renders: the DOM Chromium built from the page.
    let dom = one_shot(&chromium, &["--dump-dom", &page]);
    assert!(
        dom.contains("3 live sessions of <code>alice</code>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<tr class=\"session\">").count(), 3);
    assert!(dom.contains("<svg id=\"activity\""));
    assert_eq!(dom.matches("<g class=\"hour\"").count(), 24);
    assert!(dom.contains("Live sessions</dt><dd>5"));
    assert!(dom.contains("198.51.100.0") && dom.contains("Lisbon, PT"));
    assert!(dom.contains("Firefox/128.0"));

    // And once as a picture, for people to look at.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "admin-page-{}.png",
        format!("{:?}", h.backend).to_lowercase()
    ));
    let _ = std::fs::remove_file(&shot);
    one_shot(
        &chromium,
        &[&format!("--screenshot={}", shot.display()), &page],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());

    // 2. Clicking: DevTools.
    let mut browser = Browser::launch(&chromium);
    browser.navigate(&page);
    assert_eq!(browser.count("tr.session"), 3);
    assert_eq!(browser.text("h3"), "3 live sessions of alice");
    // The styles applied (the CSP allows exactly the page's style sheet).
    let color = browser.eval("getComputedStyle(document.querySelector('header')).backgroundColor");
    assert_eq!(color, "rgb(29, 35, 48)");

    // Revoke the first listed session by clicking its button.
    let target = browser.eval("document.querySelector('form.revoke input[name=handle]').value");
    let target = target.as_str().unwrap().to_owned();
    browser.submit("document.querySelector('form.revoke button').click()");
    assert_eq!(browser.text(".notice"), "The session was ended.");
    assert_eq!(browser.count("tr.session"), 2);
    let left = store
        .sessions_of("alice", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|i| i.handle.as_str() != target));
    let dead = cookies
        .iter()
        .filter(|c| store.load(Some(c)).unwrap().is_new())
        .count();
    assert_eq!(dead, 1, "exactly the clicked session ended");
    let before = count(store.database());
    assert_eq!(before, 4);

    // A POST without the CSRF token: refused (403), nothing changes.
    browser.submit(
        "(() => { const f = document.querySelector('form.revoke'); \
         f.querySelector('input[name=csrf]').remove(); f.submit(); })()",
    );
    assert_eq!(browser.text("h2"), "Request refused");
    assert!(browser
        .text(".notice")
        .contains("security token is missing or invalid"));
    assert_eq!(count(store.database()), before);
    assert_eq!(
        store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        2
    );

    // A forged token: refused too.
    browser.navigate(&page);
    browser.submit(
        "(() => { const f = document.querySelector('form.revoke-user'); \
         f.querySelector('input[name=csrf]').value = 'forged'; \
         f.querySelector('input[name=confirm]').checked = true; f.submit(); })()",
    );
    assert_eq!(browser.text("h2"), "Request refused");
    assert_eq!(count(store.database()), before);

    // Another site's page posting to the admin page: refused.
    browser.navigate(&format!("http://localhost:{}/attack", server.addr.port()));
    browser.submit("document.getElementById('evil').submit()");
    assert_eq!(browser.text("h2"), "Request refused");
    assert_eq!(count(store.database()), before);

    // Revoke all of alice's sessions: tick the box, click.
    browser.navigate(&page);
    assert_eq!(browser.count("tr.session"), 2);
    browser.submit(
        "(() => { document.querySelector('form.revoke-user input[name=confirm]').checked = true; \
         document.querySelector('form.revoke-user button').click(); })()",
    );
    assert_eq!(browser.text(".notice"), "Ended 2 sessions of this user.");
    assert_eq!(browser.text("#no-sessions"), "No live sessions.");
    assert!(store
        .sessions_of("alice", None, Default::default())
        .unwrap()
        .sessions
        .is_empty());
    assert_eq!(count(store.database()), before - 2);
    assert_eq!(
        store
            .sessions_of("bob", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        1
    );

    // Without the tick the browser does not even submit (required box).
    browser.eval("document.querySelector('form.revoke-all button').click()");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(store.database()), before - 2);

    // The escaped user id renders as text, not markup.
    browser.navigate(&format!(
        "http://127.0.0.1:{}/admin/?user=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        server.addr.port()
    ));
    assert_eq!(browser.text("h3 code"), "<script>alert(1)</script>");
    assert_eq!(browser.count("script"), 0);
}

backend_suite!(admin_page_in_chromium);
