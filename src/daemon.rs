//! `telestrip run`: the inline gateway. Loads the configuration and rules, binds one NFQUEUE
//! queue per configured queue number with a packet thread each, writes every matched flow as
//! a JSON line to stdout, reloads rules on SIGHUP (keeping the old ones when the new ones have
//! errors) and stops on SIGTERM or SIGINT, printing its counters.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cli::load_rules;
use crate::config::{Config, Mode};
use crate::engine::{Engine, EngineConfig, FlowEvent};
use crate::output::FlowRow;
use crate::source::nfqueue::{self, QueueSettings, QueueStats};
use crate::source::passive;

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
fn spawn_watchdog(queues: Vec<u16>, stats: Arc<QueueStats>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("telestrip-watchdog".into())
        .spawn(move || {
            let mut last_handled = stats.packets.load(Ordering::Relaxed);
            let mut progress_at = Instant::now();
            let mut dropped_reported = 0u64;
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let handled = stats.packets.load(Ordering::Relaxed);
                if handled != last_handled {
                    last_handled = handled;
                    progress_at = Instant::now();
                }
                let kernel: Vec<_> = nfqueue::kernel_queues()
                    .into_iter()
                    .filter(|q| queues.contains(&q.queue))
                    .collect();
                let dropped: u64 = kernel.iter().map(|q| q.queue_dropped + q.user_dropped).sum();
                if dropped > dropped_reported {
                    eprintln!("telestrip: warning: the kernel dropped {} queued packets so far (queue full or socket buffer full); the fail mode applied to them", dropped);
                    dropped_reported = dropped;
                }
                let waiting: u64 = kernel.iter().map(|q| q.waiting).sum();
                if waiting > 0 && progress_at.elapsed() >= STUCK_AFTER {
                    eprintln!(
                        "telestrip: watchdog: {waiting} packets waiting and none handled for {} s; exiting so the service manager restarts telestrip",
                        STUCK_AFTER.as_secs()
                    );
                    std::process::exit(EXIT_STUCK);
                }
            }
        })
        .map(|_| ())
}

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let (_, rules) = load_rules(config.rules.as_deref())
        .map_err(|e| anyhow::anyhow!("the rules have errors, not starting:\n{e}"))?;
    let source = config
        .rules
        .as_ref()
        .map_or_else(|| "bundled rules".to_string(), |p| p.display().to_string());
    eprintln!(
        "telestrip: ruleset {} from {source}: {} rules, {} names, {} CIDRs",
        rules.version(),
        rules.stats().rules,
        rules.stats().names,
        rules.stats().cidrs
    );
    let passive = config.mode == Mode::Passive;
    // Passive mode blocks nothing unless it may send resets: its matches are logged as such.
    let enforce = config.enforce && (!passive || config.passive_resets);
    let engine = Arc::new(Engine::new(
        rules,
        EngineConfig {
            enforce,
            max_flows: config.max_flows,
            ..EngineConfig::default()
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(QueueStats::default());
    let (events_in, events_out) = sync_channel::<FlowEvent>(EVENT_CHANNEL_CAPACITY);
    let writer_stats = Arc::clone(&stats);
    let writer = std::thread::Builder::new()
        .name("telestrip-log".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            for event in events_out {
                let mut out = stdout.lock();
                if serde_json::to_writer(&mut out, &FlowRow::of(&event)).is_ok() {
                    let _ = writeln!(out);
                    let _ = out.flush();
                }
                writer_stats.events_written.fetch_add(1, Ordering::Relaxed);
            }
        })?;
    if passive {
        let mut captures = Vec::new();
        for interface in &config.interfaces {
            captures.push(passive::open(interface).with_context(|| {
                format!(
                    "cannot capture on {interface} (needs CAP_NET_RAW and an existing interface)"
                )
            })?);
        }
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
        eprintln!(
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
            };
            let queue = nfqueue::open(&settings).with_context(|| {
                format!("cannot bind NFQUEUE queue {number} (needs CAP_NET_ADMIN, and no other program bound to it)")
            })?;
            queues.push((queue, settings));
        }
        spawn_watchdog(config.queues.clone(), Arc::clone(&stats))?;
        for (queue, settings) in queues {
            let (engine, stats, stop, events_in) = (
                Arc::clone(&engine),
                Arc::clone(&stats),
                Arc::clone(&stop),
                events_in.clone(),
            );
            std::thread::Builder::new()
                .name(format!("telestrip-q{}", settings.queue))
                .spawn(move || {
                    nfqueue::run(&engine, queue, &settings, &events_in, &stats, &stop)
                })?;
        }
        eprintln!(
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
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    for signal in signals.forever() {
        if signal == SIGHUP {
            match load_rules(config.rules.as_deref()) {
                Ok((_, rules)) => {
                    eprintln!("telestrip: reloaded rules: ruleset {}", rules.version());
                    engine.swap_rules(rules);
                }
                Err(errors) => eprintln!(
                    "telestrip: reload failed, keeping ruleset {}:\n{errors}",
                    engine.rules().version()
                ),
            }
            continue;
        }
        break;
    }
    stop.store(true, Ordering::Relaxed);
    // Let the writer catch up, so no matched flow already handed over is lost at exit.
    let deadline = Instant::now() + Duration::from_secs(1);
    while stats.events_written.load(Ordering::Relaxed) < stats.events_sent.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let counters = &engine.counters;
    eprintln!(
        "telestrip: stopping. {} packets from the kernel, {} flow verdicts handed to the kernel, {} flows tracked; packets accepted {}, dropped {}, rejected {}; {} NXDOMAIN answers sent, {} TCP resets sent; {} events dropped, {} queue errors",
        load(&stats.packets),
        load(&stats.marked),
        load(&counters.flows_new),
        load(&counters.packets_accepted),
        load(&counters.packets_dropped),
        load(&counters.packets_rejected),
        load(&stats.nxdomain_sent),
        load(&stats.resets_sent),
        load(&stats.events_dropped),
        load(&stats.errors),
    );
    // Packet threads may be blocked in recv; the process exit closes their sockets and the
    // kernel applies the fail mode of the firewall rules.
    drop(writer);
    Ok(())
}
