//! Keys, the keyring and the encrypted envelope stored in the `data` column.
//!
//! Envelope layout (all integers big-endian):
//!
//! ```text
//! format (1) | algorithm (1) | key id (4) | salt (16) | nonce (12) | ciphertext + tag (16)
//! ```
//!
//! The record key is HKDF-SHA256(salt, master key), so no single AES key ever
//! approaches the random-nonce limit. The additional authenticated data is the
//! header, the row's stored id and (format 2) the row version the envelope
//! was written at: an envelope copied into another row, put back into its
//! own row after the row moved on (restored from an older backup while the
//! `version` column kept its value), or with any header byte changed, fails
//! to open. Format 1 envelopes (no version in the AAD, written by 0.1) still
//! open, and are re-sealed as format 2 on their next write or by
//! `rotate_keys`. The salt is drawn when a
//! session is created (or renewed) and kept across its writes; the nonce is
//! fresh on every write. Derived record keys are cached per (key id, salt), so
//! a steady-state load pays no HKDF.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::id::StoredId;

/// Envelope format: the row version is part of the authenticated data.
const FORMAT: u8 = 2;
/// The 0.1 format, opened for compatibility: no row version in the AAD.
const FORMAT_UNVERSIONED: u8 = 1;
/// Algorithm byte: AES-256-GCM with an HKDF-SHA256 record key.
const ALG_AES256GCM_HKDF: u8 = 1;
pub(crate) const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the envelope header (authenticated, not encrypted).
pub(crate) const HEADER_LEN: usize = 1 + 1 + 4 + SALT_LEN + NONCE_LEN;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const RECORD_KEY_INFO: &[u8] = b"stored-session v1 record key";
const KEY_ID_CONTEXT: &[u8] = b"stored-session v1 key id";
const USER_KEY_INFO: &[u8] = b"stored-session v1 user binding";
const HANDLE_INFO: &[u8] = b"stored-session v1 session handle";

/// A record salt: drawn when a session is created or renewed.
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
    fn hmac_key(&self, purpose: &[u8]) -> ring::hmac::Key {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, purpose).extract(self.bytes.as_ref());
        let info = [purpose];
        let okm = prk
            .expand(&info, ring::hmac::HMAC_SHA256)
            .expect("HKDF output length is valid for HMAC-SHA256");
        ring::hmac::Key::from(okm)
    }

    fn record_key(&self, salt: &Salt) -> LessSafeKey {
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

    fn find(&self, id: u32) -> Option<&Key> {
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

/// Why an envelope did not open. Never shown to the visitor; recorded in a
/// `session_rejected` event and a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    Truncated,
    UnknownVersion,
    UnknownKey,
    Authentication,
}

/// What `open` learned besides the plaintext.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub salt: Salt,
    pub key_id: u32,
    /// Written in the 0.1 format (not bound to its row version).
    pub legacy: bool,
}

/// Seals and opens envelopes with a keyring, caching derived record keys.
pub(crate) struct Sealer {
    keyring: Keyring,
    rng: SystemRandom,
    /// Read-mostly (a steady-state load only reads it), so concurrent
    /// requests share a read lock instead of queueing on a mutex.
    cache: RwLock<KeyCache>,
    /// User-binding HMAC keys, one per ring key, current first.
    binding: Vec<ring::hmac::Key>,
    /// Key for opaque session handles (current key only).
    handles: ring::hmac::Key,
}

impl Sealer {
    pub fn new(keyring: Keyring, cache_capacity: usize) -> Self {
        let binding = keyring
            .keys()
            .iter()
            .map(|k| k.hmac_key(USER_KEY_INFO))
            .collect();
        let handles = keyring.current().hmac_key(HANDLE_INFO);
        Sealer {
            keyring,
            rng: SystemRandom::new(),
            cache: RwLock::new(KeyCache::new(cache_capacity)),
            binding,
            handles,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `plaintext` for the row `sid` at row version `version` (the
    /// version the write stores). When `salt` is `None` (a new or renewed
    /// session) a salt is drawn together with the nonce in one call and
    /// stored back into `salt`.
    pub fn seal(
        &self,
        sid: &StoredId,
        version: i64,
        salt: &mut Option<Salt>,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let sealed: Result<Vec<u8>, std::convert::Infallible> =
            self.seal_with(sid, version, salt, plaintext.len(), |out| {
                out.extend_from_slice(plaintext);
                Ok(())
            });
        match sealed {
            Ok(envelope) => envelope,
            Err(never) => match never {},
        }
    }

    /// Like [`seal`](Self::seal), with `write` appending the plaintext to
    /// the envelope's buffer itself (so an encoder writes straight into it:
    /// no separate plaintext buffer, no copy). `capacity` is the expected
    /// plaintext length, to size the buffer once.
    pub fn seal_with<E>(
        &self,
        sid: &StoredId,
        version: i64,
        salt: &mut Option<Salt>,
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let key = self.keyring.current();
        let mut random = [0u8; SALT_LEN + NONCE_LEN];
        let fresh = match salt {
            Some(s) => {
                self.fill(&mut random[SALT_LEN..]);
                random[..SALT_LEN].copy_from_slice(s);
                false
            }
            None => {
                self.fill(&mut random);
                true
            }
        };
        let mut salt_bytes = [0u8; SALT_LEN];
        salt_bytes.copy_from_slice(&random[..SALT_LEN]);
        if fresh {
            *salt = Some(salt_bytes);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[SALT_LEN..]);

        let mut out = Vec::with_capacity(HEADER_LEN + capacity + TAG_LEN);
        out.push(FORMAT);
        out.push(ALG_AES256GCM_HKDF);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&random);
        let aad = Aad::new(&out[..HEADER_LEN], sid, Some(version));
        write(&mut out)?;
        out.reserve_exact(TAG_LEN);
        let tag = self
            .with_record_key(key, &salt_bytes, |record_key| {
                record_key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad.as_bytes()),
                    &mut out[HEADER_LEN..],
                )
            })
            .expect("AES-GCM seal only fails for inputs over 64 GiB");
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens in place an envelope read from row `sid` at row version
    /// `version`, and returns the plaintext slice.
    pub fn open<'a>(
        &self,
        sid: &StoredId,
        version: i64,
        envelope: &'a mut [u8],
    ) -> std::result::Result<(&'a [u8], Opened), OpenError> {
        if envelope.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let legacy = match envelope[0] {
            FORMAT => false,
            FORMAT_UNVERSIONED => true,
            _ => return Err(OpenError::UnknownVersion),
        };
        if envelope[1] != ALG_AES256GCM_HKDF {
            return Err(OpenError::UnknownVersion);
        }
        let key_id = u32::from_be_bytes([envelope[2], envelope[3], envelope[4], envelope[5]]);
        let key = self.keyring.find(key_id).ok_or(OpenError::UnknownKey)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&envelope[6..6 + SALT_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope[6 + SALT_LEN..HEADER_LEN]);
        let aad = Aad::new(&envelope[..HEADER_LEN], sid, (!legacy).then_some(version));
        let plaintext = self
            .with_record_key(key, &salt, |record_key| {
                record_key.open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad.as_bytes()),
                    &mut envelope[HEADER_LEN..],
                )
            })
            .map_err(|_| OpenError::Authentication)?;
        Ok((
            plaintext,
            Opened {
                salt,
                key_id,
                legacy,
            },
        ))
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

    /// Whether sessions sealed under `key_id` should be re-encrypted.
    pub fn is_current(&self, key_id: u32) -> bool {
        key_id == self.keyring.current().id
    }

    fn fill(&self, buf: &mut [u8]) {
        self.rng
            .fill(buf)
            .expect("operating system random number generator failed");
    }

    /// Runs `f` with the record key of (`key`, `salt`), derived once and
    /// then cached. A cached key is used under the cache's read lock, in
    /// place: no reference count to bump on a shared cache line per use.
    fn with_record_key<T>(&self, key: &Key, salt: &Salt, f: impl FnOnce(&LessSafeKey) -> T) -> T {
        let cache_key = (key.id, *salt);
        {
            // A panic while holding this lock cannot leave the map inconsistent.
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = cache.get(&cache_key) {
                return f(found);
            }
        }
        let derived = Box::new(key.record_key(salt));
        let out = f(&derived);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, derived);
        out
    }
}

/// The additional authenticated data: header || stored id || row version
/// (the version only in format 2).
struct Aad {
    bytes: [u8; HEADER_LEN + 32 + 8],
    len: usize,
}

impl Aad {
    fn new(header: &[u8], sid: &StoredId, version: Option<i64>) -> Self {
        let mut bytes = [0u8; HEADER_LEN + 32 + 8];
        bytes[..HEADER_LEN].copy_from_slice(header);
        bytes[HEADER_LEN..HEADER_LEN + 32].copy_from_slice(sid.as_bytes());
        let len = match version {
            Some(v) => {
                bytes[HEADER_LEN + 32..].copy_from_slice(&v.to_be_bytes());
                bytes.len()
            }
            None => HEADER_LEN + 32,
        };
        Aad { bytes, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A bounded map of derived record keys, evicting the oldest insert first.
struct KeyCache {
    map: HashMap<(u32, Salt), Box<LessSafeKey>>,
    order: VecDeque<(u32, Salt)>,
    capacity: usize,
}

impl KeyCache {
    fn new(capacity: usize) -> Self {
        KeyCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &(u32, Salt)) -> Option<&LessSafeKey> {
        self.map.get(key).map(|k| &**k)
    }

    fn insert(&mut self, key: (u32, Salt), value: Box<LessSafeKey>) {
        if self.capacity == 0 || self.map.contains_key(&key) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key);
        self.map.insert(key, value);
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        for (_, salt) in self.order.iter_mut() {
            salt.zeroize();
        }
    }
}

fn hmac32(key: &ring::hmac::Key, data: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[allow(dead_code)]
fn _assert_algorithm_lengths() {
    debug_assert_eq!(aead::AES_256_GCM.tag_len(), TAG_LEN);
    debug_assert_eq!(aead::AES_256_GCM.nonce_len(), NONCE_LEN);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(Keyring::generate(), 16)
    }

    #[test]
    fn round_trip_and_salt_kept() {
        let s = sealer();
        let sid = StoredId::of("a");
        let mut salt = None;
        let mut env = s.seal(&sid, 1, &mut salt, b"hello");
        let first_salt = salt.unwrap();
        let (pt, opened) = s.open(&sid, 1, &mut env).unwrap();
        assert_eq!(pt, b"hello");
        assert_eq!(opened.salt, first_salt);
        let mut env2 = s.seal(&sid, 1, &mut salt, b"hello");
        assert_eq!(salt.unwrap(), first_salt);
        assert_ne!(
            env2[HEADER_LEN - NONCE_LEN..HEADER_LEN],
            env[HEADER_LEN - NONCE_LEN..HEADER_LEN]
        );
        assert_eq!(s.open(&sid, 1, &mut env2).unwrap().0, b"hello");
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let s = sealer();
        let sid = StoredId::of("a");
        let env = s.seal(&sid, 1, &mut None, b"some session data");
        for bit in 0..env.len() * 8 {
            let mut bad = env.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(s.open(&sid, 1, &mut bad).is_err(), "bit {bit} accepted");
        }
    }

    #[test]
    fn bound_to_its_row_and_key() {
        let s = sealer();
        let env = s.seal(&StoredId::of("a"), 1, &mut None, b"x");
        assert_eq!(
            s.open(&StoredId::of("b"), 1, &mut env.clone()).unwrap_err(),
            OpenError::Authentication
        );
        let other = sealer();
        assert_eq!(
            other
                .open(&StoredId::of("a"), 1, &mut env.clone())
                .unwrap_err(),
            OpenError::UnknownKey
        );
        assert_eq!(
            s.open(&StoredId::of("a"), 1, &mut env[..10].to_vec())
                .unwrap_err(),
            OpenError::Truncated
        );
    }

    #[test]
    fn bound_to_its_row_version() {
        let s = sealer();
        let sid = StoredId::of("a");
        let env = s.seal(&sid, 7, &mut None, b"x");
        assert!(s.open(&sid, 7, &mut env.clone()).is_ok());
        for other in [6, 8, 0, -7, i64::MAX] {
            assert_eq!(
                s.open(&sid, other, &mut env.clone()).unwrap_err(),
                OpenError::Authentication,
                "opened at version {other}"
            );
        }
        // Relabelled as the unversioned format: the tag covers the format.
        let mut relabelled = env.clone();
        relabelled[0] = FORMAT_UNVERSIONED;
        assert!(s.open(&sid, 7, &mut relabelled).is_err());
    }

    /// A 0.1 envelope (format 1: header and sid only) still opens at any
    /// version, and says it needs re-sealing.
    #[test]
    fn unversioned_format_still_opens() {
        let s = sealer();
        let sid = StoredId::of("a");
        let key = s.keyring.current();
        let salt = [5u8; SALT_LEN];
        let nonce = [9u8; NONCE_LEN];
        let mut env = vec![FORMAT_UNVERSIONED, ALG_AES256GCM_HKDF];
        env.extend_from_slice(&key.id.to_be_bytes());
        env.extend_from_slice(&salt);
        env.extend_from_slice(&nonce);
        let aad = Aad::new(&env[..HEADER_LEN], &sid, None);
        env.extend_from_slice(b"legacy");
        let tag = key
            .record_key(&salt)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad.as_bytes()),
                &mut env[HEADER_LEN..],
            )
            .unwrap();
        env.extend_from_slice(tag.as_ref());
        for version in [1, 42] {
            let mut copy = env.clone();
            let (plaintext, opened) = s.open(&sid, version, &mut copy).unwrap();
            assert_eq!(plaintext, b"legacy");
            assert!(opened.legacy);
        }
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = KeyCache::new(2);
        let key = Key::generate();
        for i in 0..5u8 {
            cache.insert((1, [i; 16]), Box::new(key.record_key(&[i; 16])));
        }
        assert_eq!(cache.map.len(), 2);
        assert!(cache.get(&(1, [4; 16])).is_some());
        assert!(cache.get(&(1, [0; 16])).is_none());
    }
}
