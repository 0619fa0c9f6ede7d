//! # stored-session
//!
//! (crate guide: see README; expanded below)
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("stored-session needs at least one backend feature: sqlite, postgres or mysql");

#[cfg(any(
    feature = "rouille",
    feature = "rocket",
    feature = "http",
    feature = "testing"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "rouille",
        feature = "rocket",
        feature = "http",
        feature = "testing"
    )))
)]
pub mod adapters;
mod backend;
mod clock;
mod codec;
mod config;
mod crypto;
mod error;
mod events;
mod id;
pub mod migrations;
mod rotate;
pub mod schema;
mod session;
mod stats;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod trim;

#[cfg(feature = "mysql")]
pub use backend::MysqlPool;
#[cfg(feature = "postgres")]
pub use backend::PgPool;
#[cfg(feature = "sqlite")]
pub use backend::SqlitePool;
pub use backend::{Backend, Database, PoolOptions};
pub use clock::{Clock, ManualClock};
pub use config::Config;
pub use crypto::{Key, Keyring, ENVELOPE_OVERHEAD};
pub use error::{Error, Result};
pub use events::{Event, EventKind, RejectReason, SubscriptionId};
pub use id::{SessionId, StoredId, SESSION_ID_LEN};
pub use rotate::{rotate_keys, RotateReport, Rotation};
pub use session::Session;
pub use stats::{Percentiles, Stats};
pub use store::{CookieAction, SessionStore, StoreBuilder};

/// NOT PUBLIC API: hooks for this crate's own benchmarks (`benches/micro.rs`)
/// into crate-private pieces. Hidden, unstable, may change in any release.
#[doc(hidden)]
pub mod __bench {
    /// The envelope sealer exactly as the store uses it.
    pub struct Sealer(crate::crypto::Sealer);

    impl Sealer {
        /// A sealer on `keyring` with a small key cache.
        pub fn new(keyring: crate::Keyring) -> Self {
            Sealer(crate::crypto::Sealer::new(keyring, 16))
        }

        /// Seals `plaintext` for `sid` (draws a salt when `salt` is `None`).
        pub fn seal(
            &self,
            sid: &crate::StoredId,
            salt: &mut Option<[u8; 16]>,
            plaintext: &[u8],
        ) -> Vec<u8> {
            self.0.seal(sid, salt, plaintext)
        }

        /// Opens an envelope in place; the plaintext, if authentic.
        pub fn open<'a>(&self, sid: &crate::StoredId, envelope: &'a mut [u8]) -> Option<&'a [u8]> {
            self.0
                .open(sid, envelope)
                .ok()
                .map(|(plaintext, _)| plaintext)
        }
    }

    /// An empty new session, without a store.
    pub fn new_session() -> crate::Session {
        crate::Session::fresh(0, false)
    }

    /// The MessagePack payload of `session`, encoded as `commit` does.
    pub fn encode_payload(session: &crate::Session) -> crate::Result<Vec<u8>> {
        session.payload().encode()
    }

    /// Decodes a payload as `load` does; the number of values, or `None`.
    pub fn decode_payload(plaintext: &[u8]) -> Option<usize> {
        crate::codec::Payload::decode(plaintext).map(|p| p.data.len())
    }
}
pub use trim::{trim_inactive, Trim, TrimReport, Trimmer, DEFAULT_BATCH_SIZE};
