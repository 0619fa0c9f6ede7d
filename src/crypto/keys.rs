//! The master keys ([`Key`]) and the [`Keyring`] of the current and older
//! keys. Key material never leaves this module: other modules get keys
//! derived from it (a record key per salt, an HMAC key per purpose).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub(crate) const SALT_LEN: usize = 16;
/// The length of a master key, in bytes.
const KEY_LEN: usize = 32;
/// The encodings a key is accepted in, for error messages.
const ACCEPTED: &str = "a key is 32 bytes written as 43 or 44 characters of base64 \
(`stored-session keygen`, `openssl rand -base64 32`) or as 64 hex digits (`openssl rand -hex 32`)";
/// The environment variable [`Keyring::from_env`] reads.
const KEYS_VAR: &str = "STORED_SESSION_KEYS";
/// How to make a key, for the messages about a missing one.
const MAKE_ONE: &str = "make a key with `stored-session keygen` (or `openssl rand -base64 32`)";
const RECORD_KEY_INFO: &[u8] = b"stored-session v1 record key";
const KEY_ID_CONTEXT: &[u8] = b"stored-session v1 key id";

/// A record salt: drawn when a session is created or renewed; with a
/// master key it derives the session's record key.
pub(crate) type Salt = [u8; SALT_LEN];

/// A 256-bit master key.
///
/// Its `Debug` output shows only the key id, never the material, and the
/// bytes are zeroized when the key is dropped.
///
/// ```
/// use stored_session::Key;
///
/// let key = Key::generate();
/// let text = key.to_base64();
/// let again = Key::from_base64(&text)?;
/// assert_eq!(key.id(), again.id());
/// assert!(!format!("{key:?}").contains(text.as_str()));
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone)]
pub struct Key {
    bytes: Zeroizing<[u8; 32]>,
    id: u32,
}

impl Key {
    /// Draws a new random key from the operating system.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator fails.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .expect("operating system random number generator failed");
        Self::from_array(bytes)
    }

    /// Uses exactly 32 bytes of key material.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `bytes` is not 32 bytes long.
    ///
    /// ```
    /// let key = stored_session::Key::from_bytes(&[7u8; 32])?;
    /// assert!(stored_session::Key::from_bytes(b"short").is_err());
    /// # let _ = key;
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Config(format!("a key must be 32 bytes, got {}", bytes.len())))?;
        Ok(Self::from_array(Zeroizing::new(array)))
    }

    /// Parses a key in either text encoding the crate accepts, the one
    /// [`Keyring::parse`] and [`Keyring::from_env`] use for each key:
    ///
    /// - **base64**, 43 or 44 characters (standard or URL-safe alphabet,
    ///   padded or not), as printed by `stored-session keygen`,
    ///   [`Key::to_base64`] or `openssl rand -base64 32`;
    /// - **hex**, 64 digits (either case), as printed by
    ///   `openssl rand -hex 32`.
    ///
    /// White space around the text is ignored. Both encode the same 32
    /// bytes: a key written either way is the same key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text is neither, or holds other than 32
    /// bytes; the message says how many characters and bytes it found and
    /// which encodings are accepted, and never contains the text itself.
    ///
    /// ```
    /// use stored_session::Key;
    ///
    /// let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// let base64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    /// assert_eq!(Key::parse(hex)?.id(), Key::parse(base64)?.id());
    ///
    /// let err = Key::parse(&hex[..62]).unwrap_err().to_string();
    /// assert!(err.contains("got 31 bytes from 62 hex digits"), "{err}");
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() == 2 * KEY_LEN && is_hex(text) {
            return Self::from_bytes(&decode_hex(text));
        }
        match decode_base64(text) {
            Some(bytes) if bytes.len() == KEY_LEN => Self::from_bytes(&bytes),
            _ if is_hex(text) && text.len() % 2 == 0 => {
                Err(wrong_length(text.len() / 2, text.len(), "hex digits", ""))
            }
            Some(bytes) => Err(wrong_length(
                bytes.len(),
                text.len(),
                "characters of base64",
                "",
            )),
            None => Err(not_a_key(text)),
        }
    }

    /// Parses base64 text only (standard or URL-safe alphabet, padded or
    /// not) holding 32 bytes, as printed by [`Key::to_base64`] or
    /// `stored-session keygen`. [`Key::parse`] also accepts hex.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text is not base64 or not 32 bytes (the
    /// message never contains the text).
    ///
    /// ```
    /// let key = stored_session::Key::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// # let _ = key;
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn from_base64(text: &str) -> Result<Self> {
        let text = text.trim();
        let hint = if text.len() == 2 * KEY_LEN && is_hex(text) {
            " (this is a hex key: Key::parse and STORED_SESSION_KEYS accept it)"
        } else {
            ""
        };
        match decode_base64(text) {
            Some(bytes) if bytes.len() == KEY_LEN => Self::from_bytes(&bytes),
            Some(bytes) => Err(wrong_length(
                bytes.len(),
                text.len(),
                "characters of base64",
                hint,
            )),
            None => Err(not_a_key(text)),
        }
    }

    /// The key as unpadded URL-safe base64, for storing it in a secret manager.
    /// The returned string is zeroized when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(*self.bytes))
    }

    /// The key's public identifier (the first four bytes of a SHA-256 over a
    /// fixed context and the key), written into every envelope it seals.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn from_array(bytes: Zeroizing<[u8; 32]>) -> Self {
        let mut hash = Sha256::new();
        hash.update(KEY_ID_CONTEXT);
        hash.update(bytes.as_ref());
        let digest = hash.finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Key { bytes, id }
    }

    /// An HMAC key derived from this key for `purpose`.
    pub(super) fn hmac_key(&self, purpose: &[u8]) -> ring::hmac::Key {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, purpose).extract(self.bytes.as_ref());
        let info = [purpose];
        let okm = prk
            .expand(&info, ring::hmac::HMAC_SHA256)
            .expect("HKDF output length is valid for HMAC-SHA256");
        ring::hmac::Key::from(okm)
    }

    /// The AES-256-GCM key of the records sealed with `salt` under this key.
    pub(super) fn record_key(&self, salt: &Salt) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.bytes.as_ref());
        let okm = prk
            .expand(&[RECORD_KEY_INFO], &AES_256_GCM)
            .expect("HKDF output length is valid for AES-256");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// Base64 in any of the four common forms, or `None`.
fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The bytes of `text`, an even number of hex digits (checked by the caller).
fn decode_hex(text: &str) -> Zeroizing<Vec<u8>> {
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Zeroizing::new(
        text.as_bytes()
            .chunks_exact(2)
            .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
            .collect(),
    )
}

/// A key of the wrong size: what was found, never the text itself.
fn wrong_length(bytes: usize, chars: usize, encoding: &str, hint: &str) -> Error {
    Error::Config(format!(
        "a key must be 32 bytes, got {bytes} bytes from {chars} {encoding}{hint}; {ACCEPTED}"
    ))
}

/// Text that is neither base64 nor hex: its length and an obvious cause,
/// never the text itself.
fn not_a_key(text: &str) -> Error {
    let chars = text.chars().count();
    let hint = if text.contains(['"', '\'']) {
        " (remove the quotes around it)"
    } else {
        ""
    };
    Error::Config(format!(
        "a key must be base64 or hex text; the {chars} characters given are neither{hint}; {ACCEPTED}"
    ))
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {:08x}, material: <redacted> }}", self.id)
    }
}

/// The keys a store encrypts with: one current key that seals every write,
/// and older keys that can still open sessions written before a rotation.
///
/// A session opened with an older key is re-encrypted with the current key
/// on its next write (`stored-session rotate-keys` re-encrypts all of them);
/// once no row uses an old key, drop it from the ring.
///
/// ```
/// use stored_session::{Key, Keyring};
///
/// let old = Key::generate();
/// let new = Key::generate();
/// let ring = Keyring::new(new).with_previous(old)?;
/// assert_eq!(ring.len(), 2);
///
/// // The `STORED_SESSION_KEYS` format: base64 (or hex) keys, current
/// // first, separated by commas or white space.
/// let text = format!("{}, {}", Key::generate().to_base64().as_str(), Key::generate().to_base64().as_str());
/// let ring = Keyring::parse(&text)?;
/// assert_eq!(ring.len(), 2);
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<Key>>,
}

impl Keyring {
    /// A keyring with one key, used for writing and reading.
    pub fn new(current: Key) -> Self {
        Keyring {
            keys: Arc::new(vec![current]),
        }
    }

    /// A keyring with a freshly generated key: sessions will not survive a
    /// restart. For tests and throw-away development servers.
    pub fn generate() -> Self {
        Self::new(Key::generate())
    }

    /// Adds an older key that can still open sessions but never seals.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a key with the same id is already on the ring
    /// (the same rule as [`Keyring::parse`]): a duplicated key is almost
    /// always a mistake in the key list, such as the new key pasted twice
    /// instead of the old one.
    ///
    /// ```
    /// use stored_session::{Key, Keyring};
    ///
    /// let (old, new) = (Key::generate(), Key::generate());
    /// let ring = Keyring::new(new.clone()).with_previous(old)?;
    /// assert_eq!(ring.len(), 2);
    /// assert!(ring.with_previous(new).is_err());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn with_previous(self, key: Key) -> Result<Self> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(Error::Config(format!(
                "key {:08x} is on the key ring twice",
                key.id
            )));
        }
        let mut keys = Vec::clone(&self.keys);
        keys.push(key);
        Ok(Keyring {
            keys: Arc::new(keys),
        })
    }

    /// Parses the `STORED_SESSION_KEYS` format: one or more keys separated
    /// by commas and/or white space, the current key first. Each key is
    /// base64 (43 or 44 characters, as `stored-session keygen` and
    /// `openssl rand -base64 32` print) or hex (64 digits, as `openssl rand
    /// -hex 32` prints); see [`Key::parse`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text holds no key, a key is malformed
    /// (the message says which one, by position, and which encodings are
    /// accepted, never the key), or two keys share an id.
    ///
    /// ```
    /// use stored_session::Keyring;
    ///
    /// let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// let ring = Keyring::parse(&format!("{hex}, AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))?;
    /// assert_eq!(ring.len(), 2);
    ///
    /// let err = Keyring::parse(&format!("{hex} abc")).unwrap_err().to_string();
    /// assert!(err.contains("key 2 of 2"), "{err}");
    /// assert!(!err.contains(hex));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        let count = parts.len();
        let key = |i: usize| {
            Key::parse(parts[i]).map_err(|e| match e {
                Error::Config(m) if count > 1 => {
                    Error::Config(format!("key {} of {count} in the key list: {m}", i + 1))
                }
                other => other,
            })
        };
        if count == 0 {
            return Err(Error::Config(format!("the key list is empty: {MAKE_ONE}")));
        }
        let mut ring = Keyring::new(key(0)?);
        for i in 1..count {
            ring = ring.with_previous(key(i)?)?;
        }
        Ok(ring)
    }

    /// Reads and parses the `STORED_SESSION_KEYS` environment variable (the
    /// format of [`Keyring::parse`]: base64 or hex keys, current first).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the variable is unset or empty (the message
    /// says how to make a key: `stored-session keygen` or `openssl rand
    /// -base64 32`), is not UTF-8, or is malformed.
    pub fn from_env() -> Result<Self> {
        Self::from_var(std::env::var(KEYS_VAR))
    }

    /// [`Keyring::from_env`] on the variable's value as read.
    fn from_var(value: std::result::Result<String, std::env::VarError>) -> Result<Self> {
        const VAR: &str = KEYS_VAR;
        match value {
            Ok(text) if text.trim().is_empty() => Err(Error::Config(format!(
                "{VAR} is empty: {MAKE_ONE} and set {VAR} to it"
            ))),
            Ok(text) => Self::parse(&text),
            Err(std::env::VarError::NotPresent) => Err(Error::Config(format!(
                "{VAR} is not set: {MAKE_ONE} and set {VAR} to it"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!(
                "{VAR} is not valid UTF-8: {ACCEPTED}"
            ))),
        }
    }

    /// The key that seals every write.
    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    /// All keys, current first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Number of keys on the ring.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring holds at least its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key with this id, if it is on the ring.
    pub(super) fn find(&self, id: u32) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &format_args!("{:08x}", self.current().id))
            .field("keys", &self.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn message(result: Result<impl fmt::Debug>) -> String {
        match result {
            Err(Error::Config(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn hex_and_base64_are_the_same_key() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let by_bytes = Key::from_bytes(&bytes).unwrap();
        let b64 = by_bytes.to_base64();
        let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        for text in [
            HEX,
            &HEX.to_ascii_uppercase(),
            &format!("  {HEX}\n"),
            b64.as_str(),
            &padded,
        ] {
            assert_eq!(Key::parse(text).unwrap().id(), by_bytes.id(), "{text}");
        }
        assert_eq!(*Key::parse(HEX).unwrap().bytes, *by_bytes.bytes);
        // openssl rand -base64 32 prints padded standard base64.
        assert_eq!(Key::from_base64(&padded).unwrap().id(), by_bytes.id());
    }

    #[test]
    fn wrong_lengths_say_what_was_found_and_what_is_accepted() {
        let accepted = "43 or 44 characters of base64";
        let cases = [
            (&HEX[..62], "got 31 bytes from 62 hex digits"),
            (&format!("{HEX}ab")[..], "got 33 bytes from 66 hex digits"),
            (
                &base64::engine::general_purpose::STANDARD.encode([7u8; 48])[..],
                "got 48 bytes from 64 characters of base64",
            ),
            (
                "ZZZZZZZZZZZZZZZZZZZZZQ",
                "got 16 bytes from 22 characters of base64",
            ),
        ];
        for (text, found) in cases {
            let m = message(Key::parse(text));
            assert!(m.starts_with("a key must be 32 bytes, "), "{m}");
            assert!(m.contains(found), "{text}: {m}");
            assert!(m.contains(accepted) && m.contains("64 hex digits"), "{m}");
            assert!(m.contains("openssl rand -hex 32"), "{m}");
            assert!(!m.contains(text), "the key text leaked: {m}");
        }
        // from_base64 takes base64 only, and says where hex is taken.
        let m = message(Key::from_base64(HEX));
        assert!(
            m.contains("got 48 bytes from 64 characters of base64"),
            "{m}"
        );
        assert!(m.contains("this is a hex key: Key::parse"), "{m}");
        assert!(!m.contains(HEX), "{m}");
    }

    #[test]
    fn text_that_is_no_key_is_not_echoed() {
        let m = message(Key::parse("not a key at all!"));
        assert!(m.contains("neither"), "{m}");
        assert!(!m.contains("not a key at all"), "{m}");
        let m = message(Key::parse(&format!("\"{HEX}\"")));
        assert!(m.contains("remove the quotes"), "{m}");
        assert!(!m.contains(HEX), "{m}");
        let m = message(Key::from_base64("%%%"));
        assert!(m.contains("neither"), "{m}");
    }

    #[test]
    fn the_key_list_names_the_bad_key_and_how_to_make_one() {
        let good = Key::generate().to_base64();
        let m = message(Keyring::parse(&format!(
            "{}, {}",
            good.as_str(),
            &HEX[..10]
        )));
        assert!(m.starts_with("key 2 of 2 in the key list: "), "{m}");
        assert!(!m.contains(good.as_str()), "{m}");
        let m = message(Keyring::parse(&HEX[..10]));
        assert!(m.starts_with("a key must be 32 bytes"), "{m}");
        for empty in ["", " , ,\n"] {
            let m = message(Keyring::parse(empty));
            assert!(m.contains("stored-session keygen"), "{m}");
        }
        let ring = Keyring::parse(&format!("{HEX}\n{}", good.as_str())).unwrap();
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn a_missing_variable_says_how_to_make_a_key() {
        use std::env::VarError;
        let m = message(Keyring::from_var(Err(VarError::NotPresent)));
        assert_eq!(
            m,
            "STORED_SESSION_KEYS is not set: make a key with `stored-session keygen` \
             (or `openssl rand -base64 32`) and set STORED_SESSION_KEYS to it"
        );
        let m = message(Keyring::from_var(Ok("  ".into())));
        assert!(
            m.starts_with("STORED_SESSION_KEYS is empty: make a key"),
            "{m}"
        );
        let m = message(Keyring::from_var(Err(VarError::NotUnicode("x".into()))));
        assert!(m.contains("not valid UTF-8"), "{m}");
        assert_eq!(Keyring::from_var(Ok(HEX.into())).unwrap().len(), 1);
    }
}
