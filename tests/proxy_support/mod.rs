//! A loopback TCP proxy that can stop answering: the test double for a
//! database server that hangs, a network that blackholes, or a middlebox
//! that drops a connection.
//!
//! It forwards bytes both ways between each accepted client and a new
//! connection to the upstream server (std::net, two threads per
//! connection). [`Proxy::freeze`] stops forwarding in both directions while
//! every socket stays open: the client's kernel still has its data
//! acknowledged (by this process's kernel), so neither TCP keepalive nor
//! `TCP_USER_TIMEOUT` nor a server-side statement timeout can notice;
//! [`Proxy::thaw`] delivers what was held back and resumes.
//! [`Proxy::kill`] closes every current connection (both sides), as a
//! restarted middlebox or a killed backend would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    frozen: Mutex<bool>,
    thawed: Condvar,
    stop: AtomicBool,
    /// Both sockets of every live proxied connection (clones), for `kill`.
    live: Mutex<Vec<(TcpStream, TcpStream)>>,
    accepted: AtomicUsize,
}

impl Shared {
    /// Blocks while the proxy is frozen.
    fn gate(&self) {
        let mut frozen = self.frozen.lock().unwrap();
        while *frozen && !self.stop.load(Ordering::SeqCst) {
            frozen = self.thawed.wait(frozen).unwrap();
        }
    }
}

/// A running proxy; stops (and closes every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = shared.clone();
        std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if accept.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    accept.accepted.fetch_add(1, Ordering::SeqCst);
                    accept
                        .live
                        .lock()
                        .unwrap()
                        .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                    pump(
                        &accept,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    );
                    pump(&accept, server, client);
                }
            })
            .unwrap();
        Proxy { addr, shared }
    }

    /// The proxy's address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding in both directions; sockets stay open.
    pub fn freeze(&self) {
        *self.shared.frozen.lock().unwrap() = true;
    }

    /// Resumes forwarding (what was held back is delivered first).
    pub fn thaw(&self) {
        *self.shared.frozen.lock().unwrap() = false;
        self.shared.thawed.notify_all();
    }

    /// Closes both sides of every current connection (new ones are still
    /// accepted, and forwarded unless frozen).
    pub fn kill(&self) {
        for (client, server) in self.shared.live.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// How many client connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// `url` with its `host:port` replaced by the proxy's address.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, hostpath) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        let path = hostpath.find(['/', '?']).map_or("", |i| &hostpath[i..]);
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thaw();
        self.kill();
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Copies `from` to `to` on a thread, holding data back while frozen.
fn pump(shared: &Arc<Shared>, mut from: TcpStream, mut to: TcpStream) {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("proxy-pump".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                shared.gate();
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                shared.gate();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        })
        .unwrap();
}

/// The `host:port` a database URL points at.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let hostpath = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = &hostpath[..hostpath.find(['/', '?']).unwrap_or(hostpath.len())];
    let default_port = if url.starts_with("postgres") {
        5432
    } else {
        3306
    };
    let with_port = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default_port}")
    };
    with_port.to_socket_addrs().unwrap().next().unwrap()
}
