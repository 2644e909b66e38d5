//! Sending packets the gateway makes up itself: the NXDOMAIN answer to a rejected DNS query,
//! written from the DNS server's address to the client through a raw IP socket (needs
//! CAP_NET_RAW). TCP resets and ICMP errors are left to the firewall's REJECT target.

use std::io;
use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;
use socket2::{Domain, Protocol, Socket, Type};

use crate::inspect::dns;
use crate::wire::Packet;

/// Raw sockets for IPv4 and IPv6 that take whole IP packets (IPPROTO_RAW implies the
/// header is included).
pub struct Injector {
    v4: Socket,
    v6: Socket,
    scratch: Vec<u8>,
    packet: Vec<u8>,
}

impl Injector {
    pub fn open() -> io::Result<Self> {
        let raw = Some(Protocol::from(255));
        Ok(Self {
            v4: Socket::new(Domain::IPV4, Type::RAW, raw)?,
            v6: Socket::new(Domain::IPV6, Type::RAW, raw)?,
            scratch: Vec::new(),
            packet: Vec::new(),
        })
    }

    /// Answers the DNS query in `query` (a UDP packet from the client) with NXDOMAIN.
    pub fn answer_nxdomain(&mut self, query: &Packet<'_>) -> io::Result<()> {
        dns::nxdomain_answer(query.payload, &mut self.scratch)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let builder = match (query.dst, query.src) {
            (IpAddr::V4(from), IpAddr::V4(to)) => {
                PacketBuilder::ipv4(from.octets(), to.octets(), 64)
            }
            (IpAddr::V6(from), IpAddr::V6(to)) => {
                PacketBuilder::ipv6(from.octets(), to.octets(), 64)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "mixed address families",
                ))
            }
        }
        .udp(query.dst_port, query.src_port);
        self.packet.clear();
        builder
            .write(&mut self.packet, &self.scratch)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let socket = if query.src.is_ipv4() {
            &self.v4
        } else {
            &self.v6
        };
        socket.send_to(&self.packet, &SocketAddr::new(query.src, 0).into())?;
        Ok(())
    }
}
