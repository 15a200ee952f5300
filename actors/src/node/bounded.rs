//! A map with a size bound that forgets its oldest entry, for tables keyed by what peers or
//! API callers choose. Inserting, finding and removing cost O(log n) at any size (the order
//! of insertion is kept in a second, ordered map), so a full table is no slower than an
//! empty one.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map of at most `capacity` entries; inserting a new key into a full map evicts the
/// entry inserted longest ago.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    next: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        BoundedMap { entries: HashMap::new(), order: BTreeMap::new(), next: 0, capacity: capacity.max(1) }
    }

    /// Inserts or replaces `key` (a replaced entry counts as new); returns the evicted key, if
    /// the map was full.
    pub fn insert(&mut self, key: K, value: V) -> Option<K> {
        let order = self.next;
        self.next += 1;
        if let Some((_, old)) = self.entries.insert(key.clone(), (value, order)) {
            self.order.remove(&old);
        }
        self.order.insert(order, key);
        if self.entries.len() > self.capacity {
            let (_, oldest) = self.order.pop_first()?;
            self.entries.remove(&oldest);
            return Some(oldest);
        }
        None
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// The value of `key`, to change in place (its age is kept).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, order) = self.entries.remove(key)?;
        self.order.remove(&order);
        Some(value)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_when_full_and_replacing_renews_an_entry() {
        let mut map = BoundedMap::new(3);
        for k in 1..=3 {
            assert_eq!(map.insert(k, k * 10), None);
        }
        // 1 is renewed, so 2 is now the oldest.
        assert_eq!(map.insert(1, 11), None);
        assert_eq!(map.insert(4, 40), Some(2));
        assert_eq!((map.get(&1), map.get(&2), map.len()), (Some(&11), None, 3));
        *map.get_mut(&3).unwrap() += 1;
        assert_eq!(map.remove(&3), Some(31));
        assert_eq!(map.insert(5, 50), None, "room after the removal");
        assert_eq!(map.insert(6, 60), Some(1));
    }
}
