//! `telestrip pcap`: runs the engine over capture files and reports matched flows.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{exit, load_rules, CommandError};
use crate::audit::AuditStats;
use crate::engine::{ChecksumSurvey, Engine, EngineConfig, FlowEvent};
use crate::metrics::{Metrics, RunInfo};
use crate::output::{self, Format};
use crate::source::pcap::{CaptureError, CaptureReader};
use crate::source::SourceStats;
use crate::stats::{Bypass, Evasion, Layer, Via};
use crate::wire::Tunnel;

pub struct PcapOptions {
    pub files: Vec<PathBuf>,
    /// `None`: the bundled rules.
    pub rules: Option<PathBuf>,
    pub format: Format,
    pub dry_run: bool,
    pub progress: bool,
    pub max_flows: usize,
    /// Packet threads (1: the reading thread judges every packet itself).
    pub threads: usize,
    /// Write Prometheus metrics of the run here (`-`: stdout, instead of the flow list).
    pub metrics: Option<PathBuf>,
    /// Largest share of packets (and of QUIC flows), in percent, that may go unjudged
    /// before the run is reported incomplete.
    pub max_unjudged: f64,
}

mod coverage;
mod threads;

use coverage::Coverage;

/// What reading all files produced.
#[derive(Default)]
struct Run {
    events: Vec<FlowEvent>,
    packets: u64,
    bytes: u64,
    elapsed: Duration,
    problems: Vec<String>,
    /// Packets of link types the reader does not read.
    skipped: u64,
}

pub fn run_pcap(options: &PcapOptions, out: &mut dyn Write) -> Result<u8, CommandError> {
    let (_, ruleset) = load_rules(options.rules.as_deref()).map_err(CommandError::Rules)?;
    let rules_label = options
        .rules
        .as_ref()
        .map_or_else(|| "bundled rules".to_string(), |p| p.display().to_string());
    let rules_stats = ruleset.stats();
    let version = ruleset.version().to_string();
    let engine = Engine::new(
        ruleset,
        EngineConfig {
            enforce: !options.dry_run,
            max_flows: options.max_flows,
            ..EngineConfig::default()
        },
    );
    let run = read_files(&engine, options);
    if run.packets == 0 && !run.problems.is_empty() {
        for problem in &run.problems {
            eprintln!("telestrip: {problem}");
        }
        return Ok(exit::ERROR);
    }
    // Standard output is line-buffered: a long flow list would be a write per line.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let out = &mut out;
    engine
        .counters
        .shard()
        .link_type_unsupported
        .fetch_add(run.skipped, Ordering::Relaxed);
    let coverage = Coverage::of(&engine, run.packets, options.max_unjudged);
    let incomplete = coverage.incomplete();
    let summary = output::summarise(&run.events);
    let counters = &engine.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let metrics_to_stdout = options.metrics.as_deref() == Some(Path::new("-"));
    if let Some(path) = &options.metrics {
        let text = metrics_text(&engine, !options.dry_run);
        if metrics_to_stdout {
            out.write_all(text.as_bytes())?;
        } else {
            std::fs::write(path, text).map_err(|e| {
                CommandError::Usage(format!("cannot write metrics to {}: {e}", path.display()))
            })?;
        }
    }
    match options.format {
        _ if metrics_to_stdout => {}
        Format::Table => {
            if incomplete {
                writeln!(out, "{}", coverage.banner())?;
                writeln!(out)?;
            }
            output::write_table(out, &run.events, &summary)?;
            writeln!(out)?;
            let seconds = run.elapsed.as_secs_f64().max(1e-9);
            writeln!(
                out,
                "Read {} packets ({} bytes) in {:.3} s, {:.0} packets/s, with {} ({} rules, {} names, version {}).",
                run.packets,
                run.bytes,
                seconds,
                run.packets as f64 / seconds,
                rules_label,
                rules_stats.rules,
                rules_stats.names,
                version
            )?;
            writeln!(
                out,
                "Packets: {} accepted, {} dropped, {} rejected. Flows: {} tracked, {} expired, {} not tracked (table full).",
                counters.sum(|c| &c.packets_accepted),
                counters.sum(|c| &c.packets_dropped),
                counters.sum(|c| &c.packets_rejected),
                counters.sum(|c| &c.flows_new),
                load(&engine.flows().expired),
                load(&engine.flows().refused),
            )?;
            let inspected =
                output::counts_text(Via::ALL.map(|v| (v.as_str(), counters.inspected_of(v))));
            let errors =
                output::counts_text(Layer::ALL.map(|l| (l.as_str(), counters.parse_errors_of(l))));
            let evasions =
                output::counts_text(Evasion::ALL.map(|k| (k.as_str(), counters.evasion_of(k))));
            writeln!(
                out,
                "Names seen: {inspected}. Parse errors: {errors}. Not IP: {}. IP fragments: {} ({} datagrams reassembled). Evasion attempts: {evasions}.",
                counters.sum(|c| &c.packets_not_ip),
                counters.sum(|c| &c.packets_fragmented),
                counters.sum(|c| &c.fragments_reassembled),
            )?;
            writeln!(
                out,
                "Bypass attempts: {}. ECH: {} flows with real ECH, {} with GREASE ECH.",
                output::counts_text(Bypass::ALL.map(|k| (k.as_str(), counters.bypass_of(k)))),
                counters.sum(|c| &c.ech_real),
                counters.sum(|c| &c.ech_grease),
            )?;
            writeln!(
                out,
                "Tunnels opened: {}. Address literals as names: {}. Not judged: {}.",
                output::counts_text(Tunnel::ALL.map(|t| (t.as_str(), counters.tunnel_of(t, true)))),
                counters.sum(|c| &c.address_literals),
                coverage.text(),
            )?;
            if incomplete {
                writeln!(out)?;
                writeln!(out, "{}", coverage.banner())?;
            }
            if options.dry_run {
                writeln!(
                    out,
                    "Dry run: blocking rules were reported as log, nothing was blocked."
                )?;
            }
        }
        Format::Json => {
            let report = JsonReport {
                flows: run.events.iter().map(output::FlowRow::of).collect(),
                summary: &summary,
                stats: json!({
                    "packets": run.packets,
                    "bytes": run.bytes,
                    "seconds": run.elapsed.as_secs_f64(),
                    "packets_accepted": counters.sum(|c| &c.packets_accepted),
                    "packets_dropped": counters.sum(|c| &c.packets_dropped),
                    "packets_rejected": counters.sum(|c| &c.packets_rejected),
                    "flows_tracked": counters.sum(|c| &c.flows_new),
                    "flows_not_tracked": load(&engine.flows().refused),
                    "flow_table_evictions": load(&engine.flows().expired),
                    "flow_table_entries": engine.flows().len(),
                    "inspected": Via::ALL.iter().map(|v| (v.as_str(), counters.inspected_of(*v))).collect::<std::collections::BTreeMap<_, _>>(),
                    "parse_errors": Layer::ALL.iter().map(|l| (l.as_str(), counters.parse_errors_of(*l))).collect::<std::collections::BTreeMap<_, _>>(),
                    "packets_not_ip": counters.sum(|c| &c.packets_not_ip),
                    "packets_fragmented": counters.sum(|c| &c.packets_fragmented),
                    "datagrams_reassembled": counters.sum(|c| &c.fragments_reassembled),
                    "evasion_attempts": Evasion::ALL.iter().map(|k| (k.as_str(), counters.evasion_of(*k))).collect::<std::collections::BTreeMap<_, _>>(),
                    "bypass_attempts": Bypass::ALL.iter().map(|k| (k.as_str(), counters.bypass_of(*k))).collect::<std::collections::BTreeMap<_, _>>(),
                    "ech_flows": { "real": counters.sum(|c| &c.ech_real), "grease": counters.sum(|c| &c.ech_grease) },
                    "tunnels_opened": Tunnel::ALL.iter().map(|t| (t.as_str(), counters.tunnel_of(*t, true))).collect::<std::collections::BTreeMap<_, _>>(),
                    "address_literals": counters.sum(|c| &c.address_literals),
                }),
                coverage: coverage.json(),
                incomplete,
                ruleset: json!({ "source": rules_label, "version": version, "rules": rules_stats.rules, "names": rules_stats.names }),
                dry_run: options.dry_run,
                problems: &run.problems,
            };
            serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Csv => {
            output::write_csv(out, &run.events)?;
            if incomplete {
                // A comment line (pandas: comment='#') so no reader of the file misses it.
                writeln!(out, "# {}", coverage.banner())?;
            }
        }
    }
    out.flush()?;
    for problem in &run.problems {
        eprintln!("telestrip: warning: {problem}");
    }
    if incomplete {
        eprintln!("telestrip: warning: {}", coverage.banner());
    }
    // Telemetry found is the stronger finding; otherwise a damaged input must not pass as
    // clean.
    Ok(if run.events.iter().any(|e| e.action.blocks()) {
        exit::FOUND
    } else if !run.problems.is_empty() {
        exit::ERROR
    } else if incomplete {
        exit::INCOMPLETE
    } else {
        exit::OK
    })
}

/// `pcap --format json`. The flows are written straight from their rows, not through a
/// `serde_json::Value` tree (for the 3,204 matched flows of the benchmark mix the report took
/// 11-13 ms that way, 5-6 ms this way); the small parts are values.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    flows: Vec<output::FlowRow>,
    summary: &'a [output::RuleSummary],
    stats: serde_json::Value,
    coverage: serde_json::Value,
    incomplete: bool,
    ruleset: serde_json::Value,
    dry_run: bool,
    problems: &'a [String],
}

/// The run's counters in the Prometheus text format (for node_exporter's textfile collector,
/// or to compare an offline audit with a live gateway's metrics).
fn metrics_text(engine: &Engine, enforce: bool) -> String {
    let run = RunInfo {
        mode: "pcap",
        fail: "none",
        enforce,
        strip_ech: false,
        gateway: None,
        site: None,
    };
    match Metrics::new(&run) {
        Ok(metrics) => {
            metrics.set_ruleset(&engine.rules());
            // The sources' and audit log's families at zero too, as a live gateway shows
            // them before its first packet: one metric set for dashboards and alerts.
            metrics.render(|sink| {
                engine.export_metrics(sink);
                SourceStats::default().export_metrics(&[], sink);
                AuditStats::default().export_metrics(sink);
            })
        }
        Err(error) => format!("# metrics unavailable: {error}\n"),
    }
}

/// The flows of `files` that matched a rule of `rules`, and what could not be read.
pub(crate) fn matched_flows(
    rules: crate::rules::RuleSet,
    files: &[PathBuf],
) -> (Vec<FlowEvent>, Vec<String>) {
    let engine = Engine::new(rules, EngineConfig::default());
    let options = PcapOptions {
        files: files.to_vec(),
        rules: None,
        format: Format::Table,
        dry_run: false,
        progress: false,
        max_flows: EngineConfig::default().max_flows,
        threads: 1,
        metrics: None,
        max_unjudged: 100.0,
    };
    let run = read_files(&engine, &options);
    (run.events, run.problems)
}

fn read_files(engine: &Engine, options: &PcapOptions) -> Run {
    if options.threads > 1 {
        return threads::read_files(engine, options);
    }
    let mut worker = engine.worker();
    if let Some(offloaded) = offloaded_sources(&options.files) {
        worker.trust_capture_checksums(offloaded);
    }
    let mut run = Run::default();
    let started = Instant::now();
    let mut progress = Progress::new(options.progress);
    for path in &options.files {
        let Some(mut reader) = open_capture(path, &mut run) else {
            continue;
        };
        progress.start(&reader);
        while let Some(frame) = next_frame(&mut reader, path, &mut run) {
            run.bytes += frame.data.len() as u64;
            worker.process(frame.link, frame.data, frame.time, &mut run.events);
            run.packets += 1;
            if run.packets.is_multiple_of(65_536) {
                worker.refresh_rules();
                progress.report(path, run.packets, run.events.len());
            }
        }
        progress.finish();
        run.note_skipped(path, &reader);
    }
    run.elapsed = started.elapsed();
    run
}

/// The sources whose checksums are mostly wrong in the first packets of any of the captures
/// (taken with checksum offload, or edited): their wrong checksums mean nothing, while a
/// wrong checksum from any other source marks a decoy the receiver dropped. `None` when a
/// capture cannot be read twice (a pipe): then no checksum is trusted, as before surveys.
pub(super) fn offloaded_sources(files: &[PathBuf]) -> Option<Arc<HashSet<IpAddr>>> {
    let readable_twice = files
        .iter()
        .all(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file()));
    if !readable_twice {
        return None;
    }
    let mut offloaded = HashSet::new();
    for path in files {
        let Ok(mut reader) = CaptureReader::open(path) else {
            continue;
        };
        let mut survey = ChecksumSurvey::default();
        while let Some(Ok(frame)) = reader.next_frame() {
            if !survey.observe(frame.link, frame.data) {
                break;
            }
        }
        offloaded.extend(survey.untrusted());
    }
    Some(Arc::new(offloaded))
}

/// The next frame of `reader`; `None` at the end, or after a read error (noted in `run`).
fn next_frame<'r>(
    reader: &'r mut CaptureReader,
    path: &Path,
    run: &mut Run,
) -> Option<crate::source::pcap::Frame<'r>> {
    match reader.next_frame()? {
        Ok(frame) => Some(frame),
        Err(error) => {
            run.note_read_error(path, error);
            None
        }
    }
}

fn open_capture(path: &Path, run: &mut Run) -> Option<CaptureReader> {
    match CaptureReader::open(path) {
        Ok(reader) => Some(reader),
        Err(error) => {
            run.problems.push(format!("{}: {error}", path.display()));
            None
        }
    }
}

impl Run {
    fn note_read_error(&mut self, path: &Path, error: CaptureError) {
        let note = match error {
            CaptureError::Corrupt { .. } => " (packets before it were read)",
            _ => "",
        };
        self.problems
            .push(format!("{}: {error}{note}", path.display()));
    }

    fn note_skipped(&mut self, path: &Path, reader: &CaptureReader) {
        self.skipped += reader.skipped();
        if reader.skipped() > 0 {
            self.problems.push(format!(
                "{}: skipped {} packets of unsupported link types {:?}",
                path.display(),
                reader.skipped(),
                reader.skipped_link_types()
            ));
        }
    }
}

/// Progress lines on stderr: every second on a terminal, every 10 s otherwise.
struct Progress {
    enabled: bool,
    interactive: bool,
    size: u64,
    read_so_far: std::sync::Arc<std::sync::atomic::AtomicU64>,
    next_report: Instant,
    reported: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            interactive: enabled && std::io::stderr().is_terminal(),
            size: 0,
            read_so_far: Default::default(),
            next_report: Instant::now(),
            reported: false,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(if self.interactive { 1 } else { 10 })
    }

    fn start(&mut self, reader: &CaptureReader) {
        (self.size, self.read_so_far) = reader.progress();
        self.next_report = Instant::now() + self.interval();
        self.reported = false;
    }

    fn report(&mut self, path: &Path, packets: u64, matched: usize) {
        if !self.enabled || Instant::now() < self.next_report {
            return;
        }
        let done = self.read_so_far.load(Ordering::Relaxed);
        let percent = (done * 100).checked_div(self.size).unwrap_or(0);
        let line = format!(
            "{}: {percent}% ({packets} packets, {matched} matched flows)",
            path.display()
        );
        if self.interactive {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        self.reported = true;
        self.next_report = Instant::now() + self.interval();
    }

    fn finish(&mut self) {
        if self.reported && self.interactive {
            eprintln!();
        }
    }
}
