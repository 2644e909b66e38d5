//! TCP: the client's first flight reassembled until it names the flow, decoys set apart
//! (TTL, checksum, MD5 option, window), and flows that never name themselves decided.

use super::*;

impl Worker<'_> {
    pub(super) fn classify_flow_packet(
        &mut self,
        packet: &Packet<'_>,
        time: Duration,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let packet = *packet;
        if matches!(packet.protocol, Protocol::Other(_)) {
            return Verdict::UNTRACKED;
        }
        let now = time.as_secs();
        if self.sweeps {
            self.engine.flows.maybe_sweep(now);
        }
        let (key, src_is_low) = FlowKey::of(&packet);
        let bare_syn = packet.tcp.is_some_and(|tcp| tcp.syn && !tcp.ack);
        let quic_initial = is_quic_initial(packet.protocol, packet.payload);
        let probe = CacheProbe {
            key,
            src_is_low,
            bare_syn,
            quic_initial,
        };
        if bare_syn {
            self.verdict_cache.forget(&key);
        } else if let Some(action) = self.cached_action(&probe, now) {
            return Verdict {
                action,
                flow: FlowStatus::Decided,
            };
        }
        let is_dns = is_dns(&packet);
        let engine = self.engine;
        let counters = self.counters;
        let Some(mut flow) = engine.flows.entry(key, now, || {
            bump(&counters.flows_new);
            let src_is_client = src_is_client(&packet);
            FlowState::new(src_is_low == src_is_client, now)
        }) else {
            return self.stateless(&packet, time, is_dns, events);
        };
        flow.last_seen = now;
        // A bare SYN on a known 5-tuple opens a new connection (the client reused its
        // port): it must be inspected afresh, never inherit the old verdict.
        if bare_syn && flow.phase != Phase::Pending {
            bump(&counters.flows_new);
            *flow = FlowState::new(src_is_low, now);
        }
        let from_client = src_is_low == flow.client_is_low();
        let facts = self.orient(&packet, from_client, time, now);
        let verdict = match flow.phase {
            Phase::Decided(decision)
                if !read_again(decision.verdict, quic_initial, from_client) =>
            {
                Verdict {
                    action: decision.verdict,
                    flow: FlowStatus::Decided,
                }
            }
            phase => {
                if phase == Phase::Pending && is_dns {
                    flow.phase = Phase::Dns;
                }
                let phase = flow.phase;
                let j = &mut Judging {
                    flow: &mut flow,
                    packet: &packet,
                    from_client,
                    facts,
                    events,
                };
                match phase {
                    Phase::Decided(_) => self.quic_after_allow(j),
                    Phase::Dns => self.dns_packet(j),
                    Phase::Pending => self.pending_packet(j),
                }
            }
        };
        let client_is_low = flow.client_is_low();
        drop(flow);
        if verdict.flow == FlowStatus::Decided {
            let cached = Cached {
                action: verdict.action,
                client_is_low,
            };
            self.verdict_cache.put(key, now, cached);
        }
        verdict
    }

    /// A packet of a flow that has no verdict yet.
    pub(super) fn pending_packet(&mut self, j: &mut Judging<'_, '_>) -> Verdict {
        let Some(tcp) = j.packet.tcp else {
            return self.udp_pending(j);
        };
        note_syn(j.flow, tcp, j.from_client);
        if tcp.syn && !tcp.ack && j.from_client {
            j.flow.set_client_syn(SynShape {
                ttl: j.packet.ttl,
                md5: tcp.md5,
                checksum_ok: self.trusts_checksums_of(j.packet.src)
                    && j.packet.tcp_checksum_valid() == Some(true),
            });
        }
        if j.packet.payload.is_empty() {
            return Verdict::PENDING;
        }
        if j.from_client {
            if let Some(kind) = self.decoy(j.flow, j.packet, tcp) {
                // Passed on (the server or the path discards it) but never read.
                self.counters.evasion(kind);
                return Verdict::PENDING;
            }
        }
        if !j.from_client {
            // The server spoke first (SMTP, SSH, FTP...): no ClientHello or request to read.
            if j.flow.client_stream().is_none() {
                return self.decide(j, None);
            }
            return Verdict::PENDING;
        }
        let data_seq = data_seq(tcp);
        let before = j
            .flow
            .client_stream()
            .map_or(0, |stream| stream.contiguous().len());
        let mut advanced = false;
        let client_isn = j.flow.client_isn();
        let seen = match j.flow.streams.as_deref_mut() {
            Some(Streams {
                client: Some(stream),
                client_alt,
                ..
            }) => {
                let inserted = stream.insert(data_seq, j.packet.payload);
                if inserted == Insert::Conflict && client_alt.is_none() {
                    self.counters.evasion(Evasion::OverlapConflict);
                    let mut alt = stream.clone();
                    alt.insert_last_wins(data_seq, j.packet.payload);
                    *client_alt = Some(alt);
                } else if let Some(alt) = client_alt.as_mut() {
                    if alt.insert_last_wins(data_seq, j.packet.payload) == Insert::Conflict
                        && inserted != Insert::Conflict
                    {
                        self.counters.evasion(Evasion::OverlapConflict);
                    }
                }
                match inserted {
                    Insert::OverCap => return self.over_cap(j.facts),
                    Insert::Old => Seen::NeedMore,
                    Insert::Stored | Insert::Conflict => {
                        advanced = stream.contiguous().len() > before;
                        let main = scan_stream(stream, &mut self.scratch);
                        match client_alt.as_ref() {
                            Some(alt) => {
                                let alt = scan_stream(alt, &mut self.scratch);
                                self.either(main, alt, j.facts)
                            }
                            None => main,
                        }
                    }
                }
            }
            _ if client_isn.is_none_or(|isn| isn == data_seq) => {
                advanced = true;
                match scan_first_flight(j.packet.payload, &mut self.scratch) {
                    Seen::NeedMore => {
                        let mut stream = StreamBuf::new(data_seq);
                        stream.insert(data_seq, j.packet.payload);
                        j.flow.streams_mut().client = Some(stream);
                        Seen::NeedMore
                    }
                    other => other,
                }
            }
            _ => {
                // Out of order: data after a hole at the start of the stream.
                let base = client_isn.unwrap_or(data_seq);
                let mut stream = StreamBuf::new(base);
                let inserted = stream.insert(data_seq, j.packet.payload);
                j.flow.streams_mut().client = Some(stream);
                if inserted == Insert::OverCap {
                    return self.over_cap(j.facts);
                }
                Seen::NeedMore
            }
        };
        // Only segments that bring no new in-order bytes count towards the pending limit:
        // a hello in 1-byte segments is read to its end (the stream cap bounds it), while
        // retransmissions and data behind a hole that never fills do not keep a flow
        // pending for ever.
        if !advanced {
            j.flow.data_packets = j.flow.data_packets.saturating_add(1);
        }
        self.conclude(j, seen)
    }

    /// A client segment that does not fit the reassembly buffer (past its size or with too
    /// many holes): dropped on its own, so the client sends it again once the holes before
    /// it are filled, and the flow stays pending. A hello of more than 20 KiB does not
    /// exist in practice; dozens of holes in a first flight are an attempt to exhaust the
    /// buffer so the rest would pass unread.
    pub(super) fn over_cap(&self, facts: Facts) -> Verdict {
        bump(&self.counters.stream_cap_hits);
        Verdict {
            action: action_for(self.applied(Action::Drop, facts)),
            flow: FlowStatus::Pending,
        }
    }

    /// Why a client segment of a pending flow is a decoy the server will never accept, if it
    /// is one: it differs from the client's SYN in a way the client's own segments do not
    /// (RFC 9293 §3.10.7.4 for the window; RFC 2385 for MD5), or lies outside the window.
    pub(super) fn decoy(
        &self,
        flow: &FlowState,
        packet: &Packet<'_>,
        tcp: TcpInfo,
    ) -> Option<Evasion> {
        if let Some(syn) = flow.client_syn() {
            if packet.ttl < syn.ttl {
                return Some(Evasion::LowTtl);
            }
            if tcp.md5 && !syn.md5 {
                return Some(Evasion::Md5Option);
            }
            if syn.checksum_ok
                && self.trusts_checksums_of(packet.src)
                && packet.tcp_checksum_valid() == Some(false)
            {
                return Some(Evasion::BadChecksum);
            }
        }
        let isn = flow.client_isn()?;
        let offset = data_seq(tcp).wrapping_sub(isn) as i32;
        // Before the ISN is a retransmission (old data, ignored by the reassembler); past
        // the bytes a first flight can hold is beyond any window the server offered.
        (offset >= 0 && offset as usize >= crate::flow::stream::MAX_STREAM_BYTES)
            .then_some(Evasion::OutOfWindow)
    }
}

/// Scans the contiguous start of a client's stream.
pub(super) fn scan_stream(stream: &StreamBuf, scratch: &mut Vec<u8>) -> Seen {
    let bytes = stream.contiguous();
    if bytes.is_empty() {
        Seen::NeedMore
    } else {
        scan_first_flight(bytes, scratch)
    }
}

/// Tries TLS, then HTTP, on the start of a client's stream.
pub(super) fn scan_first_flight(bytes: &[u8], scratch: &mut Vec<u8>) -> Seen {
    match tls::scan_client_hello(bytes, scratch) {
        Ok(Scan::Found(hello)) => return hello_seen(hello, Via::Sni),
        Ok(Scan::NeedMore) => return Seen::NeedMore,
        Ok(Scan::NotThis) => {}
        Err(_) => return Seen::Malformed(Layer::Tls),
    }
    match http::scan_request(bytes) {
        Ok(Scan::Found(request)) => match request.host {
            Some(host) if host.is_address_literal() => match request.other_host {
                Some(other) if !other.is_address_literal() => Seen::Name(other, Via::Http),
                _ => address_seen(&host, Via::Http),
            },
            Some(host) => with_other(host, request.other_host, Via::Http),
            None => match (request.other_host, request.host_v6) {
                (Some(other), _) if !other.is_address_literal() => Seen::Name(other, Via::Http),
                (_, Some(v6)) => Seen::Address(IpAddr::V6(v6), Via::Http),
                _ => Seen::NoName,
            },
        },
        Ok(Scan::NeedMore) => Seen::NeedMore,
        Ok(Scan::NotThis) => Seen::NoName,
        Err(_) => Seen::Malformed(Layer::Http),
    }
}

/// Which end of a flow's first packet is the client: the sender of a bare SYN, the receiver
/// of a SYN-ACK, the side not on port 53, else the sender unless it uses a privileged port
/// towards an ephemeral one (a capture that starts mid-flow).
pub(super) fn src_is_client(packet: &Packet<'_>) -> bool {
    if let Some(tcp) = packet.tcp {
        if tcp.syn {
            return !tcp.ack;
        }
    }
    if packet.src_port == 53 || packet.dst_port == 53 {
        return packet.dst_port == 53;
    }
    !(packet.src_port < 1024 && packet.dst_port >= 1024)
}

/// Makes `verdict` the flow's final one (cached for its later packets) and frees its
/// buffers.
pub(super) fn finalize(flow: &mut FlowState, verdict: PacketAction) -> Verdict {
    flow.phase = Phase::Decided(Decision { verdict });
    flow.release_streams();
    Verdict {
        action: verdict,
        flow: FlowStatus::Decided,
    }
}

/// The reassembly buffer of one direction of a flow.
pub(super) fn stream_slot(flow: &mut FlowState, from_client: bool) -> &mut Option<StreamBuf> {
    let streams = flow.streams_mut();
    if from_client {
        &mut streams.client
    } else {
        &mut streams.server
    }
}

/// Records the next sequence number of the side that sent a SYN (its ISN plus one).
pub(super) fn note_syn(flow: &mut FlowState, tcp: TcpInfo, from_client: bool) {
    if tcp.syn {
        let next = tcp.seq.wrapping_add(1);
        if from_client {
            flow.set_client_isn(next);
        } else {
            flow.set_server_isn(next);
        }
    }
}

/// Sequence number of a segment's first data byte: data in a SYN (TCP Fast Open, RFC 7413)
/// starts after the SYN's own sequence number.
pub(super) fn data_seq(tcp: TcpInfo) -> u32 {
    tcp.seq.wrapping_add(u32::from(tcp.syn))
}

/// What a ClientHello says of the flow's name.
pub(super) fn hello_seen(hello: tls::ClientHello, via: Via) -> Seen {
    match hello.sni {
        Some(sni) if sni.is_address_literal() => address_seen(&sni, via),
        Some(sni) if hello.ech => Seen::EchFacade(sni, via, hello.ech_config_id),
        Some(sni) => with_other(sni, hello.other_sni, via),
        None => Seen::NoName,
    }
}

/// An IPv4 literal that stood where a name belongs.
pub(super) fn address_seen(literal: &Name, via: Via) -> Seen {
    match literal.as_str().parse::<IpAddr>() {
        Ok(address) => Seen::Address(address, via),
        Err(_) => Seen::NoName,
    }
}

/// A name, or two when the request gives another one that is a name.
pub(super) fn with_other(name: Name, other: Option<Name>, via: Via) -> Seen {
    match other {
        Some(other) if !other.is_address_literal() => Seen::Names(name, other, via),
        _ => Seen::Name(name, via),
    }
}
