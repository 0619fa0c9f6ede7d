//! The cache of derived record keys, so that a steady-state load pays no
//! HKDF: a bounded map per (key id, salt), split into shards, each
//! read-mostly behind its own read-write lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::RwLock;

use ring::aead::LessSafeKey;
use zeroize::Zeroize;

use super::keys::{Key, Salt};

/// How many shards the cache is split into: concurrent loads of different
/// sessions take different locks, so they do not all bounce one lock's
/// cache line between cores.
const SHARDS: usize = 16;

/// Record keys derived from (master key, salt), derived once and then
/// cached. Read-mostly (a steady-state load only reads it), so concurrent
/// requests share a read lock instead of queueing on a mutex.
pub(super) struct RecordKeys {
    shards: Box<[RwLock<KeyCache>]>,
    hasher: SaltHasher,
}

impl RecordKeys {
    /// A cache of at most `capacity` keys (0: derive on every use).
    pub(super) fn new(capacity: usize) -> Self {
        let shards = if capacity < SHARDS { 1 } else { SHARDS };
        // Every shard holds its share, rounded up: at most `capacity` plus
        // `shards - 1` keys in all.
        let per_shard = capacity.div_ceil(shards);
        RecordKeys {
            shards: (0..shards)
                .map(|_| RwLock::new(KeyCache::new(per_shard)))
                .collect(),
            hasher: SaltHasher::default(),
        }
    }

    /// Runs `f` with the record key of (`key`, `salt`), derived once and
    /// then cached. A cached key is used under its shard's read lock, in
    /// place: no reference count to bump on a shared cache line per use.
    pub(super) fn with<T>(&self, key: &Key, salt: &Salt, f: impl FnOnce(&LessSafeKey) -> T) -> T {
        let cache_key = CacheKey {
            key_id: key.id(),
            salt: *salt,
        };
        let hash = self.hasher.hash_one(cache_key);
        // The top bits pick the shard; the map uses the hash as it is.
        let shard = &self.shards[(hash >> 60) as usize % self.shards.len()];
        {
            // A panic while holding this lock cannot leave the map inconsistent.
            let cache = shard.read().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = cache.get(&cache_key) {
                return f(found);
            }
        }
        let derived = Box::new(key.record_key(salt));
        let out = f(&derived);
        shard
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, derived);
        out
    }
}

/// A key of the cache: the master key's id and the envelope's salt.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    key_id: u32,
    salt: Salt,
}

impl Hash for CacheKey {
    /// Two words: the salt's halves, the key id folded into the first.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (low, high) = self.salt.split_at(8);
        let word = |half: &[u8]| u64::from_le_bytes(half.try_into().unwrap_or([0; 8]));
        state.write_u64(word(low) ^ u64::from(self.key_id));
        state.write_u64(word(high));
    }
}

/// The cache's hash function: `foldhash`'s, seeded per map and per
/// process. A salt is 16 bytes from the operating system's CSPRNG, so
/// SipHash (the standard map's default, about a hundred instructions per
/// probe) buys nothing over foldhash's folded multiplications, and the
/// random seed keeps salts planted in the table by someone who can write
/// to it from being chosen to fall into one bucket.
type SaltHasher = foldhash::fast::RandomState;

/// A bounded map of derived record keys, evicting the oldest insert first.
struct KeyCache {
    map: HashMap<CacheKey, Box<LessSafeKey>, SaltHasher>,
    order: VecDeque<CacheKey>,
    capacity: usize,
}

impl KeyCache {
    fn new(capacity: usize) -> Self {
        KeyCache {
            // Its own random keys: the map's buckets and tags do not follow
            // the bits that picked the shard.
            map: HashMap::with_hasher(SaltHasher::default()),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &CacheKey) -> Option<&LessSafeKey> {
        self.map.get(key).map(|k| &**k)
    }

    fn insert(&mut self, key: CacheKey, value: Box<LessSafeKey>) {
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
        for key in self.order.iter_mut() {
            key.salt.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::Key;

    fn cache_key(i: u8) -> CacheKey {
        CacheKey {
            key_id: 1,
            salt: [i; 16],
        }
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = KeyCache::new(2);
        let key = Key::generate();
        for i in 0..5u8 {
            cache.insert(cache_key(i), Box::new(key.record_key(&[i; 16])));
        }
        assert_eq!(cache.map.len(), 2);
        assert!(cache.get(&cache_key(4)).is_some());
        assert!(cache.get(&cache_key(0)).is_none());
    }

    #[test]
    fn the_sharded_cache_holds_its_capacity_and_no_more() {
        let key = Key::generate();
        let keys = RecordKeys::new(64);
        assert_eq!(keys.shards.len(), SHARDS);
        let count = || {
            keys.shards
                .iter()
                .map(|s| s.read().unwrap().map.len())
                .sum::<usize>()
        };
        for i in 0..=255u8 {
            let salt = [i, i ^ 0x5a, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, i];
            keys.with(&key, &salt, |_| ());
        }
        // Each shard keeps at most its share (4 of 64).
        assert!(count() <= 64, "{}", count());
        assert!(keys.shards.iter().all(|s| s.read().unwrap().map.len() <= 4));
        // A small cache is one shard.
        let small = RecordKeys::new(3);
        assert_eq!(small.shards.len(), 1);
        for i in 0..10u8 {
            small.with(&key, &[i; 16], |_| ());
        }
        assert_eq!(small.shards[0].read().unwrap().map.len(), 3);
    }

    #[test]
    fn a_cached_key_is_the_key_derived_for_that_salt() {
        use ring::aead::{Aad, Nonce};
        let key = Key::generate();
        let keys = RecordKeys::new(16);
        let (salt, other) = ([7u8; 16], [8u8; 16]);
        let mut sealed = b"payload".to_vec();
        let tag = key
            .record_key(&salt)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::empty(),
                &mut sealed,
            )
            .unwrap();
        sealed.extend_from_slice(tag.as_ref());
        for round in 0..2 {
            // Once derived, once from the cache; the other salt never opens it.
            let opened = keys.with(&key, &salt, |k| {
                k.open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::empty(),
                    &mut sealed.clone(),
                )
                .map(|p| p.to_vec())
            });
            assert_eq!(opened.as_deref(), Ok(&b"payload"[..]), "round {round}");
            let wrong = keys.with(&key, &other, |k| {
                k.open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::empty(),
                    &mut sealed.clone(),
                )
                .is_ok()
            });
            assert!(!wrong);
        }
    }

    #[test]
    fn the_hash_depends_on_every_byte_of_the_salt_and_the_key_id() {
        let hasher = SaltHasher::default();
        let base = CacheKey {
            key_id: 9,
            salt: [0x42; 16],
        };
        let h = hasher.hash_one(base);
        for byte in 0..16 {
            let mut changed = base;
            changed.salt[byte] ^= 1;
            assert_ne!(hasher.hash_one(changed), h, "byte {byte}");
        }
        let other_key = CacheKey { key_id: 10, ..base };
        assert_ne!(hasher.hash_one(other_key), h);
    }
}
