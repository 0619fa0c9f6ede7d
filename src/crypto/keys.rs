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
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Config(format!("a key must be 32 bytes, got {}", bytes.len())))?;
        Ok(Self::from_array(Zeroizing::new(array)))
    }

    /// Parses base64 text (standard or URL-safe alphabet, padded or not)
    /// holding 32 bytes, as printed by [`Key::to_base64`] or `stored-session keygen`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text is not base64 or not 32 bytes.
    ///
    /// ```
    /// let key = stored_session::Key::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")?;
    /// # let _ = key;
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn from_base64(text: &str) -> Result<Self> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let decoded = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| Error::Config("a key must be base64 text".into()))?;
        Self::from_bytes(&decoded)
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
/// // The `STORED_SESSION_KEYS` format: base64 keys, current first,
/// // separated by commas or white space.
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

    /// Parses the `STORED_SESSION_KEYS` format: one or more base64 keys
    /// separated by commas and/or white space; the first is the current key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text holds no key, a key is malformed, or
    /// two keys share an id.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty());
        let first = parts
            .next()
            .ok_or_else(|| Error::Config("no key in the key list".into()))?;
        let mut ring = Keyring::new(Key::from_base64(first)?);
        for part in parts {
            ring = ring.with_previous(Key::from_base64(part)?)?;
        }
        Ok(ring)
    }

    /// Reads and parses the `STORED_SESSION_KEYS` environment variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the variable is unset or malformed.
    pub fn from_env() -> Result<Self> {
        let text = std::env::var("STORED_SESSION_KEYS")
            .map_err(|_| Error::Config("STORED_SESSION_KEYS is not set".into()))?;
        Self::parse(&text)
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
