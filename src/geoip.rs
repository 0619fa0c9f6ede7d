//! Feature `geoip`: where a client is, from a MaxMind or DB-IP `.mmdb` file
//! the application supplies (nothing is downloaded, nothing is bundled).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::metadata::Location;

/// An opened GeoIP database: a MaxMind (GeoIP2 / GeoLite2 City or Country)
/// or DB-IP (City Lite, Country Lite) `.mmdb` file, read into memory once.
/// Cheap to clone (an `Arc` inside), `Send + Sync`.
///
/// Give it to the store with [`Config::geoip`](crate::Config::geoip), or
/// name the file in the environment variable `STORED_SESSION_GEOIP`, which
/// [`StoreBuilder::open`](crate::StoreBuilder::open) and
/// [`open_migrated`](crate::StoreBuilder::open_migrated) read when the
/// config names no database. Sessions then record their country and city
/// (see [`SessionInfo::location`](crate::SessionInfo::location)).
///
/// A file that is missing, unreadable or not a MaxMind DB is an
/// [`Error::Config`] when it is opened, that is at start-up; a lookup that
/// fails later (an address the file does not cover, a damaged record) only
/// leaves the location unknown, it never fails a request. To use an updated
/// file, open it again and build a new store.
///
/// ```no_run
/// use stored_session::{Config, GeoIp};
///
/// let config = Config::default().geoip(Some(GeoIp::open("/var/lib/GeoIP/GeoLite2-City.mmdb")?));
/// # let _ = config;
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone)]
pub struct GeoIp {
    inner: Arc<Inner>,
}

struct Inner {
    reader: maxminddb::Reader<Vec<u8>>,
    /// Where it was read from (`None`: from bytes).
    path: Option<PathBuf>,
}

/// The part of a City or Country record the store reads; everything else
/// in the record is skipped.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Place<'a>>,
    #[serde(borrow, default)]
    city: Option<Place<'a>>,
}

#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

/// Addresses looked up once at open, so that a file whose search tree or
/// data section is damaged fails then rather than at a request.
const PROBES: [&str; 6] = [
    "1.1.1.1",
    "8.8.8.8",
    "81.2.69.142",
    "203.0.113.1",
    "2001:4860:4860::8888",
    "2a02:c7f:1234::1",
];

/// Longest name kept from the database (country or city), in characters.
const MAX_NAME: usize = 128;

impl GeoIp {
    /// The environment variable naming the `.mmdb` file when
    /// [`Config::geoip`](crate::Config::geoip) is `None`.
    pub const ENV: &'static str = "STORED_SESSION_GEOIP";

    /// Reads the `.mmdb` file at `path` into memory and checks it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the path and the reason, when the file
    /// cannot be read, is not a MaxMind DB file, or fails a test lookup.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoIp> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Config(format!(
                "geoip database {}: cannot be read: {e}",
                path.display()
            ))
        })?;
        GeoIp::check(bytes, Some(path.to_owned()))
    }

    /// Checks a `.mmdb` file already in memory (embedded in the binary, or
    /// built by a test).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the bytes are not a MaxMind DB file or fail a
    /// test lookup.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp> {
        GeoIp::check(bytes, None)
    }

    /// The database named by the environment variable
    /// [`STORED_SESSION_GEOIP`](GeoIp::ENV), `None` when it is unset or
    /// empty.
    ///
    /// # Errors
    ///
    /// As [`open`](GeoIp::open), the message naming the variable too.
    pub fn from_env() -> Result<Option<GeoIp>> {
        match std::env::var_os(GeoIp::ENV) {
            Some(path) if !path.is_empty() => GeoIp::open(&path).map(Some).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("{}: {m}", GeoIp::ENV)),
                other => other,
            }),
            _ => Ok(None),
        }
    }

    fn check(bytes: Vec<u8>, path: Option<PathBuf>) -> Result<GeoIp> {
        let name = path
            .as_ref()
            .map_or_else(|| "(in memory)".to_owned(), |p| p.display().to_string());
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| {
            Error::Config(format!(
                "geoip database {name}: not a MaxMind DB (.mmdb) file: {e}"
            ))
        })?;
        let geoip = GeoIp {
            inner: Arc::new(Inner { reader, path }),
        };
        for probe in PROBES {
            let ip: IpAddr = probe.parse().expect("probe addresses are valid");
            geoip.lookup(ip).map_err(|e| {
                Error::Config(format!(
                    "geoip database {name}: damaged (a test lookup of {probe} failed: {e})"
                ))
            })?;
        }
        let kind = geoip.database_type();
        if !["city", "country", "location", "enterprise"]
            .iter()
            .any(|k| kind.to_ascii_lowercase().contains(k))
        {
            log::warn!(
                target: "stored_session",
                "geoip database {name} is of type {kind:?}, not a City or Country database: \
                 sessions will get no location from it"
            );
        }
        Ok(geoip)
    }

    /// The database's type as its metadata names it, e.g.
    /// `GeoLite2-City` or `DBIP-Country-Lite`.
    pub fn database_type(&self) -> &str {
        &self.inner.reader.metadata().database_type
    }

    /// The file it was read from (`None` for [`from_bytes`](GeoIp::from_bytes)).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Where `ip` is: its country (ISO code and English name) and city, as
    /// far as the database knows. `None` when the address is not in the
    /// database, has no country there, or the lookup fails (logged at warn
    /// level, target `stored_session`, without the address).
    ///
    /// ```no_run
    /// # use stored_session::GeoIp;
    /// let geoip = GeoIp::open("GeoLite2-City.mmdb")?;
    /// if let Some(location) = geoip.locate("81.2.69.142".parse().unwrap()) {
    ///     println!("{location}"); // e.g. "London, GB"
    /// }
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        match self.lookup(ip.to_canonical()) {
            Ok(location) => location,
            Err(e) => {
                log::warn!(target: "stored_session", "geoip lookup failed: {e}");
                None
            }
        }
    }

    fn lookup(
        &self,
        ip: IpAddr,
    ) -> std::result::Result<Option<Location>, maxminddb::MaxMindDbError> {
        let reader = &self.inner.reader;
        if ip.is_ipv6() && reader.metadata().ip_version == 4 {
            // An IPv4-only database knows nothing of IPv6 addresses.
            return Ok(None);
        }
        let Some(record) = reader.lookup(ip)?.decode::<Record<'_>>()? else {
            return Ok(None);
        };
        let Some(country) = record.country else {
            return Ok(None);
        };
        let Some(code) = country.iso_code.filter(|c| is_country_code(c)) else {
            return Ok(None);
        };
        let english = |place: Option<Place<'_>>| {
            place
                .and_then(|p| p.names)
                .and_then(|n| n.en)
                .map(clean)
                .filter(|n| !n.is_empty())
        };
        Ok(Some(Location {
            country_code: code.to_owned(),
            country: english(Some(country)),
            city: english(record.city),
        }))
    }
}

/// An ISO 3166-1 alpha-2 code: two ASCII capitals.
fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A name from the database without control characters, bounded.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect()
}

impl fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.inner.path)
            .field("database_type", &self.database_type())
            .finish_non_exhaustive()
    }
}
