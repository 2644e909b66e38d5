//! Routing for `--threads` and IP fragments: a plain TCP or UDP frame is only peeked at for
//! its flow; any other is parsed once, reassembled when it is a fragment, and either judged
//! here or handed, parsed, to the thread that owns its flow.

use super::*;

impl Worker<'_> {
    /// Routes a frame for a source that spreads flows over several threads (`telestrip pcap
    /// --threads`), in two halves. This first one parses the frame and reassembles
    /// fragments. A caller that sweeps the flow table itself (see `set_sweeping`) checks
    /// [`Prepared::reaches_table`] before it calls [`Worker::finish_route`]: that is where
    /// one worker would sweep.
    pub fn prepare<'f>(&mut self, link: LinkType, frame: &'f [u8], time: Duration) -> Prepared<'f> {
        // Plain TCP and UDP other than DNS: only its flow is needed here; the thread that
        // owns the flow answers it from its verdict cache, or reads the frame on a miss.
        if let Some(peek) = wire::peek(link, frame) {
            if !is_dns_port(peek.src_port, peek.dst_port) {
                return Prepared::Peeked(CacheProbe::of(&peek));
            }
        }
        let packet = match self.decode(link, frame) {
            Ok(packet) => packet,
            Err(verdict) => return Prepared::Done(self.count(verdict)),
        };
        let Some(fragment) = packet.fragment else {
            return Prepared::Packet(packet);
        };
        match self.reassemble(&packet, fragment, time) {
            Ok(datagram) => Prepared::Datagram(datagram),
            Err(verdict) => Prepared::Done(self.count(verdict)),
        }
    }

    /// The second half of routing: DNS is judged here, in capture order, because the
    /// addresses its answers teach are needed by flows on every thread; IP fragments were
    /// reassembled by [`Worker::prepare`], so a datagram goes to the thread of its flow
    /// whole. Everything else goes, by the hash of its flow and already parsed, to a thread
    /// that judges it with [`Worker::process_routed`]. Packets of one flow must all go to
    /// one thread, in order.
    pub fn finish_route(
        &mut self,
        prepared: Prepared<'_>,
        frame: &[u8],
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Route {
        match prepared {
            Prepared::Done(verdict) => Route::Done(verdict),
            Prepared::Peeked(probe) => Route::Peeked(fixed_hash(*probe.key()), probe),
            Prepared::Packet(packet) => {
                let layout = packet.layout(frame);
                match layout {
                    Some(layout)
                        if !is_dns(&packet) && !matches!(packet.protocol, Protocol::Other(_)) =>
                    {
                        Route::Frame(flow_hash(&packet), layout)
                    }
                    _ => {
                        let verdict = self.classify_packet(&packet, time, events);
                        Route::Done(self.count(verdict))
                    }
                }
            }
            Prepared::Datagram(datagram) => match datagram.packet() {
                Ok(whole) if !is_dns(&whole) => Route::Datagram(flow_hash(&whole), datagram),
                _ => {
                    let verdict = self.classify_datagram(&datagram, time, events);
                    Route::Done(self.count(verdict))
                }
            },
        }
    }

    /// Judges what [`Worker::finish_route`] handed to this thread.
    pub fn process_routed(
        &mut self,
        routed: Routed<'_>,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let verdict = match routed {
            Routed::Peeked(link, frame, probe) => match self.cached(probe, time) {
                Some(verdict) => verdict,
                None => self.classify(link, frame, time, events),
            },
            Routed::Frame(frame, layout) => {
                self.classify_packet(&layout.packet(frame), time, events)
            }
            Routed::Datagram(datagram) => self.classify_datagram(datagram, time, events),
        };
        self.count(verdict)
    }

    /// An IP fragment: held until its datagram is complete, which is then returned whole.
    pub(super) fn reassemble(
        &mut self,
        packet: &Packet<'_>,
        fragment: wire::Fragment<'_>,
        time: Duration,
    ) -> Result<Datagram, Verdict> {
        let counters = self.counters;
        bump(&counters.packets_fragmented);
        let evicted = self.defrag.evicted;
        let reassembly = self
            .defrag
            .add(packet.src, packet.dst, &fragment, time.as_secs());
        counters
            .fragments_evicted
            .fetch_add(self.defrag.evicted - evicted, Ordering::Relaxed);
        match reassembly {
            Reassembly::Complete(bytes) => {
                bump(&counters.fragments_reassembled);
                Ok(Datagram {
                    src: packet.src,
                    dst: packet.dst,
                    ttl: packet.ttl,
                    ip_number: fragment.ip_number,
                    bytes,
                })
            }
            Reassembly::Overlap => {
                counters.evasion(Evasion::FragmentOverlap);
                Err(Verdict::UNTRACKED)
            }
            Reassembly::Invalid => {
                counters.parse_error(Layer::Network);
                Err(Verdict::UNTRACKED)
            }
            Reassembly::Incomplete | Reassembly::Discarded => Err(Verdict::UNTRACKED),
        }
    }

    /// A reassembled datagram, inspected whole.
    pub(super) fn classify_datagram(
        &mut self,
        datagram: &Datagram,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        match datagram.packet() {
            Ok(whole) => {
                self.counters.tunnel(whole.tunnel, whole.unopened);
                self.classify_packet(&whole, time, events)
            }
            Err(_) => {
                self.counters.parse_error(Layer::Transport);
                Verdict::UNTRACKED
            }
        }
    }
}

/// Where [`Worker::finish_route`] sends a frame.
#[derive(Debug)]
pub enum Route {
    /// Judged by the routing worker (DNS, not IP or unreadable, a fragment of a datagram
    /// still incomplete): nothing more to do.
    Done(Verdict),
    /// A plain TCP or UDP frame for the thread of this flow hash, to judge as
    /// [`Routed::Peeked`]: from that thread's verdict cache, or from the frame.
    Peeked(u64, CacheProbe),
    /// For the thread of this flow hash, to judge as [`Routed::Frame`] (the frame and this
    /// layout of it).
    Frame(u64, wire::Layout),
    /// A reassembled datagram for the thread of this flow hash, to judge as
    /// [`Routed::Datagram`].
    Datagram(u64, Datagram),
}

/// What a thread judges with [`Worker::process_routed`]: a frame with the layout the
/// routing thread parsed, or a datagram it reassembled.
#[derive(Clone, Copy, Debug)]
pub enum Routed<'a> {
    Peeked(LinkType, &'a [u8], &'a CacheProbe),
    Frame(&'a [u8], &'a wire::Layout),
    Datagram(&'a Datagram),
}

/// A frame parsed by [`Worker::prepare`], not yet judged.
#[derive(Debug)]
pub enum Prepared<'f> {
    /// Nothing more to do (not IP, unreadable, a fragment of an incomplete datagram).
    Done(Verdict),
    /// A plain TCP or UDP frame (not DNS), by what its thread's verdict cache needs.
    Peeked(CacheProbe),
    Packet(Packet<'f>),
    Datagram(Datagram),
}

impl Prepared<'_> {
    /// Whether judging it touches the flow table (a TCP or UDP packet or datagram), which
    /// is where a worker sweeps idle flows when their time has come.
    pub fn reaches_table(&self) -> bool {
        match self {
            Prepared::Done(_) => false,
            Prepared::Peeked(_) => true,
            Prepared::Packet(packet) => !matches!(packet.protocol, Protocol::Other(_)),
            Prepared::Datagram(datagram) => datagram
                .packet()
                .is_ok_and(|whole| !matches!(whole.protocol, Protocol::Other(_))),
        }
    }
}

/// An IP datagram reassembled from fragments: its addresses and whole transport payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub ip_number: u8,
    pub bytes: Vec<u8>,
}

impl Datagram {
    fn packet(&self) -> Result<Packet<'_>, WireError> {
        wire::reassembled(self.src, self.dst, self.ttl, self.ip_number, &self.bytes)
    }
}

/// The same number for both directions of a flow, and the same in every run (for routing
/// flows to threads; the flow table's own hash is seeded per process).
pub(super) fn flow_hash(packet: &Packet<'_>) -> u64 {
    fixed_hash(FlowKey::of(packet).0)
}

fn fixed_hash(key: FlowKey) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7e1e_5715).hash_one(key)
}
