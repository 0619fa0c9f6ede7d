//! Opt-in client metadata kept inside the encrypted envelope: IP address
//! (optionally truncated), user agent, and the application's own fields.

use std::net::IpAddr;

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
            IpTracking::Full => Some(ip.to_string()),
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

/// IPv4 to its /24 network, IPv6 to its /48 network.
pub(crate) fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.user_agent(&"a\u{0}b".repeat(300)).unwrap().len(), 256);
    }
}
