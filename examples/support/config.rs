//! The demos' store policy, shared by `demo` (rouille) and `rocket_demo`.

use stored_session::{Config, IpTracking, MetadataPolicy};

/// The demo's store policy: client metadata as [`METADATA`]; with the
/// `devices` feature, device labels; with the `geoip` feature and
/// `GEOIP_DB=/path/file.mmdb`, locations (a missing or damaged file stops
/// the demo at start with a clear message).
pub fn demo_config() -> Result<Config, String> {
    #[allow(unused_mut)]
    let mut config = Config::default().metadata(METADATA);
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
