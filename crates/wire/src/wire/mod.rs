//! Wire: turns one captured frame into a borrowed [`Packet`] view (addresses, ports, TCP
//! flags and sequence number, payload) using `etherparse` slices.
//!
//! Takes the frame bytes and the capture's [`LinkType`]; returns a `Packet<'a>` that borrows
//! the payload from the frame, or a small `Copy` [`WireError`] naming the layer that failed.
//! Never panics on any input and never allocates.

use std::net::IpAddr;

use etherparse::{err, EtherType, NetSlice, SlicedPacket, TransportSlice};

/// How the frames of a capture start (libpcap LINKTYPE_* values, see
/// <https://www.tcpdump.org/linktypes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), including 802.1Q and QinQ VLAN tags.
    Ethernet,
    /// LINKTYPE_RAW (101), LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229): the frame is an IP packet.
    RawIp,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1 (`tcpdump -i any`, older libpcap).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2 (`tcpdump -i any`, libpcap ≥ 1.10).
    LinuxSll2,
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
    /// LINKTYPE_PPP (9), LINKTYPE_PPP_HDLC (50): a PPP frame, with or without the HDLC
    /// address and control bytes (RFC 1661 §2, RFC 1662 §3.1).
    Ppp,
    /// LINKTYPE_PPP_WITH_DIR (204): a direction byte, then a PPP frame.
    PppWithDirection,
    /// LINKTYPE_PPP_ETHER (51): a PPPoE session header (RFC 2516 §4), then PPP.
    PppOverEthernet,
    /// LINKTYPE_NFLOG (239): Linux NFLOG (`tcpdump -i nflog:N`): a header and TLVs, one of
    /// which is the logged IP packet.
    Nflog,
}

impl LinkType {
    pub const ALL: [LinkType; 9] = [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Ppp,
        LinkType::PppWithDirection,
        LinkType::PppOverEthernet,
        LinkType::Nflog,
    ];

    /// Maps a libpcap link-type number; `None` for link types telestrip does not read.
    pub fn from_linktype(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Null),
            1 => Some(Self::Ethernet),
            9 | 50 => Some(Self::Ppp),
            51 => Some(Self::PppOverEthernet),
            12 | 14 | 101 | 228 | 229 => Some(Self::RawIp),
            113 => Some(Self::LinuxSll),
            204 => Some(Self::PppWithDirection),
            239 => Some(Self::Nflog),
            276 => Some(Self::LinuxSll2),
            _ => None,
        }
    }
}

/// Transport protocol of a packet, as matched by rules' `protocols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Any other IP protocol number (ICMP, SCTP, ...); kept, never an error.
    Other(u8),
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Other(n) => n,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Other(n) => write!(f, "ip-proto-{n}"),
        }
    }
}

/// A tunnel whose inner packet wire opens, so the flow inside is judged rather than the
/// tunnel. Opened at most [`MAX_TUNNEL_DEPTH`] deep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// IPv4 or IPv6 inside IPv4 or IPv6 (IP protocols 4 and 41: ipip, sit, ip6tnl).
    IpInIp,
    /// GRE (RFC 2784, keys and sequence numbers of RFC 2890) carrying IP or Ethernet.
    Gre,
    /// VXLAN (RFC 7348) on UDP port 4789: Ethernet inside.
    Vxlan,
    /// GTP-U (3GPP TS 29.281) on UDP port 2152: the user's IP packet inside a G-PDU.
    GtpU,
}

impl Tunnel {
    pub const ALL: [Tunnel; 4] = [Tunnel::IpInIp, Tunnel::Gre, Tunnel::Vxlan, Tunnel::GtpU];

    pub fn as_str(self) -> &'static str {
        match self {
            Tunnel::IpInIp => "ipip",
            Tunnel::Gre => "gre",
            Tunnel::Vxlan => "vxlan",
            Tunnel::GtpU => "gtpu",
        }
    }
}

/// Tunnels opened inside one another before the rest is left closed: real networks nest
/// two (GTP-U inside GRE, VXLAN inside IPsec-less GRE); more is an attempt to tire the
/// parser.
pub const MAX_TUNNEL_DEPTH: u8 = 4;

/// The TCP header fields the flow tracker needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub seq: u32,
    /// Acknowledgment number (meaningful when `ack` is set).
    pub ack_number: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    /// Carries a TCP MD5 signature option (RFC 2385): a host that did not agree on a key
    /// discards the segment.
    pub md5: bool,
}

/// One IP fragment: what reassembly needs (RFC 791 §3.2, RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// IPv4 identification or IPv6 fragment identification.
    pub id: u32,
    /// Byte offset of `data` in the original datagram's payload.
    pub offset: u16,
    pub more: bool,
    /// Protocol of the original datagram's payload.
    pub ip_number: u8,
    pub data: &'a [u8],
}

/// A parsed packet: addresses and ports plus the transport payload, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    /// 0 for protocols without ports.
    pub src_port: u16,
    pub dst_port: u16,
    /// Set for TCP packets only.
    pub tcp: Option<TcpInfo>,
    /// Transport payload; for protocols without ports (ICMP, GRE) the whole IP payload;
    /// empty for IP fragments.
    pub payload: &'a [u8],
    /// The whole TCP segment or UDP datagram, header included (for its checksum); empty
    /// for other packets.
    pub segment: &'a [u8],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The IP payload is a fragment: ports and payload are not available until reassembly.
    pub fragment: Option<Fragment<'a>>,
    /// The outermost tunnel opened to reach this packet (`None`: not tunnelled).
    pub tunnel: Option<Tunnel>,
    /// A tunnel this packet carries that was not opened (its inside did not parse, an
    /// unknown payload type, or deeper than [`MAX_TUNNEL_DEPTH`]): what is inside was not
    /// judged.
    pub unopened: Option<Tunnel>,
}

impl Packet<'_> {
    /// Whether a TCP segment's checksum is right; `None` for other packets.
    pub fn tcp_checksum_valid(&self) -> Option<bool> {
        if self.protocol != Protocol::Tcp {
            return None;
        }
        let tcp = etherparse::TcpSlice::from_slice(self.segment).ok()?;
        let computed = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                tcp.calc_checksum_ipv4(src.octets(), dst.octets())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                tcp.calc_checksum_ipv6(src.octets(), dst.octets())
            }
            _ => return None,
        }
        .ok()?;
        Some(computed == tcp.checksum())
    }

    /// Whether a UDP datagram's checksum is right; `None` for other packets and for IPv4
    /// datagrams sent without one (checksum 0).
    pub fn udp_checksum_valid(&self) -> Option<bool> {
        if self.protocol != Protocol::Udp {
            return None;
        }
        let udp = etherparse::UdpSlice::from_slice(self.segment).ok()?;
        let header = udp.to_header();
        let computed = match (self.src, self.dst) {
            (IpAddr::V4(_), _) if header.checksum == 0 => return None,
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                header.calc_checksum_ipv4_raw(src.octets(), dst.octets(), udp.payload())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                header.calc_checksum_ipv6_raw(src.octets(), dst.octets(), udp.payload())
            }
            _ => return None,
        }
        .ok()?;
        Some(computed == header.checksum)
    }

    /// Whether the TCP or UDP checksum is right; `None` when there is none to check.
    pub fn checksum_valid(&self) -> Option<bool> {
        self.tcp_checksum_valid()
            .or_else(|| self.udp_checksum_valid())
    }
}

/// A parsed packet with offsets into its frame instead of borrows: a packet parsed on one
/// thread is judged on another without parsing (and touching the frame) again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: Option<TcpInfo>,
    pub ttl: u8,
    pub tunnel: Option<Tunnel>,
    pub unopened: Option<Tunnel>,
    payload: (u32, u32),
    segment: (u32, u32),
}

impl<'a> Packet<'a> {
    /// The packet as offsets into `frame`, the frame it was parsed from; `None` for IP
    /// fragments (reassembled datagrams live elsewhere) or slices not inside `frame`.
    pub fn layout(&self, frame: &[u8]) -> Option<Layout> {
        if self.fragment.is_some() {
            return None;
        }
        Some(Layout {
            src: self.src,
            dst: self.dst,
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp: self.tcp,
            ttl: self.ttl,
            tunnel: self.tunnel,
            unopened: self.unopened,
            payload: span_in(frame, self.payload)?,
            segment: span_in(frame, self.segment)?,
        })
    }
}

impl Layout {
    /// The packet again, borrowing `frame` (the frame the layout was made from; another
    /// frame gives empty payloads where the offsets do not fit, never a panic).
    pub fn packet<'a>(&self, frame: &'a [u8]) -> Packet<'a> {
        let slice =
            |(start, end): (u32, u32)| frame.get(start as usize..end as usize).unwrap_or_default();
        Packet {
            src: self.src,
            dst: self.dst,
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp: self.tcp,
            payload: slice(self.payload),
            segment: slice(self.segment),
            ttl: self.ttl,
            fragment: None,
            tunnel: self.tunnel,
            unopened: self.unopened,
        }
    }
}

/// Where `inner` lies in `outer`, as (start, end) offsets; empty slices anywhere are (0, 0).
fn span_in(outer: &[u8], inner: &[u8]) -> Option<(u32, u32)> {
    if inner.is_empty() {
        return Some((0, 0));
    }
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
}

/// Which layer could not be parsed, what was wrong and where. Small and `Copy`: one
/// counter per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("link layer: {0}")]
    Link(Fault),
    #[error("network layer: {0}")]
    Network(Fault),
    #[error("transport layer: {0}")]
    Transport(Fault),
    /// Not IP (ARP, LLDP, ...): not an error of the packet, just nothing to inspect.
    #[error("not an IP packet")]
    NotIp,
}

/// What was wrong in a layer, and where: `offset` is the byte of the frame (of the tunnel
/// payload, for a packet inside a tunnel) where the header that failed starts, when known;
/// for a header cut short, `needed` and `available` are the bytes it takes and the bytes
/// that were there (both 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub what: &'static str,
    pub offset: Option<u32>,
    pub needed: u32,
    pub available: u32,
}

impl Fault {
    pub const fn new(what: &'static str) -> Self {
        Fault {
            what,
            offset: None,
            needed: 0,
            available: 0,
        }
    }

    /// The fault at byte `offset`.
    pub const fn at(self, offset: usize) -> Self {
        Fault {
            offset: if offset > u32::MAX as usize {
                None
            } else {
                Some(offset as u32)
            },
            ..self
        }
    }

    /// A header that takes `needed` bytes where `available` were left.
    pub const fn short(self, needed: usize, available: usize) -> Self {
        const fn clamp(n: usize) -> u32 {
            if n > u32::MAX as usize {
                u32::MAX
            } else {
                n as u32
            }
        }
        Fault {
            needed: clamp(needed),
            available: clamp(available),
            ..self
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        if self.needed > 0 {
            write!(
                f,
                " ({} bytes needed, {} there)",
                self.needed, self.available
            )?;
        }
        Ok(())
    }
}

impl WireError {
    /// The same error, its offset moved `base` bytes on (an error found in a part of the
    /// frame, told in the frame's offsets).
    pub fn shifted(self, base: usize) -> Self {
        let shift = |fault: Fault| Fault {
            offset: fault
                .offset
                .and_then(|o| u32::try_from(base).ok()?.checked_add(o)),
            ..fault
        };
        match self {
            WireError::Link(fault) => WireError::Link(shift(fault)),
            WireError::Network(fault) => WireError::Network(shift(fault)),
            WireError::Transport(fault) => WireError::Transport(shift(fault)),
            WireError::NotIp => WireError::NotIp,
        }
    }

    /// Label for the `layer` of parse-error counters.
    pub fn layer(self) -> &'static str {
        match self {
            WireError::Link(_) => "link",
            WireError::Network(_) => "network",
            WireError::Transport(_) => "transport",
            WireError::NotIp => "not_ip",
        }
    }
}

/// Linux cooked capture v2 header length (fixed, see libpcap `sll.h`).
const SLL2_HEADER_LEN: usize = 20;
/// Linux cooked capture v1 header length; its last two bytes are the protocol.
const SLL_HEADER_LEN: usize = 16;

/// Parses one frame of the given link type, opening the tunnels it carries.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, WireError> {
    let packet = match parse_common(link, frame) {
        Some(packet) => packet,
        None => parse_general(link, frame)?,
    };
    open_tunnels(packet)
}

/// EtherTypes of 802.1Q, 802.1ad (QinQ) and the older 0x9100 double tag.
const VLAN_ETHER_TYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Tags etherparse reads before it stops (its `link_exts` holds three).
const MAX_VLAN_TAGS: usize = 3;
/// EtherType of a PPPoE session frame (RFC 2516 §4).
const ETHER_TYPE_PPPOE_SESSION: u16 = 0x8864;

/// The common case on its own path: Ethernet (with up to three VLAN tags), Linux cooked v1
/// or v2, or raw IP, then IPv4 or IPv6 and TCP or UDP, read with etherparse's per-layer
/// slices. `SlicedPacket` builds and moves a view of every layer (several hundred bytes)
/// through its cursor; this path costs a third of that. `None` for anything else and for
/// every error, which [`parse_general`] then reports exactly as before (tests check that
/// both paths agree on every input). Tunnels are not opened here (see [`parse`]).
pub fn parse_common(link: LinkType, frame: &[u8]) -> Option<Packet<'_>> {
    let (ether_type, ip) = common_link_payload(link, frame)?;
    let net = match ether_type {
        0x0800 => NetSlice::Ipv4(etherparse::Ipv4Slice::from_slice(ip).ok()?),
        0x86dd => NetSlice::Ipv6(etherparse::Ipv6Slice::from_slice(ip).ok()?),
        _ => return None,
    };
    let payload = match &net {
        NetSlice::Ipv4(ip) => ip.payload(),
        NetSlice::Ipv6(ip) => ip.payload(),
        NetSlice::Arp(_) => return None,
    };
    let transport = if payload.fragmented {
        None
    } else {
        match payload.ip_number.0 {
            6 => Some(TransportSlice::Tcp(
                etherparse::TcpSlice::from_slice(payload.payload).ok()?,
            )),
            17 => Some(TransportSlice::Udp(
                etherparse::UdpSlice::from_slice(payload.payload).ok()?,
            )),
            // ICMP and others: etherparse's own checks of them decide errors.
            _ => return None,
        }
    };
    packet_from_parts(&net, transport.as_ref()).ok()
}

/// The EtherType and the bytes after the link header of a frame on a common link type
/// (Ethernet with up to three VLAN tags, Linux cooked v1 and v2, raw IP); `None` for the
/// others.
fn common_link_payload(link: LinkType, frame: &[u8]) -> Option<(u16, &[u8])> {
    Some(match link {
        LinkType::Ethernet => ethernet_payload(frame)?,
        LinkType::LinuxSll => {
            let (&header, rest) = frame.split_first_chunk::<SLL_HEADER_LEN>()?;
            let [.., high, low] = header;
            (u16::from_be_bytes([high, low]), rest)
        }
        LinkType::LinuxSll2 => {
            let (&header, rest) = frame.split_first_chunk::<SLL2_HEADER_LEN>()?;
            let [high, low, ..] = header;
            (u16::from_be_bytes([high, low]), rest)
        }
        LinkType::RawIp => match frame.first()? >> 4 {
            4 => (0x0800, frame),
            6 => (0x86dd, frame),
            _ => return None,
        },
        LinkType::Null
        | LinkType::Ppp
        | LinkType::PppWithDirection
        | LinkType::PppOverEthernet
        | LinkType::Nflog => return None,
    })
}

/// An Ethernet frame's EtherType after its VLAN tags, and what follows; `None` when the
/// frame is too short or has more tags than etherparse reads.
fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
    let (&header, mut rest) = frame.split_first_chunk::<14>()?;
    let [.., high, low] = header;
    let mut ether_type = u16::from_be_bytes([high, low]);
    let mut tags = 0;
    while VLAN_ETHER_TYPES.contains(&ether_type) {
        if tags == MAX_VLAN_TAGS {
            return None;
        }
        let (&[_, _, high, low], after) = rest.split_first_chunk::<4>()?;
        ether_type = u16::from_be_bytes([high, low]);
        rest = after;
        tags += 1;
    }
    Some((ether_type, rest))
}

/// Every frame through etherparse's `SlicedPacket`: all link types, ARP, MACsec, ICMP, and
/// the precise error of a frame that does not parse.
pub fn parse_general(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, WireError> {
    // Errors of the link helpers are at offsets within the slice they were given; `at`
    // moves them to the frame's.
    let at = |inner: &[u8]| {
        let base = offset_in(frame, inner);
        move |error: WireError| error.shifted(base)
    };
    // What etherparse reads (the frame, or the packet after a link header read here), and
    // what it made of it.
    let (input, sliced) = match link {
        LinkType::Ethernet => match ethernet_payload(frame) {
            Some((ETHER_TYPE_PPPOE_SESSION, rest)) => {
                let ip = ip_or_not(ppp_payload(pppoe_payload(rest).map_err(at(rest))?)?)?;
                (ip, SlicedPacket::from_ip(ip))
            }
            _ => (frame, SlicedPacket::from_ethernet(frame)),
        },
        LinkType::RawIp => (frame, SlicedPacket::from_ip(frame)),
        // The protocol field is what the kernel wrote for the packet (an EtherType for IP
        // on every device type); etherparse's own reader accepts Ethernet devices only.
        LinkType::LinuxSll => {
            let (header, rest) =
                frame
                    .split_first_chunk::<SLL_HEADER_LEN>()
                    .ok_or(WireError::Link(
                        Fault::new("truncated SLL header")
                            .at(0)
                            .short(SLL_HEADER_LEN, frame.len()),
                    ))?;
            let [.., high, low] = *header;
            let ether_type = EtherType(u16::from_be_bytes([high, low]));
            (rest, SlicedPacket::from_ether_type(ether_type, rest))
        }
        LinkType::LinuxSll2 => {
            let truncated = WireError::Link(
                Fault::new("truncated SLL2 header")
                    .at(0)
                    .short(SLL2_HEADER_LEN, frame.len()),
            );
            let (header, rest) = frame.split_at_checked(SLL2_HEADER_LEN).ok_or(truncated)?;
            let ether_type = header
                .first_chunk::<2>()
                .map(|b| u16::from_be_bytes(*b))
                .ok_or(truncated)?;
            (
                rest,
                SlicedPacket::from_ether_type(EtherType(ether_type), rest),
            )
        }
        LinkType::Null => {
            let (family, rest) = frame.split_first_chunk::<4>().ok_or(WireError::Link(
                Fault::new("truncated loopback header")
                    .at(0)
                    .short(4, frame.len()),
            ))?;
            // Host byte order of the capturing machine: accept both.
            let family = u32::from_le_bytes(*family).min(u32::from_be_bytes(*family));
            match family {
                2 | 10 | 24 | 28 | 30 => (rest, SlicedPacket::from_ip(rest)),
                _ => return Err(WireError::NotIp),
            }
        }
        LinkType::Ppp => {
            let ip = ip_or_not(ppp_payload(frame)?)?;
            (ip, SlicedPacket::from_ip(ip))
        }
        LinkType::PppWithDirection => {
            let rest = frame.get(1..).ok_or(WireError::Link(
                Fault::new("truncated PPP header")
                    .at(0)
                    .short(2, frame.len()),
            ))?;
            let ip = ip_or_not(ppp_payload(rest).map_err(at(rest))?)?;
            (ip, SlicedPacket::from_ip(ip))
        }
        LinkType::PppOverEthernet => {
            let ip = ip_or_not(ppp_payload(pppoe_payload(frame)?).map_err(at(frame))?)?;
            (ip, SlicedPacket::from_ip(ip))
        }
        LinkType::Nflog => {
            let ip = ip_or_not(nflog_payload(frame)?)?;
            (ip, SlicedPacket::from_ip(ip))
        }
    };
    let sliced = sliced.map_err(|error| map_slice_error(error).shifted(offset_in(frame, input)))?;
    let net = sliced.net.as_ref().ok_or(WireError::NotIp)?;
    packet_from_parts(net, sliced.transport.as_ref())
}

/// Where `inner` starts in `outer` (0 when it is not inside it).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize)
        .checked_sub(outer.as_ptr() as usize)
        .filter(|&start| start <= outer.len())
        .unwrap_or(0)
}

/// A link payload that is an IP packet (`Some`), or not IP (another PPP protocol, an NFLOG
/// frame without a packet).
fn ip_or_not(ip: Option<&[u8]>) -> Result<&[u8], WireError> {
    ip.ok_or(WireError::NotIp)
}

/// PPP protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// The IP packet of a PPP frame; `None` for other PPP protocols (LCP, IPCP, ...). The
/// HDLC address and control bytes (0xff 0x03) may be there or not, and the protocol field
/// may be compressed to one byte (RFC 1661 §6.5: odd first byte).
fn ppp_payload(frame: &[u8]) -> Result<Option<&[u8]>, WireError> {
    let protocol_field = frame.strip_prefix(&[0xff, 0x03]).unwrap_or(frame);
    let truncated =
        WireError::Link(Fault::new("truncated PPP header").at(offset_in(frame, protocol_field)));
    let (&first, rest) = protocol_field.split_first().ok_or(truncated)?;
    let (protocol, rest) = if first & 1 == 1 {
        (u16::from(first), rest)
    } else {
        let (&second, rest) = rest.split_first().ok_or(truncated)?;
        (u16::from_be_bytes([first, second]), rest)
    };
    Ok(matches!(protocol, PPP_IPV4 | PPP_IPV6).then_some(rest))
}

/// The PPP frame of a PPPoE session packet: version 1, type 1, code 0 (RFC 2516 §4), its
/// length bounding the payload (Ethernet may pad the frame).
fn pppoe_payload(frame: &[u8]) -> Result<&[u8], WireError> {
    let (&[version_type, code, _, _, high, low], rest) =
        frame.split_first_chunk::<6>().ok_or(WireError::Link(
            Fault::new("truncated PPPoE header")
                .at(0)
                .short(6, frame.len()),
        ))?;
    if version_type != 0x11 || code != 0 {
        return Err(WireError::Link(
            Fault::new("not a PPPoE session packet").at(0),
        ));
    }
    let length = usize::from(u16::from_be_bytes([high, low]));
    rest.get(..length).ok_or(WireError::Link(
        Fault::new("PPPoE length past the frame")
            .at(6)
            .short(length, rest.len()),
    ))
}

/// NFLOG attribute holding the logged packet (NFULA_PAYLOAD, linux/netfilter/nfnetlink_log.h).
const NFULA_PAYLOAD: u16 = 9;
/// Attributes read before giving up on finding the payload.
const MAX_NFLOG_ATTRIBUTES: usize = 64;

/// The IP packet of an NFLOG frame: a 4-byte header (address family, version, group), then
/// attributes of length (header included, padded to 4 bytes) and type, in the byte order
/// of the host that captured (libpcap `nflog.h`); both orders are tried.
fn nflog_payload(frame: &[u8]) -> Result<Option<&[u8]>, WireError> {
    const TRUNCATED: WireError = WireError::Link(Fault::new("truncated NFLOG header").at(0));
    let (&[family, ..], mut rest) = frame.split_first_chunk::<4>().ok_or(TRUNCATED)?;
    if !matches!(family, 2 | 10) {
        return Ok(None);
    }
    for _ in 0..MAX_NFLOG_ATTRIBUTES {
        if rest.is_empty() {
            return Ok(None);
        }
        let (&[l0, l1, t0, t1], _) = rest.split_first_chunk::<4>().ok_or(TRUNCATED)?;
        let little = (u16::from_le_bytes([l0, l1]), u16::from_le_bytes([t0, t1]));
        let big = (u16::from_be_bytes([l0, l1]), u16::from_be_bytes([t0, t1]));
        let fits = |len: u16| usize::from(len) >= 4 && usize::from(len) <= rest.len();
        // The attribute type is small (under 20): that tells the byte order apart.
        let (len, kind) = if fits(little.0) && little.1 & 0x7fff < 0x100 {
            little
        } else if fits(big.0) {
            big
        } else {
            return Err(WireError::Link(Fault::new(
                "NFLOG attribute length past the frame",
            )));
        };
        let len = usize::from(len);
        if kind & 0x7fff == NFULA_PAYLOAD {
            return Ok(Some(rest.get(4..len).ok_or(TRUNCATED)?));
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Ok(None)
}

/// Opens the tunnels `packet` carries, up to [`MAX_TUNNEL_DEPTH`] deep, and returns the
/// packet inside. A tunnel whose inside does not parse stays closed: the outer packet is
/// returned with `unopened` set. Inside that is not IP (ARP in VXLAN) is `NotIp`.
fn open_tunnels(mut packet: Packet<'_>) -> Result<Packet<'_>, WireError> {
    let mut outermost = None;
    for depth in 0..=MAX_TUNNEL_DEPTH {
        let Some(kind) = tunnel_of(&packet) else {
            break;
        };
        let inner = if depth == MAX_TUNNEL_DEPTH {
            None
        } else {
            open(kind, packet.payload)
        };
        match inner {
            Some(Err(WireError::NotIp)) => return Err(WireError::NotIp),
            Some(Ok(inner)) => {
                outermost.get_or_insert(kind);
                packet = inner;
            }
            Some(Err(_)) | None => {
                packet.unopened = Some(kind);
                break;
            }
        }
    }
    packet.tunnel = outermost;
    Ok(packet)
}

/// UDP ports of VXLAN (RFC 7348 §5) and GTP-U (3GPP TS 29.281 §4.4.2).
const VXLAN_PORT: u16 = 4789;
const GTP_U_PORT: u16 = 2152;

/// The tunnel `packet` is, if any. UDP on the tunnel ports counts only when its header
/// says so (a VXLAN header with a valid VNI, a GTP-U G-PDU): other traffic on those ports
/// is judged as the UDP it is.
fn tunnel_of(packet: &Packet<'_>) -> Option<Tunnel> {
    if packet.fragment.is_some() {
        return None;
    }
    match packet.protocol {
        Protocol::Other(4 | 41) => Some(Tunnel::IpInIp),
        Protocol::Other(47) => Some(Tunnel::Gre),
        Protocol::Udp if packet.dst_port == VXLAN_PORT => {
            // Flags: the I bit (valid VNI) set, the rest reserved (RFC 7348 §5).
            let flags = *packet.payload.first()?;
            (flags & 0x08 != 0 && packet.payload.len() >= 8).then_some(Tunnel::Vxlan)
        }
        Protocol::Udp if packet.dst_port == GTP_U_PORT || packet.src_port == GTP_U_PORT => {
            // Version 1, protocol type GTP, message type 255 (G-PDU).
            let (&[flags, message_type], _) = packet.payload.split_first_chunk::<2>()?;
            (flags & 0xf0 == 0x30 && message_type == 0xff).then_some(Tunnel::GtpU)
        }
        _ => None,
    }
}

/// The packet inside a tunnel; `None` when the tunnel header is not one telestrip opens.
fn open(kind: Tunnel, payload: &[u8]) -> Option<Result<Packet<'_>, WireError>> {
    match kind {
        Tunnel::IpInIp => Some(parse_general(LinkType::RawIp, payload)),
        Tunnel::Gre => {
            let (ether_type, inner) = gre_payload(payload)?;
            Some(match ether_type {
                // Transparent Ethernet bridging (gretap).
                0x6558 => parse_general(LinkType::Ethernet, inner),
                0x0800 | 0x86dd => parse_general(LinkType::RawIp, inner),
                _ => return None,
            })
        }
        Tunnel::Vxlan => Some(parse_general(LinkType::Ethernet, payload.get(8..)?)),
        Tunnel::GtpU => Some(parse_general(LinkType::RawIp, gtp_u_payload(payload)?)),
    }
}

/// GRE version 0 (RFC 2784 §2.1, RFC 2890 §2): the protocol type and the payload after the
/// optional checksum, key and sequence number. Source routing (RFC 1701) and version 1
/// (PPTP) are not opened.
fn gre_payload(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (&[flags, version, high, low], mut rest) = bytes.split_first_chunk::<4>()?;
    if version & 0x07 != 0 || flags & 0x40 != 0 {
        return None;
    }
    for bit in [0x80, 0x20, 0x10] {
        if flags & bit != 0 {
            rest = rest.get(4..)?;
        }
    }
    Some((u16::from_be_bytes([high, low]), rest))
}

/// Extension headers of one GTP-U packet read before giving up.
const MAX_GTP_EXTENSIONS: usize = 8;

/// The user packet of a GTP-U G-PDU (3GPP TS 29.281 §5.1): an 8-byte header, 4 more
/// bytes when any of the E, S and PN flags is set, then extension headers (length in
/// 4-byte units, the last byte naming the next one).
fn gtp_u_payload(bytes: &[u8]) -> Option<&[u8]> {
    let (&[flags, _, high, low, ..], rest) = bytes.split_first_chunk::<8>()?;
    let rest = rest.get(..usize::from(u16::from_be_bytes([high, low])))?;
    if flags & 0x07 == 0 {
        return Some(rest);
    }
    let (&[_, _, _, mut next], mut rest) = rest.split_first_chunk::<4>()?;
    for _ in 0..MAX_GTP_EXTENSIONS {
        if next == 0 {
            return Some(rest);
        }
        let units = usize::from(*rest.first()?);
        if units == 0 {
            return None;
        }
        let (extension, after) = rest.split_at_checked(units * 4)?;
        next = *extension.last()?;
        rest = after;
    }
    None
}

fn packet_from_parts<'a>(
    net: &NetSlice<'a>,
    transport: Option<&TransportSlice<'a>>,
) -> Result<Packet<'a>, WireError> {
    let (src, dst, ttl, payload, fragment) = match net {
        NetSlice::Ipv4(ip) => {
            let header = ip.header();
            let payload = ip.payload();
            let fragment = payload.fragmented.then(|| Fragment {
                id: u32::from(header.identification()),
                offset: header.fragments_offset().byte_offset(),
                more: header.more_fragments(),
                ip_number: payload.ip_number.0,
                data: payload.payload,
            });
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                header.ttl(),
                payload,
                fragment,
            )
        }
        NetSlice::Ipv6(ip) => {
            let header = ip.header();
            let payload = ip.payload();
            let fragment = if payload.fragmented {
                ip.extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        etherparse::Ipv6ExtensionSlice::Fragment(frag) => Some(Fragment {
                            id: frag.identification(),
                            offset: frag.fragment_offset().byte_offset(),
                            more: frag.more_fragments(),
                            ip_number: payload.ip_number.0,
                            data: payload.payload,
                        }),
                        _ => None,
                    })
            } else {
                None
            };
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                header.hop_limit(),
                payload,
                fragment,
            )
        }
        NetSlice::Arp(_) => return Err(WireError::NotIp),
    };
    let mut packet = Packet {
        src,
        dst,
        protocol: protocol_of(payload.ip_number.0),
        src_port: 0,
        dst_port: 0,
        tcp: None,
        payload: &[],
        segment: &[],
        ttl,
        fragment,
        tunnel: None,
        unopened: None,
    };
    if payload.fragmented && packet.fragment.is_none() {
        // An IPv6 packet etherparse calls fragmented always has a fragment header.
        return Err(WireError::Network(Fault::new(
            "fragment without fragment header",
        )));
    }
    match transport {
        Some(TransportSlice::Tcp(tcp)) => fill_tcp(&mut packet, tcp),
        Some(TransportSlice::Udp(udp)) => fill_udp(&mut packet, udp),
        // Other protocols (ICMP, tunnels): their whole IP payload.
        Some(_) | None if !payload.fragmented => packet.payload = payload.payload,
        Some(_) | None => {}
    }
    Ok(packet)
}

/// The packet of a reassembled IP datagram: `bytes` is its whole transport payload.
pub fn reassembled(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ip_number: u8,
    bytes: &[u8],
) -> Result<Packet<'_>, WireError> {
    let mut packet = Packet {
        src,
        dst,
        protocol: protocol_of(ip_number),
        src_port: 0,
        dst_port: 0,
        tcp: None,
        payload: &[],
        segment: &[],
        ttl,
        fragment: None,
        tunnel: None,
        unopened: None,
    };
    match packet.protocol {
        Protocol::Tcp => {
            let tcp = etherparse::TcpSlice::from_slice(bytes)
                .map_err(|_| WireError::Transport(Fault::new("bad TCP header")))?;
            fill_tcp(&mut packet, &tcp);
        }
        Protocol::Udp => {
            let udp = etherparse::UdpSlice::from_slice(bytes)
                .map_err(|_| WireError::Transport(Fault::new("bad UDP header")))?;
            fill_udp(&mut packet, &udp);
        }
        Protocol::Other(_) => packet.payload = bytes,
    }
    open_tunnels(packet)
}

fn protocol_of(ip_number: u8) -> Protocol {
    match ip_number {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        other => Protocol::Other(other),
    }
}

fn fill_tcp<'a>(packet: &mut Packet<'a>, tcp: &etherparse::TcpSlice<'a>) {
    packet.src_port = tcp.source_port();
    packet.dst_port = tcp.destination_port();
    packet.tcp = Some(TcpInfo {
        seq: tcp.sequence_number(),
        ack_number: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        md5: has_md5_option(tcp.options()),
    });
    packet.payload = tcp.payload();
    packet.segment = tcp.slice();
}

fn fill_udp<'a>(packet: &mut Packet<'a>, udp: &etherparse::UdpSlice<'a>) {
    packet.src_port = udp.source_port();
    packet.dst_port = udp.destination_port();
    packet.payload = udp.payload();
    packet.segment = udp.slice();
}

/// TCP option kind of the MD5 signature (RFC 2385).
const TCP_OPTION_MD5: u8 = 19;

/// Walks the TCP options (kind, length, data; kinds 0 and 1 are single bytes).
fn has_md5_option(mut options: &[u8]) -> bool {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return false,
            1 => options = rest,
            TCP_OPTION_MD5 => return true,
            _ => {
                let Some(&len) = rest.first() else {
                    return false;
                };
                if len < 2 {
                    return false;
                }
                options = options.get(usize::from(len)..).unwrap_or(&[]);
            }
        }
    }
    false
}

fn map_slice_error(error: err::packet::SliceError) -> WireError {
    use err::packet::SliceError as E;
    match error {
        // etherparse says where the layer started and how many bytes it needed.
        E::Len(len) => {
            let fault = |what| {
                Fault::new(what)
                    .at(len.layer_start_offset)
                    .short(len.required_len, len.len)
            };
            match len.layer {
                err::Layer::Ethernet2Header
                | err::Layer::VlanHeader
                | err::Layer::LinuxSllHeader
                | err::Layer::MacsecHeader => WireError::Link(fault("truncated link header")),
                err::Layer::TcpHeader | err::Layer::UdpHeader | err::Layer::UdpPayload => {
                    WireError::Transport(fault("truncated transport header"))
                }
                _ => WireError::Network(fault("truncated IP packet")),
            }
        }
        E::LinuxSll(_) => WireError::Link(Fault::new("bad Linux cooked capture header")),
        E::Macsec(_) => WireError::Link(Fault::new("bad MACsec header")),
        E::Ip(_) | E::Ipv4(_) => WireError::Network(Fault::new("bad IPv4 header")),
        E::Ipv6(_) => WireError::Network(Fault::new("bad IPv6 header")),
        E::Ipv4Exts(_) | E::Ipv6Exts(_) => {
            WireError::Network(Fault::new("bad IP extension header"))
        }
        E::Tcp(_) => WireError::Transport(Fault::new("bad TCP header")),
    }
}

mod peek;
pub mod rewrite;

pub use peek::{mapped_octets, peek, Peek};

#[cfg(test)]
mod tests;
