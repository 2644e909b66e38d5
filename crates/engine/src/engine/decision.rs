//! Decisions: from what the first flight showed (a name, two names, an ECH facade, an
//! address) to a rule hit, a verdict, counters and a flow event; the ECH and QUIC policies.

use super::*;
use crate::clients::DEFAULT_GROUP;

impl Worker<'_> {
    /// Combines what two views of one stream showed: wait for both, judge both names.
    pub(super) fn either(&self, main: Seen, alt: Seen, facts: Facts) -> Seen {
        let main = self.resolve(main, facts);
        let alt = self.resolve(alt, facts);
        match (main, alt) {
            (Seen::NeedMore, _) | (_, Seen::NeedMore) => Seen::NeedMore,
            (Seen::Name(a, via), Seen::Name(b, _)) => Seen::Name(self.stricter(a, b, facts), via),
            (main @ Seen::Name(..), _) => main,
            (_, alt @ Seen::Name(..)) => alt,
            (main, _) => main,
        }
    }

    /// Turns two names into the one whose rule is strictest.
    pub(super) fn resolve(&self, seen: Seen, facts: Facts) -> Seen {
        match seen {
            Seen::Names(a, b, via) => Seen::Name(self.stricter(a, b, facts), via),
            other => other,
        }
    }

    /// Of two names of one flow, the one whose rule blocks (then logs, then matches
    /// nothing, then allows); the first on a tie.
    pub(super) fn stricter(&self, first: Name, second: Name, facts: Facts) -> Name {
        let rank = |name: &Name| self.rank(self.match_name(name.as_bytes(), facts));
        if rank(&second) > rank(&first) {
            second
        } else {
            first
        }
    }

    /// How strict a rule match is: blocking, then logging, then none, then allowing.
    pub(super) fn rank(&self, hit: Option<Hit>) -> u8 {
        match hit
            .and_then(|hit| self.rules.rule(hit.rule))
            .map(|r| r.action)
        {
            Some(Action::Drop | Action::Reject) => 3,
            Some(Action::Log) => 2,
            None => 1,
            Some(Action::Allow) => 0,
        }
    }

    /// Decides a pending flow from what its first flight showed, or keeps it pending (up to
    /// the configured number of client packets).
    pub(super) fn conclude(&mut self, j: &mut Judging<'_, '_>, seen: Seen) -> Verdict {
        match seen {
            Seen::Name(name, via) => {
                self.counters.inspected(via);
                self.decide(j, Some((name, via)))
            }
            Seen::Names(first, second, via) => {
                self.counters.evasion(Evasion::SeveralNames);
                let name = self.stricter(first, second, j.facts);
                self.conclude(j, Seen::Name(name, via))
            }
            Seen::EchFacade(name, via, config_id) => {
                let counters = self.counters;
                counters.inspected(via);
                let real = config_id.is_some_and(|id| {
                    self.engine
                        .ech_configs
                        .contains(name_tag(&name), id, j.facts.time)
                });
                if real {
                    counters.bypass(Bypass::Ech);
                    bump(&counters.ech_real);
                } else {
                    bump(&counters.ech_grease);
                }
                if let Some(verdict) = self.decide_by_name(j, name, via) {
                    return verdict;
                }
                let record = &self.engine.ech_record;
                match self.engine.config.ech_policy {
                    EchPolicy::Drop if real => {
                        let applied = self.applied(Action::Drop, j.facts);
                        self.record_policy(record, Some(name), via, j.facts, applied, j.events);
                        finalize(j.flow, action_for(applied))
                    }
                    EchPolicy::Log if real => {
                        let recorded = j.events.len();
                        let verdict = self.decide(j, None);
                        if j.events.len() == recorded && verdict.action == PacketAction::Accept {
                            self.record_policy(
                                record,
                                Some(name),
                                via,
                                j.facts,
                                Action::Log,
                                j.events,
                            );
                        }
                        verdict
                    }
                    _ => self.decide(j, None),
                }
            }
            Seen::NoName => self.decide(j, None),
            Seen::QuicUnreadable => self.quic_unreadable(j),
            Seen::Address(address, via) => {
                // Counted apart: an address is not a name seen (`inspected`).
                bump(&self.counters.address_literals);
                match self.match_addr(address, j.facts) {
                    Some(hit) => {
                        let literal = address.to_string();
                        self.settle(j, Some(hit), Some(&literal), via)
                    }
                    None => self.decide(j, None),
                }
            }
            Seen::Malformed(layer) => {
                self.counters.parse_error(layer);
                self.decide(j, None)
            }
            Seen::NeedMore if j.flow.data_packets >= self.engine.config.max_pending_packets => {
                bump(&self.counters.pending_limit_hits);
                self.decide(j, None)
            }
            Seen::NeedMore => Verdict::PENDING,
        }
    }

    /// Decides a flow by its own name if a rule matches it; `None` when none does.
    pub(super) fn decide_by_name(
        &self,
        j: &mut Judging<'_, '_>,
        name: Name,
        via: Via,
    ) -> Option<Verdict> {
        let hit = self.match_name(name.as_bytes(), j.facts)?;
        Some(self.settle(j, Some(hit), Some(name.as_str()), via))
    }

    /// Decides a flow: by its own name when it has one, else by a learned name, then CIDR.
    pub(super) fn decide(&self, j: &mut Judging<'_, '_>, own_name: Option<(Name, Via)>) -> Verdict {
        if let Some((name, via)) = own_name {
            if let Some(verdict) = self.decide_by_name(j, name, via) {
                return verdict;
            }
        } else if let Some(Some(verdict)) =
            self.engine
                .learned
                .with_name(j.facts.server, j.facts.time, |learned| {
                    let hit = self.match_name(learned.as_bytes(), j.facts)?;
                    Some(self.settle(j, Some(hit), Some(learned), Via::Learned))
                })
        {
            return verdict;
        }
        let hit = self.match_addr(j.facts.server, j.facts);
        self.settle(j, hit, None, Via::Cidr)
    }

    /// Caches the verdict for `hit` in the flow and records the match.
    pub(super) fn settle(
        &self,
        j: &mut Judging<'_, '_>,
        hit: Option<Hit>,
        name: Option<&str>,
        via: Via,
    ) -> Verdict {
        let verdict = match hit {
            Some(hit) => self.record(hit, name, via, j.facts, j.events),
            None => PacketAction::Accept,
        };
        finalize(j.flow, verdict)
    }

    /// Records a match and returns what to do with the packet.
    pub(super) fn record(
        &self,
        hit: Hit,
        name: Option<&str>,
        via: Via,
        facts: Facts,
        events: &mut Vec<FlowEvent>,
    ) -> PacketAction {
        let Some(rule) = self.rules.rule(hit.rule) else {
            return PacketAction::Accept;
        };
        let applied = self.applied(rule.action, facts);
        let counter = hit.rule as usize * self.groups.len() + usize::from(facts.group);
        if let Some(hits) = self.hits.get(counter) {
            bump(hits);
        }
        if rule.action.blocks() {
            let counters = self.counters;
            match via {
                Via::Quic => counters.bypass(Bypass::Quic),
                Via::Learned => counters.bypass(Bypass::LearnedAddress),
                _ => {}
            }
            if rule.category.as_deref() == Some(DOH_CATEGORY) {
                counters.bypass(Bypass::Doh);
            }
        }
        let group = self.group_name(facts);
        let mut event = facts.event(
            name,
            via,
            &rule.id,
            &rule.vendor,
            (rule.action, applied),
            group,
        );
        event.profile = rule.profile.as_ref().map(|p| Arc::clone(&p.name));
        events.push(event);
        action_for(applied)
    }

    /// Records a flow with real ECH that the ECH policy logs or blocks.
    pub(super) fn record_policy(
        &self,
        record: &PolicyRecord,
        name: Option<Name>,
        via: Via,
        facts: Facts,
        applied: Action,
        events: &mut Vec<FlowEvent>,
    ) {
        if let Some(hits) = record.hits.get(usize::from(facts.group)) {
            bump(hits);
        }
        events.push(facts.event(
            name.as_ref().map(Name::as_str),
            via,
            &record.rule,
            &record.vendor,
            (record.action, applied),
            self.group_name(facts),
        ));
    }

    /// The policy of the flow's client group; the default group's if the groups changed
    /// under the flow.
    fn group(&self, facts: Facts) -> Option<&GroupPolicy> {
        self.groups
            .get(usize::from(facts.group))
            .or_else(|| self.groups.first())
    }

    fn group_name(&self, facts: Facts) -> Arc<str> {
        self.group(facts)
            .map_or_else(|| Arc::from(DEFAULT_GROUP), |g| Arc::clone(&g.name))
    }

    /// The service profiles on for the flow's client.
    fn profiles(&self, facts: Facts) -> Profiles {
        self.group(facts).map_or(Profiles::NONE, |g| g.profiles)
    }

    /// The rule for a name on this flow, with its client's profiles.
    pub(super) fn match_name(&self, name: &[u8], facts: Facts) -> Option<Hit> {
        self.rules.match_name_with(
            name,
            facts.server_port,
            facts.protocol,
            self.profiles(facts),
        )
    }

    /// The CIDR rule for an address on this flow, with its client's profiles.
    pub(super) fn match_addr(&self, addr: IpAddr, facts: Facts) -> Option<Hit> {
        self.rules.match_addr_with(
            addr,
            facts.server_port,
            facts.protocol,
            self.profiles(facts),
        )
    }

    /// What is done for a rule's action: the action itself, or `log` when the client's
    /// group (or the whole gateway) is in dry run.
    pub(super) fn applied(&self, action: Action, facts: Facts) -> Action {
        let enforce = self
            .group(facts)
            .map_or(self.engine.config.enforce, |g| g.enforce);
        applied_action(action, enforce)
    }

    /// The packet action for a hit, without recording it.
    pub(super) fn action_of(&self, hit: Option<Hit>, facts: Facts) -> PacketAction {
        hit.and_then(|h| self.rules.rule(h.rule))
            .map_or(PacketAction::Accept, |rule| {
                action_for(self.applied(rule.action, facts))
            })
    }

    /// A packet of a new flow when the flow table is full: judged on its own bytes only.
    pub(super) fn stateless(
        &mut self,
        packet: &Packet<'_>,
        time: Duration,
        is_dns: bool,
        events: &mut Vec<FlowEvent>,
    ) -> Verdict {
        let from_client = src_is_client(packet);
        let facts = self.orient(packet, from_client, time, time.as_secs());
        let mut scratch_flow = FlowState::new(true, facts.now);
        let mut quiet = Vec::new();
        let mut j = Judging {
            flow: &mut scratch_flow,
            packet,
            from_client,
            facts,
            events,
        };
        let action = if is_dns {
            self.dns_packet(&mut j).action
        } else {
            let seen = if packet.payload.is_empty() || !from_client {
                Seen::NeedMore
            } else {
                scan_first_flight(packet.payload, &mut self.scratch)
            };
            match seen {
                Seen::Name(name, via) => self.decide(&mut j, Some((name, via))).action,
                _ => {
                    // No name in this packet: address-based rules still apply, silently.
                    j.events = &mut quiet;
                    self.decide(&mut j, None).action
                }
            }
        };
        Verdict {
            action,
            flow: FlowStatus::Untracked,
        }
    }
}

impl Facts {
    /// The event of a match on this flow: the rule's action and what was done.
    pub(super) fn event(
        &self,
        name: Option<&str>,
        via: Via,
        rule: &Arc<str>,
        vendor: &Arc<str>,
        (action, applied): (Action, Action),
        group: Arc<str>,
    ) -> FlowEvent {
        FlowEvent {
            time: self.time,
            client: self.client,
            client_port: self.client_port,
            server: self.server,
            server_port: self.server_port,
            protocol: self.protocol,
            name: name.map(str::to_string),
            via,
            rule: Arc::clone(rule),
            vendor: Arc::clone(vendor),
            action,
            applied,
            group,
            profile: None,
        }
    }
}

impl Worker<'_> {
    /// The packet's facts seen from the flow's client, with the client's group.
    pub(super) fn orient(
        &self,
        packet: &Packet<'_>,
        from_client: bool,
        time: Duration,
        now: u64,
    ) -> Facts {
        let (client, client_port, server, server_port) = if from_client {
            (packet.src, packet.src_port, packet.dst, packet.dst_port)
        } else {
            (packet.dst, packet.dst_port, packet.src, packet.src_port)
        };
        Facts {
            client,
            client_port,
            server,
            server_port,
            protocol: packet.protocol,
            time,
            now,
            group: self.engine.clients.group_of(client),
        }
    }
}

pub(super) fn action_for(applied: Action) -> PacketAction {
    match applied {
        Action::Drop => PacketAction::Drop,
        Action::Reject => PacketAction::Reject,
        Action::Log | Action::Allow => PacketAction::Accept,
    }
}

pub(super) fn worse(a: PacketAction, b: PacketAction) -> PacketAction {
    let rank = |action| match action {
        PacketAction::Accept => 0,
        PacketAction::Reject => 1,
        PacketAction::Drop => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A cheap tag of a name (FNV-1a), to recognise a retransmitted DNS query.
pub(super) fn name_tag(name: &Name) -> u64 {
    tag_of(name.as_bytes())
}

/// [`name_tag`] of a name's bytes.
pub(super) fn tag_of(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

/// What is done for a rule's action: the action itself, or `log` for a blocking rule in dry run.
pub(super) fn applied_action(action: Action, enforce: bool) -> Action {
    if action.blocks() && !enforce {
        Action::Log
    } else {
        action
    }
}

impl Active {
    pub(super) fn new(
        rules: impl Into<Arc<RuleSet>>,
        clients: &ClientGroups,
        counts: &FlowCounts,
        enforce: bool,
    ) -> Self {
        let rules: Arc<RuleSet> = rules.into();
        let groups: Arc<[GroupPolicy]> = clients.resolve(&rules, enforce).into();
        let hits = rules
            .rules()
            .iter()
            .flat_map(|rule| {
                groups.iter().map(|group| {
                    counts.handle(FlowSeries {
                        vendor: Arc::clone(&rule.vendor),
                        rule: Arc::clone(&rule.id),
                        action: applied_action(rule.action, group.enforce),
                        group: Arc::clone(&group.name),
                    })
                })
            })
            .collect();
        Self {
            rules,
            groups,
            hits,
        }
    }
}

impl Policy {
    /// The action the policy stands for in events and counters.
    pub fn action(self) -> Action {
        match self {
            EchPolicy::Allow => Action::Allow,
            EchPolicy::Log => Action::Log,
            EchPolicy::Drop => Action::Drop,
        }
    }
}

/// The rule and vendor a policy records its flows under, and their counter.
pub(super) struct PolicyRecord {
    pub(super) rule: Arc<str>,
    pub(super) vendor: Arc<str>,
    pub(super) action: Action,
    /// One counter per client group, in group order.
    pub(super) hits: Vec<Arc<AtomicU64>>,
}

impl PolicyRecord {
    pub(super) fn new(
        rule: &str,
        policy: Policy,
        counts: &FlowCounts,
        groups: &[GroupPolicy],
    ) -> Self {
        let rule: Arc<str> = rule.into();
        let vendor: Arc<str> = POLICY_VENDOR.into();
        let action = policy.action();
        let hits = groups
            .iter()
            .map(|group| {
                counts.handle(FlowSeries {
                    vendor: Arc::clone(&vendor),
                    rule: Arc::clone(&rule),
                    action: applied_action(action, group.enforce),
                    group: Arc::clone(&group.name),
                })
            })
            .collect();
        Self {
            rule,
            vendor,
            action,
            hits,
        }
    }
}
