//! Sending packets the gateway makes up itself (the engine writes them: the NXDOMAIN answer
//! to a rejected DNS query, from the DNS server's address to the client) through a raw IP
//! socket (needs CAP_NET_RAW). TCP resets and ICMP errors are left to the firewall's REJECT
//! target.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::wire::{self, LinkType};

/// Raw sockets for IPv4 and IPv6 that take whole IP packets (IPPROTO_RAW implies the
/// header is included).
pub struct Injector {
    v4: Socket,
    v6: Socket,
}

impl Injector {
    pub fn open() -> io::Result<Self> {
        let raw = Some(Protocol::from(255));
        Ok(Self {
            v4: Socket::new(Domain::IPV4, Type::RAW, raw)?,
            v6: Socket::new(Domain::IPV6, Type::RAW, raw)?,
        })
    }

    /// Sends `ip_packet` (a whole IPv4 or IPv6 packet) to its destination.
    pub fn send(&self, ip_packet: &[u8]) -> io::Result<()> {
        let packet = wire::parse(LinkType::RawIp, ip_packet)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let socket = if packet.dst.is_ipv4() {
            &self.v4
        } else {
            &self.v6
        };
        socket.send_to(ip_packet, &SocketAddr::new(packet.dst, 0).into())?;
        Ok(())
    }
}
