//! [`peek`]: the few fields of a frame a verdict cache needs (endpoints, bare SYN, payload),
//! read at fixed offsets without building a [`Packet`]. Most packets belong to flows whose
//! verdict a packet thread already holds; for them the full parse (etherparse's slices,
//! tunnels, the packet view) is most of the work. A frame `peek` reads is one [`parse`]
//! reads the same way, with nothing tunnelled or fragmented; anything else (tunnels, IP
//! fragments, IPv6 extension headers, malformed headers, other link types) is `None`, left
//! to the full parse (tests and the frame fuzz target check the two agree).
//!
//! [`parse`]: super::parse

use std::net::{IpAddr, Ipv4Addr};

use super::{common_link_payload, LinkType, Packet, Protocol, GTP_U_PORT, VXLAN_PORT};

/// The fields of a TCP or UDP packet that decide whether a cached verdict answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peek<'a> {
    /// Source and destination addresses, IPv4 as IPv4-mapped IPv6 (the flow key's form).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
    /// A TCP SYN without ACK: opens a connection, so never answered from a cache.
    pub bare_syn: bool,
    /// The transport payload.
    pub payload: &'a [u8],
}

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
/// IPv4 flags and fragment offset: the more-fragments bit and the 13-bit offset.
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// The cache fields of a plain TCP or UDP frame; `None` for every other frame.
pub fn peek(link: LinkType, frame: &[u8]) -> Option<Peek<'_>> {
    let (ether_type, ip) = common_link_payload(link, frame)?;
    let (src, dst, ip_number, transport) = match ether_type {
        0x0800 => ipv4(ip)?,
        0x86dd => ipv6(ip)?,
        _ => return None,
    };
    let (protocol, src_port, dst_port, bare_syn, payload) = match ip_number {
        6 => tcp(transport)?,
        17 => udp(transport)?,
        _ => return None,
    };
    Some(Peek {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
        bare_syn,
        payload,
    })
}

type Addresses<'a> = ([u8; 16], [u8; 16], u8, &'a [u8]);

/// Addresses, protocol number and payload of an unfragmented IPv4 packet.
fn ipv4(ip: &[u8]) -> Option<Addresses<'_>> {
    let header = ip.first_chunk::<IPV4_MIN_HEADER>()?;
    let [version_ihl, _, len_high, len_low, _, _, flags_high, flags_low, _, protocol, ..] = *header;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([len_high, len_low]));
    if header_len < IPV4_MIN_HEADER
        || total_len < header_len
        || u16::from_be_bytes([flags_high, flags_low]) & IPV4_FRAGMENT_BITS != 0
    {
        return None;
    }
    let payload = ip.get(header_len..total_len)?;
    let [.., s0, s1, s2, s3, d0, d1, d2, d3] = *header;
    Some((
        Ipv4Addr::from([s0, s1, s2, s3]).to_ipv6_mapped().octets(),
        Ipv4Addr::from([d0, d1, d2, d3]).to_ipv6_mapped().octets(),
        protocol,
        payload,
    ))
}

/// Addresses, protocol number and payload of an IPv6 packet without extension headers.
fn ipv6(ip: &[u8]) -> Option<Addresses<'_>> {
    let (header, rest) = ip.split_first_chunk::<IPV6_HEADER>()?;
    let [version, _, _, _, len_high, len_low, next_header, ..] = *header;
    let payload_len = usize::from(u16::from_be_bytes([len_high, len_low]));
    // A zero length (a jumbogram's) is read from the slice by etherparse: left to it.
    if version >> 4 != 6 || payload_len == 0 {
        return None;
    }
    let payload = rest.get(..payload_len)?;
    let src = *header.get(8..24)?.first_chunk::<16>()?;
    let dst = *header.get(24..40)?.first_chunk::<16>()?;
    Some((src, dst, next_header, payload))
}

type Transport<'a> = (Protocol, u16, u16, bool, &'a [u8]);

fn tcp(segment: &[u8]) -> Option<Transport<'_>> {
    let header = segment.first_chunk::<TCP_MIN_HEADER>()?;
    let [src_high, src_low, dst_high, dst_low, .., offset, flags, _, _, _, _, _, _] = *header;
    let header_len = usize::from(offset >> 4) * 4;
    if header_len < TCP_MIN_HEADER {
        return None;
    }
    let payload = segment.get(header_len..)?;
    let bare_syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    Some((
        Protocol::Tcp,
        u16::from_be_bytes([src_high, src_low]),
        u16::from_be_bytes([dst_high, dst_low]),
        bare_syn,
        payload,
    ))
}

fn udp(datagram: &[u8]) -> Option<Transport<'_>> {
    let &[src_high, src_low, dst_high, dst_low, len_high, len_low, _, _] =
        datagram.first_chunk::<UDP_HEADER>()?;
    let src_port = u16::from_be_bytes([src_high, src_low]);
    let dst_port = u16::from_be_bytes([dst_high, dst_low]);
    // Tunnel ports: the packet inside may be what is judged.
    if [src_port, dst_port]
        .iter()
        .any(|port| [VXLAN_PORT, GTP_U_PORT].contains(port))
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([len_high, len_low]));
    // Zero (the slice decides) and impossible lengths are left to the full parse.
    if len < UDP_HEADER {
        return None;
    }
    let payload = datagram.get(UDP_HEADER..len)?;
    Some((Protocol::Udp, src_port, dst_port, false, payload))
}

impl<'a> Packet<'a> {
    /// What [`peek`] must read of the frame this packet was parsed from: the contract the
    /// tests and the frame fuzz target hold it to. `None` for packets it leaves to the
    /// full parse (tunnelled, fragments, neither TCP nor UDP).
    pub fn peeked(&self) -> Option<Peek<'a>> {
        if self.fragment.is_some() || self.tunnel.is_some() || self.unopened.is_some() {
            return None;
        }
        if !matches!(self.protocol, Protocol::Tcp | Protocol::Udp) {
            return None;
        }
        Some(Peek {
            src: mapped_octets(self.src),
            dst: mapped_octets(self.dst),
            protocol: self.protocol,
            src_port: self.src_port,
            dst_port: self.dst_port,
            bare_syn: self.tcp.is_some_and(|tcp| tcp.syn && !tcp.ack),
            payload: self.payload,
        })
    }
}

/// An address as 16 bytes, IPv4 as IPv4-mapped IPv6 (one layout for both families).
pub fn mapped_octets(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
