//! Packets an inline gateway puts on the wire in place of, or in answer to, the packet it
//! judged: a DNS answer whose `ech` parameters were taken out (UDP) or hidden under a key
//! clients ignore (TCP), so the client connects without ECH and its real server name shows;
//! the NXDOMAIN answer to a rejected DNS query over UDP; the NXDOMAIN that takes the place
//! of a rejected answer over UDP (a cloaked name, see `dns_judge`); and the reset that tells
//! the client of a rejected answer over TCP that no answer is coming. They are part of the
//! verdict, so the NFQUEUE source only applies them.

use etherparse::PacketBuilder;

use super::*;
use crate::inspect::dns::strip::EchStripper;
use crate::inspect::dns::{nxdomain_answer, nxdomain_instead_of, split_tcp};
use crate::stats::EchAnswer;

/// A packet from the kernel's queue: an IP packet, and what the kernel says of it.
#[derive(Clone, Copy, Debug)]
pub struct Queued<'f> {
    pub packet: &'f [u8],
    /// Its checksums are filled in (not left to the network card).
    pub checksum_ready: bool,
    /// It is an offloaded (GSO) segment, several segments long.
    pub offloaded: bool,
}

/// What an inline source does with a packet besides its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'w> {
    /// Nothing: the packet passes or is dropped as it is.
    None,
    /// This IP packet passes in place of the one judged.
    Replace(&'w [u8]),
    /// This IP packet goes back to the client, and the packet judged goes no further.
    Answer(&'w [u8]),
    /// This IP packet goes to the client too, and the packet judged gets its verdict as
    /// usual (the firewall's reject answers the server).
    Also(&'w [u8]),
}

/// What was written into the reply buffer.
enum Made {
    Nothing,
    Answer,
    Replace,
    Also,
}

/// A packet thread's buffers for replies, kept from packet to packet.
#[derive(Debug, Default)]
pub(super) struct Replies {
    stripper: EchStripper,
    message: Vec<u8>,
    packet: Vec<u8>,
}

impl Worker<'_> {
    /// Judges a packet from the kernel's queue: its verdict, and the packet to send
    /// instead or in answer, if any.
    pub fn process_queued(
        &mut self,
        queued: Queued<'_>,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> (Verdict, Reply<'_>) {
        self.checksums_trusted = queued.checksum_ready;
        let verdict = self.process(LinkType::RawIp, queued.packet, time, events);
        self.checksums_trusted = false;
        let made = match verdict.action {
            PacketAction::Reject => self.after_reject(queued.packet),
            PacketAction::Accept if verdict.flow != FlowStatus::Decided && self.strip_ech() => {
                if self.without_ech(queued) {
                    Made::Replace
                } else {
                    Made::Nothing
                }
            }
            _ => Made::Nothing,
        };
        let packet = &self.replies.packet;
        let reply = match made {
            Made::Nothing => Reply::None,
            Made::Answer => Reply::Answer(packet),
            Made::Replace => Reply::Replace(packet),
            Made::Also => Reply::Also(packet),
        };
        (verdict, reply)
    }

    fn strip_ech(&self) -> bool {
        self.engine.config.strip_ech
    }

    /// What a rejected DNS message gets besides its verdict: an NXDOMAIN over UDP, a reset
    /// for the client of an answer over TCP; nothing for any other packet.
    fn after_reject(&mut self, ip_packet: &[u8]) -> Made {
        let Ok(packet) = wire::parse(LinkType::RawIp, ip_packet) else {
            return Made::Nothing;
        };
        match packet.protocol {
            Protocol::Udp => self.nxdomain(&packet),
            Protocol::Tcp => self.reset_client(&packet),
            Protocol::Other(_) => Made::Nothing,
        }
    }

    /// An NXDOMAIN over UDP for a rejected DNS message: the answer to a query, or the
    /// answer that takes the place of a response (a cloaked name, see `dns_judge`).
    fn nxdomain(&mut self, packet: &Packet<'_>) -> Made {
        if packet.fragment.is_some() {
            return Made::Nothing;
        }
        let replies = &mut self.replies;
        // Either way from the server, to the client. (Servers that talk to each other may
        // use port 53 on both sides: the message says which it is.)
        let (made, from, to) = if packet.src_port == 53
            && nxdomain_instead_of(packet.payload, &mut replies.message).is_ok()
        {
            let server = (packet.src, packet.src_port);
            (Made::Replace, server, (packet.dst, packet.dst_port))
        } else if packet.dst_port == 53
            && nxdomain_answer(packet.payload, &mut replies.message).is_ok()
        {
            let server = (packet.dst, packet.dst_port);
            (Made::Answer, server, (packet.src, packet.src_port))
        } else {
            return Made::Nothing;
        };
        let Some(builder) = ip_between(from.0, to.0) else {
            return Made::Nothing;
        };
        let builder = builder.udp(from.1, to.1);
        replies.packet.clear();
        if builder.write(&mut replies.packet, &replies.message).is_ok() {
            made
        } else {
            Made::Nothing
        }
    }

    /// A reset to the client of a rejected DNS answer over TCP (a cloaked name), as if from
    /// its server: the firewall's reject resets only the server, and the client would wait
    /// for its answer until it times out. The reset carries the answer's sequence number,
    /// the one the client expects next, so its stack takes it (RFC 5961 §3.2).
    fn reset_client(&mut self, packet: &Packet<'_>) -> Made {
        let Some(tcp) = packet.tcp else {
            return Made::Nothing;
        };
        if packet.src_port != 53 || packet.payload.is_empty() || tcp.rst || tcp.syn {
            return Made::Nothing;
        }
        let Some(builder) = ip_between(packet.src, packet.dst) else {
            return Made::Nothing;
        };
        let mut reset = builder
            .tcp(packet.src_port, packet.dst_port, tcp.seq, 0)
            .rst();
        if tcp.ack {
            reset = reset.ack(tcp.ack_number);
        }
        self.replies.packet.clear();
        if reset.write(&mut self.replies.packet, &[]).is_ok() {
            Made::Also
        } else {
            Made::Nothing
        }
    }

    /// `queued` with the `ech` parameters of its DNS answer taken out (UDP) or hidden
    /// (TCP), in the reply buffer. Answers with `ech` that stay as they are (fragments,
    /// offloaded segments, messages that cannot be rewritten) are counted as kept.
    fn without_ech(&mut self, queued: Queued<'_>) -> bool {
        let Ok(packet) = wire::parse(LinkType::RawIp, queued.packet) else {
            return false;
        };
        if packet.src_port != 53 || packet.payload.is_empty() {
            return false;
        }
        let whole = packet.fragment.is_none() && !queued.offloaded;
        let replies = &mut self.replies;
        let done = match packet.protocol {
            Protocol::Udp if whole => replies.strip_udp(queued.packet, packet.payload),
            Protocol::Tcp if whole => replies.hide_tcp(queued.packet, packet.payload),
            _ => None,
        };
        match done {
            Some(kind) => {
                self.counters.ech_answer(kind);
                true
            }
            None => {
                if carries_ech(&packet) {
                    self.counters.ech_answer(EchAnswer::Kept);
                }
                false
            }
        }
    }
}

impl Replies {
    /// An answer over UDP: the `ech` parameters are removed and the datagram shrinks.
    fn strip_udp(&mut self, ip_packet: &[u8], payload: &[u8]) -> Option<EchAnswer> {
        if self.stripper.strip(payload, &mut self.message).ok()? == 0 {
            return None;
        }
        wire::rewrite::udp_with_payload(ip_packet, &self.message, &mut self.packet).ok()?;
        Some(EchAnswer::Stripped)
    }

    /// An answer over TCP whose message (with its 2-byte length) starts this segment and
    /// ends in it: the `ech` parameters are hidden, the segment keeps its length.
    fn hide_tcp(&mut self, ip_packet: &[u8], payload: &[u8]) -> Option<EchAnswer> {
        let Scan::Found((message, used)) = split_tcp(payload) else {
            return None;
        };
        if self.stripper.hide(message, &mut self.message).ok()? == 0 {
            return None;
        }
        let mut segment = Vec::with_capacity(payload.len());
        segment.extend_from_slice(payload.get(..2)?);
        segment.extend_from_slice(&self.message);
        segment.extend_from_slice(payload.get(used..)?);
        wire::rewrite::tcp_with_same_length_payload(ip_packet, &segment, &mut self.packet).ok()?;
        Some(EchAnswer::Hidden)
    }
}

/// The IP header of a packet telestrip sends from `from` to `to`; `None` across families.
fn ip_between(
    from: IpAddr,
    to: IpAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    match (from, to) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            Some(PacketBuilder::ipv4(from.octets(), to.octets(), 64))
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            Some(PacketBuilder::ipv6(from.octets(), to.octets(), 64))
        }
        _ => None,
    }
}

/// Whether the DNS answer in `packet` has an HTTPS or SVCB record with an `ech` parameter.
fn carries_ech(packet: &Packet<'_>) -> bool {
    let message = match packet.protocol {
        Protocol::Tcp => match split_tcp(packet.payload) {
            Scan::Found((message, _)) => message,
            _ => return false,
        },
        _ => packet.payload,
    };
    let Ok(message) = Message::parse(message) else {
        return false;
    };
    message.answers().is_ok_and(|mut records| {
        records
            .any(|record| matches!(record, Ok(r) if matches!(r.data, RecordData::Svcb(h) if h.ech)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::load_rules;
    use etherparse::PacketBuilder;
    use telestrip_testkit::{dns_query, dns_response, Answer};

    const CLIENT: [u8; 4] = [10, 78, 1, 2];
    const SERVER: [u8; 4] = [10, 78, 2, 2];

    fn engine(strip_ech: bool) -> Engine {
        let (_, rules) = load_rules(None).unwrap();
        let config = EngineConfig {
            strip_ech,
            ..EngineConfig::default()
        };
        Engine::new(rules, config)
    }

    fn https_answer() -> Vec<u8> {
        let v6 = [0xfd, 0x78, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        dns_response(
            1,
            "svc.example",
            65,
            &[Answer::Https("svc.example", SERVER, v6, true)],
        )
    }

    /// An IP packet between the client's port 40000 and the server's `port`.
    fn ip(from_server: bool, tcp: bool, port: u16, payload: &[u8]) -> Vec<u8> {
        let (src, dst, src_port, dst_port) = if from_server {
            (SERVER, CLIENT, port, 40_000)
        } else {
            (CLIENT, SERVER, 40_000, port)
        };
        let builder = PacketBuilder::ipv4(src, dst, 63);
        let mut packet = Vec::new();
        if tcp {
            let tcp = builder.tcp(src_port, dst_port, 1, 1000).ack(1);
            tcp.write(&mut packet, payload).unwrap();
        } else {
            builder
                .udp(src_port, dst_port)
                .write(&mut packet, payload)
                .unwrap();
        }
        packet
    }

    fn queued(packet: &[u8], offloaded: bool) -> Queued<'_> {
        Queued {
            packet,
            checksum_ready: true,
            offloaded,
        }
    }

    /// What became of `packet`: the reply kind and bytes.
    fn reply_to(worker: &mut Worker<'_>, packet: &[u8], offloaded: bool) -> (char, Vec<u8>) {
        let mut events = Vec::new();
        let (_, reply) =
            worker.process_queued(queued(packet, offloaded), Duration::ZERO, &mut events);
        match reply {
            Reply::None => ('-', Vec::new()),
            Reply::Replace(bytes) => ('R', bytes.to_vec()),
            Reply::Answer(bytes) => ('A', bytes.to_vec()),
            Reply::Also(bytes) => ('+', bytes.to_vec()),
        }
    }

    #[test]
    fn answers_lose_their_ech_over_udp_and_hide_it_over_tcp_and_the_rest_is_counted() {
        let engine = engine(true);
        let mut worker = engine.worker();
        let answer = https_answer();
        let udp = ip(true, false, 53, &answer);
        let (kind, stripped) = reply_to(&mut worker, &udp, false);
        assert_eq!(kind, 'R');
        assert!(stripped.len() < udp.len());
        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        let tcp = ip(true, true, 53, &framed);
        let (kind, hidden) = reply_to(&mut worker, &tcp, false);
        assert_eq!(kind, 'R');
        assert_eq!(hidden.len(), tcp.len());
        assert_ne!(hidden, tcp);
        let count = |kind| engine.counters.ech_answer_of(kind);
        assert_eq!(
            (count(EchAnswer::Stripped), count(EchAnswer::Hidden)),
            (1, 1)
        );
        // An offloaded packet stays as it is, counted; so does half a message over TCP,
        // uncounted (it cannot be read); a packet from another port is no answer.
        assert_eq!(reply_to(&mut worker, &udp, true).0, '-');
        assert_eq!(
            reply_to(&mut worker, &ip(true, true, 53, &framed[..40]), false).0,
            '-'
        );
        assert_eq!(
            reply_to(&mut worker, &ip(true, false, 5353, &answer), false).0,
            '-'
        );
        assert_eq!(count(EchAnswer::Kept), 1);
        assert_eq!(
            (count(EchAnswer::Stripped), count(EchAnswer::Hidden)),
            (1, 1)
        );
        // With strip_ech off, answers pass as they are.
        let plain = self::engine(false);
        assert_eq!(reply_to(&mut plain.worker(), &udp, false).0, '-');
    }

    /// `packet` is an NXDOMAIN with this id and no answer records, from the server's
    /// port 53 to the client's port 40000.
    fn nxdomain_to_client(packet: &[u8], id: u16) -> Message<'_> {
        let packet = wire::parse(LinkType::RawIp, packet).unwrap();
        assert_eq!(packet.src, IpAddr::from(SERVER));
        assert_eq!(packet.dst, IpAddr::from(CLIENT));
        assert_eq!((packet.src_port, packet.dst_port), (53, 40_000));
        let message = Message::parse(packet.payload).unwrap();
        assert_eq!((message.id, message.rcode()), (id, 3), "NXDOMAIN");
        assert!(message.answers().unwrap().next().is_none());
        message
    }

    #[test]
    fn a_rejected_dns_query_over_udp_gets_an_nxdomain_answer_from_its_server() {
        let engine = engine(false);
        let mut worker = engine.worker();
        let query = dns_query(0x4242, "use-application-dns.net", 1);
        let (kind, answer) = reply_to(&mut worker, &ip(false, false, 53, &query), false);
        assert_eq!(kind, 'A');
        nxdomain_to_client(&answer, 0x4242);
        // Over TCP the firewall rejects it; an allowed query gets no reply.
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        assert_eq!(
            reply_to(&mut worker, &ip(false, true, 53, &framed), false).0,
            '-'
        );
        let allowed = dns_query(7, "www.example.org", 1);
        assert_eq!(
            reply_to(&mut worker, &ip(false, false, 53, &allowed), false).0,
            '-'
        );
    }

    #[test]
    fn a_rejected_cloaked_answer_is_replaced_by_an_nxdomain_over_udp_and_reset_over_tcp() {
        let engine = engine(false);
        let mut worker = engine.worker();
        let cloaked = dns_response(
            0x5151,
            "cloaked.example.org",
            1,
            &[
                Answer::Cname("cloaked.example.org", "v10.events.data.microsoft.com"),
                Answer::A("v10.events.data.microsoft.com", SERVER),
            ],
        );
        let (kind, answer) = reply_to(&mut worker, &ip(true, false, 53, &cloaked), false);
        assert_eq!(
            kind, 'R',
            "in place of the answer, on its way to the client"
        );
        let message = nxdomain_to_client(&answer, 0x5151);
        assert_eq!(
            message.first_question().unwrap().unwrap().name.as_str(),
            "cloaked.example.org"
        );
        // Between two servers, port 53 on both sides: the message tells answer from query.
        let between_servers = |payload: &[u8]| {
            let mut packet = Vec::new();
            PacketBuilder::ipv4(SERVER, CLIENT, 63)
                .udp(53, 53)
                .write(&mut packet, payload)
                .unwrap();
            packet
        };
        assert_eq!(
            reply_to(&mut worker, &between_servers(&cloaked), false).0,
            'R'
        );
        let query = dns_query(0x5153, "use-application-dns.net", 1);
        assert_eq!(
            reply_to(&mut worker, &between_servers(&query), false).0,
            'A'
        );
        // Over TCP the answer cannot shrink in place: it is rejected (the firewall resets the
        // server) and the client gets a reset from the server's side, at the sequence number
        // it expects next, instead of waiting for an answer that is not coming.
        let mut framed = (cloaked.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&cloaked);
        let mut events = Vec::new();
        let tcp_answer = ip(true, true, 53, &framed);
        let (verdict, reply) =
            worker.process_queued(queued(&tcp_answer, false), Duration::ZERO, &mut events);
        assert_eq!(verdict.action, PacketAction::Reject);
        let Reply::Also(reset) = reply else {
            panic!("no reset for the client: {reply:?}");
        };
        let reset = wire::parse(LinkType::RawIp, reset).unwrap();
        assert_eq!(
            (reset.src, reset.dst, reset.src_port, reset.dst_port),
            (IpAddr::from(SERVER), IpAddr::from(CLIENT), 53, 40_000)
        );
        let tcp = reset.tcp.unwrap();
        assert!(tcp.rst && reset.payload.is_empty());
        assert_eq!(
            (tcp.seq, tcp.ack_number),
            (1, 1),
            "the answer's own numbers"
        );
        assert_eq!(reset.tcp_checksum_valid(), Some(true));
        // An answer whose chain names nothing the rules block passes as it is.
        let plain = dns_response(
            0x5152,
            "www.example.org",
            1,
            &[
                Answer::Cname("www.example.org", "edge.example.net"),
                Answer::A("edge.example.net", SERVER),
            ],
        );
        assert_eq!(
            reply_to(&mut worker, &ip(true, false, 53, &plain), false).0,
            '-'
        );
    }
}
