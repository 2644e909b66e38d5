//! A reproducible, realistic traffic mix for benchmarks and for comparisons with other
//! tools. [`generate`] emits interleaved client sessions: TLS (ordinary ClientHellos and
//! post-quantum sized ones over two segments), QUIC v1 (Initials, some split over two
//! datagrams with their CRYPTO frames reversed), HTTP, DNS over UDP and TCP, SSH-like and
//! plain UDP flows; bulk data carries most of the bytes; some sessions are IPv6 or VLAN
//! tagged (802.1Q and QinQ); a known share goes to telemetry names taken from a ruleset's own
//! test cases. Every match the capture must produce is counted in [`Expected`] as the packet
//! that decides it is emitted, so a benchmark checks what it measured.
//!
//! Deterministic: the same options and names give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::{client_hello_with, dns_query, http_get, Flags, HelloOptions, Hosts, Vlan, SYN};
use crate::inspect::quic;
use crate::rules::{Action, LoadedFile, RuleSet};
use crate::stats::Via;

/// What to generate.
#[derive(Clone, Debug)]
pub struct MixOptions {
    /// Exactly this many packets (sessions still open at the end are cut, as in a real
    /// capture).
    pub packets: u64,
    /// Percent of the sessions that carry a name (TLS, QUIC, HTTP, DNS) that go to a
    /// telemetry name.
    pub telemetry_percent: u32,
    pub seed: u64,
    /// Capture rate: consecutive packets are 1/rate seconds apart.
    pub packets_per_second: u64,
    /// Sessions open at the same time; their packets interleave.
    pub concurrent_sessions: usize,
}

impl Default for MixOptions {
    fn default() -> Self {
        Self {
            packets: 1_000_000,
            telemetry_percent: 10,
            seed: 1,
            packets_per_second: 100_000,
            concurrent_sessions: 256,
        }
    }
}

/// A name that a blocking rule, and only that rule, matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryName {
    pub name: String,
    pub rule: String,
}

/// Telemetry names for [`generate`]: the `match` test cases of the blocking rules in
/// `files` that apply to every port and protocol (so the name matches over DNS, TLS, QUIC
/// and HTTP alike) and that no other rule of `set` matches too (so the expected rule does
/// not depend on precedence). DoH resolver rules are left out: they are not telemetry.
pub fn telemetry_names(files: &[LoadedFile], set: &RuleSet) -> Vec<TelemetryName> {
    let mut names = Vec::new();
    for spec in files.iter().flat_map(|f| &f.spec.rules) {
        let blocks = matches!(spec.action, Action::Drop | Action::Reject);
        let everywhere = spec.ports.is_empty() && spec.protocols.is_empty();
        let doh = spec.category.as_ref().is_some_and(|c| c.0 == "doh");
        if !blocks || !everywhere || doh {
            continue;
        }
        for case in &spec.tests.should_match {
            let name = case.trim_end_matches('.').to_ascii_lowercase();
            if name.parse::<IpAddr>().is_ok() {
                continue;
            }
            let hits = set.explain_name(name.as_bytes());
            let only_this = matches!(hits.as_slice(), [hit]
                if set.rule(hit.rule).is_some_and(|r| *r.id == *spec.id.0));
            if only_this {
                names.push(TelemetryName {
                    name,
                    rule: spec.id.0.clone(),
                });
            }
        }
    }
    names.sort_by(|a, b| a.name.cmp(&b.name));
    names.dedup_by(|a, b| a.name == b.name);
    names
}

/// The matched flows a capture must produce: how many per (via, name, rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub flows: BTreeMap<(String, String, String), u64>,
}

impl Expected {
    pub fn total(&self) -> u64 {
        self.flows.values().sum()
    }

    fn count(&mut self, via: Via, name: &TelemetryName) {
        *self
            .flows
            .entry((
                via.as_str().to_string(),
                name.name.clone(),
                name.rule.clone(),
            ))
            .or_default() += 1;
    }

    /// Tab-separated: a header line, then `via name rule flows` per line.
    pub fn write_tsv(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "via\tname\trule\tflows")?;
        for ((via, name, rule), flows) in &self.flows {
            writeln!(out, "{via}\t{name}\t{rule}\t{flows}")?;
        }
        Ok(())
    }

    /// Reads what [`Expected::write_tsv`] wrote; errors name the line.
    pub fn parse_tsv(text: &str) -> Result<Self, String> {
        let mut expected = Expected::default();
        for (number, line) in text.lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let [via, name, rule, flows] = fields.as_slice() else {
                return Err(format!(
                    "line {}: expected 4 tab-separated fields",
                    number + 1
                ));
            };
            let flows: u64 = flows
                .parse()
                .map_err(|_| format!("line {}: {flows:?} is not a count", number + 1))?;
            expected
                .flows
                .insert((via.to_string(), name.to_string(), rule.to_string()), flows);
        }
        Ok(expected)
    }
}

/// What [`generate`] produced.
#[derive(Clone, Debug, Default)]
pub struct MixSummary {
    pub packets: u64,
    pub bytes: u64,
    /// Sessions started, per kind.
    pub sessions: BTreeMap<&'static str, u64>,
    pub ipv6_sessions: u64,
    pub vlan_sessions: u64,
    pub expected: Expected,
}

/// Emits `options.packets` Ethernet frames with their capture times through `emit`.
pub fn generate(
    options: &MixOptions,
    names: &[TelemetryName],
    mut emit: impl FnMut(Duration, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<MixSummary> {
    let mut mix = Mix::new(options, names);
    let mut summary = MixSummary::default();
    let mut active: Vec<Session> = Vec::new();
    let start = Duration::from_secs(1_700_000_000);
    let interval_ns = 1_000_000_000 / options.packets_per_second.max(1);
    while summary.packets < options.packets {
        while active.len() < options.concurrent_sessions.max(1) {
            let session = mix.session();
            *summary.sessions.entry(session.kind).or_default() += 1;
            summary.ipv6_sessions += u64::from(session.ipv6);
            summary.vlan_sessions += u64::from(session.vlan);
            active.push(session);
        }
        let pick = mix.rng.below(active.len() as u64) as usize;
        let Some(session) = active.get_mut(pick) else {
            break;
        };
        let Some((frame, tag)) = session.frames.get(session.next) else {
            active.swap_remove(pick);
            continue;
        };
        let time = start + Duration::from_nanos(summary.packets * interval_ns);
        emit(time, frame)?;
        summary.packets += 1;
        summary.bytes += frame.len() as u64;
        if let Some((via, index)) = tag {
            if let Some(name) = names.get(*index) {
                summary.expected.count(*via, name);
            }
        }
        session.next += 1;
        if session.next == session.frames.len() {
            active.swap_remove(pick);
        }
    }
    Ok(summary)
}

/// splitmix64: small, fast and the same on every platform (not for cryptography).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next() % bound
        }
    }

    fn percent(&mut self, chance: u32) -> bool {
        self.below(100) < u64::from(chance)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(word.get(..chunk.len()).unwrap_or_default());
        }
        out
    }
}

/// One frame of a session, and the match it completes (via, index into the names).
type TaggedFrame = (Vec<u8>, Option<(Via, usize)>);

struct Session {
    kind: &'static str,
    ipv6: bool,
    vlan: bool,
    frames: Vec<TaggedFrame>,
    next: usize,
}

/// Session kinds and their share of sessions, in percent.
const KINDS: [(&str, u64); 9] = [
    ("tls", 50),
    ("tls-post-quantum", 8),
    ("quic", 12),
    ("quic-split", 4),
    ("http", 7),
    ("dns-udp", 10),
    ("dns-tcp", 3),
    ("ssh", 3),
    ("udp-other", 3),
];

/// Client hosts; each uses its own run of source ports, so 5-tuples do not repeat.
const CLIENTS: u64 = 8192;
/// Distinct ordinary names (popular ones come up more often).
const ORDINARY_NAMES: u64 = 2000;
/// Maximum segment size of the generated TCP flows (Ethernet MTU).
const MSS: usize = 1448;
/// Size of a post-quantum key share (X25519MLKEM768), which pushes a ClientHello over
/// one segment.
const PQ_KEY_SHARE: usize = 1216;

struct Mix<'n> {
    rng: Rng,
    names: &'n [TelemetryName],
    telemetry_percent: u32,
    next_port: Vec<u16>,
    /// Pseudo-random bytes that bulk payloads are cut from.
    noise: Vec<u8>,
}

impl<'n> Mix<'n> {
    fn new(options: &MixOptions, names: &'n [TelemetryName]) -> Self {
        let mut rng = Rng(options.seed);
        let noise = (0..8192).flat_map(|_| rng.next().to_le_bytes()).collect();
        Self {
            rng,
            names,
            telemetry_percent: options.telemetry_percent.min(100),
            next_port: vec![10_000; CLIENTS as usize],
            noise,
        }
    }

    fn noise(&mut self, len: usize) -> &[u8] {
        let len = len.min(self.noise.len());
        let at = self.rng.below((self.noise.len() - len + 1) as u64) as usize;
        self.noise.get(at..at + len).unwrap_or_default()
    }

    fn session(&mut self) -> Session {
        let mut roll = self.rng.below(100);
        let mut kind = KINDS[0].0;
        for (name, share) in KINDS {
            if roll < share {
                kind = name;
                break;
            }
            roll -= share;
        }
        let ipv6 = self.rng.percent(20);
        let vlan = match self.rng.below(100) {
            0..=7 => Vlan::Single(100 + self.rng.below(20) as u16),
            8..=9 => Vlan::Double(200, 300 + self.rng.below(10) as u16),
            _ => Vlan::None,
        };
        let client_id = self.rng.below(CLIENTS) as usize;
        let port = self.next_port.get_mut(client_id).map_or(10_000, |p| {
            *p = if *p >= 64_999 { 10_000 } else { *p + 1 };
            *p
        });
        let client = if ipv6 {
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, client_id as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                10,
                1,
                (client_id >> 8) as u8,
                client_id as u8,
            ))
        };
        let named = !matches!(kind, "ssh" | "udp-other");
        let telemetry =
            (named && !self.names.is_empty() && self.rng.percent(self.telemetry_percent))
                .then(|| self.rng.below(self.names.len() as u64) as usize);
        let name = match telemetry {
            Some(index) => self
                .names
                .get(index)
                .map_or_else(String::new, |n| n.name.clone()),
            None => self.ordinary_name(),
        };
        let plan = Plan {
            client,
            client_port: port,
            vlan,
            name,
            telemetry,
        };
        let frames = match kind {
            "tls" => self.tls(&plan, false),
            "tls-post-quantum" => self.tls(&plan, true),
            "quic" => self.quic(&plan, false),
            "quic-split" => self.quic(&plan, true),
            "http" => self.http(&plan),
            "dns-udp" => self.dns_lookup(&plan).to_vec(),
            "dns-tcp" => self.dns_tcp(&plan),
            "ssh" => self.ssh(&plan),
            _ => self.udp_other(&plan),
        };
        Session {
            kind,
            ipv6,
            vlan: vlan != Vlan::None,
            frames,
            next: 0,
        }
    }

    /// Zipf-like: low indexes (popular sites) come up far more often.
    fn ordinary_name(&mut self) -> String {
        let a = self.rng.below(ORDINARY_NAMES);
        let b = self.rng.below(ORDINARY_NAMES);
        let index = a * b / ORDINARY_NAMES;
        const WORDS: [&str; 8] = [
            "shop", "news", "cdn", "mail", "video", "static", "api", "img",
        ];
        let word = WORDS.get((index % 8) as usize).copied().unwrap_or("www");
        let tld = ["com", "net", "org"]
            .get((index % 3) as usize)
            .copied()
            .unwrap_or("com");
        format!("{word}{}.site{index}.example.{tld}", index % 7)
    }

    /// The server address a name resolves to: telemetry and ordinary names in separate
    /// ranges (198.19/16 and 198.18/16, 2001:db8:2:: and 2001:db8:1::), so a learned
    /// telemetry address never serves an ordinary name.
    fn server_of(plan: &Plan) -> IpAddr {
        let hash = plan.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let range = if plan.telemetry.is_some() { 2 } else { 1 };
        match plan.client {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(
                198,
                17 + range,
                (hash >> 8) as u8,
                (hash as u8).max(1),
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                range as u16,
                0,
                0,
                0,
                (hash >> 16) as u16,
                hash as u16,
            )),
        }
    }

    fn resolver(plan: &Plan) -> IpAddr {
        match plan.client {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(10, 255, 0, 53)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0x53, 0, 0, 0, 0x53)),
        }
    }

    fn hosts(plan: &Plan, server: IpAddr, server_port: u16) -> Hosts {
        Hosts {
            client: plan.client,
            server,
            client_port: plan.client_port,
            server_port,
            vlan: plan.vlan,
        }
    }

    /// A DNS query for the plan's name and its answer with the server's address.
    fn dns_lookup(&mut self, plan: &Plan) -> [TaggedFrame; 2] {
        let dns = Self::hosts(plan, Self::resolver(plan), 53);
        let id = self.rng.next() as u16;
        let (query, answer) = dns_exchange(id, &plan.name, Self::server_of(plan));
        [
            (dns.udp(true, &query), plan.tag(Via::Dns)),
            (dns.udp(false, &answer), None),
        ]
    }

    fn tls(&mut self, plan: &Plan, post_quantum: bool) -> Vec<TaggedFrame> {
        let mut frames = self.dns_lookup(plan).to_vec();
        // One telemetry TLS session in fifty sends no SNI: it is found by the address the
        // DNS answer taught.
        let nameless = plan.telemetry.is_some() && self.rng.percent(2);
        let hello = client_hello_with(&HelloOptions {
            names: if nameless {
                Vec::new()
            } else {
                vec![plan.name.clone()]
            },
            padding: if post_quantum {
                PQ_KEY_SHARE
            } else {
                self.rng.below(200) as usize
            },
            ..HelloOptions::default()
        });
        let hosts = Self::hosts(plan, Self::server_of(plan), 443);
        let mut tcp = Tcp::open(&hosts, &mut self.rng, &mut frames);
        let via = if nameless { Via::Learned } else { Via::Sni };
        tcp.send(&mut frames, true, &hello, plan.tag(via));
        let server_flight = self.tls_server_flight();
        tcp.send(&mut frames, false, &server_flight, None);
        let finished = tls_records(0x17, self.noise(74));
        tcp.send(&mut frames, true, &finished, None);
        let request_len = 180 + self.rng.below(300) as usize;
        let request = tls_records(0x17, self.noise(request_len));
        tcp.send(&mut frames, true, &request, None);
        let bulk = self.bulk_size();
        self.bulk(&mut tcp, &mut frames, false, bulk, true);
        tcp.close(&mut frames);
        frames
    }

    /// ServerHello (TLS 1.3, X25519 key share), change_cipher_spec, then encrypted
    /// extensions, certificate and finished as application-data records.
    fn tls_server_flight(&mut self) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&self.rng.bytes::<32>());
        body.push(32);
        body.extend_from_slice(&self.rng.bytes::<32>());
        body.extend_from_slice(&[0x13, 0x01, 0x00]);
        let mut extensions = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
        extensions.extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
        extensions.extend_from_slice(&self.rng.bytes::<32>());
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut hello = vec![0x02];
        hello.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hello.extend_from_slice(&body);
        let mut flight = tls_records(0x16, &hello);
        flight.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        let encrypted = 2000 + self.rng.below(2500) as usize;
        flight.extend_from_slice(&tls_records(0x17, self.noise(encrypted)));
        flight
    }

    /// Data segments of a bulk transfer: mostly short, some long (heavy tail).
    fn bulk_size(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=69 => 2 + self.rng.below(18),
            70..=94 => 20 + self.rng.below(80),
            _ => 100 + self.rng.below(500),
        }
    }

    /// `segments` full-sized segments from one side, acknowledged every second one.
    fn bulk(
        &mut self,
        tcp: &mut Tcp,
        frames: &mut Vec<TaggedFrame>,
        from_client: bool,
        segments: u64,
        tls: bool,
    ) {
        for i in 0..segments {
            let payload = if tls {
                tls_records(0x17, self.noise(MSS - 5))
            } else {
                self.noise(MSS).to_vec()
            };
            tcp.send(frames, from_client, &payload, None);
            if i % 2 == 1 {
                tcp.ack(frames, !from_client);
            }
        }
    }

    fn quic(&mut self, plan: &Plan, split: bool) -> Vec<TaggedFrame> {
        let mut frames = self.dns_lookup(plan).to_vec();
        let hosts = Self::hosts(plan, Self::server_of(plan), 443);
        let padding = if split {
            PQ_KEY_SHARE
        } else {
            self.rng.below(200) as usize
        };
        let hello = super::handshake_client_hello(&plan.name, padding);
        let dcid = self.rng.bytes::<8>();
        let scid = self.rng.bytes::<8>();
        // Split hellos: two CRYPTO frames, the second one sent first (as browsers shuffle).
        let pieces: Vec<(u64, &[u8])> = if split {
            let (first, second) = hello.split_at(hello.len() / 2);
            vec![(first.len() as u64, second), (0, first)]
        } else {
            vec![(0, hello.as_slice())]
        };
        let last = pieces.len() - 1;
        for (number, (offset, data)) in pieces.into_iter().enumerate() {
            let frame = quic::crypto_frame(offset, data);
            let datagram = quic::protect_client_initial(
                quic::VERSION_1,
                &dcid,
                &scid,
                number as u32,
                &frame,
                1200,
            )
            .unwrap_or_default();
            let tag = if number == last {
                plan.tag(Via::Quic)
            } else {
                None
            };
            frames.push((hosts.udp(true, &datagram), tag));
        }
        // The server's Initial and Handshake, then the client's Handshake.
        for _ in 0..2 {
            let datagram = self.quic_long_header(0xc0, &scid, 1200);
            frames.push((hosts.udp(false, &datagram), None));
        }
        let datagram = self.quic_long_header(0xe0, &dcid, 90);
        frames.push((hosts.udp(true, &datagram), None));
        // 1-RTT data from the server, acknowledged every fourth datagram.
        for i in 0..self.bulk_size() {
            let datagram = self.quic_short_header(&scid, 1252);
            frames.push((hosts.udp(false, &datagram), None));
            if i % 4 == 3 {
                let ack = self.quic_short_header(&dcid, 40);
                frames.push((hosts.udp(true, &ack), None));
            }
        }
        frames
    }

    /// A long-header packet (RFC 9000 §17.2) whose protected part is noise.
    fn quic_long_header(&mut self, first: u8, dcid: &[u8; 8], size: usize) -> Vec<u8> {
        let mut packet = vec![first | (self.rng.next() as u8 & 0x03)];
        packet.extend_from_slice(&quic::VERSION_1.to_be_bytes());
        packet.push(8);
        packet.extend_from_slice(dcid);
        packet.push(8);
        packet.extend_from_slice(&self.rng.bytes::<8>());
        if first & 0x30 == 0 {
            packet.push(0); // an Initial: no token
        }
        let rest = size.saturating_sub(packet.len() + 2);
        packet.extend_from_slice(&(0x4000 | rest as u16).to_be_bytes());
        packet.extend_from_slice(self.noise(rest));
        packet
    }

    /// A short-header (1-RTT) packet whose protected part is noise.
    fn quic_short_header(&mut self, dcid: &[u8; 8], size: usize) -> Vec<u8> {
        let mut packet = vec![0x40 | (self.rng.next() as u8 & 0x3f)];
        packet.extend_from_slice(dcid);
        let rest = size.saturating_sub(packet.len());
        packet.extend_from_slice(self.noise(rest));
        packet
    }

    fn http(&mut self, plan: &Plan) -> Vec<TaggedFrame> {
        let mut frames = self.dns_lookup(plan).to_vec();
        let hosts = Self::hosts(plan, Self::server_of(plan), 80);
        let mut tcp = Tcp::open(&hosts, &mut self.rng, &mut frames);
        tcp.send(
            &mut frames,
            true,
            &http_get(&plan.name),
            plan.tag(Via::Http),
        );
        let segments = self.bulk_size();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            segments * MSS as u64
        );
        tcp.send(&mut frames, false, head.as_bytes(), None);
        self.bulk(&mut tcp, &mut frames, false, segments, false);
        tcp.close(&mut frames);
        frames
    }

    fn dns_tcp(&mut self, plan: &Plan) -> Vec<TaggedFrame> {
        let hosts = Self::hosts(plan, Self::resolver(plan), 53);
        let mut frames = Vec::new();
        let mut tcp = Tcp::open(&hosts, &mut self.rng, &mut frames);
        let (query, answer) =
            dns_exchange(self.rng.next() as u16, &plan.name, Self::server_of(plan));
        tcp.send(
            &mut frames,
            true,
            &length_prefixed(&query),
            plan.tag(Via::Dns),
        );
        tcp.send(&mut frames, false, &length_prefixed(&answer), None);
        tcp.close(&mut frames);
        frames
    }

    /// A server that speaks first (no name to read), then an upload.
    fn ssh(&mut self, plan: &Plan) -> Vec<TaggedFrame> {
        let server = Self::server_of(plan);
        let hosts = Self::hosts(plan, server, 22);
        let mut frames = Vec::new();
        let mut tcp = Tcp::open(&hosts, &mut self.rng, &mut frames);
        tcp.send(
            &mut frames,
            false,
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
            None,
        );
        tcp.send(
            &mut frames,
            true,
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
            None,
        );
        let key_exchange = self.noise(1100).to_vec();
        tcp.send(&mut frames, true, &key_exchange, None);
        let segments = self.bulk_size();
        self.bulk(&mut tcp, &mut frames, true, segments, false);
        tcp.close(&mut frames);
        frames
    }

    /// NTP (one exchange) or an RTP-like stream of small datagrams.
    fn udp_other(&mut self, plan: &Plan) -> Vec<TaggedFrame> {
        let server = Self::server_of(plan);
        if self.rng.percent(50) {
            let hosts = Self::hosts(plan, server, 123);
            let mut request = vec![0x23];
            request.extend_from_slice(self.noise(47));
            let mut reply = vec![0x24];
            reply.extend_from_slice(self.noise(47));
            vec![
                (hosts.udp(true, &request), None),
                (hosts.udp(false, &reply), None),
            ]
        } else {
            let hosts = Self::hosts(plan, server, 5004);
            (0..20 + self.rng.below(80))
                .map(|_| {
                    let mut packet = vec![0x80, 0x60];
                    packet.extend_from_slice(self.noise(170));
                    (hosts.udp(true, &packet), None)
                })
                .collect()
        }
    }
}

/// One session's addressing and name.
struct Plan {
    client: IpAddr,
    client_port: u16,
    vlan: Vlan,
    name: String,
    /// Index into the telemetry names, when the session goes to one.
    telemetry: Option<usize>,
}

impl Plan {
    /// The tag of the frame that completes a match through `via` (telemetry only).
    fn tag(&self, via: Via) -> Option<(Via, usize)> {
        self.telemetry.map(|index| (via, index))
    }
}

/// Sequence numbers of one TCP connection.
struct Tcp {
    hosts: Hosts,
    client_seq: u32,
    server_seq: u32,
}

const ACK_ONLY: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

impl Tcp {
    /// The three-way handshake.
    fn open(hosts: &Hosts, rng: &mut Rng, frames: &mut Vec<TaggedFrame>) -> Self {
        let client_isn = rng.next() as u32;
        let server_isn = rng.next() as u32;
        frames.push((hosts.tcp_acking(true, client_isn, 0, SYN, &[]), None));
        let syn_ack = Flags {
            syn: true,
            ack: true,
            fin: false,
            rst: false,
        };
        frames.push((
            hosts.tcp_acking(false, server_isn, client_isn.wrapping_add(1), syn_ack, &[]),
            None,
        ));
        let mut tcp = Self {
            hosts: *hosts,
            client_seq: client_isn.wrapping_add(1),
            server_seq: server_isn.wrapping_add(1),
        };
        tcp.ack(frames, true);
        tcp
    }

    /// `data` from one side in segments of at most [`MSS`]; the last one carries `tag`.
    fn send(
        &mut self,
        frames: &mut Vec<TaggedFrame>,
        from_client: bool,
        data: &[u8],
        tag: Option<(Via, usize)>,
    ) {
        let count = data.len().div_ceil(MSS);
        for (i, chunk) in data.chunks(MSS).enumerate() {
            let (seq, ack) = self.numbers(from_client);
            let frame = self
                .hosts
                .tcp_acking(from_client, seq, ack, ACK_ONLY, chunk);
            frames.push((frame, if i + 1 == count { tag } else { None }));
            let next = seq.wrapping_add(chunk.len() as u32);
            if from_client {
                self.client_seq = next;
            } else {
                self.server_seq = next;
            }
        }
    }

    fn ack(&mut self, frames: &mut Vec<TaggedFrame>, from_client: bool) {
        let (seq, ack) = self.numbers(from_client);
        frames.push((
            self.hosts.tcp_acking(from_client, seq, ack, ACK_ONLY, &[]),
            None,
        ));
    }

    /// FIN from the client, FIN from the server, the last ACK.
    fn close(&mut self, frames: &mut Vec<TaggedFrame>) {
        let fin = Flags {
            syn: false,
            ack: true,
            fin: true,
            rst: false,
        };
        for from_client in [true, false] {
            let (seq, ack) = self.numbers(from_client);
            frames.push((self.hosts.tcp_acking(from_client, seq, ack, fin, &[]), None));
            if from_client {
                self.client_seq = seq.wrapping_add(1);
            } else {
                self.server_seq = seq.wrapping_add(1);
            }
        }
        self.ack(frames, true);
    }

    fn numbers(&self, from_client: bool) -> (u32, u32) {
        if from_client {
            (self.client_seq, self.server_seq)
        } else {
            (self.server_seq, self.client_seq)
        }
    }
}

/// A query for `name` (A or AAAA, as the address is) and its answer, TTL 300.
fn dns_exchange(id: u16, name: &str, addr: IpAddr) -> (Vec<u8>, Vec<u8>) {
    let qtype = if addr.is_ipv4() { 1 } else { 28 };
    let query = dns_query(id, name, qtype);
    let mut answer = query.clone();
    // Response, recursion desired and available, one answer.
    if let Some(flags) = answer.get_mut(2..4) {
        flags.copy_from_slice(&[0x81, 0x80]);
    }
    if let Some(count) = answer.get_mut(6..8) {
        count.copy_from_slice(&[0, 1]);
    }
    answer.extend_from_slice(&[0xc0, 12]);
    answer.extend_from_slice(&qtype.to_be_bytes());
    answer.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
    match addr {
        IpAddr::V4(v4) => {
            answer.extend_from_slice(&[0, 4]);
            answer.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            answer.extend_from_slice(&[0, 16]);
            answer.extend_from_slice(&v6.octets());
        }
    }
    (query, answer)
}

/// DNS over TCP framing (RFC 1035 §4.2.2).
fn length_prefixed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// `data` as TLS records of content type `kind`, at most 16 KiB each.
fn tls_records(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5);
    for chunk in data.chunks(16_384) {
        out.extend_from_slice(&[kind, 0x03, 0x03]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig};
    use crate::rules::{bundled_sources, load_sources};
    use crate::wire::LinkType;

    fn bundled() -> (Vec<LoadedFile>, RuleSet) {
        let files = load_sources(bundled_sources()).unwrap();
        let set = RuleSet::compile(&files).unwrap();
        (files, set)
    }

    #[test]
    fn telemetry_names_come_from_blocking_rules_that_alone_match_them() {
        let (files, set) = bundled();
        let names = telemetry_names(&files, &set);
        assert!(names.len() >= 20, "{names:?}");
        for name in &names {
            let hits = set.explain_name(name.name.as_bytes());
            assert_eq!(hits.len(), 1, "{name:?}");
            let rule = set.rule(hits[0].rule).unwrap();
            assert_eq!(&*rule.id, name.rule);
            assert!(rule.action.blocks());
        }
    }

    #[test]
    fn same_options_give_the_same_packets_and_exactly_as_many_as_asked() {
        let (files, set) = bundled();
        let names = telemetry_names(&files, &set);
        let options = MixOptions {
            packets: 5_000,
            ..MixOptions::default()
        };
        let run = || {
            let mut frames = Vec::new();
            let summary = generate(&options, &names, |time, frame| {
                frames.push((time, frame.to_vec()));
                Ok(())
            })
            .unwrap();
            (frames, summary)
        };
        let (first, summary) = run();
        let (second, _) = run();
        assert_eq!(first.len(), 5_000);
        assert_eq!(summary.packets, 5_000);
        assert!(first == second, "the mix is not deterministic");
    }

    #[test]
    fn the_engine_finds_exactly_the_expected_matches() {
        let (files, set) = bundled();
        let names = telemetry_names(&files, &set);
        let options = MixOptions {
            packets: 60_000,
            telemetry_percent: 20,
            ..MixOptions::default()
        };
        let engine = Engine::new(set, EngineConfig::default());
        let mut worker = engine.worker();
        let mut events = Vec::new();
        let summary = generate(&options, &names, |time, frame| {
            worker.process(LinkType::Ethernet, frame, time, &mut events);
            Ok(())
        })
        .unwrap();
        let mut found = Expected::default();
        for event in &events {
            let name = TelemetryName {
                name: event.name.clone().unwrap_or_default(),
                rule: event.rule.to_string(),
            };
            found.count(event.via, &name);
        }
        assert_eq!(found, summary.expected);
        // Every kind of match and every kind of session is in the mix.
        for via in ["dns", "sni", "quic", "http", "learned"] {
            assert!(
                summary.expected.flows.keys().any(|(v, _, _)| v == via),
                "no {via} match in {:?}",
                summary
                    .expected
                    .flows
                    .keys()
                    .map(|k| &k.0)
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(summary.sessions.len(), KINDS.len());
        assert!(summary.ipv6_sessions > 0 && summary.vlan_sessions > 0);
        // Bulk data dominates the bytes; the engine read every kind of name and no junk.
        assert!(summary.bytes / summary.packets > 700);
        assert_eq!(engine.counters.parse_errors_of(crate::stats::Layer::Tls), 0);
        assert_eq!(
            engine.counters.parse_errors_of(crate::stats::Layer::Quic),
            0
        );
    }

    #[test]
    fn ordinary_names_match_no_bundled_rule() {
        let (_, set) = bundled();
        let mut mix = Mix::new(&MixOptions::default(), &[]);
        for _ in 0..5_000 {
            let name = mix.ordinary_name();
            assert!(set.explain_name(name.as_bytes()).is_empty(), "{name}");
        }
    }

    #[test]
    fn expected_matches_round_trip_through_tsv() {
        let mut expected = Expected::default();
        let name = TelemetryName {
            name: "v10.events.data.microsoft.com".into(),
            rule: "ms-windows-diagtrack".into(),
        };
        expected.count(Via::Sni, &name);
        expected.count(Via::Sni, &name);
        expected.count(Via::Dns, &name);
        let mut text = Vec::new();
        expected.write_tsv(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(Expected::parse_tsv(&text).unwrap(), expected);
        assert!(
            Expected::parse_tsv("via\tname\trule\tflows\nsni\tx\ty\tmany\n")
                .unwrap_err()
                .starts_with("line 2:")
        );
    }
}
