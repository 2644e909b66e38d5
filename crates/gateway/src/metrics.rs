//! Prometheus metrics: the metric set of the design, rendered in the text exposition format
//! for `/metrics` and `telestrip pcap --metrics`.
//!
//! Packet threads never touch this module: they bump plain atomics (`stats::Counters`, the
//! per-rule handles of `stats::FlowCounts`, `SourceStats`), and a scrape copies those into
//! the registry. Only the verdict latency histogram is observed on the packet path, through
//! a handle resolved once.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::audit::AuditStats;
use crate::engine::Engine;
use crate::rules::RuleSet;
use crate::source::nfqueue::KernelQueue;
use crate::source::SourceStats;
use crate::stats::{Bypass, Evasion, Layer, Unjudged, Via};
use crate::wire::Tunnel;

/// Buckets of the verdict latency histogram, in seconds: NFQUEUE round trips are tens of
/// microseconds, a stuck thread shows up in the last buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 100e-3,
];

/// How the daemon runs, shown as `telestrip_config_info` and `telestrip_enforcing`.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub mode: &'static str,
    pub fail: &'static str,
    pub enforce: bool,
    /// `strip_ech` of the configuration (inline only).
    pub strip_ech: bool,
}

/// Every metric telestrip exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    packets: IntCounterVec,
    packets_uninspected: IntCounterVec,
    flows: IntCounterVec,
    inspected: IntCounterVec,
    parse_errors: IntCounterVec,
    unjudged: IntCounterVec,
    tunnels: IntCounterVec,
    address_literals: IntCounter,
    undecided: IntCounterVec,
    dns_messages: IntCounter,
    bypass: IntCounterVec,
    evasion: IntCounterVec,
    ip_fragments: IntCounter,
    ip_reassembled: IntCounter,
    ech: IntCounterVec,
    flow_table_entries: IntGauge,
    flow_table_capacity: IntGauge,
    flow_table_evictions: IntCounter,
    flow_table_full: IntCounter,
    learned_addresses: IntGauge,
    ruleset_info: IntGaugeVec,
    ruleset_rules: IntGauge,
    ruleset_names: IntGauge,
    reloads: IntCounterVec,
    last_reload_success: IntGauge,
    /// Time from a packet's arrival in user space to its verdict.
    pub verdict_latency: Histogram,
    queue_packets: IntCounter,
    queue_batches: IntCounter,
    queue_errors: IntCounter,
    queue_kernel_dropped: IntCounterVec,
    queue_undelivered: IntCounterVec,
    queue_waiting: IntGaugeVec,
    injected: IntCounterVec,
    ech_answers: IntCounterVec,
    events: IntCounterVec,
    audit_records: IntCounterVec,
    /// Serialises scrapes: each copies the atomics into the registry, then encodes.
    scrape: Mutex<()>,
}

/// Counter that follows a monotonic source value (never goes down, even if the source did).
fn follow(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new(run: &RunInfo) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge_of = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        let verdict_latency = Histogram::with_opts(
            HistogramOpts::new(
                "telestrip_verdict_latency_seconds",
                "Time from a queued packet's arrival in telestrip to its verdict.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(verdict_latency.clone()))?;
        let metrics = Metrics {
            packets: counter_vec(
                "telestrip_packets_total",
                "Packets judged, by verdict.",
                &["verdict"],
            )?,
            packets_uninspected: counter_vec(
                "telestrip_packets_uninspected_total",
                "Packets passed without inspection: not IP, or IP fragments of datagrams given up before they were complete (reassembly caps or 30 s timeout; counted per datagram).",
                &["reason"],
            )?,
            flows: counter_vec(
                "telestrip_flows_total",
                "Flows (and DNS messages) matched by a rule, by what was done: the rule's action, or log for a blocking rule in dry run.",
                &["vendor", "rule", "action"],
            )?,
            inspected: counter_vec(
                "telestrip_inspected_flows_total",
                "Flows and DNS messages whose name was seen, by how.",
                &["via"],
            )?,
            parse_errors: counter_vec(
                "telestrip_parse_errors_total",
                "Malformed packets or messages, by layer.",
                &["layer"],
            )?,
            unjudged: counter_vec(
                "telestrip_unjudged_packets_total",
                "Packets telestrip could not judge, by reason: link, network or transport headers that did not parse, tunnels whose inside was not opened (link_type: offline only). What is not judged may carry telemetry.",
                &["reason"],
            )?,
            tunnels: counter_vec(
                "telestrip_tunnel_packets_total",
                "Tunnelled packets (ipip, gre, vxlan, gtpu), by whether the packet inside was taken out and judged (opened) or not.",
                &["tunnel", "result"],
            )?,
            address_literals: counter(
                "telestrip_address_literal_names_total",
                "Flows whose TLS SNI or HTTP Host was an IP address instead of a name; judged by CIDR rules on that address.",
            )?,
            undecided: counter_vec(
                "telestrip_flows_decided_without_name_total",
                "Flows decided without a name after too many client packets that brought no new in-order bytes (packet_limit); stream_cap counts client segments dropped because they did not fit the reassembly buffer (the flow stays pending).",
                &["reason"],
            )?,
            dns_messages: counter("telestrip_dns_messages_total", "DNS messages inspected.")?,
            ech: counter_vec(
                "telestrip_ech_flows_total",
                "ClientHellos with an ECH extension: real (a config the server announced in DNS) or GREASE (browsers send it on every connection).",
                &["kind"],
            )?,
            bypass: counter_vec(
                "telestrip_bypass_attempts_total",
                "Attempts to get around name-based filtering, by kind: telemetry over QUIC, ClientHellos with ECH, DoH resolvers, SVCB/HTTPS queries for blocked names, blocked flows known only by a learned address.",
                &["kind"],
            )?,
            evasion: counter_vec(
                "telestrip_evasion_attempts_total",
                "Packets built to show a filter something else than what the server acts on, by kind: decoy segments (low_ttl, bad_checksum, md5_option, out_of_window) never read, overlapping segments with different bytes (both versions judged), several names in one request (every one judged), overlapping IP fragments (datagram discarded).",
                &["kind"],
            )?,
            ip_fragments: counter("telestrip_ip_fragments_total", "IP fragments seen.")?,
            ip_reassembled: counter(
                "telestrip_ip_datagrams_reassembled_total",
                "IP datagrams reassembled from fragments and inspected.",
            )?,
            flow_table_entries: gauge_of(
                "telestrip_flow_table_entries",
                "Flows tracked now.",
            )?,
            flow_table_capacity: gauge_of(
                "telestrip_flow_table_capacity",
                "Configured maximum of tracked flows.",
            )?,
            flow_table_evictions: counter(
                "telestrip_flow_table_evictions_total",
                "Flows removed from the table: after their idle timeout, or to make room in a full table (connections that never sent data, decided UDP flows).",
            )?,
            flow_table_full: counter(
                "telestrip_flow_table_full_total",
                "New flows not tracked because the table was full (judged packet by packet).",
            )?,
            learned_addresses: gauge_of(
                "telestrip_learned_addresses",
                "Addresses learned from DNS answers for matched names.",
            )?,
            ruleset_info: gauge_vec(
                "telestrip_ruleset_info",
                "The ruleset in force (value 1).",
                &["version", "sha256"],
            )?,
            ruleset_rules: gauge_of("telestrip_ruleset_rules", "Rules in the ruleset in force.")?,
            ruleset_names: gauge_of(
                "telestrip_ruleset_names",
                "Domain entries in the ruleset in force.",
            )?,
            reloads: counter_vec(
                "telestrip_rules_reload_total",
                "Rule reloads, by result (failure keeps the previous ruleset).",
                &["result"],
            )?,
            last_reload_success: gauge_of(
                "telestrip_rules_last_reload_successful",
                "1 when the last reload succeeded (or none happened yet), 0 when it failed.",
            )?,
            verdict_latency,
            queue_packets: counter(
                "telestrip_nfqueue_packets_total",
                "Packets received from NFQUEUE.",
            )?,
            queue_batches: counter(
                "telestrip_nfqueue_verdict_batches_total",
                "System calls that sent verdicts back to NFQUEUE (packets / batches is the mean batch size).",
            )?,
            queue_errors: counter(
                "telestrip_nfqueue_errors_total",
                "Errors receiving packets or sending verdicts.",
            )?,
            queue_kernel_dropped: counter_vec(
                "telestrip_nfqueue_kernel_dropped_total",
                "Packets the kernel could not queue to telestrip (the fail mode applied), by queue and reason.",
                &["queue", "reason"],
            )?,
            queue_undelivered: counter_vec(
                "telestrip_nfqueue_undelivered_packets_total",
                "Packets the kernel queued but could not hand to telestrip (socket buffer full), by queue, counted when the next packet arrives: with fail-open they passed unjudged, with fail-closed they were dropped.",
                &["queue"],
            )?,
            queue_waiting: gauge_vec(
                "telestrip_nfqueue_waiting_packets",
                "Packets waiting in the kernel for a verdict, by queue.",
                &["queue"],
            )?,
            injected: counter_vec(
                "telestrip_injected_packets_total",
                "Packets telestrip sent itself: NXDOMAIN answers for rejected DNS queries, TCP resets in passive mode.",
                &["kind"],
            )?,
            ech_answers: counter_vec(
                "telestrip_dns_ech_answers_total",
                "DNS answers with an ech parameter (keys for encrypted ClientHellos) that passed an inline gateway with strip_ech on: stripped (over UDP, passed on without it), hidden (over TCP, moved under a private-use key that clients ignore, the message keeping its length) or kept (passed unchanged: IP fragments, offloaded segments, messages that cannot be rewritten safely; a DNS-over-TCP message spread over several segments passes uncounted).",
                &["result"],
            )?,
            events: counter_vec(
                "telestrip_match_events_total",
                "Matched-flow events for the log writer: handed over, or dropped because the writer fell behind.",
                &["result"],
            )?,
            audit_records: counter_vec(
                "telestrip_audit_records_total",
                "Audit log records, by result.",
                &["result"],
            )?,
            scrape: Mutex::new(()),
            registry: registry.clone(),
        };
        let build = gauge_vec(
            "telestrip_build_info",
            "telestrip's version (value 1).",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let config = gauge_vec(
            "telestrip_config_info",
            "How telestrip runs (value 1).",
            &["mode", "fail", "enforce"],
        )?;
        config
            .with_label_values(&[
                run.mode,
                run.fail,
                if run.enforce { "true" } else { "false" },
            ])
            .set(1);
        let enforcing = gauge_of(
            "telestrip_enforcing",
            "1 when blocking rules block, 0 in dry run (blocking rules only log).",
        )?;
        enforcing.set(i64::from(run.enforce));
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Series that alerts and dashboards query exist from the start, at zero.
        for verdict in ["accept", "drop", "reject"] {
            metrics.packets.with_label_values(&[verdict]);
        }
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        for result in ["sent", "dropped"] {
            metrics.events.with_label_values(&[result]);
        }
        for result in ["written", "failed"] {
            metrics.audit_records.with_label_values(&[result]);
        }
        metrics.last_reload_success.set(1);
        Ok(metrics)
    }

    /// Shows `rules` as the ruleset in force.
    pub fn set_ruleset(&self, rules: &RuleSet) {
        self.ruleset_info.reset();
        self.ruleset_info
            .with_label_values(&[rules.version(), rules.sha256()])
            .set(1);
        self.ruleset_rules.set(gauge(rules.stats().rules));
        self.ruleset_names.set(gauge(rules.stats().names));
    }

    /// Counts a reload; on success `rules` is the new ruleset in force.
    pub fn reloaded(&self, result: Result<&RuleSet, ()>) {
        match result {
            Ok(rules) => {
                self.reloads.with_label_values(&["success"]).inc();
                self.last_reload_success.set(1);
                self.set_ruleset(rules);
            }
            Err(()) => {
                self.reloads.with_label_values(&["failure"]).inc();
                self.last_reload_success.set(0);
            }
        }
    }

    /// Copies the engine's counters into the registry.
    pub fn update_engine(&self, engine: &Engine) {
        let c = &engine.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        for (verdict, value) in [
            ("accept", c.sum(|c| &c.packets_accepted)),
            ("drop", c.sum(|c| &c.packets_dropped)),
            ("reject", c.sum(|c| &c.packets_rejected)),
        ] {
            follow(&self.packets.with_label_values(&[verdict]), value);
        }
        for (reason, value) in [
            ("not_ip", c.sum(|c| &c.packets_not_ip)),
            ("fragment", c.sum(|c| &c.fragments_evicted)),
        ] {
            follow(
                &self.packets_uninspected.with_label_values(&[reason]),
                value,
            );
        }
        for via in Via::ALL {
            follow(
                &self.inspected.with_label_values(&[via.as_str()]),
                c.inspected_of(via),
            );
        }
        for layer in Layer::ALL {
            follow(
                &self.parse_errors.with_label_values(&[layer.as_str()]),
                c.parse_errors_of(layer),
            );
        }
        for reason in Unjudged::ALL {
            follow(
                &self.unjudged.with_label_values(&[reason.as_str()]),
                c.unjudged_of(reason),
            );
        }
        for tunnel in Tunnel::ALL {
            for (result, opened) in [("opened", true), ("unopened", false)] {
                follow(
                    &self.tunnels.with_label_values(&[tunnel.as_str(), result]),
                    c.tunnel_of(tunnel, opened),
                );
            }
        }
        follow(&self.address_literals, c.sum(|c| &c.address_literals));
        for (reason, value) in [
            ("stream_cap", c.sum(|c| &c.stream_cap_hits)),
            ("packet_limit", c.sum(|c| &c.pending_limit_hits)),
        ] {
            follow(&self.undecided.with_label_values(&[reason]), value);
        }
        follow(&self.dns_messages, c.sum(|c| &c.dns_messages));
        follow(
            &self.ech.with_label_values(&["real"]),
            c.sum(|c| &c.ech_real),
        );
        follow(
            &self.ech.with_label_values(&["grease"]),
            c.sum(|c| &c.ech_grease),
        );
        for kind in Evasion::ALL {
            follow(
                &self.evasion.with_label_values(&[kind.as_str()]),
                c.evasion_of(kind),
            );
        }
        follow(&self.ip_fragments, c.sum(|c| &c.packets_fragmented));
        follow(&self.ip_reassembled, c.sum(|c| &c.fragments_reassembled));
        for kind in Bypass::ALL {
            follow(
                &self.bypass.with_label_values(&[kind.as_str()]),
                c.bypass_of(kind),
            );
        }
        for (series, count) in engine.flow_counts.snapshot() {
            let labels = [&*series.vendor, &*series.rule, series.action.as_str()];
            follow(&self.flows.with_label_values(&labels), count);
        }
        let flows = engine.flows();
        self.flow_table_entries.set(gauge(flows.len()));
        self.flow_table_capacity.set(gauge(flows.max_flows()));
        follow(&self.flow_table_evictions, load(&flows.expired));
        follow(&self.flow_table_full, load(&flows.refused));
        self.learned_addresses.set(gauge(engine.learned().len()));
    }

    /// Copies the packet threads' counters and the kernel's queue counters into the registry.
    pub fn update_queues(&self, stats: &SourceStats, kernel: &[KernelQueue]) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        follow(&self.queue_packets, load(&stats.packets));
        follow(&self.queue_batches, load(&stats.batches));
        follow(&self.queue_errors, load(&stats.errors));
        follow(
            &self.injected.with_label_values(&["nxdomain"]),
            load(&stats.nxdomain_sent),
        );
        follow(
            &self.injected.with_label_values(&["tcp_reset"]),
            load(&stats.resets_sent),
        );
        follow(
            &self.ech_answers.with_label_values(&["stripped"]),
            load(&stats.ech_stripped),
        );
        follow(
            &self.ech_answers.with_label_values(&["hidden"]),
            load(&stats.ech_hidden),
        );
        follow(
            &self.ech_answers.with_label_values(&["kept"]),
            load(&stats.ech_kept),
        );
        follow(
            &self.events.with_label_values(&["sent"]),
            load(&stats.events_sent),
        );
        follow(
            &self.events.with_label_values(&["dropped"]),
            load(&stats.events_dropped),
        );
        let undelivered = stats.undelivered();
        for queue in kernel {
            let number = queue.queue.to_string();
            // A series per bound queue from the start: zero is evidence too.
            follow(
                &self.queue_undelivered.with_label_values(&[&number]),
                undelivered
                    .iter()
                    .find(|(q, _)| *q == queue.queue)
                    .map_or(0, |(_, n)| *n),
            );
            follow(
                &self
                    .queue_kernel_dropped
                    .with_label_values(&[number.as_str(), "queue_full"]),
                queue.queue_dropped,
            );
            follow(
                &self
                    .queue_kernel_dropped
                    .with_label_values(&[number.as_str(), "socket_full"]),
                queue.user_dropped,
            );
            self.queue_waiting
                .with_label_values(&[&number])
                .set(i64::try_from(queue.waiting).unwrap_or(i64::MAX));
        }
    }

    pub fn update_audit(&self, stats: &AuditStats) {
        follow(
            &self.audit_records.with_label_values(&["written"]),
            stats.written.load(Ordering::Relaxed),
        );
        follow(
            &self.audit_records.with_label_values(&["failed"]),
            stats.failed.load(Ordering::Relaxed),
        );
    }

    /// Runs `update` (copying counters in) and encodes every metric in the text format.
    pub fn render(&self, update: impl FnOnce(&Self)) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        update(self);
        let mut out = Vec::new();
        // Encoding a gathered registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
