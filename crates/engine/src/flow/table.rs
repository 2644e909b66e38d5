//! [`FlowTable`]: flows on a `DashMap`, with a hard cap and idle expiry driven by packet time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;
use dashmap::DashMap;

use super::{FlowKey, StreamBuf};
use crate::stats::{Family, MetricSink};

const ENTRIES: Family = Family {
    name: "telestrip_flow_table_entries",
    help: "Flows tracked now.",
    labels: &[],
};
const CAPACITY: Family = Family {
    name: "telestrip_flow_table_capacity",
    help: "Configured maximum of tracked flows.",
    labels: &[],
};
const EVICTIONS: Family = Family {
    name: "telestrip_flow_table_evictions_total",
    help: "Flows removed from the table: after their idle timeout, or to make room in a full table (connections that never sent data, decided UDP flows).",
    labels: &[],
};
const FULL: Family = Family {
    name: "telestrip_flow_table_full_total",
    help: "New flows not tracked because the table was full (judged packet by packet).",
    labels: &[],
};

/// Where a flow is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No name yet: the client's first flight is being inspected.
    Pending,
    /// The verdict is known and cached for every later packet.
    Decided(Decision),
    /// DNS: every message is judged on its own, nothing is cached.
    Dns,
}

/// A flow's cached verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: crate::flow::PacketAction,
}

/// Per-flow state: 40 bytes, so that a tracked flow costs well under 256 bytes of memory
/// with its key and the table's slack. What only a flow in inspection needs (reassembly
/// buffers) is boxed; the SYN's traits and which sequence numbers are known are bits.
#[derive(Debug)]
pub struct FlowState {
    /// Packet time of the last packet, in seconds.
    pub last_seen: u64,
    /// Reassembly buffers, only while a flow is pending (or for DNS over TCP).
    pub streams: Option<Box<Streams>>,
    /// Hash of the last name judged on the flow ([`crate::engine`]'s name tag): a DNS
    /// query's (or a cloaked answer's target), so retransmitted messages are recorded once;
    /// the hello's that decided a QUIC flow, so a hello the client sends again is not judged
    /// (counted, logged) twice. See [`FlowState::name_again`].
    pub last_name_tag: u64,
    client_isn: u32,
    server_isn: u32,
    /// Client data packets inspected while pending.
    pub data_packets: u16,
    pub phase: Phase,
    /// DNS over TCP: the worst verdict given so far. A blocked message's retransmission is
    /// old data to the reassembler, so the block has to stick to the connection.
    pub dns_sticky: crate::flow::PacketAction,
    syn_ttl: u8,
    flags: u8,
}

/// Bits of [`FlowState::flags`].
const CLIENT_IS_LOW: u8 = 1;
const CLIENT_ISN_KNOWN: u8 = 1 << 1;
const SERVER_ISN_KNOWN: u8 = 1 << 2;
const SYN_SEEN: u8 = 1 << 3;
const SYN_MD5: u8 = 1 << 4;
const SYN_CHECKSUM_OK: u8 = 1 << 5;

/// The reassembly buffers of a flow in inspection.
#[derive(Clone, Debug, Default)]
pub struct Streams {
    pub client: Option<StreamBuf>,
    /// A second view of the client's stream in which later copies of overlapping bytes win;
    /// only made once overlapping segments disagreed.
    pub client_alt: Option<StreamBuf>,
    pub server: Option<StreamBuf>,
}

/// The client SYN's traits that its later segments share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynShape {
    pub ttl: u8,
    pub md5: bool,
    /// The SYN's TCP checksum was right (false too when it could not be checked, e.g. a
    /// capture on the sending host with checksum offload).
    pub checksum_ok: bool,
}

impl FlowState {
    /// Remembers `tag` as the last name judged on the flow; true when it already was (the
    /// same name sent again).
    pub fn name_again(&mut self, tag: u64) -> bool {
        let again = self.last_name_tag == tag;
        self.last_name_tag = tag;
        again
    }

    /// `client_is_low`: the client (the side that sent the SYN, or the first packet) is the
    /// key's low side.
    pub fn new(client_is_low: bool, now: u64) -> Self {
        Self {
            last_seen: now,
            streams: None,
            last_name_tag: 0,
            client_isn: 0,
            server_isn: 0,
            data_packets: 0,
            phase: Phase::Pending,
            dns_sticky: crate::flow::PacketAction::Accept,
            syn_ttl: 0,
            flags: if client_is_low { CLIENT_IS_LOW } else { 0 },
        }
    }

    pub fn client_is_low(&self) -> bool {
        self.flags & CLIENT_IS_LOW != 0
    }

    /// Next client sequence number, learned from the SYN.
    pub fn client_isn(&self) -> Option<u32> {
        (self.flags & CLIENT_ISN_KNOWN != 0).then_some(self.client_isn)
    }

    pub fn set_client_isn(&mut self, next: u32) {
        self.client_isn = next;
        self.flags |= CLIENT_ISN_KNOWN;
    }

    /// Next server sequence number, learned from the SYN-ACK.
    pub fn server_isn(&self) -> Option<u32> {
        (self.flags & SERVER_ISN_KNOWN != 0).then_some(self.server_isn)
    }

    pub fn set_server_isn(&mut self, next: u32) {
        self.server_isn = next;
        self.flags |= SERVER_ISN_KNOWN;
    }

    /// What the client's SYN looked like, so that decoy segments (lower TTL, an MD5 option,
    /// a wrong checksum) can be told from the client's own.
    pub fn client_syn(&self) -> Option<SynShape> {
        (self.flags & SYN_SEEN != 0).then_some(SynShape {
            ttl: self.syn_ttl,
            md5: self.flags & SYN_MD5 != 0,
            checksum_ok: self.flags & SYN_CHECKSUM_OK != 0,
        })
    }

    pub fn set_client_syn(&mut self, syn: SynShape) {
        self.syn_ttl = syn.ttl;
        self.flags &= !(SYN_MD5 | SYN_CHECKSUM_OK);
        self.flags |= SYN_SEEN
            | if syn.md5 { SYN_MD5 } else { 0 }
            | if syn.checksum_ok { SYN_CHECKSUM_OK } else { 0 };
    }

    pub fn client_stream(&self) -> Option<&StreamBuf> {
        self.streams.as_deref().and_then(|s| s.client.as_ref())
    }

    /// The reassembly buffers, made on first use.
    pub fn streams_mut(&mut self) -> &mut Streams {
        self.streams.get_or_insert_with(Box::default)
    }

    /// Frees the stream buffers once they are no longer needed.
    pub fn release_streams(&mut self) {
        self.streams = None;
    }
}

/// Idle timeouts, in seconds of packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Flows still being inspected (half-open, no name yet).
    pub pending: u64,
    /// Decided TCP flows.
    pub tcp: u64,
    /// Decided UDP flows and DNS.
    pub udp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // Linux conntrack's defaults are 120 s unreplied/5 days established TCP and 30/120 s
        // UDP; telestrip only needs the verdict while packets still flow.
        Self {
            pending: 30,
            tcp: 600,
            udp: 120,
        }
    }
}

/// The shared flow table.
/// Flow keys come from the wire, but foldhash is seeded per process (RandomState), so a
/// sender cannot aim for one bucket; SipHash would cost a third of a known-flow packet.
type FlowHasher = foldhash::fast::RandomState;

pub struct FlowTable {
    map: DashMap<FlowKey, FlowState, FlowHasher>,
    len: AtomicUsize,
    max_flows: usize,
    timeouts: Timeouts,
    next_sweep: AtomicU64,
    /// When a full table may next be swept (at most once per second of packet time, so a
    /// flood of new flows does not make every packet walk the whole table).
    next_pressure_sweep: AtomicU64,
    pub expired: AtomicU64,
    /// New flows not tracked because the table was full.
    pub refused: AtomicU64,
}

/// Lock shards of the table: with DashMap's default (4 per core) two packet threads keep
/// taking each other's shard locks, and the lock's cache line moves between their cores on
/// almost every packet; with this many they rarely meet.
const FLOW_TABLE_SHARDS: usize = 256;

/// How often (packet-time seconds) idle flows are swept out.
const SWEEP_INTERVAL_SECONDS: u64 = 5;

impl FlowTable {
    pub fn new(max_flows: usize, timeouts: Timeouts) -> Self {
        Self {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                max_flows.min(1 << 16),
                FlowHasher::default(),
                FLOW_TABLE_SHARDS,
            ),
            len: AtomicUsize::new(0),
            max_flows,
            timeouts,
            next_sweep: AtomicU64::new(0),
            next_pressure_sweep: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_flows(&self) -> usize {
        self.max_flows
    }

    /// Reports the table's size, cap, evictions and refusals to `sink`.
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        sink.gauge(&ENTRIES, &[], self.len() as u64);
        sink.gauge(&CAPACITY, &[], self.max_flows as u64);
        sink.counter(&EVICTIONS, &[], self.expired.load(Ordering::Relaxed));
        sink.counter(&FULL, &[], self.refused.load(Ordering::Relaxed));
    }

    /// The flow's state, created with `make` if new. `None` when the table is full even after
    /// expiring idle flows: the caller handles the packet without state.
    pub fn entry(
        &self,
        key: FlowKey,
        now: u64,
        make: impl FnOnce() -> FlowState,
    ) -> Option<RefMut<'_, FlowKey, FlowState>> {
        // One probe of the table finds the flow or makes it; only a full table lets go of
        // the shard's lock (a sweep takes every shard's) and looks again.
        match self.map.entry(key) {
            Entry::Occupied(existing) => return Some(existing.into_ref()),
            Entry::Vacant(vacant) if self.len() < self.max_flows => {
                self.len.fetch_add(1, Ordering::Relaxed);
                return Some(vacant.insert(make()));
            }
            Entry::Vacant(_) => {}
        }
        let due = self.next_pressure_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_pressure_sweep
                .compare_exchange(due, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
            if self.len() * 10 >= self.max_flows * 9 {
                self.evict_under_pressure();
            }
        }
        if self.len() >= self.max_flows {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let entry = self.map.entry(key).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            make()
        });
        Some(entry)
    }

    /// Whether a packet at `now` would sweep (see [`FlowTable::maybe_sweep`]).
    pub fn sweep_due(&self, now: u64) -> bool {
        now >= self.next_sweep.load(Ordering::Relaxed)
    }

    /// Sweeps idle flows when the sweep interval has passed. Call with no table ref held.
    pub fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(
                    due,
                    now + SWEEP_INTERVAL_SECONDS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.sweep(now);
        }
    }

    /// Makes room in a full table by dropping what costs least to lose: connections that
    /// never sent data (what a SYN flood leaves; a real one is picked up again from its
    /// first data packet) and decided UDP flows (inline, their verdict lives on in the
    /// connection mark). Flows in the middle of their first flight are kept.
    fn evict_under_pressure(&self) {
        let mut removed = 0u64;
        self.map.retain(|key, state| {
            let embryonic = state.phase == Phase::Pending
                && state.client_stream().is_none()
                && state.data_packets == 0;
            let decided_udp = matches!(state.phase, Phase::Decided(_))
                && key.protocol() != crate::wire::Protocol::Tcp;
            let keep = !(embryonic || decided_udp);
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len.fetch_sub(removed as usize, Ordering::Relaxed);
        self.expired.fetch_add(removed, Ordering::Relaxed);
    }

    /// Removes every flow idle for longer than its timeout.
    pub fn sweep(&self, now: u64) {
        let timeouts = self.timeouts;
        let mut removed = 0u64;
        self.map.retain(|key, state| {
            let limit = match state.phase {
                Phase::Pending => timeouts.pending,
                Phase::Dns => timeouts.udp,
                Phase::Decided(_) if key.protocol() == crate::wire::Protocol::Tcp => timeouts.tcp,
                Phase::Decided(_) => timeouts.udp,
            };
            let keep = now.saturating_sub(state.last_seen) <= limit;
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len.fetch_sub(removed as usize, Ordering::Relaxed);
        self.expired.fetch_add(removed, Ordering::Relaxed);
    }

    /// Removes one flow (e.g. after RST), keeping the count right.
    pub fn remove(&self, key: &FlowKey) {
        if self.map.remove(key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracked_flow_and_its_key_take_80_bytes() {
        // The table's share of the per-flow memory budget (256 bytes with the hash table's
        // slack); the boxed streams exist only during inspection.
        assert!(std::mem::size_of::<FlowState>() <= 40);
        assert!(std::mem::size_of::<(FlowKey, FlowState)>() <= 80);
    }

    #[test]
    fn sequence_numbers_and_syn_traits_are_kept_apart() {
        let mut flow = FlowState::new(true, 7);
        assert!(flow.client_is_low());
        assert_eq!(
            (flow.client_isn(), flow.server_isn(), flow.client_syn()),
            (None, None, None)
        );
        flow.set_server_isn(0);
        assert_eq!((flow.client_isn(), flow.server_isn()), (None, Some(0)));
        flow.set_client_isn(u32::MAX);
        let syn = SynShape {
            ttl: 63,
            md5: true,
            checksum_ok: false,
        };
        flow.set_client_syn(syn);
        assert_eq!(flow.client_isn(), Some(u32::MAX));
        assert_eq!(flow.client_syn(), Some(syn));
        let other = SynShape {
            ttl: 1,
            md5: false,
            checksum_ok: true,
        };
        flow.set_client_syn(other);
        assert_eq!(flow.client_syn(), Some(other));
        assert!(flow.client_is_low());
        assert!(!FlowState::new(false, 7).client_is_low());
    }
}
