//! [`FlowKey`]: the 5-tuple in canonical order, so both directions of a flow share one key.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

use crate::wire::{mapped_octets, Packet, Peek, Protocol};

/// Canonical 5-tuple: the lower (address, port) endpoint first. IPv4 addresses are stored
/// IPv4-mapped so one layout serves both families. 37 bytes of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    low_addr: [u8; 16],
    high_addr: [u8; 16],
    low_port: u16,
    high_port: u16,
    protocol: u8,
}

impl FlowKey {
    /// The key of `packet`'s flow, and whether the packet's source is the key's low endpoint.
    pub fn of(packet: &Packet<'_>) -> (Self, bool) {
        Self::between(
            (mapped_octets(packet.src), packet.src_port),
            (mapped_octets(packet.dst), packet.dst_port),
            packet.protocol,
        )
    }

    /// The key of a peeked packet's flow (see [`FlowKey::of`]).
    pub fn of_peek(peek: &Peek<'_>) -> (Self, bool) {
        Self::between(
            (peek.src, peek.src_port),
            (peek.dst, peek.dst_port),
            peek.protocol,
        )
    }

    fn between(src: ([u8; 16], u16), dst: ([u8; 16], u16), protocol: Protocol) -> (Self, bool) {
        let src_is_low = src <= dst;
        let (low, high) = if src_is_low { (src, dst) } else { (dst, src) };
        (
            Self {
                low_addr: low.0,
                high_addr: high.0,
                low_port: low.1,
                high_port: high.1,
                protocol: protocol.number(),
            },
            src_is_low,
        )
    }

    pub fn protocol(&self) -> Protocol {
        match self.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            other => Protocol::Other(other),
        }
    }
}

/// Three word writes where the derived impl makes five, two of them length-prefixed
/// slices: every packet hashes its key at least once.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.low_addr));
        state.write_u128(u128::from_ne_bytes(self.high_addr));
        state.write_u64(
            u64::from(self.low_port) << 24
                | u64::from(self.high_port) << 8
                | u64::from(self.protocol),
        );
    }
}

/// Back from the stored form (used by tests and diagnostics).
pub fn addr_from_octets(octets: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(octets);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;

    fn packet(src: &str, sport: u16, dst: &str, dport: u16) -> Packet<'static> {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: Protocol::Tcp,
            src_port: sport,
            dst_port: dport,
            tcp: None,
            payload: &[],
            segment: &[],
            ttl: 64,
            fragment: None,
            tunnel: None,
            unopened: None,
        }
    }

    #[test]
    fn both_directions_share_one_key() {
        let (a, a_low) = FlowKey::of(&packet("10.0.0.1", 40000, "10.0.0.2", 443));
        let (b, b_low) = FlowKey::of(&packet("10.0.0.2", 443, "10.0.0.1", 40000));
        assert_eq!(a, b);
        assert_ne!(a_low, b_low);
    }

    #[test]
    fn ports_and_protocol_are_part_of_the_key() {
        let (a, _) = FlowKey::of(&packet("10.0.0.1", 40000, "10.0.0.2", 443));
        let (b, _) = FlowKey::of(&packet("10.0.0.1", 40001, "10.0.0.2", 443));
        assert_ne!(a, b);
        let mut udp = packet("10.0.0.1", 40000, "10.0.0.2", 443);
        udp.protocol = Protocol::Udp;
        assert_ne!(a, FlowKey::of(&udp).0);
    }

    #[test]
    fn ipv4_round_trips_through_mapped_form() {
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(addr_from_octets(mapped_octets(addr)), addr);
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(addr_from_octets(mapped_octets(v6)), v6);
    }
}
