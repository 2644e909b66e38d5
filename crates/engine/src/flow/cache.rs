//! [`VerdictCache`]: a packet thread's own small, direct-mapped cache of decided flows in
//! front of the shared flow table. Most packets belong to flows whose verdict is known; the
//! cache answers them without the table's lock and hash probe. Each entry is good for the
//! second of packet time it was filled in, so every decided flow still passes through the
//! table once a second and keeps its idle timer there fresh; a flow the table dropped or
//! restarted is seen at the latest one second later. Bounded (a fixed number of slots);
//! colliding flows only evict each other.

use std::hash::BuildHasher;

use super::FlowKey;
use crate::flow::PacketAction;

/// Slots per packet thread (48 bytes each: fits a core's L2 cache with room to spare).
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    key: FlowKey,
    second: u64,
    cached: Cached,
}

const _: () = assert!(std::mem::size_of::<Option<Slot>>() == 48);

/// A cached verdict, and which side of the flow's key is its client (so a packet's
/// direction is known without the flow table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cached {
    pub action: PacketAction,
    pub client_is_low: bool,
}

pub struct VerdictCache {
    slots: Box<[Option<Slot>]>,
    /// Seeded per process, like the table's own hasher, so a sender cannot aim collisions.
    hasher: foldhash::fast::RandomState,
}

impl Default for VerdictCache {
    fn default() -> Self {
        Self {
            slots: vec![None; SLOTS].into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl VerdictCache {
    /// The cached verdict of `key`, if it was filled in during second `now`.
    pub fn get(&self, key: &FlowKey, now: u64) -> Option<Cached> {
        let slot = self.slots.get(self.index(key))?.as_ref()?;
        (slot.second == now && slot.key == *key).then_some(slot.cached)
    }

    pub fn put(&mut self, key: FlowKey, now: u64, cached: Cached) {
        let index = self.index(&key);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Slot {
                key,
                second: now,
                cached,
            });
        }
    }

    /// Drops `key` (a new connection on its 5-tuple must be inspected afresh).
    pub fn forget(&mut self, key: &FlowKey) {
        let index = self.index(key);
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.is_some_and(|s| s.key == *key) {
                *slot = None;
            }
        }
    }

    fn index(&self, key: &FlowKey) -> usize {
        (self.hasher.hash_one(key) as usize) % SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, Protocol};

    fn key(port: u16) -> FlowKey {
        let packet = Packet {
            src: "192.0.2.1".parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            src_port: port,
            dst_port: 443,
            tcp: None,
            payload: &[],
            segment: &[],
            ttl: 64,
            fragment: None,
            tunnel: None,
            unopened: None,
        };
        FlowKey::of(&packet).0
    }

    fn cached(action: PacketAction) -> Cached {
        Cached {
            action,
            client_is_low: true,
        }
    }

    #[test]
    fn a_verdict_holds_for_the_second_it_was_cached_in() {
        let mut cache = VerdictCache::default();
        cache.put(key(1), 10, cached(PacketAction::Drop));
        assert_eq!(cache.get(&key(1), 10), Some(cached(PacketAction::Drop)));
        assert_eq!(cache.get(&key(1), 11), None);
        assert_eq!(cache.get(&key(2), 10), None);
        cache.forget(&key(2));
        assert_eq!(cache.get(&key(1), 10), Some(cached(PacketAction::Drop)));
        cache.forget(&key(1));
        assert_eq!(cache.get(&key(1), 10), None);
        let server_side = Cached {
            action: PacketAction::Accept,
            client_is_low: false,
        };
        cache.put(key(3), 10, server_side);
        assert_eq!(cache.get(&key(3), 10), Some(server_side));
    }

    #[test]
    fn colliding_flows_only_evict_each_other() {
        let mut cache = VerdictCache::default();
        for port in 0..20_000u16 {
            cache.put(key(port), 1, cached(PacketAction::Accept));
        }
        // Every answer is the verdict of the flow asked about, or none.
        for port in 0..20_000u16 {
            assert!(matches!(
                cache.get(&key(port), 1).map(|c| c.action),
                None | Some(PacketAction::Accept)
            ));
        }
        cache.put(key(7), 1, cached(PacketAction::Reject));
        assert_eq!(cache.get(&key(7), 1), Some(cached(PacketAction::Reject)));
    }
}
