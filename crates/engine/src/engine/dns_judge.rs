//! DNS: queries judged by their question (per message, over UDP and TCP), answers for
//! matched names learned (addresses and ECH configurations) for later flows.

use super::*;
use crate::flow::learned::expiry;

impl Worker<'_> {
    /// A DNS packet (UDP or TCP): every message is judged on its own.
    pub(super) fn dns_packet(&mut self, j: &mut Judging<'_, '_>) -> Verdict {
        let mut action = PacketAction::Accept;
        match j.packet.tcp {
            None => action = self.dns_message(j, j.packet.payload),
            Some(tcp) => {
                note_syn(j.flow, tcp, j.from_client);
                if !j.packet.payload.is_empty() {
                    action = self.dns_tcp_segment(j, data_seq(tcp));
                }
                // A blocked message's retransmission is old data to the reassembler, so the
                // block sticks to the connection (which cannot carry on past it anyway).
                action = worse(action, j.flow.dns_sticky);
                j.flow.dns_sticky = action;
            }
        }
        Verdict {
            action,
            flow: FlowStatus::PerMessage,
        }
    }

    /// Feeds a DNS-over-TCP segment into its direction's stream and judges every complete
    /// message (RFC 1035 §4.2.2: 2-byte length prefix; several per segment or one over many).
    pub(super) fn dns_tcp_segment(&mut self, j: &mut Judging<'_, '_>, seq: u32) -> PacketAction {
        let isn = if j.from_client {
            j.flow.client_isn()
        } else {
            j.flow.server_isn()
        };
        // Taken out while its messages are judged (which needs the flow), put back after.
        let mut stream = stream_slot(j.flow, j.from_client)
            .take()
            .unwrap_or_else(|| StreamBuf::new(isn.unwrap_or(seq)));
        let mut worst = PacketAction::Accept;
        if stream.insert(seq, j.packet.payload) == Insert::OverCap {
            // A message larger than the cap: this direction is no longer followed.
            bump(&self.counters.stream_cap_hits);
        } else {
            while let Scan::Found((message, used)) = dns::split_tcp(stream.contiguous()) {
                let action = self.dns_message(j, message);
                worst = worse(worst, action);
                stream.consume(used);
            }
        }
        *stream_slot(j.flow, j.from_client) = Some(stream);
        worst
    }

    /// Judges one DNS message: queries by their question, responses also teach addresses.
    pub(super) fn dns_message(&mut self, j: &mut Judging<'_, '_>, bytes: &[u8]) -> PacketAction {
        let counters = self.counters;
        let message = match Message::parse(bytes) {
            Ok(message) => message,
            Err(_) => {
                counters.parse_error(Layer::Dns);
                return PacketAction::Accept;
            }
        };
        bump(&counters.dns_messages);
        // Resolvers answer the first question or refuse several; a filter judges them all
        // and goes by the strictest.
        let mut chosen: Option<(dns::Question, Option<Hit>)> = None;
        let mut asked = 0;
        for question in message.questions() {
            let Ok(question) = question else {
                counters.parse_error(Layer::Dns);
                break;
            };
            asked += 1;
            let hit = self.match_name(question.name.as_bytes(), j.facts);
            if chosen.is_none_or(|(_, best)| self.rank(hit) > self.rank(best)) {
                chosen = Some((question, hit));
            }
        }
        let Some((question, hit)) = chosen else {
            return PacketAction::Accept;
        };
        if asked > 1 && !message.is_response() {
            counters.evasion(Evasion::SeveralNames);
        }
        if message.is_response() {
            self.learn(&message, question.name, hit, j.facts.time);
            if let Some((target, target_hit)) = self.cloaked(&message, hit, j.facts) {
                return self.cloaked_answer(j, target, target_hit);
            }
            return self.action_of(hit, j.facts);
        }
        if !j.from_client {
            return PacketAction::Accept;
        }
        counters.inspected(Via::Dns);
        let Some(hit) = hit else {
            return PacketAction::Accept;
        };
        if j.flow.name_again(name_tag(&question.name)) {
            // A retransmitted query: same verdict, recorded once.
            return self.action_of(Some(hit), j.facts);
        }
        if matches!(question.qtype, dns::TYPE_SVCB | dns::TYPE_HTTPS)
            && self.rules.rule(hit.rule).is_some_and(|r| r.action.blocks())
        {
            self.counters.bypass(Bypass::Svcb);
        }
        self.record(
            hit,
            Some(question.name.as_str()),
            Via::Dns,
            j.facts,
            j.events,
        )
    }

    /// CNAME cloaking: the strictest name in a response's CNAME chain when a rule judges it
    /// more strictly than the question (a name the client asked for aliased to a telemetry
    /// endpoint). The client connects with the question's name, so the flow would pass;
    /// the answer is judged instead. An answer with a name that an `allow` rule matches (the
    /// question or any target) stays allowed.
    fn cloaked(
        &self,
        message: &Message<'_>,
        hit: Option<Hit>,
        facts: Facts,
    ) -> Option<(Name, Hit)> {
        let asked = self.rank(hit);
        if asked == 0 {
            return None;
        }
        let mut best = asked;
        let mut strictest: Option<(Name, Hit)> = None;
        for record in message.answers().ok()? {
            let Ok(record) = record else { break };
            if let RecordData::Cname(target) = record.data {
                let Some(target_hit) = self.match_name(target.as_bytes(), facts) else {
                    continue;
                };
                let rank = self.rank(Some(target_hit));
                if rank == 0 {
                    // Allowed somewhere in the chain: allow beats block for the same flow.
                    return None;
                }
                if rank > best {
                    best = rank;
                    strictest = Some((target, target_hit));
                }
            }
        }
        strictest
    }

    /// Records and judges a cloaked answer (see [`Worker::cloaked`]) by the CNAME target
    /// its rule matched; a repeated answer on the flow is judged again but recorded once.
    fn cloaked_answer(&mut self, j: &mut Judging<'_, '_>, target: Name, hit: Hit) -> PacketAction {
        if j.flow.name_again(name_tag(&target)) {
            return self.action_of(Some(hit), j.facts);
        }
        if self.rules.rule(hit.rule).is_some_and(|r| r.action.blocks()) {
            self.counters.bypass(Bypass::Cname);
        }
        self.record(hit, Some(target.as_str()), Via::Dns, j.facts, j.events)
    }

    /// Learns the A/AAAA addresses of a response whose question, or a CNAME target in its
    /// answer chain, matched a rule other than `allow`.
    pub(super) fn learn(
        &self,
        message: &Message<'_>,
        question: Name,
        hit: Option<Hit>,
        time: Duration,
    ) {
        let not_allowed = |hit: Option<Hit>| {
            hit.and_then(|h| self.rules.rule(h.rule))
                .is_some_and(|rule| rule.action != Action::Allow)
        };
        let mut attributed = not_allowed(hit).then_some(question);
        let Ok(records) = message.answers() else {
            self.counters.parse_error(Layer::Dns);
            return;
        };
        for record in records {
            let Ok(record) = record else {
                self.counters.parse_error(Layer::Dns);
                return;
            };
            match record.data {
                RecordData::Cname(target) if attributed.is_none() => {
                    // CNAME cloaking: an innocent name aliased to a telemetry endpoint.
                    let target_hit = self.rules.match_name(target.as_bytes(), 0, Protocol::Tcp);
                    if not_allowed(target_hit) {
                        attributed = Some(target);
                    }
                }
                RecordData::A(v4) => {
                    if let Some(name) = &attributed {
                        self.learn_address(IpAddr::V4(v4), name.as_str(), record.ttl, time);
                    }
                }
                RecordData::Aaaa(v6) => {
                    if let Some(name) = &attributed {
                        self.learn_address(IpAddr::V6(v6), name.as_str(), record.ttl, time);
                    }
                }
                // HTTPS/SVCB address hints let a client connect without any A/AAAA lookup;
                // the ECH configuration of every name is kept to recognise real ECH.
                RecordData::Svcb(hints) => {
                    if let Some((config_id, public_name)) = hints.ech_config {
                        self.engine.ech_configs.learn(
                            name_tag(&public_name),
                            config_id,
                            record.ttl,
                            time,
                        );
                        if self.engine.sharing() {
                            self.engine.share(SharedFact::EchConfig {
                                public_name: public_name.as_str().into(),
                                config_id,
                                expires: expiry(record.ttl, time),
                            });
                        }
                    }
                    if let Some(name) = &attributed {
                        for addr in hints.addresses() {
                            self.learn_address(addr, name.as_str(), record.ttl, time);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl Worker<'_> {
    /// Learns that `addr` serves `name`, and shares it with the site's other gateways.
    fn learn_address(&self, addr: IpAddr, name: &str, ttl: u32, time: Duration) {
        self.engine.learned.learn(addr, name, ttl, time);
        if self.engine.sharing() {
            self.engine.share(SharedFact::Address {
                addr,
                name: name.into(),
                expires: expiry(ttl, time),
            });
        }
    }
}

const DNS_PORT: u16 = 53;

/// DNS is judged message by message, by port (either direction).
pub(super) fn is_dns(packet: &Packet<'_>) -> bool {
    is_dns_port(packet.src_port, packet.dst_port)
}

/// Whether either port is DNS's (see [`is_dns`]).
pub(super) fn is_dns_port(src_port: u16, dst_port: u16) -> bool {
    src_port == DNS_PORT || dst_port == DNS_PORT
}
