//! [`FlowTable`]: flows on a `DashMap`, with a hard cap and idle expiry driven by packet time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::mapref::one::RefMut;
use dashmap::DashMap;

use super::{FlowKey, StreamBuf};
use crate::rules::RuleIndex;

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
    pub verdict: crate::engine::PacketAction,
    /// The rule that decided, if one matched.
    pub rule: Option<RuleIndex>,
}

/// Per-flow state. Stream buffers exist only while a flow is pending (or for DNS over TCP).
#[derive(Debug)]
pub struct FlowState {
    /// The client (the side that sent the SYN, or the first packet) is the key's low side.
    pub client_is_low: bool,
    pub phase: Phase,
    /// Packet time of the last packet, in seconds.
    pub last_seen: u64,
    /// Next client sequence number learned from the SYN.
    pub client_isn: Option<u32>,
    /// Next server sequence number learned from the SYN-ACK.
    pub server_isn: Option<u32>,
    /// Client data packets inspected while pending.
    pub data_packets: u16,
    /// What the client's SYN looked like, so that decoy segments (lower TTL, an MD5 option,
    /// a wrong checksum) can be told from the client's own.
    pub client_syn: Option<SynShape>,
    pub client_stream: Option<Box<StreamBuf>>,
    /// A second view of the client's stream in which later copies of overlapping bytes win;
    /// only made once overlapping segments disagreed.
    pub client_alt_stream: Option<Box<StreamBuf>>,
    pub server_stream: Option<Box<StreamBuf>>,
    /// Hash of the last DNS name recorded, so retransmitted queries are recorded once.
    pub last_dns_event: u64,
    /// DNS over TCP: the worst verdict given so far. A blocked message's retransmission is
    /// old data to the reassembler, so the block has to stick to the connection.
    pub dns_sticky: crate::engine::PacketAction,
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
    pub fn new(client_is_low: bool, now: u64) -> Self {
        Self {
            client_is_low,
            phase: Phase::Pending,
            last_seen: now,
            client_isn: None,
            server_isn: None,
            data_packets: 0,
            client_syn: None,
            client_stream: None,
            client_alt_stream: None,
            server_stream: None,
            last_dns_event: 0,
            dns_sticky: crate::engine::PacketAction::Accept,
        }
    }

    /// Frees the stream buffers once they are no longer needed.
    pub fn release_streams(&mut self) {
        self.client_stream = None;
        self.client_alt_stream = None;
        self.server_stream = None;
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

/// How often (packet-time seconds) idle flows are swept out.
const SWEEP_INTERVAL_SECONDS: u64 = 5;

impl FlowTable {
    pub fn new(max_flows: usize, timeouts: Timeouts) -> Self {
        Self {
            map: DashMap::with_capacity_and_hasher(max_flows.min(1 << 16), FlowHasher::default()),
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

    /// The flow's state, created with `make` if new. `None` when the table is full even after
    /// expiring idle flows: the caller handles the packet without state.
    pub fn entry(
        &self,
        key: FlowKey,
        now: u64,
        make: impl FnOnce() -> FlowState,
    ) -> Option<RefMut<'_, FlowKey, FlowState>> {
        if let Some(existing) = self.map.get_mut(&key) {
            return Some(existing);
        }
        if self.len() >= self.max_flows {
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
        }
        let entry = self.map.entry(key).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            make()
        });
        Some(entry)
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
                && state.client_stream.is_none()
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
