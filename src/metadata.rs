//! Opt-in client metadata kept inside the encrypted envelope: IP address
//! (optionally truncated), user agent, and the application's own fields;
//! and where and what each device is (country and city with feature
//! `geoip`, a device label with feature `devices`), with the comparison
//! that tells a loaded session's client moved to another network.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::crypto::NetworkKeys;

/// How much of the client's IP address a session records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpTracking {
    /// Not recorded (default).
    #[default]
    Off,
    /// The network only: IPv4 truncated to /24, IPv6 to /48.
    Truncated,
    /// The full address.
    Full,
}

/// Which client metadata sessions record when an adapter (or the
/// application) calls [`Session::set_client`](crate::Session::set_client).
/// Everything is off by default; what is recorded is stored encrypted, never
/// in a plain column.
///
/// ```
/// use stored_session::{Config, IpTracking, MetadataPolicy};
///
/// let config = Config::default().metadata(MetadataPolicy {
///     ip: IpTracking::Truncated,
///     user_agent: true,
/// });
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetadataPolicy {
    /// IP address recording.
    pub ip: IpTracking,
    /// Whether to record the `User-Agent` (first 256 characters).
    pub user_agent: bool,
}

/// Metadata field holding the IP address.
pub(crate) const IP: &str = "ip";
/// Metadata field holding the user agent.
pub(crate) const USER_AGENT: &str = "user_agent";
/// Longest user agent kept, in characters.
const MAX_USER_AGENT: usize = 256;

impl MetadataPolicy {
    /// The IP text to record under this policy.
    pub(crate) fn ip(&self, ip: IpAddr) -> Option<String> {
        match self.ip {
            IpTracking::Off => None,
            IpTracking::Full => Some(ip.to_canonical().to_string()),
            IpTracking::Truncated => Some(truncate(ip).to_string()),
        }
    }

    /// The user agent text to record under this policy.
    pub(crate) fn user_agent(&self, ua: &str) -> Option<String> {
        self.user_agent.then(|| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect()
        })
    }
}

/// IPv4 to its /24 network, IPv6 to its /48 network (an IPv4-mapped IPv6
/// address counts as the IPv4 address it maps).
pub(crate) fn truncate(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Reserved metadata names start with this: fields the store records
/// itself (location, device, network tag), which
/// [`Session::set_meta`](crate::Session::set_meta) leaves alone and
/// [`SessionInfo::fields`](crate::SessionInfo::fields) does not list.
pub(crate) const RESERVED_PREFIX: &str = "client.";
/// The country's ISO 3166-1 alpha-2 code.
pub(crate) const COUNTRY_CODE: &str = "client.country_code";
/// The country's English name.
pub(crate) const COUNTRY: &str = "client.country";
/// The city's English name.
pub(crate) const CITY: &str = "client.city";
/// The device label ("Firefox on Linux").
pub(crate) const DEVICE: &str = "client.device";
/// The keyed hash of the client's network, when the IP is not recorded.
pub(crate) const NETWORK_TAG: &str = "client.net";

/// Whether the store, not the application, owns the metadata field `name`.
pub(crate) fn is_reserved(name: &str) -> bool {
    name == IP || name == USER_AGENT || name.starts_with(RESERVED_PREFIX)
}

/// Where a session's client was, as a GeoIP database (feature `geoip`)
/// placed its IP address when the session was created, at its last login,
/// or when its client last moved to another network. Names are in English.
///
/// Its `Display` is the city and the country code (`London, GB`), or the
/// code alone when the city is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Location {
    /// The country's ISO 3166-1 alpha-2 code, e.g. `GB`.
    pub country_code: String,
    /// The country's name, e.g. `United Kingdom`, if the database has one.
    pub country: Option<String>,
    /// The city's name, e.g. `London`, if the database has one (City
    /// databases; a Country database has none).
    pub city: Option<String>,
}

impl Location {
    /// A location read back from metadata fields (the code is required).
    pub(crate) fn from_meta(meta: &BTreeMap<String, String>) -> Option<Location> {
        Some(Location {
            country_code: meta.get(COUNTRY_CODE)?.clone(),
            country: meta.get(COUNTRY).cloned(),
            city: meta.get(CITY).cloned(),
        })
    }

    /// The metadata fields that record `location` (`None`: each removed).
    fn fields(location: Option<&Location>) -> LocationFields {
        [
            (COUNTRY_CODE, location.map(|l| l.country_code.clone())),
            (COUNTRY, location.and_then(|l| l.country.clone())),
            (CITY, location.and_then(|l| l.city.clone())),
        ]
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.city {
            Some(city) => write!(f, "{city}, {}", self.country_code),
            None => f.write_str(&self.country_code),
        }
    }
}

/// A location as its metadata fields, `None` removing one.
type LocationFields = [(&'static str, Option<String>); 3];

/// How a loaded session's client moved since its network was recorded
/// (see [`Session::client_change`](crate::Session::client_change) and
/// [`EventKind::ClientChanged`](crate::EventKind::ClientChanged)).
///
/// The network is the IP address's /24 (IPv4) or /48 (IPv6). A client that
/// alternates between IPv4 and IPv6 (dual stack) changes network each time
/// it switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientChange {
    /// Another network, in the same country, or where a country is not
    /// known on both sides (no GeoIP database, or an address it does not
    /// place).
    Network,
    /// Another network in another country: both countries are known and
    /// differ.
    Country,
}

/// What the store records about clients beyond [`MetadataPolicy`]: the
/// location, the device label and the network tag. One per store, shared
/// by its sessions.
pub(crate) struct ClientRecorder {
    policy: MetadataPolicy,
    #[cfg(feature = "geoip")]
    geoip: Option<crate::GeoIp>,
    #[cfg(feature = "devices")]
    devices: bool,
    network: NetworkKeys,
}

/// A network, as recorded or as seen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Network {
    /// The recorded IP address's network (the policy records the IP).
    Ip(IpAddr),
    /// The network tag (the policy does not record the IP).
    Tag(Vec<u8>),
}

/// Longest user agent parsed for the device label, in bytes.
#[cfg(feature = "devices")]
const MAX_PARSED_USER_AGENT: usize = 512;

impl ClientRecorder {
    /// The recorder for a store's config, or `None` when it records nothing
    /// that needs one (no IP, no GeoIP database, no device labels).
    pub fn new(config: &crate::Config, keyring: &crate::Keyring) -> Option<Arc<ClientRecorder>> {
        let recorder = ClientRecorder {
            policy: config.metadata,
            #[cfg(feature = "geoip")]
            geoip: config.geoip.clone(),
            #[cfg(feature = "devices")]
            devices: config.devices,
            network: NetworkKeys::new(keyring),
        };
        (recorder.wants_ip() || recorder.devices()).then(|| Arc::new(recorder))
    }

    /// Whether the client's IP address is used (recorded, located or
    /// compared).
    pub fn wants_ip(&self) -> bool {
        self.policy.ip != IpTracking::Off || self.geoip().is_some()
    }

    /// Whether the client's user agent is used (recorded or labelled).
    pub fn wants_user_agent(&self) -> bool {
        self.policy.user_agent || self.devices()
    }

    #[cfg(feature = "geoip")]
    fn geoip(&self) -> Option<&crate::GeoIp> {
        self.geoip.as_ref()
    }

    #[cfg(not(feature = "geoip"))]
    fn geoip(&self) -> Option<&std::convert::Infallible> {
        None
    }

    fn locate(&self, ip: IpAddr) -> Option<Location> {
        #[cfg(feature = "geoip")]
        if let Some(geoip) = &self.geoip {
            return geoip.locate(ip);
        }
        let _ = ip;
        None
    }

    #[cfg(feature = "devices")]
    fn devices(&self) -> bool {
        self.devices
    }

    #[cfg(not(feature = "devices"))]
    fn devices(&self) -> bool {
        false
    }

    /// The device label of `user_agent`, when device labels are on.
    fn device(&self, user_agent: &str) -> Option<String> {
        #[cfg(feature = "devices")]
        if self.devices {
            return crate::device::label(user_agent);
        }
        let _ = user_agent;
        None
    }

    /// The network recorded in `meta`, as this policy compares networks.
    fn recorded_network(&self, meta: &BTreeMap<String, String>) -> Option<Network> {
        match self.policy.ip {
            IpTracking::Off => meta
                .get(NETWORK_TAG)
                .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
                .map(Network::Tag),
            _ => meta
                .get(IP)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| Network::Ip(truncate(ip))),
        }
    }

    /// Whether `ip` is on the `recorded` network; with a tag made under an
    /// older key, also that it should be made again under the current key.
    fn same_network(&self, recorded: &Network, ip: IpAddr) -> (bool, bool) {
        match recorded {
            Network::Ip(net) => (*net == truncate(ip), false),
            Network::Tag(tag) => match self.network.matches(tag, &network_bytes(ip)) {
                Some(0) => (true, false),
                Some(_) => (true, true),
                None => (false, false),
            },
        }
    }

    /// The network tag field for `ip`: set when the policy does not record
    /// the IP, removed when it does (the IP itself then serves).
    fn tag_field(&self, ip: IpAddr) -> (&'static str, Option<String>) {
        let tag = (self.policy.ip == IpTracking::Off)
            .then(|| URL_SAFE_NO_PAD.encode(self.network.tag(&network_bytes(ip))));
        (NETWORK_TAG, tag)
    }

    /// Whether networks are recorded and compared at all.
    fn tracks_network(&self) -> bool {
        self.wants_ip()
    }
}

/// The bytes of `ip`'s network that the tag is computed over: the family,
/// then the first 3 bytes (IPv4 /24) or 6 bytes (IPv6 /48).
fn network_bytes(ip: IpAddr) -> Vec<u8> {
    match truncate(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            vec![4, o[0], o[1], o[2]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut out = vec![6];
            out.extend_from_slice(&o[..6]);
            out
        }
    }
}

/// One session's view of its client in this request: what `set_client`
/// saw (kept in memory only, for recording at creation and login), the
/// network and location recorded when the session was loaded, and whether
/// the client moved.
#[derive(Default)]
pub(crate) struct ClientState {
    recorder: Option<Arc<ClientRecorder>>,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    /// As recorded when first compared in this request.
    origin: Option<Origin>,
    change: Option<ClientChange>,
}

/// A session's network and location as recorded (when its client was
/// first compared in a request).
#[derive(Clone)]
struct Origin {
    network: Option<Network>,
    location: LocationFields,
}

/// Metadata updates for the session to apply: `(name, value)`, `None`
/// removing the field.
pub(crate) type MetaUpdates = Vec<(&'static str, Option<String>)>;

impl ClientState {
    /// Uses `recorder` (the store's) from now on.
    pub fn attach(&mut self, recorder: Option<Arc<ClientRecorder>>) {
        self.recorder = recorder;
    }

    /// The client of this request, as `set_client` reports it. For a
    /// session that has a row (`loaded`), compares the client's network
    /// with the one recorded: on another network the location and the tag
    /// follow the client and [`change`](ClientState::change) says how it
    /// moved; a session that has no network recorded yet gets it (and a
    /// location), without a change. Also fills in a missing device label.
    /// Returns the metadata updates.
    pub fn observe(
        &mut self,
        meta: &BTreeMap<String, String>,
        loaded: bool,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> MetaUpdates {
        let Some(recorder) = self.recorder.clone() else {
            return Vec::new();
        };
        let ip = ip.map(|ip| ip.to_canonical());
        if ip.is_some() {
            self.ip = ip;
        }
        if let Some(ua) = user_agent.filter(|_| recorder.devices()) {
            self.user_agent = Some(bounded(ua).to_owned());
        }
        let mut updates = Vec::new();
        if !loaded {
            // Recorded at creation (`record`), when the session is saved.
            return updates;
        }
        if let (Some(ip), true) = (ip, recorder.tracks_network()) {
            let Origin {
                network: recorded,
                location,
            } = self
                .origin
                .get_or_insert_with(|| Origin {
                    network: recorder.recorded_network(meta),
                    location: Location::fields(Location::from_meta(meta).as_ref()),
                })
                .clone();
            match recorded {
                Some(net) => {
                    let (same, retag) = recorder.same_network(&net, ip);
                    if same {
                        // Back where it was recorded (a second `set_client`
                        // in this request may have moved it meanwhile). A
                        // location missing (a database added since)
                        // is filled in.
                        self.change = None;
                        if recorder.geoip().is_some() {
                            if location[0].1.is_some() {
                                updates.extend(location);
                            } else {
                                updates.extend(Location::fields(recorder.locate(ip).as_ref()));
                            }
                        }
                        updates.push(match (&net, retag) {
                            (Network::Tag(tag), false) => {
                                (NETWORK_TAG, Some(URL_SAFE_NO_PAD.encode(tag)))
                            }
                            // Under the current key; or removed, when the
                            // policy records the IP itself.
                            _ => recorder.tag_field(ip),
                        });
                    } else {
                        let now = recorder.locate(ip);
                        let before = location[0].1.as_deref();
                        let after = now.as_ref().map(|l| l.country_code.as_str());
                        self.change = Some(match (before, after) {
                            (Some(a), Some(b)) if a != b => ClientChange::Country,
                            _ => ClientChange::Network,
                        });
                        if recorder.geoip().is_some() {
                            updates.extend(Location::fields(now.as_ref()));
                        }
                        updates.push(recorder.tag_field(ip));
                    }
                }
                None => {
                    // Nothing recorded yet (a session older than the
                    // setting): record it, without calling it a change.
                    if recorder.geoip().is_some() && location[0].1.is_none() {
                        updates.extend(Location::fields(recorder.locate(ip).as_ref()));
                    }
                    updates.push(recorder.tag_field(ip));
                }
            }
        }
        if !meta.contains_key(DEVICE) {
            if let Some(device) = self
                .user_agent
                .as_deref()
                .and_then(|ua| recorder.device(ua))
            {
                updates.push((DEVICE, Some(device)));
            }
        }
        updates
    }

    /// What a creation or a login records: the location and the network
    /// tag of the client this request saw, and its device label. Returns
    /// the metadata updates.
    pub fn record(&mut self) -> MetaUpdates {
        let Some(recorder) = self.recorder.clone() else {
            return Vec::new();
        };
        let mut updates = Vec::new();
        if let (Some(ip), true) = (self.ip, recorder.tracks_network()) {
            if recorder.geoip().is_some() {
                updates.extend(Location::fields(recorder.locate(ip).as_ref()));
            }
            updates.push(recorder.tag_field(ip));
        }
        if recorder.devices() {
            if let Some(ua) = self.user_agent.as_deref() {
                updates.push((DEVICE, recorder.device(ua)));
            }
        }
        updates
    }

    /// How the client moved in this request, if it did.
    pub fn change(&self) -> Option<ClientChange> {
        self.change
    }

    /// The session ended (or its change was reported): forget the
    /// comparison, keep what the request saw of the client.
    pub fn reset(&mut self) {
        self.origin = None;
        self.change = None;
    }
}

/// At most [`MAX_PARSED_USER_AGENT`] bytes of `ua`, cut at a character
/// boundary.
#[cfg(feature = "devices")]
fn bounded(ua: &str) -> &str {
    let mut end = ua.len().min(MAX_PARSED_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

#[cfg(not(feature = "devices"))]
fn bounded(ua: &str) -> &str {
    ua
}

impl Drop for ClientState {
    /// The user agent seen does not linger in freed memory (as the
    /// session's metadata does not).
    fn drop(&mut self) {
        if let Some(ua) = self.user_agent.as_mut() {
            crate::wipe::string(ua);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names() {
        for name in [
            IP,
            USER_AGENT,
            COUNTRY_CODE,
            COUNTRY,
            CITY,
            DEVICE,
            NETWORK_TAG,
        ] {
            assert!(is_reserved(name), "{name}");
        }
        assert!(!is_reserved("device"));
        assert!(!is_reserved("city"));
    }

    #[test]
    fn location_display() {
        let mut meta = BTreeMap::new();
        assert_eq!(Location::from_meta(&meta), None);
        meta.insert(CITY.to_owned(), "London".to_owned());
        assert_eq!(Location::from_meta(&meta), None, "the code is required");
        meta.insert(COUNTRY_CODE.to_owned(), "GB".to_owned());
        assert_eq!(
            Location::from_meta(&meta).unwrap().to_string(),
            "London, GB"
        );
        meta.remove(CITY);
        assert_eq!(Location::from_meta(&meta).unwrap().to_string(), "GB");
    }

    #[test]
    fn truncation() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:85a3:8d3:1319:8a2e:370:7348".parse().unwrap();
        assert_eq!(truncate(v4).to_string(), "203.0.113.0");
        assert_eq!(truncate(v6).to_string(), "2001:db8:85a3::");
        let p = MetadataPolicy::default();
        assert_eq!(p.ip(v4), None);
        assert_eq!(p.user_agent("x"), None);
        let p = MetadataPolicy {
            ip: IpTracking::Full,
            user_agent: true,
        };
        assert_eq!(p.ip(v4).unwrap(), "203.0.113.77");
        // An IPv4-mapped IPv6 address (a dual-stack socket) is its IPv4.
        let mapped: IpAddr = "::ffff:203.0.113.77".parse().unwrap();
        assert_eq!(p.ip(mapped).unwrap(), "203.0.113.77");
        assert_eq!(truncate(mapped).to_string(), "203.0.113.0");
        assert_eq!(network_bytes(mapped), network_bytes(v4));
        assert_ne!(
            network_bytes(v4),
            network_bytes("203.0.114.77".parse().unwrap())
        );
        assert_eq!(
            network_bytes(v6),
            network_bytes("2001:db8:85a3:ffff::1".parse().unwrap())
        );
        assert_eq!(p.user_agent(&"a\u{0}b".repeat(300)).unwrap().len(), 256);
    }
}
