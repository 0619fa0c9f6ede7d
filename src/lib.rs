//! # stored-session
//!
//! (crate guide: see README; expanded below)
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!("stored-session needs at least one backend feature: sqlite, postgres or mysql");

mod backend;
mod clock;
mod codec;
mod config;
mod crypto;
mod error;
mod events;
mod id;
pub mod schema;
mod session;
mod store;

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
pub use session::Session;
pub use store::{CookieAction, SessionStore, StoreBuilder};
