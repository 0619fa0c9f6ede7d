//! Encrypted, database-backed web sessions for SQLite, PostgreSQL and
//! MySQL/MariaDB, through Diesel and an r2d2 pool.
//!
//! The browser holds only a random id in a cookie; the session lives in your
//! application's own database, encrypted. The store is synchronous and
//! blocking: call it directly from sync frameworks, and from a blocking task
//! in async ones (the framework adapters, `adapters::*`, do this for you).
//!
//! # Quick start
//!
//! ```
//! use stored_session::{CookieAction, Keyring, SessionStore};
//!
//! // Once, at start-up. Keys come from STORED_SESSION_KEYS in production
//! // (`Keyring::from_env()`); the URL may be postgres://…, mysql://…,
//! // sqlite://path or sqlite::memory:.
//! let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
//!
//! // Per request: load from the cookie value, use, save.
//! let mut session = store.load(None)?;
//! session.insert("user_id", &42u64)?;
//! session.insert("csrf", "k9fB2…")?;
//! let id = match store.save(&mut session)? {
//!     CookieAction::Set(id, _lifetime) => id, // send Set-Cookie: id=<value>
//!     CookieAction::Remove | CookieAction::Keep | CookieAction::Refresh(..) => unreachable!(),
//! };
//!
//! let mut session = store.load(Some(id.as_cookie_value()))?;
//! assert_eq!(session.get::<u64>("user_id")?, Some(42));
//!
//! // Login: a new id for the same data (prevents session fixation).
//! session.renew();
//! let CookieAction::Set(renewed, _) = store.save(&mut session)? else { unreachable!() };
//! assert!(store.load(Some(id.as_cookie_value()))?.is_new()); // the old id is dead
//!
//! // Logout.
//! let mut session = store.load(Some(renewed.as_cookie_value()))?;
//! session.destroy();
//! assert_eq!(store.save(&mut session)?, CookieAction::Remove);
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! # Features
//!
//! | feature | default | unlocks |
//! |---|---|---|
//! | `sqlite` | yes | SQLite with a bundled libsqlite3, [`SqlitePool`] |
//! | `postgres` | | PostgreSQL through the system libpq, `PgPool` |
//! | `postgres-bundled` | | the same with libpq built from source |
//! | `mysql` | | MySQL/MariaDB through the system client library, `MysqlPool` |
//! | `mysql-bundled` | | the same with the client library built from source |
//! | `adapters` | | `adapters`: the framework-neutral request cycle (`Sessions`, `LazySession`, `CookiePolicy`), to glue any framework |
//! | `rouille` | | `adapters::rouille` (turns on `adapters`) |
//! | `rocket` | | `adapters::rocket` (Rocket 0.5 fairing and request guard; turns on `adapters`) |
//! | `http` | | `adapters::http` (`http::Request`/`Response`, for astra and others; turns on `adapters`) |
//! | `testing` | | `testing`: helpers for your application's tests (turns on `sqlite` and `adapters`) |
//! | `cli` | | the `stored-session` binary (migrate, install, trim, stats, keygen, rotate-keys) |
//! | `admin` | | `admin`: an HTML admin page (statistics, per-user lookup, revoking); its rouille and `http` glue come with those features |
//! | `geoip` | | `GeoIp`: sessions record their country and city from a MaxMind or DB-IP `.mmdb` file you supply |
//! | `devices` | | `Config::devices`: sessions record a device label ("Firefox on Linux") parsed from the user agent |
//!
//! # Choosing the database
//!
//! [`StoreBuilder::open`] takes a URL, so one binary can pick its database at
//! run time, and a dedicated sessions database is just another URL. To share
//! your application's pool instead, build from it:
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use diesel::r2d2::{ConnectionManager, Pool};
//! use diesel::SqliteConnection;
//! use stored_session::{Keyring, SessionStore};
//!
//! let pool = Pool::builder()
//!     .max_size(1)
//!     .test_on_check_out(false) // the store recovers from dead connections itself
//!     .build(ConnectionManager::<SqliteConnection>::new(":memory:"))
//!     .unwrap();
//! let store = SessionStore::builder(Keyring::generate()).build(pool);
//! store.run_migrations()?;
//! # }
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! # Security model
//!
//! * **Ids.** 256 random bits from the OS, 43 URL-safe characters
//!   ([`SessionId`]). Anything else in the cookie is rejected before any
//!   database work. The table stores only SHA-256 of the id ([`StoredId`],
//!   shown as `2::<hex>`), so a database dump cannot be replayed as cookies.
//! * **Data.** Values are MessagePack-encoded per key; the whole session is
//!   sealed with AES-256-GCM under a record key derived with HKDF-SHA256 from
//!   the current master key and a per-session salt. The envelope header, the
//!   row's stored id and the row version it was written at are
//!   authenticated: an envelope moved to another row, put back into its own
//!   row after the row moved on (rolled back), truncated or altered fails to
//!   open. A whole row restored from a backup (data and version) does open:
//!   after restoring one, revoke what it brought back (README, "Security
//!   model").
//! * **Ends are final.** After [`Session::destroy`], or a save that finds
//!   the row gone, the session holds no user, metadata or values;
//!   [`Session::renew`] changes the id, never the absolute deadline.
//!   Revocation ([`SessionStore::revoke_user`], [`SessionStore::revoke_others`])
//!   serialises with renews of that user on a per-user lock, so no session
//!   that existed before the call loads after it returns.
//! * **Strictness.** A cookie whose session is unknown, expired, or fails to
//!   open is never an error and never adopted: [`SessionStore::load`] returns
//!   a fresh session (and emits a [`EventKind::Rejected`] event with a
//!   [`RejectReason`]); nothing is stored until it holds data.
//! * **Keys.** A [`Keyring`] has one current key and any number of older
//!   ones; sessions opened with an older key are re-encrypted on their next
//!   write, and [`rotate_keys`] re-encrypts the rest. Key material is redacted
//!   from `Debug` and zeroized on drop. A session sealed under a key that is
//!   not on the ring is a configuration problem, not tampering
//!   ([`RejectReason::UnknownKey`]): its row and its cookie are kept, so it
//!   opens again once the key is back.
//! * **Start-up check.** [`StoreBuilder::open`] and
//!   [`StoreBuilder::open_migrated`] run [`SessionStore::check`]: the table
//!   exists ([`Error::MissingTable`] says how to create it) and the keyring
//!   opens the most recently active sessions ([`Error::KeyringMismatch`]
//!   when it opens fewer than half). By default they log what it finds;
//!   [`Config::startup_check`] makes them fail instead, or skips it.
//!
//! # Correctness under concurrent requests
//!
//! A save writes only what is needed ([`SessionStore::save`] documents
//! each case): nothing when nothing changed, a touch of the idle clock when
//! it is older than [`Config::touch_after`], a compare-and-swap update when
//! values changed. When two requests change the same session, the loser
//! re-reads the row under a lock and re-applies *its own* changed and removed
//! keys, so neither request's keys are lost. A session deleted meanwhile
//! (logout elsewhere, revocation, expiry, trimming) is never recreated.
//!
//! # Expiry and trimming
//!
//! Idle timeout and absolute lifetime ([`Config`], both 30 days by default)
//! are part of the SQL of every load and write, so an expired session is gone
//! the moment it expires. Its row is reclaimed by [`trim_inactive`] (batched
//! deletes by primary key), by a [`Trimmer`] thread, or by
//! `stored-session trim`.
//!
//! Each session may choose its own expiry (see [Remember me](#remember-me)):
//! every write and touch stores its deadline in the indexed `expires_at`
//! column, which loads check and trimming walks as one index range.
//!
//! ```
//! use std::time::Duration;
//! use stored_session::{Config, Keyring, SessionStore, Trimmer};
//!
//! let config = Config::default()
//!     .idle_timeout(Some(Duration::from_secs(2 * 3600)))
//!     .max_lifetime(Some(Duration::from_secs(7 * 24 * 3600)));
//! let store = SessionStore::builder(Keyring::generate())
//!     .config(config)
//!     .open_migrated("sqlite::memory:")?;
//! let trimmer = Trimmer::start(store.clone(), Duration::from_secs(600));
//! # drop(trimmer);
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! # Remember me
//!
//! [`Session::set_expiry`] chooses how long one session lives ([`Expiry`]):
//! the store's limits (the default), its own idle window, an absolute
//! deadline, or a browser-session cookie. The choice is encrypted with the
//! session, survives [`Session::renew`], and every touch slides the
//! session's deadline by its *own* idle window. The cookie follows:
//! [`CookieAction::Set`] and [`CookieAction::Refresh`] carry a
//! [`CookieLifetime`] that the adapters turn into `Max-Age` (or none).
//!
//! ```
//! use std::time::Duration;
//! use stored_session::{Config, CookieAction, CookieLifetime, Expiry, Keyring, SessionStore};
//!
//! const DAY: u64 = 24 * 3600;
//! let store = SessionStore::builder(Keyring::generate())
//!     .config(Config::default().idle_timeout(Some(Duration::from_secs(2 * 3600))))
//!     .open_migrated("sqlite::memory:")?;
//!
//! // POST /login with "remember me" ticked: 30 days idle instead of 2 hours.
//! let mut session = store.load(None)?;
//! session.set_user("alice");
//! session.set_expiry(Expiry::Idle(Duration::from_secs(30 * DAY)));
//! session.renew();
//! let CookieAction::Set(_id, lifetime) = store.save(&mut session)? else { unreachable!() };
//! assert_eq!(lifetime, CookieLifetime::MaxAge(Duration::from_secs(30 * DAY)));
//!
//! // Without it: a browser-session cookie; the server still ends the
//! // session after 2 idle hours.
//! let mut session = store.load(None)?;
//! session.set_user("bob");
//! session.set_expiry(Expiry::BrowserSession);
//! let CookieAction::Set(_id, lifetime) = store.save(&mut session)? else { unreachable!() };
//! assert_eq!(lifetime, CookieLifetime::Session);
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! # Devices and locations
//!
//! With feature `geoip` and a `.mmdb` file (`GeoIp`, MaxMind GeoIP2 or
//! GeoLite2 City or Country, DB-IP City or Country Lite; you download it,
//! the crate bundles none), each session records where its client is:
//! country (ISO code and name) and city. With feature `devices` and
//! `Config::devices`, it records what the client is: "Firefox on Linux",
//! "Safari on iPhone". Both are recorded when a session is created and at
//! each login (a save that renews it or binds it to a user), encrypted
//! with the session's metadata, and shown in
//! [`sessions_of`](SessionStore::sessions_of) ([`SessionInfo::device`],
//! [`SessionInfo::location`]). The IP address itself is recorded only as
//! [`Config::metadata`] says (not at all by default).
//!
//! When a loaded session's client is on another network (its IPv4 /24 or
//! IPv6 /48 differs from the recorded one) the session says so,
//! [`Session::client_change`], and its save emits an
//! [`EventKind::ClientChanged`] event: an application can ask for the
//! password again, or tell the user. The recorded network and location then
//! follow the client, so each move is reported once. When the IP is not
//! recorded, the comparison uses a keyed hash of the network inside the
//! encrypted metadata, never the address.
//!
//! ```
//! # #[cfg(all(feature = "geoip", feature = "devices"))] {
//! # // A tiny database standing in for GeoLite2-City.mmdb.
//! # #[derive(serde::Serialize)] struct Names { en: &'static str }
//! # #[derive(serde::Serialize)] struct Country { iso_code: &'static str, names: Names }
//! # #[derive(serde::Serialize)] struct City { names: Names }
//! # #[derive(serde::Serialize)] struct Record { country: Country, city: City }
//! # let mut db = maxminddb_writer::Database::default();
//! # db.metadata.ip_version = maxminddb_writer::metadata::IpVersion::V6;
//! # db.metadata.binary_format_major_version = 2;
//! # db.metadata.database_type = "GeoLite2-City".into();
//! # for (net, code, country, city) in [("::81.2.69.0/120", "GB", "United Kingdom", "London"),
//! #                                    ("::89.160.20.0/120", "SE", "Sweden", "Linköping")] {
//! #     let record = Record { country: Country { iso_code: code, names: Names { en: country } },
//! #                           city: City { names: Names { en: city } } };
//! #     let data = db.insert_value(record).unwrap();
//! #     db.insert_node(net.parse::<maxminddb_writer::paths::IpAddrWithMask>().unwrap(), data);
//! # }
//! # let path = std::env::temp_dir().join(format!("doctest-{}.mmdb", std::process::id()));
//! # std::fs::write(&path, db.write_to(Vec::new()).unwrap()).unwrap();
//! use stored_session::{ClientChange, Config, GeoIp, Keyring, SessionStore};
//!
//! let config = Config::default()
//!     .geoip(Some(GeoIp::open(&path)?)) // a missing or damaged file fails here
//!     .devices(true);
//! let store = SessionStore::builder(Keyring::generate())
//!     .config(config)
//!     .open_migrated("sqlite::memory:")?;
//!
//! // Login. (The adapters report each request's client themselves.)
//! let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
//! let mut session = store.load(None)?;
//! session.set_client(Some("81.2.69.142".parse().unwrap()), Some(firefox));
//! session.set_user("alice");
//! session.renew();
//! let _ = store.save(&mut session)?;
//!
//! // The "your devices" page.
//! let page = store.sessions_of("alice", Some(&session), Default::default())?;
//! let me = &page.sessions[0];
//! assert_eq!(me.device.as_deref(), Some("Firefox on Linux"));
//! assert_eq!(me.location.as_ref().unwrap().to_string(), "London, GB");
//! assert_eq!(me.location.as_ref().unwrap().country.as_deref(), Some("United Kingdom"));
//! assert_eq!(me.ip, None); // not recorded under the default policy
//!
//! // A later request from another country.
//! session.set_client(Some("89.160.20.112".parse().unwrap()), Some(firefox));
//! assert_eq!(session.client_change(), Some(ClientChange::Country));
//! # std::fs::remove_file(&path).ok();
//! # }
//! # Ok::<(), stored_session::Error>(())
//! ```
//!
//! # Events
//!
//! Every operation emits an [`Event`]: name (`session_read.stored_session`,
//! `session_write…`, `session_touch…`, `session_renew…`,
//! `session_delete…`, `session_trim…`, `session_rejected…`,
//! `session_client_changed…`), hashed id,
//! duration and rows affected. Subscribe with [`SessionStore::subscribe`];
//! the built-in subscriber logs each one through `log` at debug level under
//! the target `stored_session` (turn it off with
//! [`SessionStore::set_log_events`]).
//!
//! # Errors
//!
//! One [`Error`] enum: database and pool failures, a payload over
//! [`Config::max_payload`], a value that cannot be encoded or decoded as the
//! requested type, configuration and migration errors. Hostile or stale
//! input is never an error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("stored-session needs at least one backend feature: sqlite, postgres or mysql");

#[cfg(feature = "adapters")]
#[cfg_attr(docsrs, doc(cfg(feature = "adapters")))]
pub mod adapters;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod backend;
mod check;
mod clock;
mod codec;
mod config;
// Read by the adapters (whenever `adapters` is compiled) and the admin page.
#[cfg(any(feature = "adapters", feature = "admin"))]
mod cookie_header;
mod crypto;
pub mod csrf;
#[cfg(feature = "devices")]
mod device;
mod error;
mod events;
mod expiry;
#[cfg(feature = "geoip")]
mod geoip;
// --- reliability suite (issue 7): fuzzing entry points, not public API ---
// Only with the internal `fuzzing` feature (the fuzz crate, the corpus
// replay test): its fixed, public keys never reach an application's build.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
// --- end reliability suite ---
mod id;
mod metadata;
pub mod migrations;
mod redact;
mod rotate;
pub mod schema;
mod session;
mod stats;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod trim;
mod users;
mod wipe;

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use backend::Connections;
#[cfg(feature = "postgres")]
pub use backend::PgPool;
pub use backend::{Backend, Database, PoolOptions};
#[cfg(feature = "mysql")]
pub use backend::{MysqlPool, STRICT_SQL_MODE};
#[cfg(feature = "sqlite")]
pub use backend::{SqliteConnections, SqlitePool};
pub use check::{CheckReport, StartupCheck};
pub use clock::{Clock, ManualClock};
pub use config::Config;
pub use crypto::{Key, Keyring, ENVELOPE_OVERHEAD};
pub use error::{Error, Result};
pub use events::{Event, EventKind, RejectReason, SubscriptionId};
pub use expiry::{CookieLifetime, Expiry};
#[cfg(feature = "geoip")]
#[cfg_attr(docsrs, doc(cfg(feature = "geoip")))]
pub use geoip::GeoIp;
pub use id::{SessionId, StoredId, SESSION_ID_LEN};
pub use metadata::{ClientChange, IpTracking, Location, MetadataPolicy};
pub use redact::redact_url;
pub use rotate::{rotate_keys, RotateReport, Rotation};
pub use session::Session;
pub use stats::{KeyUsage, Percentiles, Stats};
pub use store::{CookieAction, SessionStore, StoreBuilder};

/// NOT PUBLIC API: hooks for this crate's own benchmarks (`benches/micro.rs`,
/// `benches/peers`) into crate-private pieces, only with the internal
/// `bench-internals` feature. Hidden, unstable, may change in any release.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod __bench {
    /// The envelope sealer exactly as the store uses it.
    pub struct Sealer(crate::crypto::Sealer);

    impl Sealer {
        /// A sealer on `keyring` with a small key cache.
        pub fn new(keyring: crate::Keyring) -> Self {
            Sealer(crate::crypto::Sealer::new(keyring, 16))
        }

        /// Seals `plaintext` for a new row `sid` at row version 1 under a
        /// fresh salt; the envelope and the salt.
        pub fn seal_new(&self, sid: &crate::StoredId, plaintext: &[u8]) -> (Vec<u8>, [u8; 16]) {
            self.0.seal_new(sid, 1, plaintext)
        }

        /// Seals `plaintext` for the row `sid` at row version 1, keeping
        /// its `salt`.
        pub fn seal_again(
            &self,
            sid: &crate::StoredId,
            salt: &[u8; 16],
            plaintext: &[u8],
        ) -> Vec<u8> {
            self.0.seal_again(sid, 1, salt, plaintext)
        }

        /// Opens an envelope of row version 1 in place; the plaintext, if
        /// authentic.
        pub fn open<'a>(&self, sid: &crate::StoredId, envelope: &'a mut [u8]) -> Option<&'a [u8]> {
            self.0
                .open(sid, 1, envelope)
                .ok()
                .map(|(plaintext, _)| plaintext)
        }
    }

    /// The store's prepared-once statements, for the benchmark that
    /// runs the store's own SQL without its crypto (`benches/peers`).
    pub use crate::backend::statements::{CasUpdate, Live, NewRow, SelectLive};

    /// An empty new session, without a store.
    pub fn new_session() -> crate::Session {
        crate::Session::fresh(0, false, Default::default())
    }

    /// The MessagePack payload of `session`, encoded as `save` does.
    pub fn encode_payload(session: &crate::Session) -> crate::Result<Vec<u8>> {
        session.payload().encode()
    }

    /// Decodes a payload as `load` does; the number of values, or `None`.
    pub fn decode_payload(plaintext: &[u8]) -> Option<usize> {
        crate::codec::LoadedPayload::decode(plaintext).map(|p| p.data.len())
    }

    /// The same through serde's generic path only (what `load` falls back
    /// to for payloads the direct reader does not know).
    pub fn decode_payload_with_serde(plaintext: &[u8]) -> Option<usize> {
        crate::codec::LoadedPayload::decode_with_serde(plaintext).map(|p| p.data.len())
    }
}
pub use trim::{trim_inactive, Trim, TrimReport, Trimmer, DEFAULT_BATCH_SIZE};
pub use users::{Cursor, Page, SessionHandle, SessionInfo, SessionPage};
