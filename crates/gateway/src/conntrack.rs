//! Final flow verdicts written into the kernel's connection table through ctnetlink, so that
//! conntrackd replicates them to the other gateway of a pair (`pair:` in the
//! config; deploy/README.md, "Running a pair").
//!
//! The firewall rules save a verdict on the connection with CONNMARK, but the kernel tells
//! listeners such as conntrackd of a changed mark only when a packet of the flow reaches
//! conntrack confirmation, and the packets of a blocked flow are dropped before that: the
//! peer would keep the connection without its block mark, and let the client's
//! retransmissions through after a failover. An update through ctnetlink is announced at
//! once. Packet threads hand updates to one writer thread over a bounded channel and never
//! wait for it; what does not fit is counted.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::stats::{Family, MetricSink};
use crate::wire::{self, LinkType, Protocol};

/// `CTA_MARK_MASK` (include/uapi/linux/netfilter/nfnetlink_conntrack.h): on an update, the
/// kernel keeps the bits of the connection mark outside this mask (other users' bits).
const CTA_MARK_MASK: u16 = 21;

/// Updates waiting for the writer; beyond this the packet threads count them as lost.
pub const CHANNEL_CAPACITY: usize = 4096;

/// How long the writer waits for the kernel's answer to one update.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;
const EEXIST: i32 = nix::errno::Errno::EEXIST as i32;

/// Lifetime of a connection made for a blocked UDP flow; each of the flow's datagrams
/// (dropped by the kernel on the mark) extends it by the kernel's UDP timeout.
const CREATED_TIMEOUT_SECONDS: u32 = 120;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Update,
    Create,
}

/// What [`Conntrack::set_mark`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The connection's mark was changed.
    Updated,
    /// A connection was made with the mark (a UDP flow blocked on its first datagram).
    Created,
    /// The kernel tracks no such connection.
    NotFound,
}

/// A connection as the kernel tracks it: the addresses and ports of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowTuple {
    /// The tuple of a queued IP packet; `None` for what the kernel tracks otherwise (other
    /// protocols, fragments, tunnels, whose inner flows have no connection of their own).
    pub fn of_packet(ip_packet: &[u8]) -> Option<Self> {
        let packet = wire::parse_common(LinkType::RawIp, ip_packet)?;
        if packet.tunnel.is_some() || packet.fragment.is_some() {
            return None;
        }
        matches!(packet.protocol, Protocol::Tcp | Protocol::Udp).then_some(Self {
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            src_port: packet.src_port,
            dst_port: packet.dst_port,
        })
    }

    /// The other direction.
    pub fn reversed(self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..self
        }
    }
}

/// telestrip's bits of a connection's mark: `mark` within `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkUpdate {
    pub tuple: FlowTuple,
    pub mark: u32,
    pub mask: u32,
}

/// What happened to the updates handed to the writer.
#[derive(Debug, Default)]
pub struct AnnounceStats {
    /// Connection marks updated (and so announced to conntrackd).
    pub updated: AtomicU64,
    /// Connections made for UDP flows blocked on their first datagram.
    pub created: AtomicU64,
    /// Updates for connections the kernel no longer tracked (already closed, or NAT that
    /// changed both addresses of the packet the verdict fell on).
    pub not_found: AtomicU64,
    /// Updates the kernel refused or did not answer.
    pub failed: AtomicU64,
    /// Updates lost because the writer's queue was full.
    pub overflow: AtomicU64,
    /// Sum of the time from hand-over to the kernel's answer, in microseconds (mean lag is
    /// this over `updated` + `created`).
    pub lag_micros: AtomicU64,
}

const UPDATES: Family = Family {
    name: "telestrip_conntrack_mark_updates_total",
    help: "Block verdicts written to the connection table through ctnetlink (so conntrackd replicates them), by result: updated, created (a UDP flow blocked on its first datagram), not_found (connection gone), failed (kernel refused), overflow (writer's queue full).",
    labels: &["result"],
};
const LAG: Family = Family {
    name: "telestrip_conntrack_mark_lag_microseconds_total",
    help: "Sum of the time from a block verdict to its connection mark being written, in microseconds (divide by the updated and created updates for the mean).",
    labels: &[],
};

impl AnnounceStats {
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sink.counter(&UPDATES, &["updated"], load(&self.updated));
        sink.counter(&UPDATES, &["created"], load(&self.created));
        sink.counter(&UPDATES, &["not_found"], load(&self.not_found));
        sink.counter(&UPDATES, &["failed"], load(&self.failed));
        sink.counter(&UPDATES, &["overflow"], load(&self.overflow));
        sink.counter(&LAG, &[], load(&self.lag_micros));
    }
}

/// The packet threads' handle on the writer.
#[derive(Clone)]
pub struct Announcer {
    sender: SyncSender<(MarkUpdate, Instant)>,
    stats: Arc<AnnounceStats>,
}

impl Announcer {
    /// Hands `update` to the writer without waiting.
    pub fn announce(&self, update: MarkUpdate) {
        // Full, or the writer is gone: either way the update is lost, and counted.
        if self.sender.try_send((update, Instant::now())).is_err() {
            self.stats.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A ctnetlink socket (needs CAP_NET_ADMIN for every update, so the writer thread must start
/// after privileges are dropped, like the packet threads, to keep it).
pub struct Conntrack {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Conntrack {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        set_receive_timeout(&socket, ANSWER_TIMEOUT)?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: vec![0; 8192],
        })
    }

    /// Sets telestrip's bits of the mark of the connection `update.tuple` belongs to, in
    /// whichever direction the tuple runs. A UDP flow blocked on its first datagram has no
    /// connection yet (the kernel confirms one only for a packet that passes): it is made,
    /// with the mark, so the kernel drops the flow's next datagrams itself and conntrackd
    /// replicates it. [`Written::NotFound`]: the kernel tracks no such TCP connection.
    pub fn set_mark(&mut self, update: &MarkUpdate) -> io::Result<Written> {
        // The kernel finds a connection by the tuple of either direction; a packet whose
        // destination was rewritten (DNAT) matches neither, but its reverse is the reply.
        for tuple in [update.tuple, update.tuple.reversed()] {
            match self.send(tuple, update, Change::Update) {
                Ok(()) => return Ok(Written::Updated),
                Err(error) if error.raw_os_error() == Some(ENOENT) => continue,
                Err(error) => return Err(error),
            }
        }
        if update.tuple.protocol != Protocol::Udp {
            return Ok(Written::NotFound);
        }
        match self.send(update.tuple, update, Change::Create) {
            Ok(()) => Ok(Written::Created),
            // Made meanwhile by a datagram that passed: set the mark on that one.
            Err(error) if error.raw_os_error() == Some(EEXIST) => self
                .send(update.tuple, update, Change::Update)
                .map(|()| Written::Updated),
            Err(error) => Err(error),
        }
    }

    fn send(&mut self, tuple: FlowTuple, update: &MarkUpdate, change: Change) -> io::Result<()> {
        let (family, protocol) = match (tuple.src, tuple.protocol) {
            (IpAddr::V4(_), Protocol::Tcp) => (NetfilterProtoFamily::IPv4, CtProtocol::Tcp),
            (IpAddr::V4(_), _) => (NetfilterProtoFamily::IPv4, CtProtocol::Udp),
            (IpAddr::V6(_), Protocol::Tcp) => (NetfilterProtoFamily::IPv6, CtProtocol::Tcp),
            (IpAddr::V6(_), _) => (NetfilterProtoFamily::IPv6, CtProtocol::Udp),
        };
        let nested = |tuple: FlowTuple| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress(tuple.src),
                    IPTuple::DestinationAddress(tuple.dst),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(protocol),
                    ProtoTuple::SourcePort(tuple.src_port),
                    ProtoTuple::DestinationPort(tuple.dst_port),
                ]),
            ]
        };
        let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(nested(tuple))];
        if change == Change::Create {
            attributes.push(ConntrackAttribute::CtaTupleReply(nested(tuple.reversed())));
            attributes.push(ConntrackAttribute::CtaTimeout(CREATED_TIMEOUT_SECONDS));
        }
        attributes.push(ConntrackAttribute::CtaMark(update.mark));
        attributes.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_MARK_MASK,
            update.mask.to_be_bytes().to_vec(),
        )));
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        // Without NLM_F_EXCL an existing connection is changed; only with NLM_F_CREATE is a
        // missing one made.
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        if change == Change::Create {
            header.flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        header.sequence_number = self.sequence;
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                ConntrackMessage::New(attributes),
            )),
        );
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        self.answer()
    }

    /// Reads until the kernel's answer to the last request (earlier answers that came late
    /// are skipped).
    fn answer(&mut self) -> io::Result<()> {
        loop {
            let length = self.socket.recv(&mut &mut self.buffer[..], 0)?;
            let mut offset = 0;
            while offset < length {
                let Some(bytes) = self.buffer.get(offset..length) else {
                    break;
                };
                let message = NetlinkMessage::<NetfilterMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let size = message.header.length as usize;
                if message.header.sequence_number == self.sequence {
                    if let NetlinkPayload::Error(error) = &message.payload {
                        return match error.code {
                            None => Ok(()),
                            Some(_) => Err(error.to_io()),
                        };
                    }
                }
                if size == 0 {
                    break;
                }
                offset += size;
            }
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    socket2::SockRef::from(socket).set_read_timeout(Some(timeout))
}

/// Starts the writer thread on `conntrack`, counting in `stats`; it ends when every
/// [`Announcer`] is dropped.
pub fn spawn(conntrack: Conntrack, stats: &Arc<AnnounceStats>) -> io::Result<Announcer> {
    let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
    let writer_stats = Arc::clone(stats);
    std::thread::Builder::new()
        .name("telestrip-ct".into())
        .spawn(move || write_marks(conntrack, &receiver, &writer_stats))?;
    Ok(Announcer {
        sender,
        stats: Arc::clone(stats),
    })
}

fn write_marks(
    mut conntrack: Conntrack,
    updates: &Receiver<(MarkUpdate, Instant)>,
    stats: &AnnounceStats,
) {
    let mut warned = false;
    for (update, handed_over) in updates {
        match conntrack.set_mark(&update) {
            Ok(written @ (Written::Updated | Written::Created)) => {
                let counter = if written == Written::Created {
                    &stats.created
                } else {
                    &stats.updated
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let lag = u64::try_from(handed_over.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.lag_micros.fetch_add(lag, Ordering::Relaxed);
            }
            Ok(Written::NotFound) => {
                stats.not_found.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    crate::log_line!(Error, "telestrip: cannot write a verdict to the connection table ({error}); the pair's other gateway will not know it (counted in telestrip_conntrack_mark_updates_total{{result=\"failed\"}})");
                    warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IP packet inside a testkit Ethernet frame.
    fn ip(frame: Vec<u8>) -> Vec<u8> {
        frame[14..].to_vec()
    }

    #[test]
    fn tuples_come_from_tcp_and_udp_packets_only() {
        let hosts = telestrip_testkit::Hosts::new("10.0.0.2", 40000, "10.0.0.9", 443);
        let tcp = ip(hosts.tcp(true, 1, telestrip_testkit::ACK, b"x"));
        let tuple = FlowTuple::of_packet(&tcp).expect("a TCP packet has a tuple");
        assert_eq!(tuple.src, IpAddr::from([10, 0, 0, 2]));
        assert_eq!((tuple.src_port, tuple.dst_port), (40000, 443));
        assert_eq!(tuple.protocol, Protocol::Tcp);
        let reply = FlowTuple::of_packet(&ip(hosts.tcp(false, 1, telestrip_testkit::ACK, b"")));
        assert_eq!(reply, Some(tuple.reversed()));
        let udp = ip(hosts.udp(true, b"x"));
        assert_eq!(
            FlowTuple::of_packet(&udp).map(|t| t.protocol),
            Some(Protocol::Udp)
        );
        assert_eq!(FlowTuple::of_packet(b"\x45garbage"), None);
    }
}
