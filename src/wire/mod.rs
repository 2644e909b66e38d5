//! Wire: turns one captured frame into a borrowed [`Packet`] view (addresses, ports, TCP
//! flags and sequence number, payload) using `etherparse` slices.
//!
//! Takes the frame bytes and the capture's [`LinkType`]; returns a `Packet<'a>` that borrows
//! the payload from the frame, or a small `Copy` [`WireError`] naming the layer that failed.
//! Never panics on any input and never allocates.

// Untrusted bytes flow through this module: no indexing, unwrap, expect or panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

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
}

impl LinkType {
    /// Maps a libpcap link-type number; `None` for link types telestrip does not read.
    pub fn from_linktype(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Null),
            1 => Some(Self::Ethernet),
            12 | 14 | 101 | 228 | 229 => Some(Self::RawIp),
            113 => Some(Self::LinuxSll),
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
    /// Transport payload (empty for IP fragments and portless protocols).
    pub payload: &'a [u8],
    /// The whole TCP segment, header included (for its checksum); empty for other packets.
    pub segment: &'a [u8],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The IP payload is a fragment: ports and payload are not available until reassembly.
    pub fragment: Option<Fragment<'a>>,
}

impl Packet<'_> {
    /// Whether a TCP segment's checksum is right; `None` for other packets.
    pub fn tcp_checksum_valid(&self) -> Option<bool> {
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

/// Which layer could not be parsed. Small and `Copy`: one counter per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("link layer: {0}")]
    Link(&'static str),
    #[error("network layer: {0}")]
    Network(&'static str),
    #[error("transport layer: {0}")]
    Transport(&'static str),
    /// Not IP (ARP, LLDP, ...): not an error of the packet, just nothing to inspect.
    #[error("not an IP packet")]
    NotIp,
}

impl WireError {
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

/// Parses one frame of the given link type.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, WireError> {
    match parse_common(link, frame) {
        Some(packet) => Ok(packet),
        None => parse_general(link, frame),
    }
}

/// EtherTypes of 802.1Q, 802.1ad (QinQ) and the older 0x9100 double tag.
const VLAN_ETHER_TYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Tags etherparse reads before it stops (its `link_exts` holds three).
const MAX_VLAN_TAGS: usize = 3;

/// The common case on its own path: Ethernet (with up to three VLAN tags), Linux cooked v2
/// or raw IP, then IPv4 or IPv6 and TCP or UDP, read with etherparse's per-layer slices.
/// `SlicedPacket` builds and moves a view of every layer (several hundred bytes) through
/// its cursor; this path costs a third of that. `None` for anything else and for every
/// error, which [`parse_general`] then reports exactly as before (tests check that both
/// paths agree on every input).
pub fn parse_common(link: LinkType, frame: &[u8]) -> Option<Packet<'_>> {
    let (ether_type, ip) = match link {
        LinkType::Ethernet => {
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
            (ether_type, rest)
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
        LinkType::LinuxSll | LinkType::Null => return None,
    };
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

/// Every frame through etherparse's `SlicedPacket`: all link types, ARP, MACsec, ICMP, and
/// the precise error of a frame that does not parse.
pub fn parse_general(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, WireError> {
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame),
        LinkType::RawIp => SlicedPacket::from_ip(frame),
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(frame),
        LinkType::LinuxSll2 => {
            let (header, rest) = frame
                .split_at_checked(SLL2_HEADER_LEN)
                .ok_or(WireError::Link("truncated SLL2 header"))?;
            let ether_type = header
                .first_chunk::<2>()
                .map(|b| u16::from_be_bytes(*b))
                .ok_or(WireError::Link("truncated SLL2 header"))?;
            SlicedPacket::from_ether_type(EtherType(ether_type), rest)
        }
        LinkType::Null => {
            let (family, rest) = frame
                .split_first_chunk::<4>()
                .ok_or(WireError::Link("truncated loopback header"))?;
            // Host byte order of the capturing machine: accept both.
            let family = u32::from_le_bytes(*family).min(u32::from_be_bytes(*family));
            match family {
                2 | 10 | 24 | 28 | 30 => SlicedPacket::from_ip(rest),
                _ => return Err(WireError::NotIp),
            }
        }
    }
    .map_err(map_slice_error)?;
    let net = sliced.net.as_ref().ok_or(WireError::NotIp)?;
    packet_from_parts(net, sliced.transport.as_ref())
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
    };
    if payload.fragmented && packet.fragment.is_none() {
        // An IPv6 packet etherparse calls fragmented always has a fragment header.
        return Err(WireError::Network("fragment without fragment header"));
    }
    match transport {
        Some(TransportSlice::Tcp(tcp)) => fill_tcp(&mut packet, tcp),
        Some(TransportSlice::Udp(udp)) => fill_udp(&mut packet, udp),
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
    };
    match packet.protocol {
        Protocol::Tcp => {
            let tcp = etherparse::TcpSlice::from_slice(bytes)
                .map_err(|_| WireError::Transport("bad TCP header"))?;
            fill_tcp(&mut packet, &tcp);
        }
        Protocol::Udp => {
            let udp = etherparse::UdpSlice::from_slice(bytes)
                .map_err(|_| WireError::Transport("bad UDP header"))?;
            fill_udp(&mut packet, &udp);
        }
        Protocol::Other(_) => {}
    }
    Ok(packet)
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
        E::Len(len) => match len.layer {
            err::Layer::Ethernet2Header
            | err::Layer::VlanHeader
            | err::Layer::LinuxSllHeader
            | err::Layer::MacsecHeader => WireError::Link("truncated link header"),
            err::Layer::TcpHeader | err::Layer::UdpHeader | err::Layer::UdpPayload => {
                WireError::Transport("truncated transport header")
            }
            _ => WireError::Network("truncated IP packet"),
        },
        E::LinuxSll(_) => WireError::Link("bad Linux cooked capture header"),
        E::Macsec(_) => WireError::Link("bad MACsec header"),
        E::Ip(_) | E::Ipv4(_) => WireError::Network("bad IPv4 header"),
        E::Ipv6(_) => WireError::Network("bad IPv6 header"),
        E::Ipv4Exts(_) | E::Ipv6Exts(_) => WireError::Network("bad IP extension header"),
        E::Tcp(_) => WireError::Transport("bad TCP header"),
    }
}

pub mod rewrite;

#[cfg(test)]
mod tests;
