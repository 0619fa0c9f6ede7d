//! Keys and what is derived from them, one concept per module:
//!
//! - `keys`: the master [`Key`]s and the [`Keyring`]; key material stays
//!   there, other modules get derived keys.
//! - `key_cache`: the bounded cache of derived record keys.
//! - `envelope`: the encrypted envelope's format and the `Sealer` that
//!   seals and opens it.
//! - `hmac`: the user binding, the opaque references (handles, cursors)
//!   and the client network tag.

mod envelope;
mod hmac;
mod key_cache;
mod keys;

pub use envelope::ENVELOPE_OVERHEAD;
#[cfg(feature = "fuzzing")]
pub(crate) use envelope::HEADER_LEN;
pub(crate) use envelope::{key_id_of_field, OpenError, SaltChoice, Sealer, KEY_ID_RANGE};
pub(crate) use hmac::{Macs, NetworkKeys};
pub(crate) use keys::Salt;
pub use keys::{Key, Keyring};
