//! The write path's in-memory maps hash with foldhash.
//!
//! `std`'s SipHash costs more than everything else a write does per string lookup (the
//! dictionary is asked about every name, key and value of every span). foldhash is about
//! as fast as hashing gets and still seeded at random per process, so keys sent by
//! clients cannot be chosen to collide without knowing the seed. Never persisted: on-disk
//! hashes use FNV (see `write`).

use std::collections::{HashMap, HashSet};

pub(crate) type FastBuild = foldhash::fast::RandomState;
pub(crate) type FastMap<K, V> = HashMap<K, V, FastBuild>;
pub(crate) type FastSet<K> = HashSet<K, FastBuild>;

pub(crate) fn map<K, V>() -> FastMap<K, V> {
    HashMap::with_hasher(FastBuild::default())
}

pub(crate) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(n, FastBuild::default())
}

pub(crate) fn set<K>() -> FastSet<K> {
    HashSet::with_hasher(FastBuild::default())
}
