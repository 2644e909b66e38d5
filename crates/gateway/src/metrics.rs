//! Prometheus metrics: the metric set of the design, rendered in the text exposition format
//! for `/metrics` and `telestrip pcap --metrics`.
//!
//! Each layer defines its own metrics where it counts them (a [`Family`] next to the
//! atomics it reads) and reports them through [`MetricSink`] when scraped: the engine
//! (`Engine::export_metrics`: its counters, matched flows, flow table, learned addresses),
//! the sources (`SourceStats::export_metrics`) and the audit writer
//! (`AuditStats::export_metrics`). [`Metrics::render`] registers each family the first time
//! it is reported and copies the values in; packet threads never touch this module. Defined
//! here are only what the daemon itself sets: the ruleset in force, reloads, how it runs,
//! and the verdict latency histogram, observed on the packet path through a handle
//! resolved once.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::rules::RuleSet;
use crate::stats::{Family, MetricSink};

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
    /// This gateway and its site (a live daemon; none for an offline audit).
    pub gateway: Option<String>,
    pub site: Option<String>,
}

/// Every metric telestrip exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    ruleset_info: IntGaugeVec,
    ruleset_rules: IntGauge,
    ruleset_names: IntGauge,
    reloads: IntCounterVec,
    last_reload_success: IntGauge,
    pack: PackGauges,
    /// Time from a packet's arrival in user space to its verdict.
    pub verdict_latency: Histogram,
    /// The families the layers reported, registered on first report. The lock also
    /// serialises scrapes: each copies the values in, then encodes.
    reported: Mutex<HashMap<&'static str, Reported>>,
}

/// A family a layer reports, as registered.
/// Signed rule packs (`rules_update:`): what is in force and how the updates fare, labelled
/// with the update source.
struct PackGauges {
    version: IntGaugeVec,
    expiry: IntGaugeVec,
    generation: IntGaugeVec,
    last_attempt: IntGaugeVec,
    last_success: IntGaugeVec,
    failures: IntGaugeVec,
}

enum Reported {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
}

/// The sink one scrape's reports go into.
struct Scrape<'m> {
    registry: &'m Registry,
    reported: &'m mut HashMap<&'static str, Reported>,
}

impl Scrape<'_> {
    /// The registered family, registering it on its first report. `None` only for a family
    /// that cannot be registered (a name used twice, a bad name): a programming error that
    /// the metrics tests catch; it must not stop a scrape.
    fn family(&mut self, family: &'static Family, counter: bool) -> Option<&Reported> {
        if !self.reported.contains_key(family.name) {
            let opts = Opts::new(family.name, family.help);
            let reported = if counter {
                let vec = IntCounterVec::new(opts, family.labels).ok()?;
                self.registry.register(Box::new(vec.clone())).ok()?;
                Reported::Counter(vec)
            } else {
                let vec = IntGaugeVec::new(opts, family.labels).ok()?;
                self.registry.register(Box::new(vec.clone())).ok()?;
                Reported::Gauge(vec)
            };
            self.reported.insert(family.name, reported);
        }
        self.reported.get(family.name)
    }
}

impl MetricSink for Scrape<'_> {
    fn counter(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        if let Some(Reported::Counter(vec)) = self.family(family, true) {
            if let Ok(counter) = vec.get_metric_with_label_values(labels) {
                follow(&counter, value);
            }
        }
    }

    fn gauge(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        if let Some(Reported::Gauge(vec)) = self.family(family, false) {
            if let Ok(gauge) = vec.get_metric_with_label_values(labels) {
                gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }
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
            pack: PackGauges {
                version: gauge_vec(
                    "telestrip_rules_version",
                    "Ruleset version of the signed pack in force (0: rules not from a pack).",
                    &["source"],
                )?,
                expiry: gauge_vec(
                    "telestrip_rules_expiry_timestamp_seconds",
                    "When the manifest of the signed pack in force expires (Unix time).",
                    &["source"],
                )?,
                generation: gauge_vec(
                    "telestrip_rules_generation",
                    "Local generation number of the signed pack in force.",
                    &["source"],
                )?,
                last_attempt: gauge_vec(
                    "telestrip_rules_update_last_attempt_timestamp_seconds",
                    "When `telestrip rules update` last ran (Unix time).",
                    &["source"],
                )?,
                last_success: gauge_vec(
                    "telestrip_rules_update_last_success_timestamp_seconds",
                    "When `telestrip rules update` last reached its source and accepted a pack or found nothing new (Unix time).",
                    &["source"],
                )?,
                failures: gauge_vec(
                    "telestrip_rules_update_consecutive_failures",
                    "Runs of `telestrip rules update` in a row that failed or refused a pack.",
                    &["source"],
                )?,
            },
            verdict_latency,
            reported: Mutex::new(HashMap::new()),
            registry: registry.clone(),
        };
        let build = gauge_vec(
            "telestrip_build_info",
            "telestrip's version (value 1).",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        if let Some(gateway) = &run.gateway {
            // The gateway's identity as the daemon knows it; the other series get their
            // gateway and site labels from Prometheus' target labels.
            let identity = gauge_vec(
                "telestrip_gateway_info",
                "This gateway's name and site as its configuration gives them (value 1).",
                &["gateway", "site"],
            )?;
            identity
                .with_label_values(&[gateway.as_str(), run.site.as_deref().unwrap_or("")])
                .set(1);
        }
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
        // Series that alerts and dashboards query exist from the start, at zero (the
        // layers report all of theirs on every scrape).
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        metrics.last_reload_success.set(1);
        Ok(metrics)
    }

    /// Shows `rules` as the ruleset in force.
    /// The signed pack in force: its version, generation and expiry (all 0 when the rules
    /// in force are not from a pack, e.g. before the first update).
    pub fn set_pack(&self, source: &str, version: u64, generation: u64, expires_unix: u64) {
        let set = |vec: &IntGaugeVec, value: u64| {
            vec.with_label_values(&[source])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.pack.version, version);
        set(&self.pack.generation, generation);
        set(&self.pack.expiry, expires_unix);
    }

    /// How `rules update` fares, from its state file.
    pub fn set_update_state(&self, source: &str, state: &crate::rulepack::UpdateState) {
        let set = |vec: &IntGaugeVec, value: u64| {
            vec.with_label_values(&[source])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.pack.last_attempt, state.last_attempt);
        set(&self.pack.last_success, state.last_success);
        set(&self.pack.failures, u64::from(state.consecutive_failures));
    }

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

    /// Lets `export` report the layers' metrics (e.g. `engine.export_metrics(sink)`), then
    /// encodes every metric in the text format.
    pub fn render(&self, export: impl FnOnce(&mut dyn MetricSink)) -> String {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        export(&mut Scrape {
            registry: &self.registry,
            reported: &mut reported,
        });
        let mut out = Vec::new();
        // Encoding a gathered registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    const PROBES: Family = Family {
        name: "telestrip_test_probes_total",
        help: "Probes.",
        labels: &["kind"],
    };
    const DEPTH: Family = Family {
        name: "telestrip_test_depth",
        help: "Depth.",
        labels: &[],
    };

    fn metrics() -> Metrics {
        let run = RunInfo {
            mode: "pcap",
            fail: "none",
            enforce: true,
            strip_ech: false,
            gateway: None,
            site: None,
        };
        Metrics::new(&run).unwrap()
    }

    #[test]
    fn reported_families_are_registered_once_and_counters_never_go_down() {
        let metrics = metrics();
        let first = metrics.render(|sink| {
            sink.counter(&PROBES, &["a"], 5);
            sink.gauge(&DEPTH, &[], 7);
        });
        assert!(first.contains("# HELP telestrip_test_probes_total Probes."));
        assert!(first.contains("telestrip_test_probes_total{kind=\"a\"} 5"));
        assert!(first.contains("telestrip_test_depth 7"));
        // A source that went down (a restarted thread's copy): the counter holds, the
        // gauge follows; a series reported once stays.
        let second = metrics.render(|sink| {
            sink.counter(&PROBES, &["b"], 1);
            sink.counter(&PROBES, &["a"], 3);
            sink.gauge(&DEPTH, &[], 2);
        });
        assert!(second.contains("telestrip_test_probes_total{kind=\"a\"} 5"));
        assert!(second.contains("telestrip_test_probes_total{kind=\"b\"} 1"));
        assert!(second.contains("telestrip_test_depth 2"));
        assert_eq!(
            second.matches("# TYPE telestrip_test_probes_total").count(),
            1
        );
    }

    #[test]
    fn a_misdeclared_family_is_left_out_without_stopping_the_scrape() {
        let metrics = metrics();
        let text = metrics.render(|sink| {
            // Wrong number of label values, then a counter reported as a gauge.
            sink.counter(&PROBES, &["a", "extra"], 1);
            sink.gauge(&PROBES, &["a"], 1);
            sink.gauge(&DEPTH, &[], 4);
        });
        assert!(!text.contains("telestrip_test_probes_total{"));
        assert!(text.contains("telestrip_test_depth 4"));
    }
}
