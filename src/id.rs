//! Session ids: the public id in the cookie and the hashed id in the table.
//!
//! The public id is 256 random bits from the operating system, written as 43
//! characters of unpadded URL-safe base64. It is validated (length and
//! alphabet) before any database work, so a malformed cookie costs no query.
//! The database only ever sees [`StoredId`]: SHA-256 over the id's text, shown
//! in logs and events in the Rack private-id form `2::<64 hex digits>`.

use std::fmt;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Length in characters of a public session id.
pub const SESSION_ID_LEN: usize = 43;

const ID_BYTES: usize = 32;

/// The public session id carried in the cookie.
///
/// It is a secret: its `Debug` output is redacted, it has no `Display`, and it
/// is never written to the database or to a log. Only [`SessionId::as_cookie_value`]
/// reveals it, for the `Set-Cookie` header.
///
/// ```
/// use stored_session::SessionId;
///
/// let id = SessionId::generate();
/// assert_eq!(id.as_cookie_value().len(), 43);
/// assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
/// // The same text parses back; anything else is rejected without a query.
/// assert!(SessionId::parse(id.as_cookie_value()).is_some());
/// assert!(SessionId::parse("2::not-an-id").is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    /// Draws a fresh id from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator fails, which
    /// `ring` treats as unrecoverable.
    pub fn generate() -> Self {
        let mut text = random_text().expect("operating system random number generator failed");
        let id = SessionId::from_well_formed(text.as_bytes());
        crate::wipe::string(&mut text);
        id
    }

    /// The id of a value that passed [`well_formed`], kept inline (no
    /// allocation per load).
    fn from_well_formed(value: &[u8]) -> Self {
        let mut id = [0u8; SESSION_ID_LEN];
        id.copy_from_slice(value);
        SessionId(id)
    }

    /// Validates a cookie value. Returns `None` unless it is exactly 43
    /// characters of the URL-safe base64 alphabet (`A-Z a-z 0-9 - _`).
    pub fn parse(value: &str) -> Option<Self> {
        well_formed(value.as_bytes()).then(|| SessionId::from_well_formed(value.as_bytes()))
    }

    /// The id as it goes into the cookie. Treat it like a password.
    pub fn as_cookie_value(&self) -> &str {
        // Always ASCII (see `well_formed`), so never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The hashed form under which the session is stored.
    pub fn stored_id(&self) -> StoredId {
        StoredId(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

impl Drop for SessionId {
    fn drop(&mut self) {
        // The slice path: a fill and a barrier, not a volatile store per byte.
        self.0.as_mut_slice().zeroize();
    }
}

/// 256 random bits from the operating system's CSPRNG as 43 characters of
/// unpadded URL-safe base64: the text of a session id, and of the crate's
/// other random secrets of that shape (the admin page's CSRF nonce). `None`
/// when the generator fails.
pub(crate) fn random_text() -> Option<String> {
    let mut bytes = [0u8; ID_BYTES];
    let filled = SystemRandom::new().fill(&mut bytes);
    let text = filled
        .ok()
        .map(|()| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    bytes.zeroize();
    text
}

/// Whether `value` has the shape [`random_text`] gives: exactly
/// [`SESSION_ID_LEN`] bytes of the URL-safe base64 alphabet
/// (`A-Z a-z 0-9 - _`). The one check of that shape, for session ids and
/// the admin page's nonce alike; no other byte, padding or length passes.
pub(crate) fn well_formed(value: &[u8]) -> bool {
    // Every byte is looked up and the answers are and-ed, without a branch
    // per byte: the characters of a random id would mispredict one branch
    // per character class.
    value.len() == SESSION_ID_LEN
        && value
            .iter()
            .fold(true, |ok, &b| ok & URL_SAFE_ALPHABET[usize::from(b)])
}

/// Which bytes are in the URL-safe base64 alphabet (`A-Z a-z 0-9 - _`).
static URL_SAFE_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// SHA-256 of a public id: the key of a session's row, safe to log.
///
/// `Display` and `Debug` give the Rack private-id form `2::<64 hex digits>`.
///
/// ```
/// use stored_session::StoredId;
///
/// let sid = StoredId::of("some-cookie-value");
/// assert!(sid.to_string().starts_with("2::"));
/// assert_eq!(sid.to_string().len(), 3 + 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredId([u8; 32]);

impl StoredId {
    /// Hashes the text of a public id exactly as the cookie carries it.
    pub fn of(public_id: &str) -> Self {
        StoredId(Sha256::digest(public_id.as_bytes()).into())
    }

    /// Wraps 32 bytes read from the `sid` column.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        StoredId(bytes)
    }

    /// The 32 bytes stored in the `sid` column.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for StoredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("2::")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StoredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredId(\"{self}\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_cookie_value().len(), SESSION_ID_LEN);
        let parsed = SessionId::parse(a.as_cookie_value()).unwrap();
        assert_eq!(parsed.as_cookie_value(), a.as_cookie_value());
        // The stored id is SHA-256 of the cookie's text, as `StoredId::of` says.
        assert_eq!(parsed.stored_id(), StoredId::of(a.as_cookie_value()));
        assert_ne!(a.stored_id(), b.stored_id());
    }

    #[test]
    fn malformed_values_are_rejected() {
        let ok = SessionId::generate();
        let long = format!("{}A", ok.as_cookie_value());
        let nul = format!("{}\0", &ok.as_cookie_value()[..42]);
        let stored = ok.stored_id().to_string();
        let ten_kb = "A".repeat(10 * 1024);
        let dot = format!("{}.", &ok.as_cookie_value()[..42]);
        for bad in [
            "",
            "abc",
            &long,
            &nul,
            &stored,
            &ten_kb,
            &dot,
            &stored[..43],
        ] {
            assert!(SessionId::parse(bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn one_shape_for_ids_and_nonces() {
        let text = random_text().unwrap();
        assert!(well_formed(text.as_bytes()));
        assert_ne!(text, random_text().unwrap());
        let edge = "-_09AZaz".repeat(6);
        assert!(well_formed(&edge.as_bytes()[..SESSION_ID_LEN]));
        // The standard alphabet, padding, other lengths and raw bytes fail.
        for byte in [b'+', b'/', b'=', b'.', b' ', 0, 0xff] {
            let mut bad = text.clone().into_bytes();
            bad[7] = byte;
            assert!(!well_formed(&bad), "accepted byte {byte:#x}");
        }
        // Every byte value, in every position: exactly the URL-safe alphabet.
        for byte in 0..=255u8 {
            let allowed = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
            for at in [0, 21, SESSION_ID_LEN - 1] {
                let mut one = text.clone().into_bytes();
                one[at] = byte;
                assert_eq!(well_formed(&one), allowed, "byte {byte:#x} at {at}");
            }
        }
        assert!(!well_formed(&text.as_bytes()[..42]));
        assert!(!well_formed(format!("{text}A").as_bytes()));
        assert!(!well_formed(b""));
    }

    #[test]
    fn stored_id_is_sha256_of_the_text() {
        // SHA-256("abc"), a published test vector.
        assert_eq!(
            StoredId::of("abc").to_string(),
            "2::ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
