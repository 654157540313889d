//! A store-wide dictionary of recurring strings (span names, attribute keys, common
//! values), so span groups refer to them by a small id instead of carrying them.
//!
//! Strings enter the dictionary once they have been stored in enough groups; the
//! dictionary is capped, so high-cardinality values (ids, timestamps) mostly stay in the
//! groups' own string tables, and when it is full new strings simply stay there too.
//! Ids are never reused or removed, so a group can always be decoded.

use std::sync::Arc;

use super::hash::{FastMap, map};

/// Groups a string must appear in before it is given an id.
const ADMIT_AFTER: u32 = 8;
/// Strings longer than this are never interned: they are rarely repeated verbatim.
const MAX_LEN: usize = 64;
/// Upper bound on entries, to bound memory (the whole dictionary is kept in memory).
const CAPACITY: usize = 100_000;
/// Upper bound on strings whose sightings are being counted; the counts are dropped
/// when it is reached (they are only a heuristic).
const SIGHTINGS_CAPACITY: usize = 200_000;

pub(crate) struct Dict {
    by_id: Vec<Arc<str>>,
    by_str: FastMap<Arc<str>, u32>,
}

impl Default for Dict {
    fn default() -> Dict {
        Dict {
            by_id: Vec::new(),
            by_str: map(),
        }
    }
}

impl Dict {
    #[inline]
    pub(crate) fn id(&self, s: &str) -> Option<u32> {
        // Longer strings are never admitted, so there is nothing to look up.
        if s.len() > MAX_LEN {
            return None;
        }
        self.by_str.get(s).copied()
    }

    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        self.by_id.get(id as usize).map(|s| &**s)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Adds an entry read from disk or just committed; ids are dense.
    pub(crate) fn insert(&mut self, id: u32, s: &str) {
        let s: Arc<str> = Arc::from(s);
        let idx = id as usize;
        if self.by_id.len() <= idx {
            self.by_id.resize(idx + 1, Arc::from(""));
        }
        self.by_id[idx] = Arc::clone(&s);
        self.by_str.insert(s, id);
    }
}

/// Counts how often strings that are not in the dictionary get stored, and decides
/// which to admit.
pub(crate) struct Admission {
    sightings: FastMap<String, u32>,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission { sightings: map() }
    }
}

impl Admission {
    /// Records that a group stored `strings` itself. Returns the ones to admit now, given
    /// that the dictionary holds `dict_len` entries (including ones admitted earlier in
    /// the same write).
    pub(crate) fn observe<'s>(
        &mut self,
        strings: impl IntoIterator<Item = &'s str>,
        dict_len: usize,
    ) -> Vec<&'s str> {
        let mut admit = Vec::new();
        if dict_len >= CAPACITY {
            return admit;
        }
        for s in strings {
            if s.is_empty() || s.len() > MAX_LEN {
                continue;
            }
            if self.sightings.len() >= SIGHTINGS_CAPACITY {
                self.sightings.clear();
            }
            // Look up before inserting: most sightings are of strings already counted.
            let n = match self.sightings.get_mut(s) {
                Some(n) => n,
                None => self.sightings.entry(s.to_string()).or_default(),
            };
            *n += 1;
            if *n >= ADMIT_AFTER && dict_len + admit.len() < CAPACITY {
                self.sightings.remove(s);
                admit.push(s);
            }
        }
        admit
    }
}
