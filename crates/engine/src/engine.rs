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

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::flow::stream::Insert;
use crate::flow::table::{Decision, Timeouts};
use crate::flow::{
    Defrag, EchConfigs, FlowKey, FlowState, FlowTable, LearnedNames, Phase, Reassembly, StreamBuf,
    Streams, SynShape, VerdictCache,
};
use crate::inspect::dns::{self, Message, RecordData};
use crate::inspect::quic::HelloKind;
use crate::inspect::{gquic, http, quic, tls, Name, Scan};
use crate::rules::{Action, Hit, RuleSet};
use crate::stats::{
    bump, Bypass, Counters, Evasion, FlowCounts, FlowSeries, Layer, SharedCounters, Via,
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

/// Where [`Worker::route`] sends a frame.
#[derive(Debug)]
pub enum Route {
    /// Judged by the routing worker (DNS, not IP or unreadable, a fragment of a datagram
    /// still incomplete): nothing more to do.
    Done(Verdict),
    /// For the thread of this flow hash, to judge with [`Worker::process_parsed`] (the
    /// frame and this layout of it).
    Frame(u64, wire::Layout),
    /// A reassembled datagram for the thread of this flow hash, to judge with
    /// [`Worker::process_datagram`].
    Datagram(u64, Datagram),
}

/// A frame parsed by [`Worker::prepare`], not yet judged.
#[derive(Debug)]
pub enum Prepared<'f> {
    /// Nothing more to do (not IP, unreadable, a fragment of an incomplete datagram).
    Done(Verdict),
    Packet(Packet<'f>),
    Datagram(Datagram),
}

impl Prepared<'_> {
    /// Whether judging it touches the flow table (a TCP or UDP packet or datagram), which
    /// is where a worker sweeps idle flows when their time has come.
    pub fn reaches_table(&self) -> bool {
        match self {
            Prepared::Done(_) => false,
            Prepared::Packet(packet) => !matches!(packet.protocol, Protocol::Other(_)),
            Prepared::Datagram(datagram) => datagram
                .packet()
                .is_ok_and(|whole| !matches!(whole.protocol, Protocol::Other(_))),
        }
    }
}

/// An IP datagram reassembled from fragments: its addresses and whole transport payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub ip_number: u8,
    pub bytes: Vec<u8>,
}

impl Datagram {
    fn packet(&self) -> Result<Packet<'_>, WireError> {
        wire::reassembled(self.src, self.dst, self.ttl, self.ip_number, &self.bytes)
    }
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
    pub counters: SharedCounters,
    pub flow_counts: FlowCounts,
    /// What the ECH and unreadable-QUIC policies record flows under.
    ech_record: PolicyRecord,
    quic_record: PolicyRecord,
}

/// The rule and vendor a policy records its flows under, and their counter.
struct PolicyRecord {
    rule: Arc<str>,
    vendor: Arc<str>,
    action: Action,
    hits: Arc<AtomicU64>,
}

impl PolicyRecord {
    fn new(rule: &str, policy: Policy, counts: &FlowCounts, enforce: bool) -> Self {
        let rule: Arc<str> = rule.into();
        let vendor: Arc<str> = POLICY_VENDOR.into();
        let action = policy.action();
        let hits = counts.handle(FlowSeries {
            vendor: Arc::clone(&vendor),
            rule: Arc::clone(&rule),
            action: applied_action(action, enforce),
        });
        Self {
            rule,
            vendor,
            action,
            hits,
        }
    }
}

/// The installed ruleset with the flow counter of each of its rules, swapped as one.
struct Active {
    rules: Arc<RuleSet>,
    /// Indexed by rule index: the counter of (vendor, rule, applied action).
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
        let flow_counts = FlowCounts::default();
        let active = Active::new(rules, &flow_counts, config.enforce);
        let ech_record = PolicyRecord::new(
            ECH_POLICY_RULE,
            config.ech_policy,
            &flow_counts,
            config.enforce,
        );
        let quic_record = PolicyRecord::new(
            QUIC_POLICY_RULE,
            config.quic_unreadable,
            &flow_counts,
            config.enforce,
        );
        Self {
            active: ArcSwap::from_pointee(active),
            generation: AtomicU64::new(0),
            flows: FlowTable::new(config.max_flows, config.timeouts),
            learned: LearnedNames::new(config.max_learned),
            ech_configs: EchConfigs::new(ECH_CONFIGS_KEPT),
            ech_record,
            quic_record,
            config,
            counters: SharedCounters::default(),
            flow_counts,
        }
    }

    /// Replaces the ruleset; packet threads pick it up at their next batch. Flows already
    /// decided keep their verdict.
    pub fn swap_rules(&self, rules: RuleSet) {
        let active = Active::new(rules, &self.flow_counts, self.config.enforce);
        self.active.store(Arc::new(active));
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.active.load().rules)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    pub fn learned(&self) -> &LearnedNames {
        &self.learned
    }

    /// A packet thread's handle: its own scratch buffers and ruleset snapshot.
    pub fn worker(&self) -> Worker<'_> {
        let generation = self.generation.load(Ordering::Acquire);
        let active = self.active.load();
        Worker {
            engine: self,
            counters: self.counters.shard(),
            rules: Arc::clone(&active.rules),
            hits: Arc::clone(&active.hits),
            generation,
            scratch: Vec::new(),
            defrag: Defrag::new(),
            checksums_trusted: false,
            sweeps: true,
            decided: VerdictCache::default(),
        }
    }
}

/// One packet thread's view of the engine.
pub struct Worker<'e> {
    engine: &'e Engine,
    /// This thread's copy of the engine's counters.
    counters: &'e Counters,
    rules: Arc<RuleSet>,
    hits: Arc<[Arc<AtomicU64>]>,
    generation: u64,
    scratch: Vec<u8>,
    defrag: Defrag,
    /// The packet being processed comes from the kernel, which says its checksums are filled
    /// in. Captures are not trusted: taken on the sending host (checksum offload) or edited
    /// (anonymised names), their checksums are often wrong for the client's own segments.
    checksums_trusted: bool,
    /// Sweeps the flow table of idle flows as packet time passes (see `set_sweeping`).
    sweeps: bool,
    /// Verdicts of decided flows this thread judged, in front of the shared table.
    decided: VerdictCache,
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
            self.hits = Arc::clone(&active.hits);
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
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
        let verdict = self.classify(link, frame, time, events);
        self.count(verdict)
    }

    /// Runs one packet from NFQUEUE through the pipeline; `checksum_ready` is false when
    /// the kernel says the packet's checksum has not been computed yet (offload).
    pub fn process_queued(
        &mut self,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
        checksum_ready: bool,
    ) -> Verdict {
        self.checksums_trusted = checksum_ready;
        let verdict = self.process(LinkType::RawIp, frame, time, events);
        self.checksums_trusted = false;
        verdict
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

    /// Routes a frame for a source that spreads flows over several threads (`telestrip pcap
    /// --threads`): DNS is judged here, in capture order, because the addresses its answers
    /// teach are needed by flows on every thread; IP fragments are reassembled here, so a
    /// datagram goes to the thread of its flow whole. Everything else goes, by the hash of
    /// its flow and already parsed, to a thread that judges it with
    /// [`Worker::process_parsed`] (or [`Worker::process_datagram`]). Packets of one flow
    /// must all go to one thread, in order.
    pub fn route(
        &mut self,
        link: LinkType,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Route {
        let prepared = self.prepare(link, frame, time);
        self.finish_route(prepared, frame, time, events)
    }

    /// The first half of [`Worker::route`]: parses the frame and reassembles fragments. A
    /// caller that sweeps the flow table itself (see `set_sweeping`) checks
    /// [`Prepared::reaches_table`] before it calls [`Worker::finish_route`]: that is where
    /// one worker would sweep.
    pub fn prepare<'f>(&mut self, link: LinkType, frame: &'f [u8], time: Duration) -> Prepared<'f> {
        let packet = match self.decode(link, frame) {
            Ok(packet) => packet,
            Err(verdict) => return Prepared::Done(self.count(verdict)),
        };
        let Some(fragment) = packet.fragment else {
            return Prepared::Packet(packet);
        };
        match self.reassemble(&packet, fragment, time) {
            Ok(datagram) => Prepared::Datagram(datagram),
            Err(verdict) => Prepared::Done(self.count(verdict)),
        }
    }

    /// The second half of [`Worker::route`].
    pub fn finish_route(
        &mut self,
        prepared: Prepared<'_>,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Route {
        match prepared {
            Prepared::Done(verdict) => Route::Done(verdict),
            Prepared::Packet(packet) => {
                let layout = packet.layout(frame);
                match layout {
                    Some(layout)
                        if !is_dns(&packet) && !matches!(packet.protocol, Protocol::Other(_)) =>
                    {
                        Route::Frame(flow_hash(&packet), layout)
                    }
                    _ => {
                        let verdict = self.classify_packet(&packet, time, events);
                        Route::Done(self.count(verdict))
                    }
                }
            }
            Prepared::Datagram(datagram) => match datagram.packet() {
                Ok(whole) if !is_dns(&whole) => Route::Datagram(flow_hash(&whole), datagram),
                _ => {
                    let verdict = self.classify_datagram(&datagram, time, events);
                    Route::Done(self.count(verdict))
                }
            },
        }
    }

    /// Judges a frame that [`Worker::route`] parsed on another thread into `layout`.
    pub fn process_parsed(
        &mut self,
        frame: &[u8],
        layout: &wire::Layout,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = self.classify_packet(&layout.packet(frame), time, events);
        self.count(verdict)
    }

    /// Judges a datagram that [`Worker::route`] reassembled on another thread.
    pub fn process_datagram(
        &mut self,
        datagram: &Datagram,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = self.classify_datagram(datagram, time, events);
        self.count(verdict)
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

    /// An IP fragment: held until its datagram is complete, which is then returned whole.
    fn reassemble(
        &mut self,
        packet: &Packet<'_>,
        fragment: wire::Fragment<'_>,
        time: Duration,
    ) -> Result<Datagram, Verdict> {
        let counters = self.counters;
        bump(&counters.packets_fragmented);
        let evicted = self.defrag.evicted;
        let reassembly = self
            .defrag
            .add(packet.src, packet.dst, &fragment, time.as_secs());
        counters
            .fragments_evicted
            .fetch_add(self.defrag.evicted - evicted, Ordering::Relaxed);
        match reassembly {
            Reassembly::Complete(bytes) => {
                bump(&counters.fragments_reassembled);
                Ok(Datagram {
                    src: packet.src,
                    dst: packet.dst,
                    ttl: packet.ttl,
                    ip_number: fragment.ip_number,
                    bytes,
                })
            }
            Reassembly::Overlap => {
                counters.evasion(Evasion::FragmentOverlap);
                Err(Verdict::UNTRACKED)
            }
            Reassembly::Invalid => {
                counters.parse_error(Layer::Network);
                Err(Verdict::UNTRACKED)
            }
            Reassembly::Incomplete | Reassembly::Discarded => Err(Verdict::UNTRACKED),
        }
    }

    /// A reassembled datagram, inspected whole.
    fn classify_datagram(
        &mut self,
        datagram: &Datagram,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        match datagram.packet() {
            Ok(whole) => {
                self.counters.tunnel(whole.tunnel, whole.unopened);
                self.classify_packet(&whole, time, events)
            }
            Err(_) => {
                self.counters.parse_error(Layer::Transport);
                Verdict::UNTRACKED
            }
        }
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

    fn classify_flow_packet(
        &mut self,
        packet: &Packet<'_>,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let packet = *packet;
        if matches!(packet.protocol, Protocol::Other(_)) {
            return Verdict::UNTRACKED;
        }
        let now = time.as_secs();
        if self.sweeps {
            self.engine.flows.maybe_sweep(now);
        }
        let (key, src_is_low) = FlowKey::of(&packet);
        let bare_syn = packet.tcp.is_some_and(|tcp| tcp.syn && !tcp.ack);
        if bare_syn {
            self.decided.forget(&key);
        } else if let Some(action) = self.decided.get(&key, now) {
            return Verdict {
                action,
                flow: FlowStatus::Decided,
            };
        }
        let is_dns = is_dns(&packet);
        let engine = self.engine;
        let counters = self.counters;
        let Some(mut flow) = engine.flows.entry(key, now, || {
            bump(&counters.flows_new);
            let src_is_client = src_is_client(&packet);
            FlowState::new(src_is_low == src_is_client, now)
        }) else {
            return self.stateless(&packet, time, is_dns, events);
        };
        flow.last_seen = now;
        // A bare SYN on a known 5-tuple opens a new connection (the client reused its
        // port): it must be inspected afresh, never inherit the old verdict.
        if bare_syn && flow.phase != Phase::Pending {
            bump(&counters.flows_new);
            *flow = FlowState::new(src_is_low, now);
        }
        let from_client = src_is_low == flow.client_is_low();
        let facts = orient(&packet, from_client, time, now);
        let verdict = match flow.phase {
            Phase::Decided(decision) => Verdict {
                action: decision.verdict,
                flow: FlowStatus::Decided,
            },
            Phase::Dns => self.dns_packet(&mut flow, &packet, from_client, facts, events),
            Phase::Pending if is_dns => {
                flow.phase = Phase::Dns;
                self.dns_packet(&mut flow, &packet, from_client, facts, events)
            }
            Phase::Pending => self.pending_packet(&mut flow, &packet, from_client, facts, events),
        };
        drop(flow);
        if verdict.flow == FlowStatus::Decided {
            self.decided.put(key, now, verdict.action);
        }
        verdict
    }

    /// A packet of a flow that has no verdict yet.
    fn pending_packet(
        &mut self,
        flow: &mut FlowState,
        packet: &Packet<'_>,
        from_client: bool,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let Some(tcp) = packet.tcp else {
            return self.udp_pending(flow, packet, from_client, facts, events);
        };
        note_syn(flow, tcp, from_client);
        if tcp.syn && !tcp.ack && from_client {
            flow.set_client_syn(SynShape {
                ttl: packet.ttl,
                md5: tcp.md5,
                checksum_ok: self.checksums_trusted && packet.tcp_checksum_valid() == Some(true),
            });
        }
        if packet.payload.is_empty() {
            return Verdict::PENDING;
        }
        if from_client {
            if let Some(kind) = self.decoy(flow, packet, tcp) {
                // Passed on (the server or the path discards it) but never read.
                self.counters.evasion(kind);
                return Verdict::PENDING;
            }
        }
        if !from_client {
            // The server spoke first (SMTP, SSH, FTP...): no ClientHello or request to read.
            if flow.client_stream().is_none() {
                return self.decide(flow, None, facts, events);
            }
            return Verdict::PENDING;
        }
        let data_seq = data_seq(tcp);
        let before = flow
            .client_stream()
            .map_or(0, |stream| stream.contiguous().len());
        let mut advanced = false;
        let client_isn = flow.client_isn();
        let seen = match flow.streams.as_deref_mut() {
            Some(Streams {
                client: Some(stream),
                client_alt,
                ..
            }) => {
                let inserted = stream.insert(data_seq, packet.payload);
                if inserted == Insert::Conflict && client_alt.is_none() {
                    self.counters.evasion(Evasion::OverlapConflict);
                    let mut alt = stream.clone();
                    alt.insert_last_wins(data_seq, packet.payload);
                    *client_alt = Some(alt);
                } else if let Some(alt) = client_alt.as_mut() {
                    if alt.insert_last_wins(data_seq, packet.payload) == Insert::Conflict
                        && inserted != Insert::Conflict
                    {
                        self.counters.evasion(Evasion::OverlapConflict);
                    }
                }
                match inserted {
                    Insert::OverCap => return self.over_cap(),
                    Insert::Old => Seen::NeedMore,
                    Insert::Stored | Insert::Conflict => {
                        advanced = stream.contiguous().len() > before;
                        let main = scan_stream(stream, &mut self.scratch);
                        match client_alt.as_ref() {
                            Some(alt) => {
                                let alt = scan_stream(alt, &mut self.scratch);
                                self.either(main, alt, facts)
                            }
                            None => main,
                        }
                    }
                }
            }
            _ if client_isn.is_none_or(|isn| isn == data_seq) => {
                advanced = true;
                match scan_first_flight(packet.payload, &mut self.scratch) {
                    Seen::NeedMore => {
                        let mut stream = StreamBuf::new(data_seq);
                        stream.insert(data_seq, packet.payload);
                        flow.streams_mut().client = Some(stream);
                        Seen::NeedMore
                    }
                    other => other,
                }
            }
            _ => {
                // Out of order: data after a hole at the start of the stream.
                let base = client_isn.unwrap_or(data_seq);
                let mut stream = StreamBuf::new(base);
                let inserted = stream.insert(data_seq, packet.payload);
                flow.streams_mut().client = Some(stream);
                if inserted == Insert::OverCap {
                    return self.over_cap();
                }
                Seen::NeedMore
            }
        };
        // Only segments that bring no new in-order bytes count towards the pending limit:
        // a hello in 1-byte segments is read to its end (the stream cap bounds it), while
        // retransmissions and data behind a hole that never fills do not keep a flow
        // pending for ever.
        if !advanced {
            flow.data_packets = flow.data_packets.saturating_add(1);
        }
        self.conclude(flow, seen, facts, events)
    }

    /// A client segment that does not fit the reassembly buffer (past its size or with too
    /// many holes): dropped on its own, so the client sends it again once the holes before
    /// it are filled, and the flow stays pending. A hello of more than 20 KiB does not
    /// exist in practice; dozens of holes in a first flight are an attempt to exhaust the
    /// buffer so the rest would pass unread.
    fn over_cap(&self) -> Verdict {
        bump(&self.counters.stream_cap_hits);
        Verdict {
            action: action_for(self.applied(Action::Drop)),
            flow: FlowStatus::Pending,
        }
    }

    /// Why a client segment of a pending flow is a decoy the server will never accept, if it
    /// is one: it differs from the client's SYN in a way the client's own segments do not
    /// (RFC 9293 §3.10.7.4 for the window; RFC 2385 for MD5), or lies outside the window.
    fn decoy(&self, flow: &FlowState, packet: &Packet<'_>, tcp: TcpInfo) -> Option<Evasion> {
        if let Some(syn) = flow.client_syn() {
            if packet.ttl < syn.ttl {
                return Some(Evasion::LowTtl);
            }
            if tcp.md5 && !syn.md5 {
                return Some(Evasion::Md5Option);
            }
            if syn.checksum_ok
                && self.checksums_trusted
                && packet.tcp_checksum_valid() == Some(false)
            {
                return Some(Evasion::BadChecksum);
            }
        }
        let isn = flow.client_isn()?;
        let offset = data_seq(tcp).wrapping_sub(isn) as i32;
        // Before the ISN is a retransmission (old data, ignored by the reassembler); past
        // the bytes a first flight can hold is beyond any window the server offered.
        (offset >= 0 && offset as usize >= crate::flow::stream::MAX_STREAM_BYTES)
            .then_some(Evasion::OutOfWindow)
    }

    /// Combines what two views of one stream showed: wait for both, judge both names.
    fn either(&self, main: Seen, alt: Seen, facts: Facts) -> Seen {
        let main = self.resolve(main, facts);
        let alt = self.resolve(alt, facts);
        match (main, alt) {
            (Seen::NeedMore, _) | (_, Seen::NeedMore) => Seen::NeedMore,
            (Seen::Name(a, via), Seen::Name(b, _)) => Seen::Name(self.stricter(a, b, facts), via),
            (main @ Seen::Name(..), _) => main,
            (_, alt @ Seen::Name(..)) => alt,
            (main, _) => main,
        }
    }

    /// Turns two names into the one whose rule is strictest.
    fn resolve(&self, seen: Seen, facts: Facts) -> Seen {
        match seen {
            Seen::Names(a, b, via) => Seen::Name(self.stricter(a, b, facts), via),
            other => other,
        }
    }

    /// Of two names of one flow, the one whose rule blocks (then logs, then matches
    /// nothing, then allows); the first on a tie.
    fn stricter(&self, first: Name, second: Name, facts: Facts) -> Name {
        let rank = |name: &Name| {
            self.rank(
                self.rules
                    .match_name(name.as_bytes(), facts.server_port, facts.protocol),
            )
        };
        if rank(&second) > rank(&first) {
            second
        } else {
            first
        }
    }

    /// How strict a rule match is: blocking, then logging, then none, then allowing.
    fn rank(&self, hit: Option<Hit>) -> u8 {
        match hit
            .and_then(|hit| self.rules.rule(hit.rule))
            .map(|r| r.action)
        {
            Some(Action::Drop | Action::Reject) => 3,
            Some(Action::Log) => 2,
            None => 1,
            Some(Action::Allow) => 0,
        }
    }

    /// A UDP packet of an undecided flow. A QUIC client's Initial packets are decrypted and
    /// their CRYPTO frames reassembled (in any order, across datagrams) until the ClientHello
    /// is complete; any other first packet decides the flow without a name of its own.
    fn udp_pending(
        &mut self,
        flow: &mut FlowState,
        packet: &Packet<'_>,
        from_client: bool,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let quic_started = flow.client_stream().is_some();
        if !from_client && quic_started {
            // The server's Initial may come before the client's hello is complete.
            return Verdict::PENDING;
        }
        if !quic_started && (!from_client || quic::client_initial_version(packet.payload).is_none())
        {
            // UDP 443 is QUIC's port: a datagram sent before the client's Initial (junk from
            // the client; from the server a Version Negotiation, after which the client
            // starts again on the same ports, or a server speaking first) must not get the
            // flow waved through before its Initial, so such flows wait a few packets for one.
            if facts.server_port == QUIC_PORT {
                flow.data_packets = flow.data_packets.saturating_add(1);
                if flow.data_packets < self.engine.config.max_pending_packets {
                    return Verdict::PENDING;
                }
                bump(&self.counters.pending_limit_hits);
                return self.quic_unreadable(flow, facts, events);
            }
            return self.decide(flow, None, facts, events);
        }
        let hello = quic::long_header_version(packet.payload)
            .and_then(quic::hello_kind)
            .unwrap_or(HelloKind::Tls);
        flow.data_packets = flow.data_packets.saturating_add(1);
        let stream = flow
            .streams_mut()
            .client
            .get_or_insert_with(|| StreamBuf::new(0));
        let mut over_cap = false;
        let read = quic::read_client_initials(packet.payload, &mut self.scratch, |offset, data| {
            let inserted =
                u32::try_from(offset).map_or(Insert::OverCap, |at| stream.insert(at, data));
            over_cap |= inserted == Insert::OverCap;
        });
        let seen = if over_cap {
            bump(&self.counters.stream_cap_hits);
            Seen::QuicUnreadable
        } else {
            let bytes = stream.contiguous();
            let scanned = match hello {
                HelloKind::Tls => tls::scan_handshake(bytes)
                    .map(|scan| match scan {
                        Scan::Found(hello) => Some(hello_seen(hello, Via::Quic)),
                        Scan::NeedMore => None,
                        Scan::NotThis => Some(Seen::QuicUnreadable),
                    })
                    .map_err(|_| ()),
                HelloKind::Chlo => gquic::scan_chlo(bytes)
                    .map(|scan| match scan {
                        Scan::Found(Some(name)) => Some(Seen::Name(name, Via::Quic)),
                        Scan::Found(None) => Some(Seen::NoName),
                        Scan::NeedMore => None,
                        Scan::NotThis => Some(Seen::QuicUnreadable),
                    })
                    .map_err(|_| ()),
            };
            match (read, scanned) {
                // Whatever follows a complete hello in the datagram (junk coalesced behind
                // it, which the server ignores too) cannot hide it.
                (_, Ok(Some(seen))) => seen,
                // A first datagram of which nothing decrypts is not QUIC as telestrip knows
                // it; a later one (a retransmission under new keys, junk) is skipped.
                (Err(_), _) if !quic_started && bytes.is_empty() => {
                    self.counters.parse_error(Layer::Quic);
                    Seen::QuicUnreadable
                }
                (_, Ok(None)) => Seen::NeedMore,
                (_, Err(())) => {
                    self.counters.parse_error(Layer::Quic);
                    Seen::QuicUnreadable
                }
            }
        };
        self.conclude(flow, seen, facts, events)
    }

    /// Decides a pending flow from what its first flight showed, or keeps it pending (up to
    /// the configured number of client packets).
    fn conclude(
        &mut self,
        flow: &mut FlowState,
        seen: Seen,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        match seen {
            Seen::Name(name, via) => {
                self.counters.inspected(via);
                self.decide(flow, Some((name, via)), facts, events)
            }
            Seen::Names(first, second, via) => {
                self.counters.evasion(Evasion::SeveralNames);
                let name = self.stricter(first, second, facts);
                self.conclude(flow, Seen::Name(name, via), facts, events)
            }
            Seen::EchFacade(name, via, config_id) => {
                let counters = self.counters;
                counters.inspected(via);
                let real = config_id.is_some_and(|id| {
                    self.engine
                        .ech_configs
                        .contains(name_tag(&name), id, facts.time)
                });
                if real {
                    counters.bypass(Bypass::Ech);
                    bump(&counters.ech_real);
                } else {
                    bump(&counters.ech_grease);
                }
                if let Some(verdict) = self.decide_by_name(flow, name, via, facts, events) {
                    return verdict;
                }
                let record = &self.engine.ech_record;
                match self.engine.config.ech_policy {
                    EchPolicy::Drop if real => {
                        let applied = self.applied(Action::Drop);
                        self.record_policy(record, Some(name), via, facts, applied, events);
                        decided(flow, action_for(applied))
                    }
                    EchPolicy::Log if real => {
                        let recorded = events.len();
                        let verdict = self.decide(flow, None, facts, events);
                        if events.len() == recorded && verdict.action == PacketAction::Accept {
                            self.record_policy(record, Some(name), via, facts, Action::Log, events);
                        }
                        verdict
                    }
                    _ => self.decide(flow, None, facts, events),
                }
            }
            Seen::NoName => self.decide(flow, None, facts, events),
            Seen::QuicUnreadable => self.quic_unreadable(flow, facts, events),
            Seen::Address(address, via) => {
                // Counted apart: an address is not a name seen (`inspected`).
                bump(&self.counters.address_literals);
                match self
                    .rules
                    .match_addr(address, facts.server_port, facts.protocol)
                {
                    Some(hit) => {
                        let literal = address.to_string();
                        self.settle(flow, Some(hit), Some(&literal), via, facts, events)
                    }
                    None => self.decide(flow, None, facts, events),
                }
            }
            Seen::Malformed(layer) => {
                self.counters.parse_error(layer);
                self.decide(flow, None, facts, events)
            }
            Seen::NeedMore if flow.data_packets >= self.engine.config.max_pending_packets => {
                bump(&self.counters.pending_limit_hits);
                self.decide(flow, None, facts, events)
            }
            Seen::NeedMore => Verdict::PENDING,
        }
    }

    /// Decides a flow by its own name if a rule matches it; `None` when none does.
    fn decide_by_name(
        &self,
        flow: &mut FlowState,
        name: Name,
        via: Via,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Option<Verdict> {
        let hit = self
            .rules
            .match_name(name.as_bytes(), facts.server_port, facts.protocol)?;
        Some(self.settle(flow, Some(hit), Some(name.as_str()), via, facts, events))
    }

    /// Decides a flow: by its own name when it has one, else by a learned name, then CIDR.
    fn decide(
        &self,
        flow: &mut FlowState,
        own_name: Option<(Name, Via)>,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        if let Some((name, via)) = own_name {
            if let Some(verdict) = self.decide_by_name(flow, name, via, facts, events) {
                return verdict;
            }
        } else if let Some(Some(verdict)) =
            self.engine
                .learned
                .with_name(facts.server, facts.time, |learned| {
                    let hit = self.rules.match_name(
                        learned.as_bytes(),
                        facts.server_port,
                        facts.protocol,
                    )?;
                    Some(self.settle(flow, Some(hit), Some(learned), Via::Learned, facts, events))
                })
        {
            return verdict;
        }
        let hit = self
            .rules
            .match_addr(facts.server, facts.server_port, facts.protocol);
        self.settle(flow, hit, None, Via::Cidr, facts, events)
    }

    /// Caches the verdict for `hit` in the flow and records the match.
    fn settle(
        &self,
        flow: &mut FlowState,
        hit: Option<Hit>,
        name: Option<&str>,
        via: Via,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = match hit {
            Some(hit) => self.record(hit, name, via, facts, events),
            None => PacketAction::Accept,
        };
        decided(flow, verdict)
    }

    /// Records a match and returns what to do with the packet.
    fn record(
        &self,
        hit: Hit,
        name: Option<&str>,
        via: Via,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> PacketAction {
        let Some(rule) = self.rules.rule(hit.rule) else {
            return PacketAction::Accept;
        };
        let applied = self.applied(rule.action);
        if let Some(hits) = self.hits.get(hit.rule as usize) {
            bump(hits);
        }
        if rule.action.blocks() {
            let counters = self.counters;
            match via {
                Via::Quic => counters.bypass(Bypass::Quic),
                Via::Learned => counters.bypass(Bypass::LearnedAddress),
                _ => {}
            }
            if rule.category.as_deref() == Some(DOH_CATEGORY) {
                counters.bypass(Bypass::Doh);
            }
        }
        events.push(facts.event(name, via, &rule.id, &rule.vendor, rule.action, applied));
        action_for(applied)
    }

    /// Records a flow with real ECH that the ECH policy logs or blocks.
    fn record_policy(
        &self,
        record: &PolicyRecord,
        name: Option<Name>,
        via: Via,
        facts: Facts,
        applied: Action,
        events: &mut Vec<FlowEvent>,
    ) {
        bump(&record.hits);
        events.push(facts.event(
            name.as_ref().map(Name::as_str),
            via,
            &record.rule,
            &record.vendor,
            record.action,
            applied,
        ));
    }

    /// A flow on UDP 443 whose QUIC could not be read: judged by learned names and CIDR
    /// rules, then by the `quic_unreadable` policy.
    fn quic_unreadable(
        &self,
        flow: &mut FlowState,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        self.counters.bypass(Bypass::QuicUnreadable);
        let recorded = events.len();
        let verdict = self.decide(flow, None, facts, events);
        if events.len() > recorded || verdict.action != PacketAction::Accept {
            return verdict;
        }
        let record = &self.engine.quic_record;
        match self.engine.config.quic_unreadable {
            Policy::Allow => verdict,
            Policy::Log => {
                self.record_policy(record, None, Via::Quic, facts, Action::Log, events);
                verdict
            }
            Policy::Drop => {
                let applied = self.applied(Action::Drop);
                self.record_policy(record, None, Via::Quic, facts, applied, events);
                decided(flow, action_for(applied))
            }
        }
    }

    /// What is done for a rule's action: the action itself, or `log` in dry run.
    fn applied(&self, action: Action) -> Action {
        applied_action(action, self.engine.config.enforce)
    }

    /// The packet action for a hit, without recording it.
    fn action_of(&self, hit: Option<Hit>) -> PacketAction {
        hit.and_then(|h| self.rules.rule(h.rule))
            .map_or(PacketAction::Accept, |rule| {
                action_for(self.applied(rule.action))
            })
    }

    /// A DNS packet (UDP or TCP): every message is judged on its own.
    fn dns_packet(
        &mut self,
        flow: &mut FlowState,
        packet: &Packet<'_>,
        from_client: bool,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let mut action = PacketAction::Accept;
        match packet.tcp {
            None => action = self.dns_message(flow, packet.payload, from_client, facts, events),
            Some(tcp) => {
                note_syn(flow, tcp, from_client);
                if !packet.payload.is_empty() {
                    action = self.dns_tcp_segment(
                        flow,
                        packet,
                        data_seq(tcp),
                        from_client,
                        facts,
                        events,
                    );
                }
                // A blocked message's retransmission is old data to the reassembler, so the
                // block sticks to the connection (which cannot carry on past it anyway).
                action = worse(action, flow.dns_sticky);
                flow.dns_sticky = action;
            }
        }
        Verdict {
            action,
            flow: FlowStatus::PerMessage,
        }
    }

    /// Feeds a DNS-over-TCP segment into its direction's stream and judges every complete
    /// message (RFC 1035 §4.2.2: 2-byte length prefix; several per segment or one over many).
    fn dns_tcp_segment(
        &mut self,
        flow: &mut FlowState,
        packet: &Packet<'_>,
        seq: u32,
        from_client: bool,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> PacketAction {
        let isn = if from_client {
            flow.client_isn()
        } else {
            flow.server_isn()
        };
        // Taken out while its messages are judged (which needs the flow), put back after.
        let mut stream = stream_slot(flow, from_client)
            .take()
            .unwrap_or_else(|| StreamBuf::new(isn.unwrap_or(seq)));
        let mut worst = PacketAction::Accept;
        if stream.insert(seq, packet.payload) == Insert::OverCap {
            // A message larger than the cap: this direction is no longer followed.
            bump(&self.counters.stream_cap_hits);
        } else {
            while let Scan::Found((message, used)) = dns::split_tcp(stream.contiguous()) {
                let action = self.dns_message(flow, message, from_client, facts, events);
                worst = worse(worst, action);
                stream.consume(used);
            }
        }
        *stream_slot(flow, from_client) = Some(stream);
        worst
    }

    /// Judges one DNS message: queries by their question, responses also teach addresses.
    fn dns_message(
        &mut self,
        flow: &mut FlowState,
        bytes: &[u8],
        from_client: bool,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> PacketAction {
        let counters = self.counters;
        let message = match Message::parse(bytes) {
            Ok(message) => message,
            Err(_) => {
                counters.parse_error(Layer::Dns);
                return PacketAction::Accept;
            }
        };
        bump(&counters.dns_messages);
        // Resolvers answer the first question or refuse several; a filter judges them all
        // and goes by the strictest.
        let mut chosen: Option<(dns::Question, Option<Hit>)> = None;
        let mut asked = 0;
        for question in message.questions() {
            let Ok(question) = question else {
                counters.parse_error(Layer::Dns);
                break;
            };
            asked += 1;
            let hit =
                self.rules
                    .match_name(question.name.as_bytes(), facts.server_port, facts.protocol);
            if chosen.is_none_or(|(_, best)| self.rank(hit) > self.rank(best)) {
                chosen = Some((question, hit));
            }
        }
        let Some((question, hit)) = chosen else {
            return PacketAction::Accept;
        };
        if asked > 1 && !message.is_response() {
            counters.evasion(Evasion::SeveralNames);
        }
        if message.is_response() {
            self.learn(&message, question.name, hit, facts.time);
            return self.action_of(hit);
        }
        if !from_client {
            return PacketAction::Accept;
        }
        counters.inspected(Via::Dns);
        let Some(hit) = hit else {
            return PacketAction::Accept;
        };
        let tag = name_tag(&question.name);
        if flow.last_dns_event == tag {
            // A retransmitted query: same verdict, recorded once.
            return self.action_of(Some(hit));
        }
        flow.last_dns_event = tag;
        if matches!(question.qtype, dns::TYPE_SVCB | dns::TYPE_HTTPS)
            && self.rules.rule(hit.rule).is_some_and(|r| r.action.blocks())
        {
            self.counters.bypass(Bypass::Svcb);
        }
        self.record(hit, Some(question.name.as_str()), Via::Dns, facts, events)
    }

    /// Learns the A/AAAA addresses of a response whose question, or a CNAME target in its
    /// answer chain, matched a rule other than `allow`.
    fn learn(&self, message: &Message<'_>, question: Name, hit: Option<Hit>, time: Duration) {
        let not_allowed = |hit: Option<Hit>| {
            hit.and_then(|h| self.rules.rule(h.rule))
                .is_some_and(|rule| rule.action != Action::Allow)
        };
        let mut attributed = not_allowed(hit).then_some(question);
        let Ok(records) = message.answers() else {
            self.counters.parse_error(Layer::Dns);
            return;
        };
        for record in records {
            let Ok(record) = record else {
                self.counters.parse_error(Layer::Dns);
                return;
            };
            match record.data {
                RecordData::Cname(target) if attributed.is_none() => {
                    // CNAME cloaking: an innocent name aliased to a telemetry endpoint.
                    let target_hit = self.rules.match_name(target.as_bytes(), 0, Protocol::Tcp);
                    if not_allowed(target_hit) {
                        attributed = Some(target);
                    }
                }
                RecordData::A(v4) => {
                    if let Some(name) = &attributed {
                        self.engine
                            .learned
                            .learn(IpAddr::V4(v4), name.as_str(), record.ttl, time);
                    }
                }
                RecordData::Aaaa(v6) => {
                    if let Some(name) = &attributed {
                        self.engine
                            .learned
                            .learn(IpAddr::V6(v6), name.as_str(), record.ttl, time);
                    }
                }
                // HTTPS/SVCB address hints let a client connect without any A/AAAA lookup;
                // the ECH configuration of every name is kept to recognise real ECH.
                RecordData::Svcb(hints) => {
                    if let Some((config_id, public_name)) = hints.ech_config {
                        self.engine.ech_configs.learn(
                            name_tag(&public_name),
                            config_id,
                            record.ttl,
                            time,
                        );
                    }
                    if let Some(name) = &attributed {
                        for addr in hints.addresses() {
                            self.engine
                                .learned
                                .learn(addr, name.as_str(), record.ttl, time);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A packet of a new flow when the flow table is full: judged on its own bytes only.
    fn stateless(
        &mut self,
        packet: &Packet<'_>,
        time: Duration,
        is_dns: bool,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let from_client = src_is_client(packet);
        let facts = orient(packet, from_client, time, time.as_secs());
        let mut scratch_flow = FlowState::new(true, facts.now);
        let action = if is_dns {
            self.dns_packet(&mut scratch_flow, packet, from_client, facts, events)
                .action
        } else {
            let seen = if packet.payload.is_empty() || !from_client {
                Seen::NeedMore
            } else {
                scan_first_flight(packet.payload, &mut self.scratch)
            };
            match seen {
                Seen::Name(name, via) => {
                    self.decide(&mut scratch_flow, Some((name, via)), facts, events)
                        .action
                }
                _ => {
                    // No name in this packet: address-based rules still apply, silently.
                    let mut quiet = Vec::new();
                    self.decide(&mut scratch_flow, None, facts, &mut quiet)
                        .action
                }
            }
        };
        Verdict {
            action,
            flow: FlowStatus::Untracked,
        }
    }
}

/// What a ClientHello says of the flow's name.
fn hello_seen(hello: tls::ClientHello, via: Via) -> Seen {
    match hello.sni {
        Some(sni) if sni.is_address_literal() => address_seen(&sni, via),
        Some(sni) if hello.ech => Seen::EchFacade(sni, via, hello.ech_config_id),
        Some(sni) => with_other(sni, hello.other_sni, via),
        None => Seen::NoName,
    }
}

/// An IPv4 literal that stood where a name belongs.
fn address_seen(literal: &Name, via: Via) -> Seen {
    match literal.as_str().parse::<IpAddr>() {
        Ok(address) => Seen::Address(address, via),
        Err(_) => Seen::NoName,
    }
}

/// A name, or two when the request gives another one that is a name.
fn with_other(name: Name, other: Option<Name>, via: Via) -> Seen {
    match other {
        Some(other) if !other.is_address_literal() => Seen::Names(name, other, via),
        _ => Seen::Name(name, via),
    }
}

/// Scans the contiguous start of a client's stream.
fn scan_stream(stream: &StreamBuf, scratch: &mut Vec<u8>) -> Seen {
    let bytes = stream.contiguous();
    if bytes.is_empty() {
        Seen::NeedMore
    } else {
        scan_first_flight(bytes, scratch)
    }
}

/// Tries TLS, then HTTP, on the start of a client's stream.
fn scan_first_flight(bytes: &[u8], scratch: &mut Vec<u8>) -> Seen {
    match tls::scan_client_hello(bytes, scratch) {
        Ok(Scan::Found(hello)) => return hello_seen(hello, Via::Sni),
        Ok(Scan::NeedMore) => return Seen::NeedMore,
        Ok(Scan::NotThis) => {}
        Err(_) => return Seen::Malformed(Layer::Tls),
    }
    match http::scan_request(bytes) {
        Ok(Scan::Found(request)) => match request.host {
            Some(host) if host.is_address_literal() => match request.other_host {
                Some(other) if !other.is_address_literal() => Seen::Name(other, Via::Http),
                _ => address_seen(&host, Via::Http),
            },
            Some(host) => with_other(host, request.other_host, Via::Http),
            None => match (request.other_host, request.host_v6) {
                (Some(other), _) if !other.is_address_literal() => Seen::Name(other, Via::Http),
                (_, Some(v6)) => Seen::Address(IpAddr::V6(v6), Via::Http),
                _ => Seen::NoName,
            },
        },
        Ok(Scan::NeedMore) => Seen::NeedMore,
        Ok(Scan::NotThis) => Seen::NoName,
        Err(_) => Seen::Malformed(Layer::Http),
    }
}

/// Which end of a flow's first packet is the client: the sender of a bare SYN, the receiver
/// of a SYN-ACK, the side not on port 53, else the sender unless it uses a privileged port
/// towards an ephemeral one (a capture that starts mid-flow).
fn src_is_client(packet: &Packet<'_>) -> bool {
    if let Some(tcp) = packet.tcp {
        if tcp.syn {
            return !tcp.ack;
        }
    }
    if packet.src_port == 53 || packet.dst_port == 53 {
        return packet.dst_port == 53;
    }
    !(packet.src_port < 1024 && packet.dst_port >= 1024)
}

/// DNS is judged message by message, by port (either direction).
fn is_dns(packet: &Packet<'_>) -> bool {
    packet.dst_port == 53 || packet.src_port == 53
}

/// The same number for both directions of a flow, and the same in every run (for routing
/// flows to threads; the flow table's own hash is seeded per process).
fn flow_hash(packet: &Packet<'_>) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7e1e_5715).hash_one(FlowKey::of(packet).0)
}

/// Caches a flow's final verdict and frees its buffers.
fn decided(flow: &mut FlowState, verdict: PacketAction) -> Verdict {
    flow.phase = Phase::Decided(Decision { verdict });
    flow.release_streams();
    Verdict {
        action: verdict,
        flow: FlowStatus::Decided,
    }
}

/// The reassembly buffer of one direction of a flow.
fn stream_slot(flow: &mut FlowState, from_client: bool) -> &mut Option<StreamBuf> {
    let streams = flow.streams_mut();
    if from_client {
        &mut streams.client
    } else {
        &mut streams.server
    }
}

/// Records the next sequence number of the side that sent a SYN (its ISN plus one).
fn note_syn(flow: &mut FlowState, tcp: TcpInfo, from_client: bool) {
    if tcp.syn {
        let next = tcp.seq.wrapping_add(1);
        if from_client {
            flow.set_client_isn(next);
        } else {
            flow.set_server_isn(next);
        }
    }
}

/// Sequence number of a segment's first data byte: data in a SYN (TCP Fast Open, RFC 7413)
/// starts after the SYN's own sequence number.
fn data_seq(tcp: TcpInfo) -> u32 {
    tcp.seq.wrapping_add(u32::from(tcp.syn))
}

impl Facts {
    /// The event of a match on this flow.
    fn event(
        &self,
        name: Option<&str>,
        via: Via,
        rule: &Arc<str>,
        vendor: &Arc<str>,
        action: Action,
        applied: Action,
    ) -> FlowEvent {
        FlowEvent {
            time: self.time,
            client: self.client,
            client_port: self.client_port,
            server: self.server,
            server_port: self.server_port,
            protocol: self.protocol,
            name: name.map(str::to_string),
            via,
            rule: Arc::clone(rule),
            vendor: Arc::clone(vendor),
            action,
            applied,
        }
    }
}

fn orient(packet: &Packet<'_>, from_client: bool, time: Duration, now: u64) -> Facts {
    let (client, client_port, server, server_port) = if from_client {
        (packet.src, packet.src_port, packet.dst, packet.dst_port)
    } else {
        (packet.dst, packet.dst_port, packet.src, packet.src_port)
    };
    Facts {
        client,
        client_port,
        server,
        server_port,
        protocol: packet.protocol,
        time,
        now,
    }
}

fn action_for(applied: Action) -> PacketAction {
    match applied {
        Action::Drop => PacketAction::Drop,
        Action::Reject => PacketAction::Reject,
        Action::Log | Action::Allow => PacketAction::Accept,
    }
}

fn worse(a: PacketAction, b: PacketAction) -> PacketAction {
    let rank = |action| match action {
        PacketAction::Accept => 0,
        PacketAction::Reject => 1,
        PacketAction::Drop => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A cheap tag of a name (FNV-1a), to recognise a retransmitted DNS query.
fn name_tag(name: &Name) -> u64 {
    name.as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        | 1
}

#[cfg(test)]
mod tests;

/// What is done for a rule's action: the action itself, or `log` for a blocking rule in dry run.
fn applied_action(action: Action, enforce: bool) -> Action {
    if action.blocks() && !enforce {
        Action::Log
    } else {
        action
    }
}

impl Active {
    fn new(rules: impl Into<Arc<RuleSet>>, counts: &FlowCounts, enforce: bool) -> Self {
        let rules: Arc<RuleSet> = rules.into();
        let hits = rules
            .rules()
            .iter()
            .map(|rule| {
                counts.handle(FlowSeries {
                    vendor: Arc::clone(&rule.vendor),
                    rule: Arc::clone(&rule.id),
                    action: applied_action(rule.action, enforce),
                })
            })
            .collect();
        Self { rules, hits }
    }
}

impl Policy {
    /// The action the policy stands for in events and counters.
    pub fn action(self) -> Action {
        match self {
            EchPolicy::Allow => Action::Allow,
            EchPolicy::Log => Action::Log,
            EchPolicy::Drop => Action::Drop,
        }
    }
}
