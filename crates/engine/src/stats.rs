//! [`Counters`]: what the engine counts, as plain atomics the packet threads bump without
//! locks or label lookups. The metrics exporter and the CLI summary read them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::rules::Action;
use crate::wire::Tunnel;

/// How a flow's name was seen (the `via` of counters, events and the audit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    Sni,
    /// The SNI of a QUIC Initial's ClientHello.
    Quic,
    Http,
    Dns,
    Learned,
    Cidr,
}

impl Via {
    pub const ALL: [Via; 6] = [
        Via::Sni,
        Via::Quic,
        Via::Http,
        Via::Dns,
        Via::Learned,
        Via::Cidr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Sni => "sni",
            Via::Quic => "quic",
            Via::Http => "http",
            Via::Dns => "dns",
            Via::Learned => "learned",
            Via::Cidr => "cidr",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ways around a name-based filter that telestrip sees and counts, so a dashboard shows
/// attempts to get around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bypass {
    /// Telemetry over QUIC instead of TCP (a blocking rule matched a QUIC Initial).
    Quic,
    /// A ClientHello with an encrypted_client_hello extension (real or GREASE): its SNI
    /// is only the public name.
    Ech,
    /// A flow to a DNS-over-HTTPS/TLS/QUIC resolver (a blocking rule of category `doh`).
    Doh,
    /// An SVCB/HTTPS query for a blocked name (address hints and ECH keys).
    Svcb,
    /// A flow without a name of its own blocked through an address learned from DNS.
    LearnedAddress,
    /// A flow on UDP 443 whose QUIC telestrip could not read (an unknown version, an
    /// Initial that does not decrypt, no Initial at all): its name stays hidden.
    QuicUnreadable,
    /// A DNS answer for a name no blocking rule matches, aliased (CNAME) to one that a
    /// blocking rule matches: CNAME cloaking.
    Cname,
}

impl Bypass {
    pub const ALL: [Bypass; 7] = [
        Bypass::Quic,
        Bypass::Ech,
        Bypass::Doh,
        Bypass::Svcb,
        Bypass::LearnedAddress,
        Bypass::QuicUnreadable,
        Bypass::Cname,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bypass::Quic => "quic",
            Bypass::Ech => "ech",
            Bypass::Doh => "doh",
            Bypass::Svcb => "svcb",
            Bypass::LearnedAddress => "learned_address",
            Bypass::QuicUnreadable => "quic_unreadable",
            Bypass::Cname => "cname",
        }
    }
}

/// Tricks that try to show a filter something else than what the receiving host will
/// act on. Each is seen, counted, and kept from deciding a flow by what it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evasion {
    /// A client segment with a lower TTL (hop limit) than the client's SYN: built to expire
    /// before it reaches the server.
    LowTtl,
    /// A client segment with a wrong TCP checksum while the SYN's was right.
    BadChecksum,
    /// A client segment with a TCP MD5 signature option the SYN did not have.
    Md5Option,
    /// A client segment that starts outside the window after the SYN's sequence number.
    OutOfWindow,
    /// Overlapping TCP segments with different bytes: both versions are judged.
    OverlapConflict,
    /// Two names in one request (server_name list, absolute-form target and Host, two Host
    /// headers): every name is judged.
    SeveralNames,
    /// IP fragments that overlap: the datagram is discarded (RFC 5722), as hosts do.
    FragmentOverlap,
    /// A QUIC flow allowed by the ClientHello of its first Initial showed another one,
    /// which the rules block (another connection ID, a low TTL, or the same connection ID
    /// with other bytes): the first was a decoy; the flow is blocked from then on.
    QuicDecoy,
}

impl Evasion {
    pub const ALL: [Evasion; 8] = [
        Evasion::LowTtl,
        Evasion::BadChecksum,
        Evasion::Md5Option,
        Evasion::OutOfWindow,
        Evasion::OverlapConflict,
        Evasion::SeveralNames,
        Evasion::FragmentOverlap,
        Evasion::QuicDecoy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Evasion::LowTtl => "low_ttl",
            Evasion::BadChecksum => "bad_checksum",
            Evasion::Md5Option => "md5_option",
            Evasion::OutOfWindow => "out_of_window",
            Evasion::OverlapConflict => "overlap_conflict",
            Evasion::SeveralNames => "several_names",
            Evasion::FragmentOverlap => "fragment_overlap",
            Evasion::QuicDecoy => "quic_decoy",
        }
    }
}

/// Layers whose parse errors are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Link,
    Network,
    Transport,
    Dns,
    Tls,
    Quic,
    Http,
}

impl Layer {
    pub const ALL: [Layer; 7] = [
        Layer::Link,
        Layer::Network,
        Layer::Transport,
        Layer::Dns,
        Layer::Tls,
        Layer::Quic,
        Layer::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Network => "network",
            Layer::Transport => "transport",
            Layer::Dns => "dns",
            Layer::Tls => "tls",
            Layer::Quic => "quic",
            Layer::Http => "http",
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub packets_accepted: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub packets_rejected: AtomicU64,
    /// Frames that are not IP (ARP, LLDP, ...).
    pub packets_not_ip: AtomicU64,
    /// IP fragments seen.
    pub packets_fragmented: AtomicU64,
    /// Datagrams reassembled from fragments and inspected.
    pub fragments_reassembled: AtomicU64,
    /// Datagrams in reassembly given up (caps reached or timed out).
    pub fragments_evicted: AtomicU64,
    pub evasion: [AtomicU64; Evasion::ALL.len()],
    pub parse_errors: [AtomicU64; Layer::ALL.len()],
    /// Flows (or DNS messages) whose name was seen, by how.
    pub inspected: [AtomicU64; Via::ALL.len()],
    pub flows_new: AtomicU64,
    /// Client segments of pending flows dropped because they did not fit the reassembly
    /// buffer (too far ahead or too many holes); the flow stays pending.
    pub stream_cap_hits: AtomicU64,
    /// Pending flows decided without a name after too many client packets that brought no
    /// new in-order bytes.
    pub pending_limit_hits: AtomicU64,
    pub dns_messages: AtomicU64,
    pub bypass: [AtomicU64; Bypass::ALL.len()],
    /// ClientHellos with ECH whose config_id the server announced in DNS (real ECH), and
    /// with any other (GREASE ECH, sent by browsers on every connection).
    pub ech_real: AtomicU64,
    pub ech_grease: AtomicU64,
    /// Packets taken out of each kind of tunnel and judged by what they carry.
    pub tunnels_opened: [AtomicU64; Tunnel::ALL.len()],
    /// Packets of each kind of tunnel whose inside could not be opened.
    pub tunnels_unopened: [AtomicU64; Tunnel::ALL.len()],
    /// Packets of link types a capture reader cannot read (offline only).
    pub link_type_unsupported: AtomicU64,
    /// Flows whose SNI or Host was an address literal (judged by address rules).
    pub address_literals: AtomicU64,
    /// DNS answers with an `ech` parameter that passed an inline gateway with `strip_ech`
    /// on, by what became of them.
    pub ech_answers: [AtomicU64; EchAnswer::ALL.len()],
}

/// What became of a DNS answer with an `ech` parameter on an inline gateway with
/// `strip_ech` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchAnswer {
    /// Over UDP: passed on without it.
    Stripped,
    /// Over TCP: moved under a private-use key that clients ignore (the message keeps its
    /// length, so the stream stays intact).
    Hidden,
    /// Passed unchanged: IP fragments, offloaded (GSO) segments, messages that cannot be
    /// rewritten safely. Counted where the packet holds the whole answer: a DNS-over-TCP
    /// message spread over several segments, or not the first in its segment, passes
    /// uncounted.
    Kept,
}

impl EchAnswer {
    pub const ALL: [EchAnswer; 3] = [EchAnswer::Stripped, EchAnswer::Hidden, EchAnswer::Kept];

    pub fn as_str(self) -> &'static str {
        match self {
            EchAnswer::Stripped => "stripped",
            EchAnswer::Hidden => "hidden",
            EchAnswer::Kept => "kept",
        }
    }
}

/// Why a packet could not be judged: what an audit of the traffic cannot vouch for. Each
/// reason is read from the counters of the layer that failed (`SharedCounters::unjudged`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unjudged {
    /// A link type the capture reader does not read.
    LinkType,
    /// The link, network or transport header did not parse.
    Link,
    Network,
    Transport,
    /// A tunnel whose inside was not opened.
    Tunnel,
}

impl Unjudged {
    pub const ALL: [Unjudged; 5] = [
        Unjudged::LinkType,
        Unjudged::Link,
        Unjudged::Network,
        Unjudged::Transport,
        Unjudged::Tunnel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unjudged::LinkType => "link_type",
            Unjudged::Link => "link",
            Unjudged::Network => "network",
            Unjudged::Transport => "transport",
            Unjudged::Tunnel => "tunnel",
        }
    }
}

impl Counters {
    pub fn parse_error(&self, layer: Layer) {
        if let Some(counter) = self.parse_errors.get(layer as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn inspected(&self, via: Via) {
        if let Some(counter) = self.inspected.get(via as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn bypass(&self, kind: Bypass) {
        if let Some(counter) = self.bypass.get(kind as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn evasion(&self, kind: Evasion) {
        if let Some(counter) = self.evasion.get(kind as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn evasion_of(&self, kind: Evasion) -> u64 {
        self.evasion
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn bypass_of(&self, kind: Bypass) -> u64 {
        self.bypass
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn ech_answer_of(&self, kind: EchAnswer) -> u64 {
        self.ech_answers
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn parse_errors_of(&self, layer: Layer) -> u64 {
        self.parse_errors
            .get(layer as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn inspected_of(&self, via: Via) -> u64 {
        self.inspected
            .get(via as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a DNS answer with an `ech` parameter by what became of it.
    pub fn ech_answer(&self, kind: EchAnswer) {
        if let Some(counter) = self.ech_answers.get(kind as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a packet that came out of a tunnel, or one whose tunnel stayed closed.
    pub fn tunnel(&self, opened: Option<Tunnel>, unopened: Option<Tunnel>) {
        if let Some(counter) = opened.and_then(|kind| self.tunnels_opened.get(kind as usize)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(counter) = unopened.and_then(|kind| self.tunnels_unopened.get(kind as usize)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A metric as the layer that counts it declares it: its one definition. The layer's
/// `export_metrics` reports it with the values it reads from its own counters.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Where layers report their metrics when they are scraped (the gateway's `metrics`
/// module turns the reports into Prometheus families). Packet threads never call it.
pub trait MetricSink {
    /// A counter's value now; the sink never shows a counter going down.
    fn counter(&mut self, family: &'static Family, labels: &[&str], value: u64);
    /// A gauge's value now.
    fn gauge(&mut self, family: &'static Family, labels: &[&str], value: u64);
}

const PACKETS: Family = Family {
    name: "telestrip_packets_total",
    help: "Packets judged, by verdict.",
    labels: &["verdict"],
};
const PACKETS_UNINSPECTED: Family = Family {
    name: "telestrip_packets_uninspected_total",
    help: "Packets passed without inspection: not IP, or IP fragments of datagrams given up before they were complete (reassembly caps or 30 s timeout; counted per datagram).",
    labels: &["reason"],
};
const INSPECTED: Family = Family {
    name: "telestrip_inspected_flows_total",
    help: "Flows and DNS messages whose name was seen, by how.",
    labels: &["via"],
};
const PARSE_ERRORS: Family = Family {
    name: "telestrip_parse_errors_total",
    help: "Malformed packets or messages, by layer.",
    labels: &["layer"],
};
const UNJUDGED: Family = Family {
    name: "telestrip_unjudged_packets_total",
    help: "Packets telestrip could not judge, by reason: link, network or transport headers that did not parse, tunnels whose inside was not opened (link_type: offline only). What is not judged may carry telemetry.",
    labels: &["reason"],
};
const TUNNELS: Family = Family {
    name: "telestrip_tunnel_packets_total",
    help: "Tunnelled packets (ipip, gre, vxlan, gtpu), by whether the packet inside was taken out and judged (opened) or not.",
    labels: &["tunnel", "result"],
};
const ADDRESS_LITERALS: Family = Family {
    name: "telestrip_address_literal_names_total",
    help: "Flows whose TLS SNI or HTTP Host was an IP address instead of a name; judged by CIDR rules on that address.",
    labels: &[],
};
const UNDECIDED: Family = Family {
    name: "telestrip_flows_decided_without_name_total",
    help: "Flows decided without a name after too many client packets that brought no new in-order bytes (packet_limit); stream_cap counts client segments dropped because they did not fit the reassembly buffer (the flow stays pending).",
    labels: &["reason"],
};
const DNS_MESSAGES: Family = Family {
    name: "telestrip_dns_messages_total",
    help: "DNS messages inspected.",
    labels: &[],
};
const ECH: Family = Family {
    name: "telestrip_ech_flows_total",
    help: "ClientHellos with an ECH extension: real (a config the server announced in DNS) or GREASE (browsers send it on every connection).",
    labels: &["kind"],
};
const BYPASS: Family = Family {
    name: "telestrip_bypass_attempts_total",
    help: "Attempts to get around name-based filtering, by kind: telemetry over QUIC, ClientHellos with ECH, DoH resolvers, SVCB/HTTPS queries for blocked names, blocked flows known only by a learned address.",
    labels: &["kind"],
};
const EVASION: Family = Family {
    name: "telestrip_evasion_attempts_total",
    help: "Packets built to show a filter something else than what the server acts on, by kind: decoy segments (low_ttl, bad_checksum, md5_option, out_of_window) never read, overlapping segments with different bytes (both versions judged), several names in one request (every one judged), overlapping IP fragments (datagram discarded).",
    labels: &["kind"],
};
const IP_FRAGMENTS: Family = Family {
    name: "telestrip_ip_fragments_total",
    help: "IP fragments seen.",
    labels: &[],
};
const IP_REASSEMBLED: Family = Family {
    name: "telestrip_ip_datagrams_reassembled_total",
    help: "IP datagrams reassembled from fragments and inspected.",
    labels: &[],
};
const ECH_ANSWERS: Family = Family {
    name: "telestrip_dns_ech_answers_total",
    help: "DNS answers with an ech parameter (keys for encrypted ClientHellos) that passed an inline gateway with strip_ech on: stripped (over UDP, passed on without it), hidden (over TCP, moved under a private-use key that clients ignore, the message keeping its length) or kept (passed unchanged: IP fragments, offloaded segments, messages that cannot be rewritten safely; a DNS-over-TCP message spread over several segments passes uncounted).",
    labels: &["result"],
};
const FLOWS: Family = Family {
    name: "telestrip_flows_total",
    help: "Flows (and DNS messages) matched by a rule, by what was done: the rule's action, or log for a blocking rule in dry run.",
    labels: &["vendor", "rule", "action", "group"],
};

/// The engine's counters, one copy per packet thread (each on cache lines of its own), so
/// threads never write the same line; readers add the copies up.
#[derive(Debug)]
pub struct SharedCounters {
    shards: Box<[Padded<Counters>]>,
    next: std::sync::atomic::AtomicUsize,
}

/// Keeps a shard off its neighbours' cache lines (128 bytes: adjacent-line prefetch).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Copies made: more packet threads than this share copies (still correct).
const COUNTER_SHARDS: usize = 16;

impl Default for SharedCounters {
    fn default() -> Self {
        Self {
            shards: (0..COUNTER_SHARDS).map(|_| Padded::default()).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl SharedCounters {
    /// The copy for a new packet thread (round robin).
    pub fn shard(&self) -> &Counters {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        let index = next % self.shards.len().max(1);
        match self.shards.get(index) {
            Some(shard) => &shard.0,
            None => unreachable!("there is always one shard"),
        }
    }

    /// Reports every counter (summed over the copies) to `sink`.
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        for (verdict, value) in [
            ("accept", self.sum(|c| &c.packets_accepted)),
            ("drop", self.sum(|c| &c.packets_dropped)),
            ("reject", self.sum(|c| &c.packets_rejected)),
        ] {
            sink.counter(&PACKETS, &[verdict], value);
        }
        for (reason, value) in [
            ("not_ip", self.sum(|c| &c.packets_not_ip)),
            ("fragment", self.sum(|c| &c.fragments_evicted)),
        ] {
            sink.counter(&PACKETS_UNINSPECTED, &[reason], value);
        }
        for via in Via::ALL {
            sink.counter(&INSPECTED, &[via.as_str()], self.inspected_of(via));
        }
        for layer in Layer::ALL {
            sink.counter(
                &PARSE_ERRORS,
                &[layer.as_str()],
                self.parse_errors_of(layer),
            );
        }
        for reason in Unjudged::ALL {
            sink.counter(&UNJUDGED, &[reason.as_str()], self.unjudged_of(reason));
        }
        for tunnel in Tunnel::ALL {
            for (result, opened) in [("opened", true), ("unopened", false)] {
                let value = self.tunnel_of(tunnel, opened);
                sink.counter(&TUNNELS, &[tunnel.as_str(), result], value);
            }
        }
        sink.counter(&ADDRESS_LITERALS, &[], self.sum(|c| &c.address_literals));
        for (reason, value) in [
            ("stream_cap", self.sum(|c| &c.stream_cap_hits)),
            ("packet_limit", self.sum(|c| &c.pending_limit_hits)),
        ] {
            sink.counter(&UNDECIDED, &[reason], value);
        }
        sink.counter(&DNS_MESSAGES, &[], self.sum(|c| &c.dns_messages));
        sink.counter(&ECH, &["real"], self.sum(|c| &c.ech_real));
        sink.counter(&ECH, &["grease"], self.sum(|c| &c.ech_grease));
        for kind in Evasion::ALL {
            sink.counter(&EVASION, &[kind.as_str()], self.evasion_of(kind));
        }
        sink.counter(&IP_FRAGMENTS, &[], self.sum(|c| &c.packets_fragmented));
        sink.counter(&IP_REASSEMBLED, &[], self.sum(|c| &c.fragments_reassembled));
        for kind in Bypass::ALL {
            sink.counter(&BYPASS, &[kind.as_str()], self.bypass_of(kind));
        }
        for kind in EchAnswer::ALL {
            sink.counter(&ECH_ANSWERS, &[kind.as_str()], self.ech_answer_of(kind));
        }
    }

    /// One counter added up over every copy, e.g. `sum(|c| &c.packets_accepted)`.
    pub fn sum(&self, field: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| field(&shard.0).load(Ordering::Relaxed))
            .sum()
    }

    pub fn evasion_of(&self, kind: Evasion) -> u64 {
        self.shards.iter().map(|s| s.0.evasion_of(kind)).sum()
    }

    pub fn bypass_of(&self, kind: Bypass) -> u64 {
        self.shards.iter().map(|s| s.0.bypass_of(kind)).sum()
    }

    pub fn ech_answer_of(&self, kind: EchAnswer) -> u64 {
        self.shards.iter().map(|s| s.0.ech_answer_of(kind)).sum()
    }

    pub fn parse_errors_of(&self, layer: Layer) -> u64 {
        self.shards.iter().map(|s| s.0.parse_errors_of(layer)).sum()
    }

    pub fn inspected_of(&self, via: Via) -> u64 {
        self.shards.iter().map(|s| s.0.inspected_of(via)).sum()
    }

    /// Packets taken out of `kind` tunnels (`opened`) or left in them.
    pub fn tunnel_of(&self, kind: Tunnel, opened: bool) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                let counters = if opened {
                    &shard.0.tunnels_opened
                } else {
                    &shard.0.tunnels_unopened
                };
                counters
                    .get(kind as usize)
                    .map_or(0, |c| c.load(Ordering::Relaxed))
            })
            .sum()
    }

    /// Packets that could not be judged, by reason.
    pub fn unjudged_of(&self, reason: Unjudged) -> u64 {
        match reason {
            Unjudged::LinkType => self.sum(|c| &c.link_type_unsupported),
            Unjudged::Link => self.parse_errors_of(Layer::Link),
            Unjudged::Network => self.parse_errors_of(Layer::Network),
            Unjudged::Transport => self.parse_errors_of(Layer::Transport),
            Unjudged::Tunnel => Tunnel::ALL
                .iter()
                .map(|&kind| self.tunnel_of(kind, false))
                .sum(),
        }
    }

    /// Every packet that could not be judged.
    pub fn unjudged(&self) -> u64 {
        Unjudged::ALL.iter().map(|&r| self.unjudged_of(r)).sum()
    }
}

/// Shorthand for a relaxed increment.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One series of `telestrip_flows_total`: what was done with flows matched by one rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowSeries {
    pub vendor: Arc<str>,
    pub rule: Arc<str>,
    /// What was done: the rule's action, or `log` for a blocking rule in dry run.
    pub action: Action,
    /// The client group.
    pub group: Arc<str>,
}

/// Matched flows per rule, kept across rule reloads so the counters only ever grow. Packet
/// threads bump handles resolved once when a ruleset is installed, never by label.
#[derive(Debug, Default)]
pub struct FlowCounts {
    series: Mutex<BTreeMap<FlowSeries, Arc<AtomicU64>>>,
}

impl FlowCounts {
    /// The counter of `series`, created at zero the first time.
    pub fn handle(&self, series: FlowSeries) -> Arc<AtomicU64> {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(series).or_default())
    }

    /// Reports the matched flows per rule to `sink`.
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        for (series, count) in self.snapshot() {
            let labels = [
                &*series.vendor,
                &*series.rule,
                series.action.as_str(),
                &*series.group,
            ];
            sink.counter(&FLOWS, &labels, count);
        }
    }

    /// Every series with its current count, sorted by vendor, rule and action.
    pub fn snapshot(&self) -> Vec<(FlowSeries, u64)> {
        let map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(series, count)| (series.clone(), count.load(Ordering::Relaxed)))
            .collect()
    }
}
