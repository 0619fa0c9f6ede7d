//! The demos' store policy, shared by `demo` (rouille) and `rocket_demo`.

use std::time::Duration;

use stored_session::{Config, Expiry, IpTracking, MetadataPolicy};

/// A session without "remember me" idles out after 2 hours.
pub const IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// "Remember me": 30 days idle.
pub const REMEMBER: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// No session lives longer than 90 days, remembered or not.
pub const LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// The expiry a login asks for: with the form field `remember` (`1` or
/// `on`), 30 days idle and a cookie with that `Max-Age`; without it, a
/// browser-session cookie (no `Max-Age`) and the 2-hour idle timeout.
pub fn login_expiry(remember: Option<&str>) -> Expiry {
    match remember.map(str::trim) {
        Some("1" | "on") => Expiry::Idle(REMEMBER),
        _ => Expiry::BrowserSession,
    }
}

/// The demo's store policy: client metadata as [`METADATA`]; with the
/// `devices` feature, device labels; with the `geoip` feature and
/// `GEOIP_DB=/path/file.mmdb`, locations (a missing or damaged file stops
/// the demo at start with a clear message).
pub fn demo_config() -> Result<Config, String> {
    #[allow(unused_mut)]
    let mut config = Config::default()
        .metadata(METADATA)
        .idle_timeout(Some(IDLE))
        .max_lifetime(Some(LIFETIME));
    #[cfg(feature = "devices")]
    {
        config = config.devices(true);
    }
    #[cfg(feature = "geoip")]
    if let Some(path) = std::env::var_os("GEOIP_DB").filter(|p| !p.is_empty()) {
        let db = stored_session::GeoIp::open(&path).map_err(|e| format!("GEOIP_DB: {e}"))?;
        config = config.geoip(Some(db));
    }
    #[cfg(not(feature = "geoip"))]
    if std::env::var_os("GEOIP_DB").is_some_and(|p| !p.is_empty()) {
        return Err("GEOIP_DB is set, but the demo was built without the `geoip` feature".into());
    }
    Ok(config)
}

/// What the demo records about clients: the network, not the address.
pub const METADATA: MetadataPolicy = MetadataPolicy {
    ip: IpTracking::Truncated,
    user_agent: true,
};
