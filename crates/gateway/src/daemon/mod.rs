//! `telestrip run`: the inline gateway. Loads the configuration and rules, binds one NFQUEUE
//! queue per configured queue number with a packet thread each (or captures passively),
//! starts the control-plane server and the log writer (JSON lines on stdout, the audit log),
//! reloads rules on SIGHUP and when the rule files change (keeping the old ones when the new
//! ones have errors) and stops on SIGTERM or SIGINT, printing its counters.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

mod privileges;
pub mod rule_source;
mod writer;

use crate::audit::{AuditEvent, AuditStats, AuditWriter, Pseudonymizer};
use crate::config::{Config, FailMode, Mode};
use crate::conntrack::{self, AnnounceStats, Conntrack};
use crate::engine::{Engine, EngineConfig, FlowEvent};
use crate::metrics::{Metrics, RunInfo};
use crate::pair::{self, PairState};
use crate::server::{self, ControlPlane, ReloadStatus};
use crate::shared::{self, SharedStats};
use crate::source::nfqueue::{self, QueueSettings};
use crate::source::passive;
use crate::source::SourceStats;

/// Matched-flow events buffered between packet threads and the log writer; when full,
/// events are dropped and counted, packets are never held up.
const EVENT_CHANNEL_CAPACITY: usize = 8192;

/// How long packets may wait in a queue with no packet handled before the watchdog acts.
const STUCK_AFTER: Duration = Duration::from_secs(3);
/// Exit code when the watchdog finds a stuck packet thread (the service manager restarts).
pub const EXIT_STUCK: i32 = 3;

/// Watches the kernel's queues: reports packets the kernel dropped, and exits the process
/// when packets wait while no packet thread makes progress, so systemd restarts telestrip
/// (the fail mode of the firewall rules covers the gap).
fn spawn_watchdog(queues: Vec<u16>, stats: Arc<SourceStats>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("telestrip-watchdog".into())
        .spawn(move || {
            let mut stall = Stall::new(stats.packets.load(Ordering::Relaxed));
            let mut dropped_reported = 0u64;
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let handled = stats.packets.load(Ordering::Relaxed);
                let kernel: Vec<_> = nfqueue::kernel_queues()
                    .into_iter()
                    .filter(|q| queues.contains(&q.queue))
                    .collect();
                let dropped: u64 = kernel.iter().map(|q| q.queue_dropped + q.user_dropped).sum();
                if dropped > dropped_reported {
                    crate::log_line!(Warning, "telestrip: warning: the kernel dropped {} queued packets so far (queue full or socket buffer full); the fail mode applied to them", dropped);
                    dropped_reported = dropped;
                }
                let waiting: u64 = kernel.iter().map(|q| q.waiting).sum();
                if stall.stuck(handled, waiting, Instant::now()) {
                    crate::log_line!(Critical,
                        "telestrip: watchdog: {waiting} packets waiting and none handled for {} s; exiting so the service manager restarts telestrip",
                        STUCK_AFTER.as_secs()
                    );
                    std::process::exit(EXIT_STUCK);
                }
                // systemd's WatchdogSec: alive only while packets do not wait unjudged.
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
        .map(|_| ())
}

/// Whether packet threads are stuck: packets waiting at every look, and none handled
/// between them, for [`STUCK_AFTER`]. The clock starts at the first look that finds
/// packets waiting without progress, not at the last packet handled: after a quiet spell,
/// a packet that has just arrived and waits for a moment is not a stall.
struct Stall {
    handled: u64,
    waiting_since: Option<Instant>,
}

impl Stall {
    fn new(handled: u64) -> Self {
        Self {
            handled,
            waiting_since: None,
        }
    }

    fn stuck(&mut self, handled: u64, waiting: u64, now: Instant) -> bool {
        let progressed = handled != self.handled;
        self.handled = handled;
        if waiting == 0 || progressed {
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert(now);
        now.duration_since(since) >= STUCK_AFTER
    }
}

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    privileges::limit_for_life(if config.mode == Mode::Passive {
        &[]
    } else {
        &[caps::Capability::CAP_NET_ADMIN]
    })?;
    let loaded = rule_source::load(&config)
        .map_err(|e| anyhow::anyhow!("the rules have errors, not starting:\n{e}"))?;
    for skipped in &loaded.skipped {
        crate::log_line!(Warning, "telestrip: warning: not using {skipped}");
    }
    let rules = loaded.set;
    let mut rules_origin = loaded.origin;
    crate::log_line!(
        Info,
        "telestrip: ruleset {} from {}: {} rules, {} names, {} CIDRs",
        rules.version(),
        rules_origin.describe(),
        rules.stats().rules,
        rules.stats().names,
        rules.stats().cidrs
    );
    let passive = config.mode == Mode::Passive;
    // Passive mode blocks nothing unless it may send resets: its matches are logged as such.
    let enforce = config.enforce && (!passive || config.passive_resets);
    warn_unknown_profiles(&config, &rules);
    let clients = config
        .client_groups(!passive || config.passive_resets)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = Arc::new(Engine::with_clients(
        Arc::new(rules),
        EngineConfig {
            enforce,
            max_flows: config.max_flows,
            ech_policy: config.ech,
            quic_unreadable: config.quic_unreadable,
            strip_ech: config.strip_ech,
            ..EngineConfig::default()
        },
        clients,
    ));
    let gateway = config.gateway_name();
    let run_info = RunInfo {
        mode: if passive { "passive" } else { "nfqueue" },
        fail: match config.fail {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        },
        enforce,
        strip_ech: config.strip_ech,
        gateway: Some(gateway.clone()),
        site: config.site.clone(),
    };
    let stats = Arc::new(SourceStats::default());
    let audit_stats = Arc::new(AuditStats::default());
    let (audit, pseudonymizer, heartbeat) = match &config.audit {
        Some(audit) => {
            let writer = AuditWriter::open(&audit.path)
                .with_context(|| format!("cannot open the audit log {}", audit.path.display()))?;
            let pseudonymizer = audit
                .pseudonymize_key_file
                .as_deref()
                .map(Pseudonymizer::from_file)
                .transpose()?;
            if let Some(p) = &pseudonymizer {
                if audit.compromised_key_epochs.iter().any(|e| e == p.epoch()) {
                    anyhow::bail!(
                        "the pseudonymisation key (epoch {}) is listed in audit.compromised_key_epochs: \
                         make a new key (head -c 32 /dev/urandom | base64 > KEYFILE), not starting",
                        p.epoch()
                    );
                }
            }
            let (seq, _) = writer.head();
            crate::log_line!(
                Info,
                "telestrip: audit log {} (chain continues after record {seq}){}",
                audit.path.display(),
                pseudonymizer.as_ref().map_or_else(String::new, |p| format!(
                    ", client addresses pseudonymised (key epoch {})",
                    p.epoch()
                ))
            );
            (
                Some(writer),
                pseudonymizer,
                Duration::from_secs(audit.heartbeat_seconds),
            )
        }
        None => (None, None, Duration::from_secs(60)),
    };
    let discarded_bytes = audit.as_ref().map_or(0, AuditWriter::discarded_bytes);
    let mut key_state = KeyState {
        epoch: pseudonymizer.as_ref().map(|p| p.epoch().to_string()),
        compromised: config
            .audit
            .as_ref()
            .map(|a| a.compromised_key_epochs.clone())
            .unwrap_or_default(),
    };
    let metrics = Metrics::new(&run_info)?;
    let announce_stats = config
        .announce_verdicts()
        .then(|| Arc::new(AnnounceStats::default()));
    let shared_stats = config
        .shared_state
        .as_ref()
        .map(|_| Arc::new(SharedStats::default()));
    let mut control = ControlPlane::new(
        Arc::clone(&engine),
        metrics,
        Arc::clone(&stats),
        if passive {
            Vec::new()
        } else {
            config.queues.clone()
        },
        config.audit.as_ref().map(|_| Arc::clone(&audit_stats)),
        run_info.clone(),
    );
    let pair_state = config
        .pair
        .as_ref()
        .map(|pair| Arc::new(PairState::new(!pair.virtual_addresses.is_empty())));
    control.announce = announce_stats.clone();
    control.shared = shared_stats.clone();
    control.pair = pair_state.clone();
    if let Some(path) = &config.web_config_file {
        control.web = Some(Arc::new(server::web::WebConfigSource::load(path)?));
    }
    let control = Arc::new(control);
    if let Some(listen) = config.listen {
        let bound = server::spawn(listen, Arc::clone(&control))?;
        let web = control.web.as_ref().map(|source| source.current());
        let scheme = web.as_ref().map_or("http", |web| web.scheme());
        crate::log_line!(
            Info,
            "telestrip: status page on {scheme}://{bound}/, metrics on {scheme}://{bound}/metrics ({})",
            web.as_ref()
                .map_or_else(|| "plain HTTP, no passwords".into(), |web| web.summary())
        );
        if let Some(warning) = config.control_plane_warning(web.as_deref()) {
            crate::log_line!(Warning, "telestrip: {warning}");
        }
    }
    let (events_in, events_out) = sync_channel::<FlowEvent>(EVENT_CHANNEL_CAPACITY);
    let (control_in, control_out) = channel::<writer::Control>();
    let setup = writer::WriterSetup {
        gateway: gateway.clone(),
        site: config.site.clone(),
        audit,
        pseudonymizer,
        heartbeat,
        engine: Arc::clone(&engine),
        queue_stats: Arc::clone(&stats),
        audit_stats,
    };
    let rules = engine.rules();
    let start = AuditEvent::Start {
        gateway: Some(gateway.clone()),
        site: config.site.clone(),
        telestrip: env!("CARGO_PKG_VERSION").to_string(),
        ruleset: rules.version().to_string(),
        sha256: rules.sha256().to_string(),
        rules: rules.stats().rules,
        mode: run_info.mode.to_string(),
        enforce,
        fail: run_info.fail.to_string(),
        heartbeat_seconds: heartbeat.as_secs(),
        discarded_bytes,
        key_epoch: key_state.epoch.clone(),
        compromised_key_epochs: key_state.compromised.clone(),
    };
    let writer = std::thread::Builder::new()
        .name("telestrip-log".into())
        .spawn(move || writer::run(setup, start, events_out, control_out))?;
    rules_in_force(&config, &control, &control_in, &engine, &rules_origin, None);
    let stop = Arc::new(AtomicBool::new(false));
    if let (Some(pair), Some(state)) = (&config.pair, &pair_state) {
        pair::spawn(pair.virtual_addresses.clone(), state, &stop)?;
    }
    if let (Some(shared), Some(stats)) = (&config.shared_state, &shared_stats) {
        shared::spawn(shared, &gateway, &engine, stats, &stop)?;
        crate::log_line!(
            Info,
            "telestrip: sharing learned state as gateway {gateway} through {} (prefix {})",
            redacted(&shared.redis),
            shared.prefix
        );
    }
    let writable = privileges::Writable {
        files: config
            .audit
            .iter()
            .flat_map(|a| [a.path.clone(), crate::audit::head_path(&a.path)])
            .collect(),
    };
    let readable = rule_source::readable_path(&config);
    if passive {
        let mut captures = Vec::new();
        for interface in &config.interfaces {
            captures.push(passive::open(interface).with_context(|| {
                format!(
                    "cannot capture on {interface} (needs CAP_NET_RAW and an existing interface)"
                )
            })?);
        }
        // Open capture sockets keep working without any capability.
        let dropped =
            privileges::drop_privileges(&config.user, &[], &writable, readable.as_deref())?;
        crate::log_line!(Info, "telestrip: {dropped}");
        // A passive tap may carry no traffic for a long time: its watchdog is liveness only.
        let alive = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("telestrip-alive".into())
            .spawn(move || {
                while !alive.load(Ordering::Relaxed) {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
        for capture in captures {
            let (engine, stats, stop, events_in) = (
                Arc::clone(&engine),
                Arc::clone(&stats),
                Arc::clone(&stop),
                events_in.clone(),
            );
            let resets = config.passive_resets && config.enforce;
            std::thread::Builder::new()
                .name(format!("telestrip-{}", capture.interface))
                .spawn(move || passive::run(&engine, capture, resets, &events_in, &stats, &stop))?;
        }
        crate::log_line!(
            Info,
            "telestrip: filtering passively on {:?}, {}",
            config.interfaces,
            if enforce {
                "log and reset blocked TCP flows"
            } else {
                "log only"
            }
        );
    } else {
        let mut queues = Vec::new();
        for &number in &config.queues {
            let settings = QueueSettings {
                queue: number,
                marks: config.marks(),
                fail: config.fail,
                max_length: config.queue_length,
                busy_poll: Duration::from_micros(u64::from(config.busy_poll_us)),
                announce: None,
            };
            let queue = nfqueue::open(&settings).with_context(|| {
                format!("cannot bind NFQUEUE queue {number} (needs CAP_NET_ADMIN, and no other program bound to it)")
            })?;
            queues.push((queue, nfqueue::open_injector(), settings));
        }
        if let Err(error) = nfqueue::open_kernel_queues() {
            crate::log_line!(Warning, "telestrip: warning: cannot read the kernel's queue statistics ({error}): the watchdog and the queue metrics see nothing");
        }
        let conntrack = if config.announce_verdicts() {
            Some(Conntrack::open().context(
                "pair.announce_verdicts: cannot open a ctnetlink socket (needs CAP_NET_ADMIN and nf_conntrack_netlink)",
            )?)
        } else {
            None
        };
        // Started before the drop, so it keeps no capability.
        spawn_watchdog(config.queues.clone(), Arc::clone(&stats))?;
        // Verdicts are netlink messages the kernel accepts only with CAP_NET_ADMIN.
        let dropped = privileges::drop_privileges(
            &config.user,
            &[caps::Capability::CAP_NET_ADMIN],
            &writable,
            readable.as_deref(),
        )?;
        crate::log_line!(Info, "telestrip: {dropped}");
        // Started after the drop, like the packet threads: updates need CAP_NET_ADMIN.
        let announcer = match (conntrack, &announce_stats) {
            (Some(conntrack), Some(stats)) => {
                crate::log_line!(Info, "telestrip: block verdicts are written to the connection table (ctnetlink) for conntrackd");
                Some(conntrack::spawn(conntrack, stats)?)
            }
            _ => None,
        };
        for (queue, injector, mut settings) in queues {
            settings.announce = announcer.clone();
            let (engine, stats, stop, events_in) = (
                Arc::clone(&engine),
                Arc::clone(&stats),
                Arc::clone(&stop),
                events_in.clone(),
            );
            let latency = control.metrics.verdict_latency.clone();
            std::thread::Builder::new()
                .name(format!("telestrip-q{}", settings.queue))
                .spawn(move || {
                    nfqueue::run(
                        &engine, queue, injector, &settings, &events_in, &stats, &stop, &latency,
                    )
                })?;
        }
        crate::log_line!(
            Info,
            "telestrip: filtering on NFQUEUE {:?}, {}, fail {:?}, mark field at bit {}",
            config.queues,
            if config.enforce {
                "enforcing"
            } else {
                "dry run (log only)"
            },
            config.fail,
            config.mark_shift
        );
    }
    drop(events_in);
    control.ready.store(true, Ordering::Relaxed);
    notify_ready(&run_info, &config, &engine);
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let mut watcher = rule_source::watch_path(&config)
        .filter(|_| config.rules_poll_ms > 0)
        .map(|dir| RulesWatcher::new(&dir, Duration::from_millis(config.rules_poll_ms)));
    let mut update_state_read = Instant::now();
    'running: loop {
        for signal in signals.pending() {
            if signal != SIGHUP {
                break 'running;
            }
            if let Some(watcher) = &mut watcher {
                watcher.loaded_now();
            }
            let mut states = vec![sd_notify::NotifyState::Reloading];
            if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
                states.push(now);
            }
            notify(&states);
            reload(
                &config,
                &engine,
                &control,
                &control_in,
                &mut rules_origin,
                "SIGHUP",
            );
            reload_key(config_path, &mut key_state, &control_in);
            notify_ready(&run_info, &config, &engine);
        }
        if let Some(watcher) = &mut watcher {
            if watcher.changed_and_settled() {
                reload(
                    &config,
                    &engine,
                    &control,
                    &control_in,
                    &mut rules_origin,
                    "changed files",
                );
            }
        }
        if update_state_read.elapsed() >= UPDATE_STATE_EVERY {
            update_state_read = Instant::now();
            update_metrics(&config, &control);
        }
        std::thread::sleep(SIGNAL_POLL);
    }
    stop.store(true, Ordering::Relaxed);
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
    // The writer writes every matched flow handed to it, then the stop record.
    let _ = control_in.send(writer::Control::Stop);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !writer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counters = &engine.counters;
    crate::log_line!(Info,
        "telestrip: stopping. {} packets from the kernel in {} verdict batches, {} flow verdicts handed to the kernel, {} flows tracked; packets accepted {}, dropped {}, rejected {}; {} NXDOMAIN answers sent, {} TCP resets sent; {} events dropped, {} queue errors",
        load(&stats.packets),
        load(&stats.batches),
        load(&stats.marked),
        counters.sum(|c| &c.flows_new),
        counters.sum(|c| &c.packets_accepted),
        counters.sum(|c| &c.packets_dropped),
        counters.sum(|c| &c.packets_rejected),
        load(&stats.nxdomain_sent),
        load(&stats.resets_sent),
        load(&stats.events_dropped),
        load(&stats.errors),
    );
    // Packet threads may be blocked in recv; the process exit closes their sockets and the
    // kernel applies the fail mode of the firewall rules.
    Ok(())
}

/// How often the main thread looks at signals (and the rules watcher's clock).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Notices changed rule files by their size, modification time and inode (which catches
/// editors and tools that replace files by renaming), and reports a change once the files
/// have stopped changing for one interval, so a file being written is not loaded half-done.
struct RulesWatcher {
    path: std::path::PathBuf,
    interval: Duration,
    next_look: Instant,
    /// What the rules looked like when last loaded (or tried).
    loaded: Vec<FileStamp>,
    /// What they looked like at the previous look.
    previous: Vec<FileStamp>,
}

type FileStamp = (std::path::PathBuf, u64, Option<SystemTime>, u64);

impl RulesWatcher {
    fn new(path: &Path, interval: Duration) -> Self {
        let now = stamps(path);
        Self {
            path: path.to_path_buf(),
            interval,
            next_look: Instant::now() + interval,
            loaded: now.clone(),
            previous: now,
        }
    }

    /// The rules were just loaded (SIGHUP): a change seen so far is handled.
    fn loaded_now(&mut self) {
        self.loaded = stamps(&self.path);
        self.previous = self.loaded.clone();
    }

    /// True once per settled change: the files differ from the loaded ones and are the same
    /// as one interval ago.
    fn changed_and_settled(&mut self) -> bool {
        if Instant::now() < self.next_look {
            return false;
        }
        self.next_look = Instant::now() + self.interval;
        let now = stamps(&self.path);
        let settled = now == self.previous && now != self.loaded;
        self.previous = now;
        if settled {
            self.loaded = self.previous.clone();
        }
        settled
    }
}

/// The rule files' stamps, sorted by path (a path that is not a readable directory is stamped
/// as one file; a file that cannot be read has no stamp).
fn stamps(path: &Path) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let files: Vec<std::path::PathBuf> = match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | crate::rules::LIST_EXTENSION)
                )
            })
            .collect(),
        Err(_) => vec![path.to_path_buf()],
    };
    let mut stamps: Vec<FileStamp> = files
        .into_iter()
        .filter_map(|file| {
            let meta = std::fs::metadata(&file).ok()?;
            Some((file, meta.len(), meta.modified().ok(), meta.ino()))
        })
        .collect();
    stamps.sort();
    stamps
}

/// Reloads the rules (SIGHUP or changed files): compiled off the packet path, swapped in one
/// step; on any error the old ruleset stays. Logged, counted, shown on the status page and
/// audited.
fn reload(
    config: &Config,
    engine: &Engine,
    control: &ControlPlane,
    audit: &std::sync::mpsc::Sender<writer::Control>,
    origin: &mut rule_source::Origin,
    why: &str,
) {
    let (ok, message, error) = match rule_source::load(config) {
        Ok(loaded) => {
            for skipped in &loaded.skipped {
                crate::log_line!(Warning, "telestrip: warning: not using {skipped}");
            }
            crate::log_line!(
                Info,
                "telestrip: reloaded rules ({why}): ruleset {} from {}",
                loaded.set.version(),
                loaded.origin.describe()
            );
            control.metrics.reloaded(Ok(&loaded.set));
            warn_unknown_profiles(config, &loaded.set);
            engine.swap_rules(loaded.set);
            let previous = std::mem::replace(origin, loaded.origin);
            rules_in_force(config, control, audit, engine, origin, Some(&previous));
            (true, format!("ruleset {}", engine.rules().version()), None)
        }
        Err(errors) => {
            crate::log_line!(
                Error,
                "telestrip: reload failed ({why}), keeping ruleset {}:\n{errors}",
                engine.rules().version()
            );
            control.metrics.reloaded(Err(()));
            let text = errors.to_string();
            (false, text.clone(), Some(text))
        }
    };
    control.record_reload(ReloadStatus {
        time: SystemTime::now(),
        ok,
        message,
    });
    let rules = engine.rules();
    let _ = audit.send(writer::Control::Record(Box::new(AuditEvent::Reload {
        ok,
        ruleset: rules.version().to_string(),
        sha256: rules.sha256().to_string(),
        error,
    })));
}

/// The pseudonymisation key in force (its epoch) and the epochs reported compromised.
struct KeyState {
    epoch: Option<String>,
    compromised: Vec<String>,
}

/// SIGHUP: reads the configuration's `audit:` section and the key file again; a new key or
/// a changed list of compromised epochs goes to the writer with a `pseudonym_key` record,
/// so the chain goes on and says from which record the new key applies. Turning
/// pseudonymisation on or off needs a restart.
fn reload_key(
    config_path: &Path,
    state: &mut KeyState,
    writer: &std::sync::mpsc::Sender<writer::Control>,
) {
    let Some(epoch) = &state.epoch else {
        return;
    };
    let loaded = Config::load(config_path).and_then(|config| {
        let audit = config
            .audit
            .ok_or_else(|| anyhow::anyhow!("the audit section is gone"))?;
        let file = audit
            .pseudonymize_key_file
            .ok_or_else(|| anyhow::anyhow!("pseudonymize_key_file is gone"))?;
        Ok((
            Pseudonymizer::from_file(&file)?,
            audit.compromised_key_epochs,
        ))
    });
    let (key, compromised) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            crate::log_line!(
                Error,
                "telestrip: pseudonymisation key not reloaded, key epoch {epoch} stays ({error}; \
                 turning pseudonymisation off needs a restart)"
            );
            return;
        }
    };
    if key.epoch() == epoch && compromised == state.compromised {
        return;
    }
    if compromised.iter().any(|e| e == key.epoch()) {
        crate::log_line!(
            Error,
            "telestrip: the pseudonymisation key in force (epoch {}) is listed as compromised: \
             make a new key and send SIGHUP again",
            key.epoch()
        );
    } else if key.epoch() != epoch {
        crate::log_line!(
            Notice,
            "telestrip: pseudonymisation key rotated: epoch {epoch} -> {}",
            key.epoch()
        );
    }
    let record = AuditEvent::PseudonymKey {
        key_epoch: Some(key.epoch().to_string()),
        previous_key_epoch: (key.epoch() != epoch).then(|| epoch.clone()),
        compromised_key_epochs: compromised.clone(),
    };
    state.epoch = Some(key.epoch().to_string());
    state.compromised = compromised;
    let _ = writer.send(writer::Control::Key(Box::new(key), Box::new(record)));
}

/// How often the main thread reads `rules update`'s state file for the metrics.
const UPDATE_STATE_EVERY: Duration = Duration::from_secs(5);

/// Says which signed pack is in force: metrics, and an audit record when it is another
/// generation (or another switch) than `previous` (at start: always).
fn rules_in_force(
    config: &Config,
    control: &ControlPlane,
    audit: &std::sync::mpsc::Sender<writer::Control>,
    engine: &Engine,
    origin: &rule_source::Origin,
    previous: Option<&rule_source::Origin>,
) {
    let Some(update) = &config.rules_update else {
        return;
    };
    let rule_source::Origin::Generation(pack) = origin else {
        control.metrics.set_pack(&update.source, 0, 0, 0);
        update_metrics(config, control);
        return;
    };
    let expires = pack
        .expires
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let record = &pack.record;
    control.metrics.set_pack(
        &update.source,
        record.ruleset_version,
        record.generation,
        expires,
    );
    update_metrics(config, control);
    let same = |other: &rule_source::Origin| match other {
        rule_source::Origin::Generation(before) => {
            before.record.generation == record.generation && before.switch == pack.switch
        }
        _ => false,
    };
    if previous.is_some_and(same) {
        return;
    }
    let switched_by = match (&pack.switch, pack.is_current) {
        (_, false) => "fallback".to_string(),
        (Some(switch), true) => switch.by.clone(),
        (None, true) => "update".to_string(),
    };
    let _ = audit.send(writer::Control::Record(Box::new(AuditEvent::RulesUpdate {
        generation: record.generation,
        ruleset_version: record.ruleset_version,
        previous_version: record.previous_version,
        key_id: record.key_id.clone(),
        source: record.source.clone(),
        issued: record.issued.clone(),
        expires: record.expires.clone(),
        accepted: record.accepted.clone(),
        switched: pack.switch.as_ref().map(|s| s.at.clone()),
        switched_by,
        entries: record.entries,
        added: record.added,
        removed: record.removed,
        added_sample: record.added_sample.clone(),
        removed_sample: record.removed_sample.clone(),
        ruleset: engine.rules().version().to_string(),
    })));
}

/// Copies `rules update`'s state file into the metrics (an update runs as its own process).
fn update_metrics(config: &Config, control: &ControlPlane) {
    if let Some(update) = &config.rules_update {
        if let Ok(state) = update.store().state() {
            control.metrics.set_update_state(&update.source, &state);
        }
    }
}

/// Tells the service manager (systemd with `Type=notify`) about the daemon's state;
/// nothing without NOTIFY_SOCKET. A failure to tell it is not the daemon's failure.
fn notify(states: &[sd_notify::NotifyState]) {
    let _ = sd_notify::notify(states);
}

/// READY, with the one-line status `systemctl status` shows: what the daemon does (as
/// its metrics say it, `run`), where, and with which ruleset.
fn notify_ready(run: &RunInfo, config: &Config, engine: &Engine) {
    let rules = engine.rules();
    let place = match config.mode {
        Mode::Nfqueue => format!("NFQUEUE {:?}", config.queues),
        Mode::Passive => format!("{:?} (passive)", config.interfaces),
    };
    let status = format!(
        "{} on {place}, ruleset {} ({} rules), fail {}",
        if run.enforce { "enforcing" } else { "dry run" },
        rules.version(),
        rules.stats().rules,
        run.fail
    );
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// A Redis URL without its password, for the log.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Says which service profiles the config turns on that the rules do not define: the
/// endpoints they would re-open stay blocked until rules that define them are loaded.
fn warn_unknown_profiles(config: &Config, rules: &crate::rules::RuleSet) {
    for name in config.unknown_profiles(rules) {
        crate::log_line!(
            Warning,
            "telestrip: warning: service profile {name:?} is turned on in the config but \
             ruleset {} does not define it; what it would allow stays blocked",
            rules.version()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks every half second, as the watchdog does: (handled so far, waiting) per look.
    fn first_stuck_look(looks: &[(u64, u64)]) -> Option<usize> {
        let start = Instant::now();
        let mut stall = Stall::new(0);
        looks
            .iter()
            .enumerate()
            .position(|(i, &(handled, waiting))| {
                stall.stuck(
                    handled,
                    waiting,
                    start + Duration::from_millis(500) * i as u32,
                )
            })
    }

    #[test]
    fn a_packet_arriving_after_a_quiet_spell_is_not_a_stall() {
        // Ten seconds without traffic, then one look that finds a packet just queued,
        // handled by the next look.
        let mut looks = vec![(0, 0); 20];
        looks.push((0, 1));
        looks.push((1, 0));
        looks.extend([(1, 0); 10]);
        assert_eq!(first_stuck_look(&looks), None);
    }

    #[test]
    fn packets_waiting_with_no_progress_for_three_seconds_are_a_stall() {
        let mut looks = vec![(5, 0); 4];
        looks.extend([(5, 2); 10]);
        // Waiting from look 4 on: stuck once three seconds (six looks) have passed.
        assert_eq!(first_stuck_look(&looks), Some(10));
        // Progress in between (look 5) starts the clock again at the next look.
        let mut moving = vec![(5, 2); 5];
        moving.extend([(6, 2); 8]);
        assert_eq!(first_stuck_look(&moving), Some(12));
    }
}
