//! The keyed hashes (HMAC-SHA256) that are not encryption: the user
//! binding stored in the indexed `user_key` column, and the opaque
//! references handed to applications (session handles, page cursors).

use super::keys::Keyring;
use crate::id::StoredId;

const USER_KEY_INFO: &[u8] = b"stored-session v1 user binding";
const HANDLE_INFO: &[u8] = b"stored-session v1 session handle";
const NETWORK_INFO: &[u8] = b"stored-session v1 client network";
#[cfg(feature = "admin")]
const ADMIN_CSRF_INFO: &[u8] = b"stored-session v1 admin csrf";

/// The HMAC keys derived from a keyring for user bindings and references.
pub(crate) struct Macs {
    /// User-binding HMAC keys, one per ring key, current first.
    binding: Vec<ring::hmac::Key>,
    /// Key for opaque session handles (current key only).
    handles: ring::hmac::Key,
    /// Key for the admin page's form tokens (current key only).
    #[cfg(feature = "admin")]
    admin_csrf: ring::hmac::Key,
}

impl Macs {
    /// The keys derived from `keyring`.
    pub fn new(keyring: &Keyring) -> Self {
        let binding = keyring
            .keys()
            .iter()
            .map(|k| k.hmac_key(USER_KEY_INFO))
            .collect();
        let handles = keyring.current().hmac_key(HANDLE_INFO);
        Macs {
            binding,
            handles,
            #[cfg(feature = "admin")]
            admin_csrf: keyring.current().hmac_key(ADMIN_CSRF_INFO),
        }
    }

    /// The `user_key` column value for `user_id` under the current key.
    pub fn user_key(&self, user_id: &str) -> [u8; 32] {
        hmac32(&self.binding[0], user_id.as_bytes())
    }

    /// The `user_key` values `user_id` may be stored under: one per key on
    /// the ring, current first (bindings written before a rotation are found
    /// until their sessions are rewritten or re-encrypted).
    pub fn user_keys(&self, user_id: &str) -> Vec<[u8; 32]> {
        self.binding
            .iter()
            .map(|k| hmac32(k, user_id.as_bytes()))
            .collect()
    }

    /// An opaque handle for a stored id: not the cookie id, not the stored id.
    pub fn handle(&self, sid: &StoredId) -> [u8; 16] {
        let full = hmac32(&self.handles, sid.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A keyed PRF for opaque references (session handles, page cursors):
    /// HMAC-SHA256 under the handle key over `context || data`. Callers pick
    /// fixed contexts whose total input length is never 32 bytes, so no
    /// output equals a [`handle`](Self::handle) (whose input is a 32-byte id).
    pub fn reference_prf(&self, context: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = ring::hmac::Context::with_key(&self.handles);
        mac.update(context);
        mac.update(data);
        let tag = mac.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl Macs {
    /// The key of the admin page's form tokens, derived from the current
    /// key like every other keyed hash (key material never leaves `keys`).
    #[cfg(feature = "admin")]
    pub fn admin_csrf(&self) -> &ring::hmac::Key {
        &self.admin_csrf
    }
}

/// The keys of the client network tag: a keyed hash of the client's
/// network (IPv4 /24, IPv6 /48) kept inside the encrypted metadata when the
/// IP address itself is not recorded, so a change of network can be told
/// without storing any form of the address. One key per ring key, current
/// first, so a tag made before a rotation still compares.
#[derive(Clone)]
pub(crate) struct NetworkKeys(Vec<ring::hmac::Key>);

impl NetworkKeys {
    /// The keys derived from `keyring`.
    pub fn new(keyring: &Keyring) -> Self {
        NetworkKeys(
            keyring
                .keys()
                .iter()
                .map(|k| k.hmac_key(NETWORK_INFO))
                .collect(),
        )
    }

    /// The tag of `network` under the current key.
    pub fn tag(&self, network: &[u8]) -> [u8; 16] {
        tag16(&self.0[0], network)
    }

    /// Which key on the ring made `tag` for `network` (0: the current one),
    /// or `None` when none did (another network, or a key since dropped).
    pub fn matches(&self, tag: &[u8], network: &[u8]) -> Option<usize> {
        self.0.iter().position(|k| {
            let expected = tag16(k, network);
            tag.len() == expected.len()
                && tag
                    .iter()
                    .zip(expected.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }
}

fn tag16(key: &ring::hmac::Key, data: &[u8]) -> [u8; 16] {
    let full = hmac32(key, data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn hmac32(key: &ring::hmac::Key, data: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}
