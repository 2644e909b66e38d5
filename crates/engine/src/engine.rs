//! Engine: the per-packet pipeline. `frame → wire → flow → inspect → rules → verdict`.
//!
//! Takes one captured frame, its link type and its capture time; returns a [`Verdict`] and
//! appends a [`FlowEvent`] to a caller-owned buffer when a flow (or DNS query) matches a rule.
//! No I/O and no clock: every source (pcap file, NFQUEUE, AF_PACKET) is a thin loop around
//! [`Worker::process`], so offline runs exercise the same code as the inline gateway.
//! Never panics on any input; every table and buffer it fills is bounded.
//!
//! Attribution order (DESIGN.md): the flow's TLS SNI, its HTTP Host, its own DNS question,
//! a name learned from an earlier DNS answer for its server address, a CIDR rule. A flow
//! with a name of its own is judged by that name (and CIDR rules), never by a learned one,
//! so a shared CDN address learned from a telemetry name does not block other sites. An ECH
//! ClientHello's SNI is only the public facade name, so such flows may use learned names.
//!
//! This file holds the types and the ways in; the work is split by concern:
//! - `route`: frames parsed once, IP fragments reassembled, flows routed to the thread that
//!   owns them (`pcap --threads`);
//! - `first_flight`: a TCP client's first flight reassembled until it names the flow, and
//!   decoy segments set apart;
//! - `udp`: QUIC Initials decrypted into their ClientHello, other UDP flows;
//! - `dns_judge`: DNS messages judged, and what their answers teach learned;
//! - `reply`: for the inline source, DNS answers without their `ech` parameter and the
//!   NXDOMAIN answers to rejected queries, as part of the verdict;
//! - `decision`: from a name or address to a rule hit, a verdict, counters and an event,
//!   with the ECH and unreadable-QUIC policies.

mod checksums;
mod decision;
mod dns_judge;
mod first_flight;
mod reply;
mod route;
mod udp;

use self::{decision::*, dns_judge::*, first_flight::*};
pub use checksums::ChecksumSurvey;
pub use reply::{Queued, Reply};
pub use route::{Datagram, Prepared, Route, Routed};

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clients::{ClientGroups, GroupPolicy};
use crate::flow::stream::Insert;
use crate::flow::table::{Decision, Timeouts};
use crate::flow::{
    Cached, Defrag, EchConfigs, FlowKey, FlowState, FlowTable, LearnedNames, Phase, Reassembly,
    SharedFact, StreamBuf, Streams, SynShape, VerdictCache,
};
use crate::inspect::dns::{self, Message, RecordData};
use crate::inspect::quic::HelloKind;
use crate::inspect::{gquic, http, quic, tls, Name, Scan};
use crate::rules::{Action, Hit, Profiles, RuleSet};
use crate::stats::{
    bump, Bypass, Counters, Evasion, FlowCounts, FlowSeries, Layer, MetricSink, SharedCounters, Via,
};
use crate::wire::{self, LinkType, Packet, Protocol, TcpInfo, WireError};

/// The UDP port QUIC uses; other UDP flows are decided on their first datagram.
const QUIC_PORT: u16 = 443;

/// ECH configurations remembered from HTTPS records.
const ECH_CONFIGS_KEPT: usize = 65_536;

/// Rule category of DNS-over-HTTPS/TLS/QUIC resolver endpoints (counted as a bypass).
pub const DOH_CATEGORY: &str = "doh";

pub use crate::flow::PacketAction;

/// Where the packet's flow stands after this packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowStatus {
    /// Not a flow telestrip tracks (not IP, fragment, other protocol, table full).
    Untracked,
    /// Still inspecting: later packets may change the verdict.
    Pending,
    /// The verdict holds for every later packet of the flow (the kernel may take over).
    Decided,
    /// The verdict is for this packet only: DNS, where each message is judged on its own,
    /// and packets that came out of a tunnel (the kernel sees the tunnel, not their flow).
    PerMessage,
}

/// The answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: PacketAction,
    pub flow: FlowStatus,
}

impl Verdict {
    const UNTRACKED: Verdict = Verdict {
        action: PacketAction::Accept,
        flow: FlowStatus::Untracked,
    };
    /// Accepted while the flow waits for more of its first flight.
    const PENDING: Verdict = Verdict {
        action: PacketAction::Accept,
        flow: FlowStatus::Pending,
    };
}

/// A flow (or DNS query) that matched a rule: what reports and the audit log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// Capture time of the packet that decided.
    pub time: Duration,
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub protocol: Protocol,
    /// The name the flow was attributed by (absent for CIDR matches).
    pub name: Option<String>,
    pub via: Via,
    pub rule: Arc<str>,
    pub vendor: Arc<str>,
    /// The rule's action.
    pub action: Action,
    /// What was done: the rule's action, or `log` for a blocking rule in dry-run mode.
    pub applied: Action,
    /// The client's group (`default` when the config defines none that covers it).
    pub group: Arc<str>,
    /// The service profile of the rule, when a profile's allow rule let the flow pass.
    pub profile: Option<Arc<str>>,
}

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// `false` is dry run: drop and reject become log.
    pub enforce: bool,
    /// Hard cap on tracked flows; new flows beyond it are handled packet by packet.
    pub max_flows: usize,
    pub timeouts: Timeouts,
    /// Hard cap on addresses learned from DNS answers.
    pub max_learned: usize,
    /// Client data packets inspected before a flow with no name is decided without one.
    pub max_pending_packets: u16,
    /// What to do with flows that use real ECH (their true name is encrypted).
    pub ech_policy: EchPolicy,
    /// What to do with flows on UDP 443 whose QUIC telestrip cannot read.
    pub quic_unreadable: Policy,
    /// Inline: take the `ech` parameter out of DNS answers (see [`Reply`]).
    pub strip_ech: bool,
}

/// What to do with flows whose true name telestrip cannot see: real ECH (an ECH extension
/// whose config_id the server announced in DNS for the outer name: only the public name
/// shows), or QUIC it cannot read (an unknown version, an Initial that does not decrypt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Judge the flow by its visible name, learned address and CIDR rules only.
    #[default]
    Allow,
    /// The same, and record every such flow (vendor `telestrip`, rule `ech-policy` or
    /// `quic-unreadable`).
    Log,
    /// Block such flows. Real ECH: the connection fails, a browser does not try again
    /// without ECH (Chromium was seen not to), `strip_ech` makes it connect without ECH
    /// instead. QUIC: browsers fall back to TCP, where the name is visible.
    Drop,
}

/// The policy for flows with real ECH.
pub type EchPolicy = Policy;

/// Rule ids, and the vendor, under which the policies record flows.
pub const ECH_POLICY_RULE: &str = "ech-policy";
pub const POLICY_VENDOR: &str = "telestrip";
pub const QUIC_POLICY_RULE: &str = "quic-unreadable";

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            enforce: true,
            max_flows: 1_000_000,
            timeouts: Timeouts::default(),
            max_learned: 262_144,
            max_pending_packets: 16,
            ech_policy: EchPolicy::Allow,
            quic_unreadable: Policy::Allow,
            strip_ech: false,
        }
    }
}

/// State shared by every packet thread.
pub struct Engine {
    active: ArcSwap<Active>,
    /// Bumped by every swap, so workers notice a new ruleset with one relaxed load.
    generation: AtomicU64,
    config: EngineConfig,
    flows: FlowTable,
    learned: LearnedNames,
    ech_configs: EchConfigs,
    /// Where facts learned from DNS answers go for the other gateways of the site (unset:
    /// not shared).
    facts: OnceLock<SyncSender<SharedFact>>,
    /// Facts not shared because the outbox was full (the sharing thread fell behind).
    pub facts_unshared: AtomicU64,
    pub counters: SharedCounters,
    pub flow_counts: FlowCounts,
    /// What the ECH and unreadable-QUIC policies record flows under.
    ech_record: PolicyRecord,
    quic_record: PolicyRecord,
    /// Which group each client belongs to.
    clients: ClientGroups,
}

/// The installed ruleset with the flow counter of each of its rules, swapped as one.
struct Active {
    rules: Arc<RuleSet>,
    /// The client groups' profiles and enforcement under these rules, in group order.
    groups: Arc<[GroupPolicy]>,
    /// Indexed by rule index × group count + group: the counter of (vendor, rule, applied
    /// action, group).
    hits: Arc<[Arc<AtomicU64>]>,
}

impl Engine {
    /// An engine with its own ruleset; [`Engine::with_shared_rules`] shares one.
    pub fn new(rules: RuleSet, config: EngineConfig) -> Self {
        Self::with_shared_rules(Arc::new(rules), config)
    }

    /// An engine over a ruleset that other engines may use too (a compiled ruleset is
    /// immutable): benchmarks start fresh engines without compiling again.
    pub fn with_shared_rules(rules: Arc<RuleSet>, config: EngineConfig) -> Self {
        Self::with_clients(rules, config, ClientGroups::default())
    }

    /// An engine whose clients fall into `clients`' groups, each with its own service
    /// profiles and enforcement.
    pub fn with_clients(rules: Arc<RuleSet>, config: EngineConfig, clients: ClientGroups) -> Self {
        let flow_counts = FlowCounts::default();
        let active = Active::new(rules, &clients, &flow_counts, config.enforce);
        let ech_record = PolicyRecord::new(
            ECH_POLICY_RULE,
            config.ech_policy,
            &flow_counts,
            &active.groups,
        );
        let quic_record = PolicyRecord::new(
            QUIC_POLICY_RULE,
            config.quic_unreadable,
            &flow_counts,
            &active.groups,
        );
        Self {
            active: ArcSwap::from_pointee(active),
            generation: AtomicU64::new(0),
            flows: FlowTable::new(config.max_flows, config.timeouts),
            learned: LearnedNames::new(config.max_learned),
            ech_configs: EchConfigs::new(ECH_CONFIGS_KEPT),
            facts: OnceLock::new(),
            facts_unshared: AtomicU64::new(0),
            ech_record,
            quic_record,
            clients,
            config,
            counters: SharedCounters::default(),
            flow_counts,
        }
    }

    /// Replaces the ruleset; packet threads pick it up at their next batch. Flows already
    /// decided keep their verdict.
    pub fn swap_rules(&self, rules: RuleSet) {
        let active = Active::new(rules, &self.clients, &self.flow_counts, self.config.enforce);
        self.active.store(Arc::new(active));
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.active.load().rules)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn clients(&self) -> &ClientGroups {
        &self.clients
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    pub fn learned(&self) -> &LearnedNames {
        &self.learned
    }

    /// From now on, hands every fact learned from a DNS answer to `outbox` (without waiting:
    /// what does not fit is counted in `facts_unshared`). Set once; later calls change nothing.
    pub fn share_facts(&self, outbox: SyncSender<SharedFact>) {
        let _ = self.facts.set(outbox);
    }

    fn sharing(&self) -> bool {
        self.facts.get().is_some()
    }

    fn share(&self, fact: SharedFact) {
        if let Some(outbox) = self.facts.get() {
            if outbox.try_send(fact).is_err() {
                self.facts_unshared.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Learns a fact another gateway shared, at Unix time `now`; false if it has expired.
    /// Imported facts are not shared again.
    pub fn import(&self, fact: &SharedFact, now: Duration) -> bool {
        let Some(left) = fact.expires().checked_sub(now.as_secs()).filter(|s| *s > 0) else {
            return false;
        };
        let ttl = u32::try_from(left).unwrap_or(u32::MAX);
        match fact {
            SharedFact::Address { addr, name, .. } => self.learned.learn(*addr, name, ttl, now),
            SharedFact::EchConfig {
                public_name,
                config_id,
                ..
            } => self
                .ech_configs
                .learn(tag_of(public_name.as_bytes()), *config_id, ttl, now),
        }
        true
    }

    /// Reports the engine's metrics when scraped: its counters, the matched flows per
    /// rule, the flow table and the learned addresses (each defined where it is counted).
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        self.counters.export_metrics(sink);
        self.flow_counts.export_metrics(sink);
        self.flows.export_metrics(sink);
        self.learned.export_metrics(sink);
    }

    /// A packet thread's handle: its own scratch buffers and ruleset snapshot.
    pub fn worker(&self) -> Worker<'_> {
        let generation = self.generation.load(Ordering::Acquire);
        let active = self.active.load();
        Worker {
            engine: self,
            counters: self.counters.shard(),
            rules: Arc::clone(&active.rules),
            groups: Arc::clone(&active.groups),
            hits: Arc::clone(&active.hits),
            generation,
            scratch: Vec::new(),
            initials: quic::InitialScratch::default(),
            defrag: Defrag::new(),
            checksums_trusted: false,
            capture_checksums: None,
            sweeps: true,
            verdict_cache: VerdictCache::default(),
            replies: reply::Replies::default(),
        }
    }
}

/// One packet thread's view of the engine.
pub struct Worker<'e> {
    engine: &'e Engine,
    /// This thread's copy of the engine's counters.
    counters: &'e Counters,
    rules: Arc<RuleSet>,
    groups: Arc<[GroupPolicy]>,
    hits: Arc<[Arc<AtomicU64>]>,
    generation: u64,
    scratch: Vec<u8>,
    /// QUIC Initials' plaintext, and the keys of the last connection ID.
    initials: quic::InitialScratch,
    defrag: Defrag,
    /// The packet being processed comes from the kernel, which says its checksums are filled
    /// in. Captures are not trusted: taken on the sending host (checksum offload) or edited
    /// (anonymised names), their checksums are often wrong for the client's own segments.
    checksums_trusted: bool,
    /// Offline: checksums are trusted, except those of the sources whose checksums are
    /// mostly wrong in the capture (see [`ChecksumSurvey`]).
    capture_checksums: Option<Arc<HashSet<IpAddr>>>,
    /// Sweeps the flow table of idle flows as packet time passes (see `set_sweeping`).
    sweeps: bool,
    /// Verdicts of decided flows this thread judged, in front of the shared table.
    verdict_cache: VerdictCache,
    /// Buffers of the packets an inline source sends in place of, or in answer to, one.
    replies: reply::Replies,
}

/// What a packet thread's verdict cache needs of a plain TCP or UDP packet to answer it:
/// its flow and direction, whether it opens a connection, whether it is a QUIC Initial.
/// Made from a [`wire::Peek`], on the thread that judges the packet or on the one that
/// routes it there (`telestrip pcap --threads`, so that a cached packet's frame is not read
/// twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheProbe {
    key: FlowKey,
    src_is_low: bool,
    bare_syn: bool,
    quic_initial: bool,
}

impl CacheProbe {
    pub fn of(peek: &wire::Peek<'_>) -> Self {
        let (key, src_is_low) = FlowKey::of_peek(peek);
        Self {
            key,
            src_is_low,
            bare_syn: peek.bare_syn,
            quic_initial: is_quic_initial(peek.protocol, peek.payload),
        }
    }

    pub fn key(&self) -> &FlowKey {
        &self.key
    }
}

/// Whether a packet is a QUIC Initial (a long header of the Initial type, over UDP).
fn is_quic_initial(protocol: Protocol, payload: &[u8]) -> bool {
    protocol == Protocol::Udp && quic::client_initial_version(payload).is_some()
}

/// Whether a packet of a decided flow is judged again rather than given the flow's verdict:
/// a client's QUIC Initial on an allowed flow may carry a second hello, the first one a
/// decoy (see `quic_after_allow`). The verdict cache and the flow table both ask.
fn read_again(action: PacketAction, quic_initial: bool, from_client: bool) -> bool {
    quic_initial && from_client && action == PacketAction::Accept
}

/// What the client's first flight told about the flow's name. A short-lived stack value,
/// so its two-name variant is not boxed (that would allocate on the packet path).
#[allow(clippy::large_enum_variant)]
enum Seen {
    Name(Name, Via),
    /// Two names for one flow (two in a server_name list, a Host header naming another host
    /// than the request target, two versions of overlapping bytes): every one is judged.
    Names(Name, Name, Via),
    /// A ClientHello with ECH whose outer SNI is only the public facade.
    EchFacade(Name, Via, Option<u8>),
    NoName,
    NeedMore,
    Malformed(Layer),
    /// QUIC on UDP 443 whose name could not be read.
    QuicUnreadable,
    /// An address where a name belongs (SNI, Host): judged by CIDR rules on it.
    Address(IpAddr, Via),
}

impl Seen {
    /// A hash of what was seen, to know the same hello again; `None` where nothing was.
    fn tag(&self) -> Option<u64> {
        match self {
            Seen::Name(name, _) | Seen::EchFacade(name, _, _) => Some(decision::name_tag(name)),
            Seen::Names(first, second, _) => {
                Some(decision::name_tag(first) ^ decision::name_tag(second).rotate_left(17))
            }
            Seen::NoName => Some(decision::tag_of(b"")),
            Seen::Address(IpAddr::V4(address), _) => Some(decision::tag_of(&address.octets())),
            Seen::Address(IpAddr::V6(address), _) => Some(decision::tag_of(&address.octets())),
            Seen::NeedMore | Seen::Malformed(_) | Seen::QuicUnreadable => None,
        }
    }
}

/// One packet of a tracked flow as the decision sees it, built once per packet and handed
/// down instead of five arguments: the flow's state, the packet, which way it goes, the
/// facts oriented client → server, and where matched-flow events go.
struct Judging<'a, 'p> {
    flow: &'a mut FlowState,
    packet: &'a Packet<'p>,
    from_client: bool,
    facts: Facts,
    events: &'a mut Vec<FlowEvent>,
}

/// Facts about the packet the decision needs, oriented client → server.
#[derive(Clone, Copy)]
struct Facts {
    client: IpAddr,
    client_port: u16,
    server: IpAddr,
    server_port: u16,
    protocol: Protocol,
    time: Duration,
    now: u64,
    /// The client's group (index into the active groups).
    group: u8,
}

impl<'e> Worker<'e> {
    /// Picks up a swapped ruleset. Cheap enough to call per packet: one relaxed load
    /// unless the rules changed.
    pub fn refresh_rules(&mut self) {
        let generation = self.engine.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            let active = self.engine.active.load();
            self.rules = Arc::clone(&active.rules);
            self.groups = Arc::clone(&active.groups);
            self.hits = Arc::clone(&active.hits);
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Offline: trusts the checksums of every source but `offloaded` (from a
    /// [`ChecksumSurvey`] of the capture), so that a segment or datagram with a wrong
    /// checksum from a source whose checksums are otherwise right is a decoy, never read.
    pub fn trust_capture_checksums(&mut self, offloaded: Arc<HashSet<IpAddr>>) {
        self.capture_checksums = Some(offloaded);
    }

    /// Whether a wrong checksum of a packet from `source` means the receiver drops it: the
    /// kernel vouched for the checksums (inline), or the capture's survey did.
    fn trusts_checksums_of(&self, source: IpAddr) -> bool {
        self.checksums_trusted
            || self
                .capture_checksums
                .as_ref()
                .is_some_and(|offloaded| !offloaded.contains(&source))
    }

    /// Off: this worker leaves the sweeps of idle flows to its caller
    /// ([`FlowTable::maybe_sweep`]), for sources whose threads are at different packet
    /// times: sweeping at one thread's time would expire flows that another thread has
    /// packets for but has not reached yet.
    pub fn set_sweeping(&mut self, on: bool) {
        self.sweeps = on;
    }

    /// Runs one frame through the pipeline.
    pub fn process(
        &mut self,
        link: LinkType,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = match self.cached_verdict(link, frame, time) {
            Some(verdict) => verdict,
            None => self.classify(link, frame, time, events),
        };
        self.count(verdict)
    }

    /// A packet of a flow this thread decided within the current second, answered from the
    /// verdict cache after only a [`wire::peek`] at the frame: the full path would answer
    /// it the same way (a peeked frame is neither tunnelled nor fragmented, so the full
    /// path's only work before its own cache lookup is the sweep, done here too). `None`
    /// sends the packet down the full path: a frame peek does not read, or one the cache
    /// does not answer (see [`Worker::cached`]).
    fn cached_verdict(&mut self, link: LinkType, frame: &[u8], time: Duration) -> Option<Verdict> {
        let probe = CacheProbe::of(&wire::peek(link, frame)?);
        self.cached(&probe, time)
    }

    /// The cached verdict of the probed packet's flow; `None` for a bare SYN (a new
    /// connection), a client's QUIC Initial on an allowed flow (it is read again), and a
    /// flow not in the cache.
    fn cached(&mut self, probe: &CacheProbe, time: Duration) -> Option<Verdict> {
        if probe.bare_syn {
            return None;
        }
        let now = time.as_secs();
        let action = self.cached_action(probe, now)?;
        if self.sweeps {
            self.engine.flows.maybe_sweep(now);
        }
        Some(Verdict {
            action,
            flow: FlowStatus::Decided,
        })
    }

    /// The action cached for the probed packet's flow in second `now`, unless the packet
    /// is to be read again (`read_again`). Both ways into the cache ask here: the probe of
    /// a peeked frame and the first flight of a parsed one.
    fn cached_action(&self, probe: &CacheProbe, now: u64) -> Option<PacketAction> {
        let cached = self.verdict_cache.get(&probe.key, now)?;
        let from_client = probe.src_is_low == cached.client_is_low;
        (!read_again(cached.action, probe.quic_initial, from_client)).then_some(cached.action)
    }

    fn classify(
        &mut self,
        link: LinkType,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let packet = match self.decode(link, frame) {
            Ok(packet) => packet,
            Err(verdict) => return verdict,
        };
        match packet.fragment {
            Some(fragment) => match self.reassemble(&packet, fragment, time) {
                Ok(datagram) => self.classify_datagram(&datagram, time, events),
                Err(verdict) => verdict,
            },
            None => self.classify_packet(&packet, time, events),
        }
    }

    /// Parses a frame, counting what cannot be read.
    fn decode<'f>(&self, link: LinkType, frame: &'f [u8]) -> Result<Packet<'f>, Verdict> {
        let counters = self.counters;
        let packet = wire::parse(link, frame).map_err(|error| {
            match error {
                WireError::NotIp => bump(&counters.packets_not_ip),
                WireError::Link(_) => counters.parse_error(Layer::Link),
                WireError::Network(_) => counters.parse_error(Layer::Network),
                WireError::Transport(_) => counters.parse_error(Layer::Transport),
            }
            Verdict::UNTRACKED
        })?;
        counters.tunnel(packet.tunnel, packet.unopened);
        Ok(packet)
    }

    /// Counts the packet's verdict.
    fn count(&self, verdict: Verdict) -> Verdict {
        let counters = self.counters;
        bump(match verdict.action {
            PacketAction::Accept => &counters.packets_accepted,
            PacketAction::Drop => &counters.packets_dropped,
            PacketAction::Reject => &counters.packets_rejected,
        });
        verdict
    }

    fn classify_packet(
        &mut self,
        packet: &Packet<'_>,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = self.classify_flow_packet(packet, time, events);
        match verdict.flow {
            // A tunnel carries many flows: the verdict of the flow inside is for this
            // packet only, never for the tunnel's own connection in the kernel.
            FlowStatus::Decided if packet.tunnel.is_some() => Verdict {
                flow: FlowStatus::PerMessage,
                ..verdict
            },
            _ => verdict,
        }
    }
}

#[cfg(test)]
mod tests;
