//! Building a changed copy of a UDP or TCP packet: the same IP and transport headers with a
//! new payload, lengths and checksums recomputed by etherparse (the IPv4 header checksum, the
//! UDP or TCP checksum over the pseudo-header, RFC 768, RFC 9293 §3.1 and RFC 8200 §8.1). For
//! the gateway's rewritten DNS answers; only whole packets with nothing between the IP and
//! transport headers (no fragment, no IPv6 extension header) are rewritten, everything else
//! is an error and stays as it was. A TCP payload keeps its length (the stream's sequence
//! numbers stay right).

use etherparse::{IpNumber, Ipv4Header, Ipv6Header, TcpHeader, UdpHeader};

use super::{Fault, WireError};

/// Writes into `out` the IP packet `packet` (a UDP datagram) with `payload` as its UDP
/// payload. The checksum is always computed in full: the kernel takes a changed packet as
/// it is, and the original may only have carried a partial one.
pub fn udp_with_payload(packet: &[u8], payload: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let too_big = |_| WireError::Transport(Fault::new("UDP payload too long"));
    let written = |_| WireError::Network(Fault::new("header not written"));
    out.clear();
    match packet.first().map(|byte| byte >> 4) {
        Some(4) => {
            let (mut ip, rest) = Ipv4Header::from_slice(packet)
                .map_err(|_| WireError::Network(Fault::new("bad IPv4 header")))?;
            if ip.is_fragmenting_payload() {
                return Err(WireError::Network(Fault::new("IPv4 fragment")));
            }
            if ip.protocol != IpNumber::UDP {
                return Err(WireError::Transport(Fault::new("not UDP")));
            }
            let (udp, _) = UdpHeader::from_slice(rest)
                .map_err(|_| WireError::Transport(Fault::new("short UDP header")))?;
            ip.set_payload_len(UdpHeader::LEN + payload.len())
                .map_err(too_big)?;
            let udp =
                UdpHeader::with_ipv4_checksum(udp.source_port, udp.destination_port, &ip, payload)
                    .map_err(too_big)?;
            // `write` fills in the header checksum.
            ip.write(out).map_err(written)?;
            udp.write(out).map_err(written)?;
        }
        Some(6) => {
            let (mut ip, rest) = Ipv6Header::from_slice(packet)
                .map_err(|_| WireError::Network(Fault::new("bad IPv6 header")))?;
            if ip.next_header != IpNumber::UDP {
                return Err(WireError::Transport(Fault::new(
                    "not UDP right after the IPv6 header",
                )));
            }
            let (udp, _) = UdpHeader::from_slice(rest)
                .map_err(|_| WireError::Transport(Fault::new("short UDP header")))?;
            ip.set_payload_length(UdpHeader::LEN + payload.len())
                .map_err(too_big)?;
            let udp =
                UdpHeader::with_ipv6_checksum(udp.source_port, udp.destination_port, &ip, payload)
                    .map_err(too_big)?;
            ip.write(out).map_err(written)?;
            udp.write(out).map_err(written)?;
        }
        _ => return Err(WireError::Network(Fault::new("not IPv4 or IPv6"))),
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes into `out` the IP packet `packet` (a TCP segment) with `payload`, of the same
/// length as its own, as its TCP payload, and the TCP checksum computed anew.
pub fn tcp_with_same_length_payload(
    packet: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let bad_tcp = |_| WireError::Transport(Fault::new("bad TCP header"));
    let (ip_len, transport, checksum) = match packet.first().map(|byte| byte >> 4) {
        Some(4) => {
            let (ip, rest) = Ipv4Header::from_slice(packet)
                .map_err(|_| WireError::Network(Fault::new("bad IPv4 header")))?;
            if ip.is_fragmenting_payload() || ip.protocol != IpNumber::TCP {
                return Err(WireError::Transport(Fault::new("not a whole TCP segment")));
            }
            let rest = rest
                .get(..usize::from(ip.total_len).saturating_sub(ip.header_len()))
                .ok_or(WireError::Network(Fault::new(
                    "shorter than its total length",
                )))?;
            let (tcp, _) = TcpHeader::from_slice(rest).map_err(bad_tcp)?;
            let checksum = tcp
                .calc_checksum_ipv4(&ip, payload)
                .map_err(|_| WireError::Transport(Fault::new("too long")))?;
            (ip.header_len(), rest, checksum)
        }
        Some(6) => {
            let (ip, rest) = Ipv6Header::from_slice(packet)
                .map_err(|_| WireError::Network(Fault::new("bad IPv6 header")))?;
            if ip.next_header != IpNumber::TCP {
                return Err(WireError::Transport(Fault::new(
                    "not TCP right after the IPv6 header",
                )));
            }
            let rest = rest
                .get(..usize::from(ip.payload_length))
                .ok_or(WireError::Network(Fault::new(
                    "shorter than its payload length",
                )))?;
            let (tcp, _) = TcpHeader::from_slice(rest).map_err(bad_tcp)?;
            let checksum = tcp
                .calc_checksum_ipv6(&ip, payload)
                .map_err(|_| WireError::Transport(Fault::new("too long")))?;
            (Ipv6Header::LEN, rest, checksum)
        }
        _ => return Err(WireError::Network(Fault::new("not IPv4 or IPv6"))),
    };
    let (tcp, old_payload) = TcpHeader::from_slice(transport).map_err(bad_tcp)?;
    if old_payload.len() != payload.len() {
        return Err(WireError::Transport(Fault::new(
            "the new payload is not as long as the old",
        )));
    }
    out.clear();
    out.extend_from_slice(
        packet
            .get(..ip_len + tcp.header_len())
            .ok_or(WireError::Transport(Fault::new("short")))?,
    );
    out.extend_from_slice(payload);
    // The checksum field is bytes 16-17 of the TCP header.
    let field = out
        .get_mut(ip_len + 16..ip_len + 18)
        .ok_or(WireError::Transport(Fault::new("short TCP header")))?;
    field.copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn udp_v4(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 77, 0, 2], [10, 77, 0, 1], 63)
            .udp(53, 40000)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp_v6(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 63)
            .udp(53, 40000)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// Whether the UDP checksum in `packet` is right, computed by etherparse from scratch.
    fn checksum_is_right(packet: &[u8]) -> bool {
        let sliced = SlicedPacket::from_ip(packet).unwrap();
        let Some(TransportSlice::Udp(udp)) = sliced.transport else {
            panic!("not UDP");
        };
        let header = udp.to_header();
        let expected = match etherparse::IpHeaders::from_slice(packet).unwrap().0 {
            etherparse::IpHeaders::Ipv4(ip, _) => {
                header.calc_checksum_ipv4(&ip, udp.payload()).unwrap()
            }
            etherparse::IpHeaders::Ipv6(ip, _) => {
                header.calc_checksum_ipv6(&ip, udp.payload()).unwrap()
            }
        };
        header.checksum == expected
    }

    #[test]
    fn gives_the_same_packet_with_another_payload_and_right_lengths_and_checksums() {
        for (build, long, short) in [
            (
                udp_v4 as fn(&[u8]) -> Vec<u8>,
                udp_v4(&[7; 300]),
                udp_v4(&[9; 120]),
            ),
            (udp_v6, udp_v6(&[7; 300]), udp_v6(&[9; 120])),
        ] {
            let mut out = Vec::new();
            udp_with_payload(&long, &[9; 120], &mut out).unwrap();
            assert_eq!(out, short);
            assert_eq!(out, build(&[9; 120]));
            assert!(checksum_is_right(&out));
        }
    }

    #[test]
    fn keeps_ttl_addresses_ports_and_ipv4_options() {
        let mut original = udp_v4(b"0123456789");
        // An IPv4 header with one 4-byte option (NOP x3, EOL): IHL 6.
        original.splice(20..20, [1, 1, 1, 0]);
        original[0] = 0x46;
        let total = original.len() as u16;
        original[2..4].copy_from_slice(&total.to_be_bytes());
        let mut out = Vec::new();
        udp_with_payload(&original, b"abc", &mut out).unwrap();
        let (ip, rest) = Ipv4Header::from_slice(&out).unwrap();
        assert_eq!(ip.options.as_slice(), &[1, 1, 1, 0]);
        assert_eq!(ip.time_to_live, 63);
        assert_eq!(usize::from(ip.total_len), out.len());
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let (udp, payload) = UdpHeader::from_slice(rest).unwrap();
        assert_eq!((udp.source_port, udp.destination_port), (53, 40000));
        assert_eq!(payload, b"abc");
        assert!(checksum_is_right(&out));
    }

    #[test]
    fn gives_a_tcp_segment_a_new_payload_of_the_same_length_with_its_checksum() {
        for (v6, ip) in [(false, [10u8, 77, 0, 2]), (true, [0; 4])] {
            let build = |payload: &[u8]| {
                let builder = if v6 {
                    PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 63)
                } else {
                    PacketBuilder::ipv4(ip, [10, 77, 0, 1], 63)
                };
                let mut out = Vec::new();
                builder
                    .tcp(53, 40000, 1000, 500)
                    .ack(77)
                    .psh()
                    .write(&mut out, payload)
                    .unwrap();
                out
            };
            let mut out = Vec::new();
            tcp_with_same_length_payload(&build(b"abcdef"), b"uvwxyz", &mut out).unwrap();
            assert_eq!(out, build(b"uvwxyz"));
            assert!(tcp_with_same_length_payload(&build(b"abcdef"), b"uvw", &mut out).is_err());
            let whole = build(b"abcdef");
            for end in 0..whole.len() {
                assert!(tcp_with_same_length_payload(&whole[..end], b"uvwxyz", &mut out).is_err());
            }
        }
        let udp = udp_v4(b"abc");
        assert!(tcp_with_same_length_payload(&udp, b"xyz", &mut Vec::new()).is_err());
    }

    #[test]
    fn rejects_fragments_tcp_and_truncated_packets() {
        let mut out = Vec::new();
        let mut fragment = udp_v4(&[1; 40]);
        fragment[6] = 0x20; // more fragments
        let ip = Ipv4Header::from_slice(&fragment).unwrap().0;
        fragment[10..12].copy_from_slice(&ip.calc_header_checksum().to_be_bytes());
        assert!(udp_with_payload(&fragment, b"x", &mut out).is_err());
        let mut tcp = Vec::new();
        PacketBuilder::ipv4([1; 4], [2; 4], 9)
            .tcp(53, 1, 0, 100)
            .write(&mut tcp, b"x")
            .unwrap();
        assert!(udp_with_payload(&tcp, b"x", &mut out).is_err());
        let whole = udp_v6(b"xyz");
        for end in 0..48 {
            assert!(
                udp_with_payload(&whole[..end], b"x", &mut out).is_err(),
                "{end}"
            );
        }
        assert!(udp_with_payload(&[], b"x", &mut out).is_err());
    }
}
