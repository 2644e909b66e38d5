//! telestrip-testkit: builders for tests, benchmarks and fuzz seeds: Ethernet/VLAN/IPv4/IPv6
//! frames (with etherparse's `PacketBuilder`), TLS ClientHellos, QUIC Initials, DNS messages,
//! HTTP requests, tunnels, a pcap writer; the [`traffic`] generator of the benchmarks; the
//! [`fuzzing`] bodies of the fuzz targets and their regression tests.
//!
//! A dev-dependency of every crate, never a dependency of the `telestrip` binary, so none of
//! this is in a release build. It depends on the pipeline crates (wire, engine, gateway);
//! their own unit tests use only the builders that return bytes, so the two copies of a
//! crate that such a test links never exchange a type.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use etherparse::{PacketBuilder, VlanId};

pub mod fuzzing;
pub mod traffic;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use telestrip_engine::{Engine, EngineConfig};
pub use telestrip_gateway::audit::samples::{
    audit_flow, audit_start, gateway_heartbeat, gateway_start,
};
// The pipeline's modules under their usual names (crate::inspect, crate::rules, ...).
use telestrip_gateway::{audit, config, engine, inspect, rules, stats, wire};
pub use telestrip_wire::inspect::dns::ech_config_list;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// TCP flags for [`Hosts::tcp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};

/// VLAN tagging of a built frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vlan {
    None,
    Single(u16),
    Double(u16, u16),
}

/// One endpoint pair; builds frames in either direction.
#[derive(Clone, Copy, Debug)]
pub struct Hosts {
    pub client: IpAddr,
    pub server: IpAddr,
    pub client_port: u16,
    pub server_port: u16,
    pub vlan: Vlan,
}

impl Hosts {
    pub fn new(client: &str, client_port: u16, server: &str, server_port: u16) -> Self {
        Self {
            client: client.parse().unwrap_or(IpAddr::from([192, 0, 2, 1])),
            server: server.parse().unwrap_or(IpAddr::from([198, 51, 100, 1])),
            client_port,
            server_port,
            vlan: Vlan::None,
        }
    }

    pub fn with_vlan(mut self, vlan: Vlan) -> Self {
        self.vlan = vlan;
        self
    }

    /// A TCP segment from the client (`from_client`) or the server.
    pub fn tcp(&self, from_client: bool, seq: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
        self.tcp_acking(from_client, seq, 1, flags, payload)
    }

    /// A TCP segment with acknowledgment number `ack_number` (used when `flags.ack` is set).
    pub fn tcp_acking(
        &self,
        from_client: bool,
        seq: u32,
        ack_number: u32,
        flags: Flags,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src, dst, sport, dport) = self.oriented(from_client);
        let ip = self.ip_step(src, dst, from_client);
        let mut builder = ip.tcp(sport, dport, seq, 64_240);
        if flags.syn {
            builder = builder.syn();
        }
        if flags.ack {
            builder = builder.ack(ack_number);
        }
        if flags.fin {
            builder = builder.fin();
        }
        if flags.rst {
            builder = builder.rst();
        }
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        let _ = builder.write(&mut frame, payload);
        frame
    }

    /// A TCP segment built to differ from the client's own segments (a decoy).
    pub fn tcp_shaped(
        &self,
        from_client: bool,
        seq: u32,
        flags: Flags,
        payload: &[u8],
        shape: Shape,
    ) -> Vec<u8> {
        let (src, dst, sport, dport) = self.oriented(from_client);
        let ip = self.ip_step_ttl(src, dst, from_client, shape.ttl);
        let mut builder = ip.tcp(sport, dport, seq, 64_240);
        if shape.md5 {
            // Kind 19, length 18, a 16-byte digest (RFC 2385), then two NOPs to align.
            let mut option = vec![19, 18];
            option.extend_from_slice(&[0xab; 16]);
            option.extend_from_slice(&[1, 1]);
            builder = builder
                .options_raw(&option)
                .unwrap_or_else(|_| unreachable!("20 bytes of options fit"));
        }
        if flags.syn {
            builder = builder.syn();
        }
        if flags.ack {
            builder = builder.ack(1);
        }
        let header_len = builder.size(0);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        let _ = builder.write(&mut frame, payload);
        if shape.bad_checksum {
            let tcp_header_len = if shape.md5 { 40 } else { 20 };
            let checksum_at = header_len - tcp_header_len + 16;
            frame[checksum_at] ^= 0x5a;
        }
        frame
    }

    /// A UDP datagram from the client or the server.
    pub fn udp(&self, from_client: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport) = self.oriented(from_client);
        let builder = self.ip_step(src, dst, from_client).udp(sport, dport);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        let _ = builder.write(&mut frame, payload);
        frame
    }

    /// The same with the given TTL (hop limit): a decoy built to expire on the way.
    pub fn udp_with_ttl(&self, from_client: bool, payload: &[u8], ttl: u8) -> Vec<u8> {
        let (src, dst, sport, dport) = self.oriented(from_client);
        let builder = self
            .ip_step_ttl(src, dst, from_client, ttl)
            .udp(sport, dport);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        let _ = builder.write(&mut frame, payload);
        frame
    }

    fn oriented(&self, from_client: bool) -> (IpAddr, IpAddr, u16, u16) {
        if from_client {
            (self.client, self.server, self.client_port, self.server_port)
        } else {
            (self.server, self.client, self.server_port, self.client_port)
        }
    }

    fn ip_step(
        &self,
        src: IpAddr,
        dst: IpAddr,
        from_client: bool,
    ) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        self.ip_step_ttl(src, dst, from_client, 64)
    }

    fn ip_step_ttl(
        &self,
        src: IpAddr,
        dst: IpAddr,
        from_client: bool,
        ttl: u8,
    ) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let (smac, dmac) = if from_client {
            (CLIENT_MAC, SERVER_MAC)
        } else {
            (SERVER_MAC, CLIENT_MAC)
        };
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let vlan_id = |v: u16| VlanId::try_new(v & 0x0fff).unwrap_or(VlanId::ZERO);
        macro_rules! ip {
            ($step:expr) => {
                match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => $step.ipv4(s.octets(), d.octets(), ttl),
                    (s, d) => $step.ipv6(v6(s), v6(d), ttl),
                }
            };
        }
        match self.vlan {
            Vlan::None => ip!(eth),
            Vlan::Single(id) => ip!(eth.single_vlan(vlan_id(id))),
            Vlan::Double(outer, inner) => ip!(eth.double_vlan(vlan_id(outer), vlan_id(inner))),
        }
    }
}

/// Ways [`tunnel`] wraps a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// IP in IPv4 (protocol 4 or 41, by the inner version).
    IpInIpv4,
    /// IP in IPv6 (next header 4 or 41).
    IpInIpv6,
    /// GRE version 0 with a key, carrying IP.
    Gre,
    /// GRE carrying the whole Ethernet frame (gretap, protocol 0x6558).
    GreTap,
    /// VXLAN (UDP 4789, VNI 42) carrying the whole Ethernet frame.
    Vxlan,
    /// GTP-U G-PDU (UDP 2152) with a sequence number and one extension header.
    GtpU,
}

/// Wraps the Ethernet `frame` (as the builders make it) in a tunnel between 203.0.113.1
/// and 203.0.113.2 (IPv6: 2001:db8:ffff::1 and ::2), returning a new Ethernet frame.
pub fn tunnel(frame: &[u8], wrap: Wrap) -> Vec<u8> {
    let ip = &frame[14..];
    let inner_proto = if ip[0] >> 4 == 4 { 4 } else { 41 };
    let inner_ether_type: u16 = if inner_proto == 4 { 0x0800 } else { 0x86dd };
    let eth = || PacketBuilder::ethernet2(SERVER_MAC, CLIENT_MAC);
    let v4 = || eth().ipv4([203, 0, 113, 1], [203, 0, 113, 2], 64);
    let mut out = Vec::new();
    let with_ip_number = |number: u8, payload: &[u8], v6: bool| {
        let mut out = Vec::new();
        let step = if v6 {
            eth().ipv6(v6_of("2001:db8:ffff::1"), v6_of("2001:db8:ffff::2"), 64)
        } else {
            v4()
        };
        let _ = step.write(&mut out, etherparse::IpNumber(number), payload);
        out
    };
    match wrap {
        Wrap::IpInIpv4 => return with_ip_number(inner_proto, ip, false),
        Wrap::IpInIpv6 => return with_ip_number(inner_proto, ip, true),
        Wrap::Gre | Wrap::GreTap => {
            let (ether_type, body) = if wrap == Wrap::Gre {
                (inner_ether_type, ip)
            } else {
                (0x6558, frame)
            };
            // K bit set, version 0, then the 4-byte key.
            let mut gre = vec![0x20, 0x00];
            gre.extend_from_slice(&ether_type.to_be_bytes());
            gre.extend_from_slice(&7u32.to_be_bytes());
            gre.extend_from_slice(body);
            return with_ip_number(47, &gre, false);
        }
        Wrap::Vxlan => {
            let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
            vxlan.extend_from_slice(frame);
            let _ = v4().udp(54321, 4789).write(&mut out, &vxlan);
        }
        Wrap::GtpU => {
            // Flags: version 1, PT, E and S; G-PDU; length; TEID; sequence number, N-PDU
            // number, next extension (0x85: PDU session container), the extension (one
            // 4-byte unit ending in "no more"), then the user packet.
            let extension = [0x01, 0x10, 0x01, 0x00];
            let length = (4 + extension.len() + ip.len()) as u16;
            let mut gtp = vec![0x36, 0xff];
            gtp.extend_from_slice(&length.to_be_bytes());
            gtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            gtp.extend_from_slice(&[0x00, 0x01, 0x00, 0x85]);
            gtp.extend_from_slice(&extension);
            gtp.extend_from_slice(ip);
            let _ = v4().udp(2152, 2152).write(&mut out, &gtp);
        }
    }
    out
}

fn v6_of(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>()
        .map(|a| a.octets())
        .unwrap_or_default()
}

/// How [`Hosts::tcp_shaped`] builds a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub ttl: u8,
    pub md5: bool,
    pub bad_checksum: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            ttl: 64,
            md5: false,
            bad_checksum: false,
        }
    }
}

/// Splits an Ethernet frame's IP packet into fragments of `piece` bytes of IP payload (a
/// multiple of 8) with identification `id`: IPv4 fragment fields, or an IPv6 Fragment
/// extension header. Panics on frames the builders did not make.
pub fn ip_fragments(frame: &[u8], piece: usize, id: u32) -> Vec<Vec<u8>> {
    use etherparse::{IpFragOffset, Ipv6FragmentHeader, NetSlice, SlicedPacket};
    assert!(
        piece.is_multiple_of(8) && piece > 0,
        "fragments hold multiples of 8 bytes"
    );
    let sliced = SlicedPacket::from_ethernet(frame).expect("a frame the builders made");
    let mut out = Vec::new();
    match sliced.net.expect("an IP packet") {
        NetSlice::Ipv4(ip) => {
            let payload = ip.payload().payload;
            let link = &frame[..frame.len() - ip.header().total_len() as usize];
            for (i, chunk) in payload.chunks(piece).enumerate() {
                let mut header = ip.header().to_header();
                header.identification = id as u16;
                header.more_fragments = (i + 1) * piece < payload.len();
                header.fragment_offset = IpFragOffset::try_new((i * piece / 8) as u16).unwrap();
                header.set_payload_len(chunk.len()).unwrap();
                header.header_checksum = header.calc_header_checksum();
                let mut fragment = link.to_vec();
                header.write(&mut fragment).unwrap();
                fragment.extend_from_slice(chunk);
                out.push(fragment);
            }
        }
        NetSlice::Ipv6(ip) => {
            let payload = ip.payload().payload;
            let protocol = ip.payload().ip_number;
            let link = &frame[..frame.len() - 40 - payload.len()];
            for (i, chunk) in payload.chunks(piece).enumerate() {
                let mut header = ip.header().to_header();
                header.next_header = etherparse::IpNumber::IPV6_FRAGMENTATION_HEADER;
                header.payload_length = (8 + chunk.len()) as u16;
                let more = (i + 1) * piece < payload.len();
                let offset = IpFragOffset::try_new((i * piece / 8) as u16).unwrap();
                let extension = Ipv6FragmentHeader::new(protocol, offset, more, id);
                let mut fragment = link.to_vec();
                header.write(&mut fragment).unwrap();
                extension.write(&mut fragment).unwrap();
                fragment.extend_from_slice(chunk);
                out.push(fragment);
            }
        }
        NetSlice::Arp(_) => panic!("not an IP frame"),
    }
    out
}

fn v6(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Options of a synthetic TLS ClientHello.
#[derive(Clone, Debug, Default)]
pub struct HelloOptions {
    /// host_name entries of the server_name list (none: no server_name extension).
    pub names: Vec<String>,
    /// Add an encrypted_client_hello extension.
    pub ech: bool,
    /// config_id of the outer ECH extension (the HTTPS record's ECHConfig for real ECH,
    /// random for GREASE).
    pub ech_config_id: u8,
    /// Extra bytes of padding extension, to make large (post-quantum sized) hellos.
    pub padding: usize,
    /// Split the handshake message into records of at most this many bytes (0: one record).
    pub record_size: usize,
}

/// A TLS 1.3-style ClientHello with one SNI, as TLS records.
pub fn client_hello(sni: &str) -> Vec<u8> {
    client_hello_with(&HelloOptions {
        names: vec![sni.to_string()],
        ..HelloOptions::default()
    })
}

/// A ClientHello built to `options` (RFC 8446 §4.1.2 layout), as TLS records.
pub fn client_hello_with(options: &HelloOptions) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&[0x5a; 32]);
    body.push(32);
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[0x01, 0x00]);
    let mut extensions = Vec::new();
    // A GREASE extension first, as browsers send (RFC 8701).
    extensions.extend_from_slice(&[0x0a, 0x0a, 0x00, 0x00]);
    if !options.names.is_empty() {
        let mut list = Vec::new();
        for name in &options.names {
            list.push(0);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name.as_bytes());
        }
        extensions.extend_from_slice(&[0x00, 0x00]);
        extensions.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        extensions.extend_from_slice(&(list.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&list);
    }
    // supported_versions: TLS 1.3
    extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    if options.ech {
        // Outer ECHClientHello: type 0, HKDF-SHA256 / AES-128-GCM, config_id, a 32-byte enc
        // and a 16-byte payload.
        let mut ech = vec![
            0x00,
            0x00,
            0x01,
            0x00,
            0x01,
            options.ech_config_id,
            0x00,
            0x20,
        ];
        ech.extend_from_slice(&[0x11; 32]);
        ech.extend_from_slice(&[0x00, 0x10]);
        ech.extend_from_slice(&[0x22; 16]);
        extensions.extend_from_slice(&[0xfe, 0x0d]);
        extensions.extend_from_slice(&(ech.len() as u16).to_be_bytes());
        extensions.extend_from_slice(&ech);
    }
    if options.padding > 0 {
        extensions.extend_from_slice(&[0x00, 0x15]);
        extensions.extend_from_slice(&(options.padding as u16).to_be_bytes());
        extensions.extend(std::iter::repeat_n(0u8, options.padding));
    }
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    let record_size = if options.record_size == 0 {
        message.len()
    } else {
        options.record_size
    };
    let mut records = Vec::new();
    for chunk in message.chunks(record_size.max(1)) {
        records.extend_from_slice(&[22, 3, 1]);
        records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        records.extend_from_slice(chunk);
    }
    records
}

/// A DNS query for `name` (RFC 1035 §4.1).
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    push_name(&mut message, name);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&[0, 1]);
    message
}

/// One answer of [`dns_response`].
#[derive(Clone, Debug)]
pub enum Answer {
    A(&'static str, [u8; 4]),
    Aaaa(&'static str, [u8; 16]),
    Cname(&'static str, &'static str),
    /// An HTTPS record (priority 1, target ".") with ipv4hint, ipv6hint and, if set, ech.
    Https(&'static str, [u8; 4], [u8; 16], bool),
}

/// config_id and public name of the ECH configuration in [`Answer::Https`] records.
pub const ECH_CONFIG_ID: u8 = 0x42;
pub const ECH_PUBLIC_NAME: &str = "public.cdn.example";

/// A response to `name` with the given answers (owner names compressed when they equal
/// the question name), TTL 300.
pub fn dns_response(id: u16, name: &str, qtype: u16, answers: &[Answer]) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x81, 0x80, 0, 1]);
    message.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 0]);
    push_name(&mut message, name);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&[0, 1]);
    for answer in answers {
        let (owner, rtype, rdata): (&str, u16, Vec<u8>) = match answer {
            Answer::A(owner, addr) => (owner, 1, addr.to_vec()),
            Answer::Aaaa(owner, addr) => (owner, 28, addr.to_vec()),
            Answer::Cname(owner, target) => {
                let mut rdata = Vec::new();
                push_name(&mut rdata, target);
                (owner, 5, rdata)
            }
            Answer::Https(owner, v4, v6, ech) => {
                // Priority 1, target "."; alpn h3,h2 (key 1), then the hints.
                let mut rdata = vec![0, 1, 0];
                rdata.extend_from_slice(&[0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2']);
                rdata.extend_from_slice(&[0, 4, 0, 4]);
                rdata.extend_from_slice(v4);
                if *ech {
                    let list = ech_config_list(ECH_CONFIG_ID, ECH_PUBLIC_NAME);
                    rdata.extend_from_slice(&[0, 5]);
                    rdata.extend_from_slice(&(list.len() as u16).to_be_bytes());
                    rdata.extend_from_slice(&list);
                }
                rdata.extend_from_slice(&[0, 6, 0, 16]);
                rdata.extend_from_slice(v6);
                (owner, 65, rdata)
            }
        };
        if owner.eq_ignore_ascii_case(name) {
            message.extend_from_slice(&[0xc0, 12]);
        } else {
            push_name(&mut message, owner);
        }
        message.extend_from_slice(&rtype.to_be_bytes());
        message.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(&rdata);
    }
    message
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// `GET / HTTP/1.1` with the given Host header.
pub fn http_get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: telestrip-test\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// Frames of a whole TLS connection's start: handshake, then the ClientHello split into
/// `segment` sized pieces (0: one segment), then one server reply.
pub fn tls_flow(hosts: &Hosts, hello: &[u8], segment: usize) -> Vec<Vec<u8>> {
    let mut frames = vec![
        hosts.tcp(true, 1000, SYN, &[]),
        hosts.tcp(false, 5000, SYN_ACK, &[]),
        hosts.tcp(true, 1001, ACK, &[]),
    ];
    let size = if segment == 0 { hello.len() } else { segment };
    let mut seq = 1001u32;
    for chunk in hello.chunks(size.max(1)) {
        frames.push(hosts.tcp(true, seq, ACK, chunk));
        seq += chunk.len() as u32;
    }
    frames.push(hosts.tcp(false, 5001, ACK, b"\x16\x03\x03\x00\x02\x02\x00"));
    frames.push(hosts.tcp(true, seq, ACK, b"\x17\x03\x03\x00\x05hello"));
    frames
}

/// Writes Ethernet frames to a pcap file, one millisecond apart from `start`.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>], start: Duration) -> std::io::Result<()> {
    write_pcap_linktype(path, frames, start, DataLink::ETHERNET)
}

/// Writes frames of the given link type to a pcap file.
pub fn write_pcap_linktype(
    path: &Path,
    frames: &[Vec<u8>],
    start: Duration,
    link: DataLink,
) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(std::io::BufWriter::new(file), header)
        .map_err(std::io::Error::other)?;
    for (i, frame) in frames.iter().enumerate() {
        let time = start + Duration::from_millis(i as u64);
        writer
            .write_packet(&PcapPacket::new(time, frame.len() as u32, frame))
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// A ClientHello as a bare handshake message, as QUIC carries it (no TLS record header).
pub fn handshake_client_hello(sni: &str, padding: usize) -> Vec<u8> {
    let records = client_hello_with(&HelloOptions {
        names: vec![sni.to_string()],
        padding,
        ..HelloOptions::default()
    });
    records.get(5..).unwrap_or_default().to_vec()
}

/// The datagrams of a QUIC client's first flight carrying `hello`: its CRYPTO data cut into
/// frames of at most `frame_size` bytes, `frames_per_packet` frames per Initial packet, one
/// Initial per datagram, frames within a packet in the order `order` gives (indexes into
/// the frame list; empty: in order). Each datagram is padded to 1,200 bytes.
pub fn quic_first_flight(
    version: u32,
    hello: &[u8],
    frame_size: usize,
    frames_per_packet: usize,
    order: &[usize],
) -> Vec<Vec<u8>> {
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let frames: Vec<Vec<u8>> = hello
        .chunks(frame_size.max(1))
        .enumerate()
        .map(|(i, chunk)| crate::inspect::quic::crypto_frame((i * frame_size.max(1)) as u64, chunk))
        .collect();
    let ordered: Vec<&Vec<u8>> = if order.is_empty() {
        frames.iter().collect()
    } else {
        order.iter().filter_map(|&i| frames.get(i)).collect()
    };
    ordered
        .chunks(frames_per_packet.max(1))
        .enumerate()
        .map(|(pn, group)| {
            let payload: Vec<u8> = group.iter().flat_map(|f| f.iter().copied()).collect();
            crate::inspect::quic::protect_client_initial(
                version,
                &dcid,
                &[1, 2, 3, 4],
                pn as u32,
                &payload,
                1200,
            )
            .unwrap_or_default()
        })
        .collect()
}

/// A QUIC v1 client Initial to destination connection ID `dcid` carrying the whole of
/// `hello` in one CRYPTO frame, padded to 1,200 bytes (a decoy uses another `dcid` than the
/// real Initial, and so other keys).
pub fn quic_initial_to(dcid: &[u8], hello: &[u8]) -> Vec<u8> {
    let frame = crate::inspect::quic::crypto_frame(0, hello);
    crate::inspect::quic::protect_client_initial(
        crate::inspect::quic::VERSION_1,
        dcid,
        &[1, 2, 3, 4],
        0,
        &frame,
        1200,
    )
    .unwrap_or_default()
}

/// A Google QUIC Q046 client Initial carrying `chlo` on the crypto stream, padded to 1,200
/// bytes: long header 0xc3 (Initial, 4-byte packet number), version, the packed CID lengths
/// 0x50 (DCID 8, no SCID), the DCID, packet number 1, a 12-byte message hash (not checked
/// by telestrip), then a STREAM frame (0xa0: length present, no offset, 1-byte stream ID).
pub fn gquic_q046_initial(chlo: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0xc3];
    datagram.extend_from_slice(&crate::inspect::quic::Q046.to_be_bytes());
    datagram.push(0x50);
    datagram.extend_from_slice(&[0x51, 0x30, 0x34, 0x36, 0xde, 0xad, 0xbe, 0xef]);
    datagram.extend_from_slice(&1u32.to_be_bytes());
    datagram.extend_from_slice(&[0x5a; 12]);
    datagram.extend_from_slice(&[0xa0, 0x01]);
    datagram.extend_from_slice(&(chlo.len() as u16).to_be_bytes());
    datagram.extend_from_slice(chlo);
    if datagram.len() < 1200 {
        datagram.resize(1200, 0);
    }
    datagram
}

/// A protected Q050, T050 or T051 client Initial: `crypto` in Google's CRYPTO frame (type
/// 0x08), a CHLO for Q050 and a TLS ClientHello handshake message for T05x.
pub fn gquic_protected_initial(version: u32, crypto: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x08, 0x00];
    let len = crypto.len() as u16;
    frame.extend_from_slice(&(0x4000 | len).to_be_bytes());
    frame.extend_from_slice(crypto);
    crate::inspect::quic::protect_client_initial(
        version,
        &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08],
        &[],
        0,
        &frame,
        1200,
    )
    .unwrap_or_default()
}
