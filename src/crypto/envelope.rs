//! The encrypted envelope stored in the `data` column: its format, the
//! additional authenticated data, and [`Sealer`], which seals and opens it.
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
//! fresh on every write.

use ring::aead::{self, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

use super::key_cache::RecordKeys;
use super::keys::{Keyring, Salt, SALT_LEN};
use crate::id::StoredId;

/// Envelope format: the row version is part of the authenticated data.
const FORMAT: u8 = 2;
/// The 0.1 format, opened for compatibility: no row version in the AAD.
const FORMAT_UNVERSIONED: u8 = 1;
/// Algorithm byte: AES-256-GCM with an HKDF-SHA256 record key.
const ALG_AES256GCM_HKDF: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the envelope header (authenticated, not encrypted).
pub(crate) const HEADER_LEN: usize = 1 + 1 + 4 + SALT_LEN + NONCE_LEN;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Where the key id sits in the header (the same in both formats).
pub(crate) const KEY_ID_RANGE: std::ops::Range<usize> = 2..6;

/// The key id of an envelope header's key id field (the bytes at
/// [`KEY_ID_RANGE`]), or `None` when there are not exactly four of them.
pub(crate) fn key_id_of_field(field: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(field).ok().map(u32::from_be_bytes)
}

/// Why an envelope did not open. Never shown to the visitor; recorded in a
/// `session_rejected` event and a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    Truncated,
    UnknownVersion,
    /// The header names this key id, which is not on the keyring.
    UnknownKey(u32),
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

/// Which salt a seal uses.
#[derive(Clone, Copy)]
pub(crate) enum SaltChoice {
    /// Draw a fresh one (a new or renewed row).
    Fresh,
    /// Keep the row's salt (a rewrite of the same row).
    Keep(Salt),
}

/// Seals and opens envelopes with a keyring, caching derived record keys.
pub(crate) struct Sealer {
    keyring: Keyring,
    rng: SystemRandom,
    record_keys: RecordKeys,
}

impl Sealer {
    /// A sealer on `keyring` keeping at most `cache_capacity` record keys.
    pub fn new(keyring: Keyring, cache_capacity: usize) -> Self {
        Sealer {
            keyring,
            rng: SystemRandom::new(),
            record_keys: RecordKeys::new(cache_capacity),
        }
    }

    /// The keyring it seals and opens with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `plaintext` for a new row `sid` (a new or renewed session) at
    /// row version `version` (the version the write stores), under a fresh
    /// salt drawn together with the nonce in one call; returns the envelope
    /// and that salt.
    #[cfg(any(test, feature = "fuzzing", feature = "bench-internals"))]
    pub fn seal_new(&self, sid: &StoredId, version: i64, plaintext: &[u8]) -> (Vec<u8>, Salt) {
        self.seal_plain(sid, version, SaltChoice::Fresh, plaintext)
    }

    /// Seals `plaintext` for the existing row `sid` at row version
    /// `version`, keeping the row's `salt` (so its derived record key stays
    /// cached).
    pub fn seal_again(
        &self,
        sid: &StoredId,
        version: i64,
        salt: &Salt,
        plaintext: &[u8],
    ) -> Vec<u8> {
        self.seal_plain(sid, version, SaltChoice::Keep(*salt), plaintext)
            .0
    }

    fn seal_plain(
        &self,
        sid: &StoredId,
        version: i64,
        salt: SaltChoice,
        plaintext: &[u8],
    ) -> (Vec<u8>, Salt) {
        let sealed: Result<_, std::convert::Infallible> =
            self.seal_with(sid, version, salt, plaintext.len(), |out| {
                out.extend_from_slice(plaintext);
                Ok(())
            });
        match sealed {
            Ok(sealed) => sealed,
            Err(never) => match never {},
        }
    }

    /// Seals for the row `sid` at row version `version` with the salt
    /// `salt` chooses, `write` appending the plaintext to the envelope's
    /// buffer itself (so an encoder writes straight into it: no separate
    /// plaintext buffer, no copy). `capacity` is the expected plaintext
    /// length, to size the buffer once. Returns the envelope and the salt
    /// it was sealed under.
    pub fn seal_with<E>(
        &self,
        sid: &StoredId,
        version: i64,
        salt: SaltChoice,
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(Vec<u8>, Salt), E> {
        let key = self.keyring.current();
        let mut random = [0u8; SALT_LEN + NONCE_LEN];
        match salt {
            SaltChoice::Keep(s) => {
                self.fill(&mut random[SALT_LEN..]);
                random[..SALT_LEN].copy_from_slice(&s);
            }
            SaltChoice::Fresh => self.fill(&mut random),
        }
        let mut salt_bytes = [0u8; SALT_LEN];
        salt_bytes.copy_from_slice(&random[..SALT_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[SALT_LEN..]);

        let mut out = Vec::with_capacity(HEADER_LEN + capacity + TAG_LEN);
        out.push(FORMAT);
        out.push(ALG_AES256GCM_HKDF);
        out.extend_from_slice(&key.id().to_be_bytes());
        out.extend_from_slice(&random);
        let aad = Aad::new(&out[..HEADER_LEN], sid, Some(version));
        write(&mut out)?;
        out.reserve_exact(TAG_LEN);
        let tag = self
            .record_keys
            .with(key, &salt_bytes, |record_key| {
                record_key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad.as_bytes()),
                    &mut out[HEADER_LEN..],
                )
            })
            .expect("AES-GCM seal only fails for inputs over 64 GiB");
        out.extend_from_slice(tag.as_ref());
        Ok((out, salt_bytes))
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
        let key_id = key_id_of_field(&envelope[KEY_ID_RANGE]).ok_or(OpenError::Truncated)?;
        let key = self
            .keyring
            .find(key_id)
            .ok_or(OpenError::UnknownKey(key_id))?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&envelope[6..6 + SALT_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope[6 + SALT_LEN..HEADER_LEN]);
        let aad = Aad::new(&envelope[..HEADER_LEN], sid, (!legacy).then_some(version));
        let plaintext = self
            .record_keys
            .with(key, &salt, |record_key| {
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

    /// Whether `key_id` names a key on the keyring.
    pub fn knows(&self, key_id: u32) -> bool {
        self.keyring.find(key_id).is_some()
    }

    /// Whether sessions sealed under `key_id` should be re-encrypted.
    pub fn is_current(&self, key_id: u32) -> bool {
        key_id == self.keyring.current().id()
    }

    fn fill(&self, buf: &mut [u8]) {
        self.rng
            .fill(buf)
            .expect("operating system random number generator failed");
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

#[cfg(test)]
mod tests {
    #[test]
    fn layout_matches_the_algorithm() {
        assert_eq!(aead::AES_256_GCM.tag_len(), TAG_LEN);
        assert_eq!(aead::AES_256_GCM.nonce_len(), NONCE_LEN);
    }

    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(Keyring::generate(), 16)
    }

    #[test]
    fn round_trip_and_salt_kept() {
        let s = sealer();
        let sid = StoredId::of("a");
        let (mut env, first_salt) = s.seal_new(&sid, 1, b"hello");
        let (pt, opened) = s.open(&sid, 1, &mut env).unwrap();
        assert_eq!(pt, b"hello");
        assert_eq!(opened.salt, first_salt);
        let mut env2 = s.seal_again(&sid, 1, &first_salt, b"hello");
        assert_eq!(
            s.open(&sid, 1, &mut env2.clone()).unwrap().1.salt,
            first_salt
        );
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
        let (env, _) = s.seal_new(&sid, 1, b"some session data");
        for bit in 0..env.len() * 8 {
            let mut bad = env.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(s.open(&sid, 1, &mut bad).is_err(), "bit {bit} accepted");
        }
    }

    #[test]
    fn bound_to_its_row_and_key() {
        let s = sealer();
        let (env, _) = s.seal_new(&StoredId::of("a"), 1, b"x");
        assert_eq!(
            s.open(&StoredId::of("b"), 1, &mut env.clone()).unwrap_err(),
            OpenError::Authentication
        );
        let other = sealer();
        assert_eq!(
            other
                .open(&StoredId::of("a"), 1, &mut env.clone())
                .unwrap_err(),
            OpenError::UnknownKey(s.keyring.current().id())
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
        let (env, _) = s.seal_new(&sid, 7, b"x");
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
        env.extend_from_slice(&key.id().to_be_bytes());
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
}
