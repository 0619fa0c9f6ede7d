//! The client's address behind reverse proxies: [`TrustedProxies`], the one
//! rule every adapter follows to pick it from the peer address and the
//! proxies' forwarding header.
//!
//! CIDR matching is done here rather than with a crate: the standard
//! library parses the addresses (the only fiddly part), and a prefix match
//! is one shift and one comparison; no dependency is added to a crate that
//! handles secrets, for the price of a few lines tested below.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The header a site's trusted proxies write the client's address into,
/// the only one [`TrustedProxies`] reads.
///
/// Exactly one is read, never both, and never one preferred over the other
/// when both are present: a proxy that appends to one header passes the
/// other one through as the client sent it, so whichever a rule of
/// precedence picked, a client could send that one (say
/// `Forwarded: for=198.51.100.1` through a proxy that only writes
/// `X-Forwarded-For`) and choose its own address. Name the header your
/// proxies actually write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default): what nginx
    /// (`$proxy_add_x_forwarded_for`), HAProxy (`option forwardfor`),
    /// Apache, Caddy, Traefik, Envoy and the cloud load balancers write.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`: only its
    /// `for=` parameters are read (quoted or not, IPv6 in brackets, with or
    /// without a port).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name (`X-Forwarded-For` or `Forwarded`).
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "X-Forwarded-For",
            ForwardedHeader::Forwarded => "Forwarded",
        }
    }
}

/// An address or CIDR network, stored as its network address (IPv4-mapped
/// IPv6 networks as the IPv4 network they cover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `addr` with every bit after the first `prefix` cleared (`prefix` at
    /// most the address's length).
    fn masked(addr: IpAddr, prefix: u8) -> Net {
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Net { addr, prefix }
    }

    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a network of
    /// that one address).
    fn parse(text: &str) -> std::result::Result<Net, String> {
        let text = text.trim();
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!(
                "trusted proxy {text:?} is not an IP address or a CIDR network such as 10.0.0.0/8"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max && !p.starts_with('+'))
                .ok_or_else(|| {
                    format!("trusted proxy {text:?}: the prefix length must be 0 to {max}")
                })?,
        };
        let net = Net::masked(addr, prefix);
        if net.addr != addr {
            return Err(format!(
                "trusted proxy {text:?} has bits set after its prefix: did you mean {net}?"
            ));
        }
        Ok(net.canonical())
    }

    /// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4
    /// network it covers (`10.0.0.0/8`), so that it matches the canonical
    /// addresses [`TrustedProxies`] compares.
    fn canonical(self) -> Net {
        if let IpAddr::V6(v6) = self.addr {
            if let (Some(v4), Some(prefix)) = (v6.to_ipv4_mapped(), self.prefix.checked_sub(96)) {
                return Net {
                    addr: IpAddr::V4(v4),
                    prefix,
                };
            }
        }
        self
    }

    /// Whether `ip` (canonical) is in this network.
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && Net::masked(ip, self.prefix).addr == self.addr
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The reverse proxies whose forwarding header names the client: by
/// default none, so the client's address is the TCP peer's and every
/// `X-Forwarded-For` or `Forwarded` header is ignored (any client can send
/// one).
///
/// Set it on the [`Sessions`](super::Sessions) with
/// [`Sessions::with_trusted_proxies`](super::Sessions::with_trusted_proxies);
/// every adapter then finds the client's address with
/// [`client_ip`](TrustedProxies::client_ip) before recording it under the
/// store's [`MetadataPolicy`](crate::MetadataPolicy). List each proxy by
/// address (`127.0.0.1`, `::1`) or by CIDR network (`10.0.0.0/8`,
/// `2001:db8::/32`). Trust only addresses that only your proxies can
/// connect from: a network of `/0` trusts every client, and the address
/// recorded is then whatever the client wrote.
///
/// ```
/// use stored_session::adapters::{ForwardedHeader, Sessions, TrustedProxies};
/// use stored_session::{Keyring, SessionStore};
///
/// let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
/// let proxies = TrustedProxies::new().with("127.0.0.1").with("10.0.0.0/8");
/// let sessions = Sessions::new(store).with_trusted_proxies(proxies)?;
///
/// // The same from a list, say an environment variable, with RFC 7239's header.
/// let proxies: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse()?;
/// let proxies = proxies.with_header(ForwardedHeader::Forwarded);
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
///
/// // A mistake is a configuration error at start-up.
/// let bad = TrustedProxies::new().with("10.0.0.1/8");
/// assert!(matches!(
///     sessions.with_trusted_proxies(bad),
///     Err(stored_session::Error::Config(_))
/// ));
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Net>,
    /// Why each entry that did not parse was refused (reported by
    /// [`validate`](TrustedProxies::validate)).
    invalid: Vec<String>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Trusts no proxy (the default): the client's address is the peer's.
    pub fn new() -> Self {
        TrustedProxies::default()
    }

    /// Also trusts `proxy`: an address (`127.0.0.1`, `::1`) or a CIDR
    /// network (`10.0.0.0/8`, `fd00::/8`), surrounding whitespace ignored.
    /// An entry that does not parse (or has bits set after its prefix, as
    /// in `10.0.0.1/8`) is reported by [`validate`](TrustedProxies::validate)
    /// and by [`Sessions::with_trusted_proxies`](super::Sessions::with_trusted_proxies),
    /// as [`Error::Config`].
    pub fn with(mut self, proxy: &str) -> Self {
        match Net::parse(proxy) {
            Ok(net) => {
                if !self.nets.contains(&net) {
                    self.nets.push(net);
                }
            }
            Err(why) => self.invalid.push(why),
        }
        self
    }

    /// Reads `header` from trusted proxies (default:
    /// [`ForwardedHeader::XForwardedFor`]); the other one is ignored.
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The header read from trusted proxies.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether no proxy is trusted (the client's address is always the
    /// peer's).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy's address (IPv4-mapped IPv6
    /// addresses such as `::ffff:10.0.0.1` count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// Checks every entry given to [`with`](TrustedProxies::with).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first entry that is not an address or a
    /// CIDR network.
    pub fn validate(&self) -> Result<()> {
        match self.invalid.first() {
            Some(why) => Err(Error::Config(why.clone())),
            None => Ok(()),
        }
    }

    /// The client's address, given the TCP peer's and a lookup of the
    /// request's headers: `header_values(name)` returns the value of every
    /// header called `name` (matched case-insensitively), in the order
    /// they came. Every adapter calls this; glue for another framework
    /// does the same.
    ///
    /// * A peer that is not a trusted proxy is the client: its headers are
    ///   not read at all (the lookup is not called).
    /// * From a trusted peer, the [`header`](TrustedProxies::header)'s
    ///   entries are read from the right (all its headers taken as one
    ///   comma-separated list), skipping trusted proxies; the first address
    ///   that is not one is the client's. Were every entry trusted, the
    ///   left-most is.
    /// * An entry that is not an address (garbage, an empty `Forwarded`
    ///   element, `unknown`, an obfuscated `_name`) ends the walk: the
    ///   client's address is then the last trusted hop's (the peer's, when
    ///   it is the right-most entry). Nothing panics.
    ///
    /// Why from the right: each proxy appends the address it saw connecting
    /// to it, after whatever the request carried already. Only the entries
    /// your own proxies appended are true; everything to their left came
    /// with the request, so the left-most entry is whatever the client
    /// chose to send (`X-Forwarded-For: 1.2.3.4` becomes
    /// `1.2.3.4, <real address>` at your proxy). The right-most address that
    /// is not one of your proxies is the one your outermost proxy saw: the
    /// client's, unless that proxy lies.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:203.0.113.7`, the peer of a
    /// dual-stack listener) are returned as IPv4 addresses, the peer's too.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use stored_session::adapters::TrustedProxies;
    ///
    /// let proxies = TrustedProxies::new().with("10.0.0.0/8");
    /// let headers = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.2")];
    /// let lookup = |name: &'static str| {
    ///     headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    /// };
    /// let ip: IpAddr = "10.0.0.1".parse().unwrap();
    /// // The client sent `198.51.100.1`; 203.0.113.7 reached the first proxy.
    /// assert_eq!(proxies.client_ip(ip, lookup).to_string(), "203.0.113.7");
    /// // From a peer that is no proxy, the header means nothing.
    /// let ip: IpAddr = "192.0.2.9".parse().unwrap();
    /// assert_eq!(proxies.client_ip(ip, lookup).to_string(), "192.0.2.9");
    /// ```
    pub fn client_ip<I, V>(
        &self,
        peer: IpAddr,
        header_values: impl FnOnce(&'static str) -> I,
    ) -> IpAddr
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let values: Vec<V> = header_values(self.header.name()).into_iter().collect();
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in &values {
            match self.header {
                ForwardedHeader::XForwardedFor => x_forwarded_for(value.as_ref(), &mut hops),
                ForwardedHeader::Forwarded => forwarded(value.as_ref(), &mut hops),
            }
        }
        let mut last_trusted = peer;
        for hop in hops.into_iter().rev() {
            match hop.map(|ip| ip.to_canonical()) {
                Some(ip) if self.contains(ip) => last_trusted = ip,
                Some(ip) => return ip,
                None => return last_trusted,
            }
        }
        last_trusted
    }
}

impl FromStr for TrustedProxies {
    type Err = Error;

    /// Parses a list of addresses and CIDR networks separated by commas or
    /// whitespace (`"127.0.0.1, 10.0.0.0/8 ::1"`), say from an environment
    /// variable; an empty list trusts no proxy.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first entry that is not an address or
    /// a CIDR network.
    fn from_str(list: &str) -> Result<Self> {
        let proxies = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .fold(TrustedProxies::new(), TrustedProxies::with);
        proxies.validate()?;
        Ok(proxies)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.nets.iter().map(Net::to_string).collect();
        f.debug_struct("TrustedProxies")
            .field("proxies", &nets)
            .field("invalid", &self.invalid.len())
            .field("header", &self.header)
            .finish()
    }
}

/// Appends the entries of one `X-Forwarded-For` value (empty list elements
/// skipped, as RFC 9110 asks of a list).
fn x_forwarded_for(value: &[u8], hops: &mut Vec<Option<IpAddr>>) {
    for entry in value.split(|&b| b == b',') {
        let entry = trim_ows(entry);
        if !entry.is_empty() {
            hops.push(node(entry));
        }
    }
}

/// Appends the `for=` node of each element of one RFC 7239 `Forwarded`
/// value: `None` for an element whose `for` is missing, repeated,
/// malformed, `unknown` or obfuscated. Empty elements are skipped.
fn forwarded(value: &[u8], hops: &mut Vec<Option<IpAddr>>) {
    let mut scan = Scanner {
        bytes: value,
        at: 0,
    };
    loop {
        let mut pairs = 0;
        let mut node_for: Option<Vec<u8>> = None;
        let mut bad = false;
        loop {
            scan.skip_ows();
            if !matches!(scan.peek(), None | Some(b',' | b';')) {
                pairs += 1;
                match scan.pair() {
                    Some((name, value)) if name.eq_ignore_ascii_case(b"for") => {
                        bad |= node_for.replace(value).is_some();
                    }
                    Some(_) => {}
                    None => {
                        bad = true;
                        scan.skip_to_delimiter();
                    }
                }
                scan.skip_ows();
                if !matches!(scan.peek(), None | Some(b',' | b';')) {
                    bad = true;
                    scan.skip_to_delimiter();
                }
            }
            if scan.peek() == Some(b';') {
                scan.at += 1;
                continue;
            }
            break;
        }
        if pairs > 0 {
            hops.push(match node_for {
                Some(node_text) if !bad => node(&node_text),
                _ => None,
            });
        }
        if scan.peek() == Some(b',') {
            scan.at += 1;
            continue;
        }
        break;
    }
}

/// A cursor over a `Forwarded` value.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// `token "=" ( token / quoted-string )`, the quoted string unescaped;
    /// `None` when malformed (the cursor is then somewhere inside).
    fn pair(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let name = self.token();
        if name.is_empty() || self.peek() != Some(b'=') {
            return None;
        }
        self.at += 1;
        let value = if self.peek() == Some(b'"') {
            self.at += 1;
            let mut value = Vec::new();
            loop {
                match self.peek()? {
                    b'"' => {
                        self.at += 1;
                        break value;
                    }
                    b'\\' => {
                        self.at += 1;
                        value.push(self.peek()?);
                        self.at += 1;
                    }
                    byte => {
                        value.push(byte);
                        self.at += 1;
                    }
                }
            }
        } else {
            self.token()
        };
        Some((name, value))
    }

    /// The longest run of token characters (RFC 9110 `tchar`).
    fn token(&mut self) -> Vec<u8> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        self.bytes[start..self.at].to_vec()
    }

    /// Moves to the next `,` or `;` outside a quoted string (or the end).
    fn skip_to_delimiter(&mut self) {
        let mut quoted = false;
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' if quoted => self.at += 1,
                b'"' => quoted = !quoted,
                b',' | b';' if !quoted => return,
                _ => {}
            }
            self.at += 1;
        }
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

/// A forwarded node's address: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711` (a port may be obfuscated:
/// `_abc`); `None` for anything else (`unknown`, `_hidden`, garbage).
fn node(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim_ows(text)).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(is_port) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = text.split_once(':')?;
    is_port(port).then_some(())?;
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port (decimal, at most 65535) or an obfuscated one (RFC 7239: `_`
/// then letters, digits, `.`, `_`, `-`).
fn is_port(text: &str) -> bool {
    let digits = text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok();
    let obfuscated = text.len() > 1
        && text.starts_with('_')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The client address for `peer` and the request headers `headers`.
    fn client(proxies: &TrustedProxies, peer: &str, headers: &[(&str, &[u8])]) -> String {
        proxies
            .client_ip(ip(peer), |name| {
                headers
                    .iter()
                    .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            })
            .to_string()
    }

    fn xff(value: &str) -> (&'static str, &[u8]) {
        ("X-Forwarded-For", value.as_bytes())
    }

    fn fwd(value: &str) -> (&'static str, &[u8]) {
        ("Forwarded", value.as_bytes())
    }

    fn trusting(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let p = trusting("127.0.0.1, 10.0.0.0/8 ::1 2001:db8::/32 192.168.0.0/16");
        for inside in [
            "127.0.0.1",
            "10.0.0.0",
            "10.255.255.255",
            "::1",
            "2001:db8::",
            "2001:db8:ffff:ffff::1",
            "192.168.7.9",
            "::ffff:10.1.2.3",
            "::ffff:127.0.0.1",
        ] {
            assert!(p.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "127.0.0.2",
            "11.0.0.0",
            "9.255.255.255",
            "::2",
            "2001:db9::",
            "192.169.0.0",
            "::ffff:11.0.0.1",
            // An IPv4 network never matches an IPv6 address of the same bits.
            "::a00:1",
            "::7f00:1",
        ] {
            assert!(!p.contains(ip(outside)), "{outside}");
        }
        // IPv4-mapped networks cover the IPv4 addresses.
        let mapped = TrustedProxies::new()
            .with("::ffff:10.0.0.0/104")
            .with("::ffff:127.0.0.1");
        mapped.validate().unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(mapped.contains(ip("127.0.0.1")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        // The extremes.
        let all = trusting("0.0.0.0/0 ::/0");
        assert!(all.contains(ip("203.0.113.7")) && all.contains(ip("2001:db8::7")));
        assert!(trusting("203.0.113.7/32").contains(ip("203.0.113.7")));
        assert!(!trusting("203.0.113.7/32").contains(ip("203.0.113.6")));
        assert!(trusting("2001:db8::7/128").contains(ip("2001:db8::7")));
        assert!(trusting("203.0.113.6/31").contains(ip("203.0.113.7")));
        // Duplicates are kept once.
        assert_eq!(trusting("10.0.0.0/8, 10.0.0.0/8").nets.len(), 1);
        assert!(trusting("").is_empty());
        assert!(TrustedProxies::new().is_empty());
        assert_eq!(
            format!("{:?}", trusting("10.0.0.0/8 ::1")),
            r#"TrustedProxies { proxies: ["10.0.0.0/8", "::1/128"], invalid: 0, header: XForwardedFor }"#
        );
    }

    #[test]
    fn bad_entries_are_config_errors() {
        for bad in [
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0",
            "010.0.0.1",
            "fe80::1%eth0",
            "[::1]",
            "1.2.3.4:80",
            "10.0.0.1/8",
            "2001:db8::1/32",
        ] {
            let message = match bad.parse::<TrustedProxies>() {
                Err(Error::Config(message)) => message,
                other => panic!("{bad:?}: {other:?}"),
            };
            assert!(message.contains(&format!("{bad:?}")), "{message}");
            let deferred = TrustedProxies::new().with("127.0.0.1").with(bad);
            assert!(
                matches!(deferred.validate(), Err(Error::Config(_))),
                "{bad}"
            );
        }
        // `with` takes one entry: no space inside it.
        let spaced = TrustedProxies::new().with(" 10.0.0.0/ 8 ");
        assert!(matches!(spaced.validate(), Err(Error::Config(_))));
        assert!(TrustedProxies::new()
            .with(" 10.0.0.0/8\t")
            .validate()
            .is_ok());
        let Err(Error::Config(message)) = "10.0.0.1/8".parse::<TrustedProxies>() else {
            panic!()
        };
        assert!(message.contains("did you mean 10.0.0.0/8?"), "{message}");
    }

    #[test]
    fn untrusted_peer_is_the_client_and_its_headers_are_ignored() {
        let p = trusting("10.0.0.0/8");
        let spoof = [xff("10.0.0.1, 203.0.113.7"), fwd("for=203.0.113.8")];
        assert_eq!(client(&p, "198.51.100.4", &spoof), "198.51.100.4");
        // No proxies at all: the same, for every header.
        let none = TrustedProxies::new();
        assert_eq!(client(&none, "127.0.0.1", &spoof), "127.0.0.1");
        let forwarded = none.clone().with_header(ForwardedHeader::Forwarded);
        assert_eq!(client(&forwarded, "127.0.0.1", &spoof), "127.0.0.1");
        // The lookup is not even called.
        let called = std::cell::Cell::new(false);
        p.client_ip(ip("198.51.100.4"), |_| {
            called.set(true);
            Vec::<&[u8]>::new()
        });
        assert!(!called.get());
    }

    #[test]
    fn spoofed_left_most_entries_are_ignored() {
        let p = trusting("127.0.0.1");
        assert_eq!(
            client(&p, "127.0.0.1", &[xff("203.0.113.7")]),
            "203.0.113.7"
        );
        // The client sent `X-Forwarded-For: 1.1.1.1, 10.0.0.1`; the proxy appended.
        let spoofed = [xff("1.1.1.1, 10.0.0.1, 203.0.113.7")];
        assert_eq!(client(&p, "127.0.0.1", &spoofed), "203.0.113.7");
        // The client pretends to be a trusted proxy: still its real address.
        assert_eq!(
            client(&p, "127.0.0.1", &[xff("127.0.0.1, 203.0.113.7")]),
            "203.0.113.7"
        );
        // Several header lines are one list, in order.
        let lines = [xff("1.1.1.1"), xff("198.51.100.2, 203.0.113.7")];
        assert_eq!(client(&p, "127.0.0.1", &lines), "203.0.113.7");
        let lines = [xff("1.1.1.1, 203.0.113.7"), xff("127.0.0.1")];
        assert_eq!(client(&p, "127.0.0.1", &lines), "203.0.113.7");
        // A trusted peer that forwarded no header: the peer.
        assert_eq!(client(&p, "127.0.0.1", &[]), "127.0.0.1");
        assert_eq!(client(&p, "127.0.0.1", &[xff("")]), "127.0.0.1");
    }

    #[test]
    fn multiple_proxies_are_skipped() {
        // CDN (198.51.100.0/24) -> load balancer (10.0.0.0/8) -> app.
        let p = trusting("10.0.0.0/8 198.51.100.0/24");
        let h = [xff("6.6.6.6, 203.0.113.7, 198.51.100.20, 10.1.1.1")];
        assert_eq!(client(&p, "10.0.0.5", &h), "203.0.113.7");
        // Only the load balancer trusted: the CDN's address is the client's.
        let lb = trusting("10.0.0.0/8");
        assert_eq!(client(&lb, "10.0.0.5", &h), "198.51.100.20");
        // Every entry trusted: the left-most (an internal client).
        assert_eq!(
            client(&p, "10.0.0.5", &[xff("10.3.3.3, 10.1.1.1")]),
            "10.3.3.3"
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let p = trusting("::1 fd00::/8");
        assert_eq!(
            client(&p, "::1", &[xff("2001:db8:cafe::17, fd00::2")]),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            client(&p, "::1", &[xff("[2001:db8:cafe::17]:4711")]),
            "2001:db8:cafe::17"
        );
        // A dual-stack listener's peer `::ffff:127.0.0.1` is 127.0.0.1.
        let v4 = trusting("127.0.0.1");
        assert_eq!(
            client(&v4, "::ffff:127.0.0.1", &[xff("::ffff:203.0.113.7")]),
            "203.0.113.7"
        );
        assert_eq!(client(&v4, "::ffff:198.51.100.1", &[]), "198.51.100.1");
        // Ports on IPv4 entries (some proxies add them).
        assert_eq!(
            client(&v4, "127.0.0.1", &[xff("203.0.113.7:51234")]),
            "203.0.113.7"
        );
    }

    #[test]
    fn forwarded_header() {
        let p = trusting("127.0.0.1 10.0.0.0/8").with_header(ForwardedHeader::Forwarded);
        let cases: &[(&str, &str)] = &[
            ("for=203.0.113.7", "203.0.113.7"),
            ("For=\"203.0.113.7\"", "203.0.113.7"),
            ("for=\"203.0.113.7:4711\"", "203.0.113.7"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]:_port\"", "2001:db8:cafe::17"),
            ("for=\"\\[2001:db8::9\\]\"", "2001:db8::9"),
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("proto=https; for=192.0.2.60 ; host=\"a,b;c\"", "192.0.2.60"),
            ("host=\"x,for=9.9.9.9\";for=192.0.2.60", "192.0.2.60"),
            // Spoofed left-most elements, trusted hops skipped.
            ("for=1.1.1.1, for=192.0.2.60, for=10.0.0.1", "192.0.2.60"),
            ("for=1.1.1.1,for=192.0.2.60,,for=10.0.0.1", "192.0.2.60"),
            // `unknown`, obfuscated or missing `for`: the last trusted hop.
            ("for=1.1.1.1, for=unknown, for=10.0.0.1", "10.0.0.1"),
            ("for=1.1.1.1, for=_hidden", "127.0.0.1"),
            ("for=1.1.1.1, proto=https", "127.0.0.1"),
            ("for=1.1.1.1, for=192.0.2.60;for=192.0.2.61", "127.0.0.1"),
            // Malformed: an unquoted IPv6 or port, no value, a lone quote.
            ("for=1.1.1.1, for=2001:db8::1", "127.0.0.1"),
            ("for=1.1.1.1, for=192.0.2.60:80", "127.0.0.1"),
            ("for=1.1.1.1, for=", "127.0.0.1"),
            ("for=1.1.1.1, for=\"192.0.2.60", "127.0.0.1"),
            ("for=1.1.1.1, =192.0.2.60", "127.0.0.1"),
            ("for=1.1.1.1, for=\"192.0.2.60\"x", "127.0.0.1"),
            ("for=\"[2001:db8::1]:99999\"", "127.0.0.1"),
            ("for=\"[2001:db8::1\"", "127.0.0.1"),
            ("for=\"[192.0.2.60]\"", "127.0.0.1"),
        ];
        for (value, expected) in cases {
            assert_eq!(client(&p, "127.0.0.1", &[fwd(value)]), *expected, "{value}");
        }
        let lines = [
            fwd("for=1.1.1.1"),
            fwd("for=192.0.2.60"),
            fwd("for=10.0.0.1"),
        ];
        assert_eq!(client(&p, "127.0.0.1", &lines), "192.0.2.60");
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // A proxy that writes X-Forwarded-For passes a client's `Forwarded`
        // through untouched (and the reverse): the other header is never read.
        let headers = [fwd("for=198.51.100.66"), xff("203.0.113.7")];
        let x = trusting("127.0.0.1");
        assert_eq!(x.header(), ForwardedHeader::XForwardedFor);
        assert_eq!(client(&x, "127.0.0.1", &headers), "203.0.113.7");
        assert_eq!(client(&x, "127.0.0.1", &headers[..1]), "127.0.0.1");
        let f = x.with_header(ForwardedHeader::Forwarded);
        assert_eq!(client(&f, "127.0.0.1", &headers), "198.51.100.66");
        assert_eq!(client(&f, "127.0.0.1", &headers[1..]), "127.0.0.1");
    }

    #[test]
    fn garbage_falls_back_to_the_last_trusted_hop() {
        let p = trusting("127.0.0.1 10.0.0.0/8");
        for (value, expected) in [
            ("not-an-ip", "127.0.0.1"),
            ("203.0.113.7, not-an-ip", "127.0.0.1"),
            ("203.0.113.7, garbage, 10.0.0.3", "10.0.0.3"),
            ("unknown", "127.0.0.1"),
            ("_hidden", "127.0.0.1"),
            ("203.0.113.7 198.51.100.1", "127.0.0.1"),
            ("203.0.113.7;", "127.0.0.1"),
            ("\"203.0.113.7\"", "127.0.0.1"),
            ("203.0.113.7:", "127.0.0.1"),
            ("203.0.113.7:123456", "127.0.0.1"),
            ("[203.0.113.7]", "127.0.0.1"),
            ("1.2.3.4.5", "127.0.0.1"),
            ("999.0.0.1", "127.0.0.1"),
            ("fe80::1%eth0", "127.0.0.1"),
            (" , ,\t203.0.113.7 , ", "203.0.113.7"),
        ] {
            assert_eq!(
                client(&p, "127.0.0.1", &[xff(value)]),
                expected,
                "{value:?}"
            );
        }
        let raw: [(&str, &[u8]); 1] = [("X-Forwarded-For", b"203.0.113.7, \xff\xfe\0")];
        assert_eq!(client(&p, "127.0.0.1", &raw), "127.0.0.1");
        let raw: [(&str, &[u8]); 1] = [("X-Forwarded-For", b"\xff, 203.0.113.7")];
        assert_eq!(client(&p, "127.0.0.1", &raw), "203.0.113.7");
    }

    /// Random bytes (a fixed xorshift sequence) in both headers never panic
    /// and only ever give the peer, a trusted hop or an address found in the
    /// header.
    #[test]
    fn random_bytes_never_panic() {
        let alphabet = b"0123456789abcdef.:[]_\",; =\t\\forFOR-unknown\xff\0/";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
            let p = trusting("127.0.0.1 ::/0").with_header(header);
            for _ in 0..20_000 {
                let len = (next() % 40) as usize;
                let value: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let got = p.client_ip(ip("127.0.0.1"), |_| [value.as_slice()]);
                let text = String::from_utf8_lossy(&value);
                assert!(
                    got == ip("127.0.0.1") || got.is_ipv6() || text.contains(&got.to_string()),
                    "{text:?} gave {got}"
                );
            }
        }
    }
}
