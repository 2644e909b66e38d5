//! UDP flows: QUIC Initials (IETF and Google QUIC) decrypted and reassembled into their
//! ClientHello, and QUIC whose name cannot be read judged by its policy.

use super::*;

impl Worker<'_> {
    /// A UDP packet of an undecided flow. A QUIC client's Initial packets are decrypted and
    /// their CRYPTO frames reassembled (in any order, across datagrams) until the ClientHello
    /// is complete; any other first packet decides the flow without a name of its own.
    pub(super) fn udp_pending(&mut self, j: &mut Judging<'_, '_>) -> Verdict {
        if j.from_client
            && self.trusts_checksums_of(j.packet.src)
            && j.packet.udp_checksum_valid() == Some(false)
        {
            // A decoy (a fake Initial with a harmless name): the server's stack drops it,
            // so it is passed on but never read.
            self.counters.evasion(Evasion::BadChecksum);
            return Verdict::PENDING;
        }
        let quic_started = j.flow.client_stream().is_some();
        if !j.from_client && quic_started {
            // The server's Initial may come before the client's hello is complete.
            return Verdict::PENDING;
        }
        if !quic_started
            && (!j.from_client || quic::client_initial_version(j.packet.payload).is_none())
        {
            // UDP 443 is QUIC's port: a datagram sent before the client's Initial (junk from
            // the client; from the server a Version Negotiation, after which the client
            // starts again on the same ports, or a server speaking first) must not get the
            // flow waved through before its Initial, so such flows wait a few packets for one.
            if j.facts.server_port == QUIC_PORT {
                j.flow.data_packets = j.flow.data_packets.saturating_add(1);
                if j.flow.data_packets < self.engine.config.max_pending_packets {
                    return Verdict::PENDING;
                }
                bump(&self.counters.pending_limit_hits);
                return self.quic_unreadable(j);
            }
            return self.decide(j, None);
        }
        let hello = quic::long_header_version(j.packet.payload)
            .and_then(quic::hello_kind)
            .unwrap_or(HelloKind::Tls);
        j.flow.data_packets = j.flow.data_packets.saturating_add(1);
        let stream = j
            .flow
            .streams_mut()
            .client
            .get_or_insert_with(|| StreamBuf::new(0));
        let mut over_cap = false;
        let read =
            quic::read_client_initials(j.packet.payload, &mut self.initials, |offset, data| {
                let inserted =
                    u32::try_from(offset).map_or(Insert::OverCap, |at| stream.insert(at, data));
                over_cap |= inserted == Insert::OverCap;
            });
        let seen = if over_cap {
            bump(&self.counters.stream_cap_hits);
            Seen::QuicUnreadable
        } else {
            let bytes = stream.contiguous();
            let scanned = match hello {
                HelloKind::Tls => tls::scan_handshake(bytes)
                    .map(|scan| match scan {
                        Scan::Found(hello) => Some(hello_seen(hello, Via::Quic)),
                        Scan::NeedMore => None,
                        Scan::NotThis => Some(Seen::QuicUnreadable),
                    })
                    .map_err(|_| ()),
                HelloKind::Chlo => gquic::scan_chlo(bytes)
                    .map(|scan| match scan {
                        Scan::Found(Some(name)) => Some(Seen::Name(name, Via::Quic)),
                        Scan::Found(None) => Some(Seen::NoName),
                        Scan::NeedMore => None,
                        Scan::NotThis => Some(Seen::QuicUnreadable),
                    })
                    .map_err(|_| ()),
            };
            match (read, scanned) {
                // Whatever follows a complete hello in the datagram (junk coalesced behind
                // it, which the server ignores too) cannot hide it.
                (_, Ok(Some(seen))) => seen,
                // Nothing has decrypted yet: a decoy Initial with broken protection (sent
                // ahead of the real one, which the server then answers) must not decide
                // the flow, so it waits, within the pending bound, for one that decrypts;
                // past the bound the flow's QUIC is unreadable.
                (Err(_), _) if bytes.is_empty() => {
                    self.counters.parse_error(Layer::Quic);
                    if j.flow.data_packets < self.engine.config.max_pending_packets {
                        Seen::NeedMore
                    } else {
                        Seen::QuicUnreadable
                    }
                }
                (_, Ok(None)) => Seen::NeedMore,
                (_, Err(())) => {
                    self.counters.parse_error(Layer::Quic);
                    Seen::QuicUnreadable
                }
            }
        };
        if let Some(tag) = seen.tag() {
            j.flow.last_name_tag = tag;
        }
        self.conclude(j, seen)
    }

    /// A client Initial on a flow a first ClientHello allowed. A decoy Initial (another
    /// connection ID, a TTL that expires before the server, or the same connection ID with
    /// other bytes) may have decided the flow ahead of the real one, which follows: every
    /// later hello is read (the firewall queues a decided flow's client Initials) and a
    /// stricter verdict replaces the allow. Initials without a new hello (ACKs,
    /// retransmissions of the same one) change nothing.
    pub(super) fn quic_after_allow(&mut self, j: &mut Judging<'_, '_>) -> Verdict {
        let allowed = Verdict {
            action: PacketAction::Accept,
            flow: FlowStatus::Decided,
        };
        if self.trusts_checksums_of(j.packet.src) && j.packet.udp_checksum_valid() == Some(false) {
            return allowed;
        }
        let hello = quic::long_header_version(j.packet.payload)
            .and_then(quic::hello_kind)
            .unwrap_or(HelloKind::Tls);
        let streams = j.flow.streams_mut();
        let (mut inserted, mut over_cap) = (false, false);
        let stream = streams.client.get_or_insert_with(|| StreamBuf::new(0));
        let alt = &mut streams.client_alt;
        // Bytes that disagree with what an earlier Initial put at the same offset are kept
        // in a second view (later bytes win), so both hellos are read.
        let _ = quic::read_client_initials(j.packet.payload, &mut self.initials, |offset, data| {
            let Ok(at) = u32::try_from(offset) else {
                over_cap = true;
                return;
            };
            inserted = true;
            match stream.insert(at, data) {
                Insert::OverCap => over_cap = true,
                Insert::Conflict if alt.is_none() => {
                    let mut view = stream.clone();
                    view.insert_last_wins(at, data);
                    *alt = Some(view);
                }
                _ => {
                    if let Some(view) = alt.as_mut() {
                        view.insert_last_wins(at, data);
                    }
                }
            }
        });
        if !inserted || over_cap {
            if over_cap {
                bump(&self.counters.stream_cap_hits);
            }
            j.flow.release_streams();
            return allowed;
        }
        let scan = |bytes: &[u8]| match hello {
            HelloKind::Tls => match tls::scan_handshake(bytes) {
                Ok(Scan::Found(hello)) => Some(Some(hello_seen(hello, Via::Quic))),
                Ok(Scan::NeedMore) => None,
                _ => Some(None),
            },
            HelloKind::Chlo => match gquic::scan_chlo(bytes) {
                Ok(Scan::Found(Some(name))) => Some(Some(Seen::Name(name, Via::Quic))),
                Ok(Scan::Found(None)) => Some(Some(Seen::NoName)),
                Ok(Scan::NeedMore) => None,
                _ => Some(None),
            },
        };
        // Per view: None while the hello is incomplete, Some(None) when it is not one.
        let streams = j.flow.streams_mut();
        let first = streams.client.as_ref().and_then(|s| scan(s.contiguous()));
        let second = match &streams.client_alt {
            Some(view) => scan(view.contiguous()),
            None => Some(None),
        };
        let (Some(first), Some(second)) = (first, second) else {
            return allowed;
        };
        j.flow.release_streams();
        let mut verdict = allowed;
        for seen in [first, second].into_iter().flatten() {
            if let Some(tag) = seen.tag() {
                // The hello that decided the flow, sent again: judged and counted once.
                if j.flow.name_again(tag) {
                    continue;
                }
            }
            let judged = self.conclude(j, seen);
            if judged.action != PacketAction::Accept {
                self.counters.evasion(Evasion::QuicDecoy);
                return judged;
            }
            verdict = judged;
        }
        verdict
    }

    /// A flow on UDP 443 whose QUIC could not be read: judged by learned names and CIDR
    /// rules, then by the `quic_unreadable` policy.
    pub(super) fn quic_unreadable(&self, j: &mut Judging<'_, '_>) -> Verdict {
        self.counters.bypass(Bypass::QuicUnreadable);
        let recorded = j.events.len();
        let verdict = self.decide(j, None);
        if j.events.len() > recorded || verdict.action != PacketAction::Accept {
            return verdict;
        }
        let record = &self.engine.quic_record;
        match self.engine.config.quic_unreadable {
            Policy::Allow => verdict,
            Policy::Log => {
                self.record_policy(record, None, Via::Quic, j.facts, Action::Log, j.events);
                verdict
            }
            Policy::Drop => {
                let applied = self.applied(Action::Drop, j.facts);
                self.record_policy(record, None, Via::Quic, j.facts, applied, j.events);
                finalize(j.flow, action_for(applied))
            }
        }
    }
}
