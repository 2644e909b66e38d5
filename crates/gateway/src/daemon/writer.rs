//! The log writer thread: every matched flow as a JSON line on stdout and, when configured,
//! a record in the audit log, plus the daemon's own records (start, reload, heartbeat, stop).
//! Packet threads hand events over through a bounded channel and never wait for it.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::audit::{AuditEvent, AuditStats, AuditWriter, Pseudonymizer};
use crate::engine::{Engine, FlowEvent};
use crate::output::FlowRow;
use crate::source::SourceStats;

/// Records taken from the channel before they are written in one go.
const BATCH: usize = 4096;
/// How often the writer looks for control records when no flow arrives.
const TICK: Duration = Duration::from_millis(100);

/// What the writer needs besides its channels.
pub struct WriterSetup {
    /// This gateway and its site, named in the start, heartbeat and stop records.
    pub gateway: String,
    pub site: Option<String>,
    pub audit: Option<AuditWriter>,
    pub pseudonymizer: Option<Pseudonymizer>,
    pub heartbeat: Duration,
    pub engine: Arc<Engine>,
    pub queue_stats: Arc<SourceStats>,
    pub audit_stats: Arc<AuditStats>,
}

/// A record from the control plane; `Stop` is the last one the writer handles.
pub enum Control {
    Record(Box<AuditEvent>),
    /// Pseudonymise with this key from now on; the record says so.
    Key(Box<Pseudonymizer>, Box<AuditEvent>),
    Stop,
}

/// Writes `start` first, then runs until a [`Control::Stop`] arrives or the daemon's side
/// of the control channel is gone; then writes every flow handed over before, and the stop
/// record. (The start record is not sent over the control channel: flows are read before
/// control records in each round, so a flow in the first round would come before it.)
pub fn run(
    mut setup: WriterSetup,
    start: AuditEvent,
    flows: Receiver<FlowEvent>,
    control: Receiver<Control>,
) {
    setup.append(SystemTime::now(), start);
    setup.commit();
    let mut next_heartbeat = Instant::now() + setup.heartbeat;
    let mut stopping = false;
    while !stopping {
        let mut batch = Vec::new();
        match flows.recv_timeout(TICK) {
            Ok(event) => batch.push(event),
            Err(RecvTimeoutError::Timeout) => {}
            // Packet threads gone (capture error): keep writing control records until the
            // daemon says stop, so the log never claims a stop that did not happen.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
        }
        batch.extend(flows.try_iter().take(BATCH));
        let now = SystemTime::now();
        setup.write_flows(&batch, now);
        loop {
            match control.try_recv() {
                Ok(Control::Record(event)) => setup.append(now, *event),
                Ok(Control::Key(key, event)) => {
                    setup.pseudonymizer = Some(*key);
                    setup.append(now, *event);
                }
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    stopping = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if stopping {
            let rest: Vec<FlowEvent> = flows.try_iter().collect();
            setup.write_flows(&rest, now);
            let event = setup.stop_record();
            setup.append(now, event);
        }
        let heartbeat = !stopping && Instant::now() >= next_heartbeat;
        if heartbeat {
            next_heartbeat = Instant::now() + setup.heartbeat;
            let event = setup.heartbeat_record();
            setup.append(now, event);
        }
        setup.commit();
        if heartbeat {
            setup.sync();
        }
    }
    setup.sync();
}

impl WriterSetup {
    /// Writes matched flows to stdout and stages their audit records.
    fn write_flows(&mut self, batch: &[FlowEvent], now: SystemTime) {
        if batch.is_empty() {
            return;
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for event in batch {
            if serde_json::to_writer(&mut out, &FlowRow::of(event)).is_ok() {
                let _ = writeln!(out);
            }
            if let Some(audit) = self.audit.as_mut() {
                audit.append(now, AuditEvent::flow(event, self.pseudonymizer.as_ref()));
            }
        }
        let _ = out.flush();
        self.queue_stats
            .events_written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    fn append(&mut self, time: SystemTime, event: AuditEvent) {
        if let Some(audit) = self.audit.as_mut() {
            audit.append(time, event);
        }
    }

    fn commit(&mut self) {
        let Some(audit) = self.audit.as_mut() else {
            return;
        };
        let stats = &self.audit_stats;
        match audit.commit() {
            Ok(0) => {}
            Ok(written) => {
                stats.written.fetch_add(written, Ordering::Relaxed);
                let mut last = stats.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(error) = last.take() {
                    crate::log_line!(
                        Notice,
                        "telestrip: the audit log is writable again (last error: {error})"
                    );
                }
            }
            Err((lost, error)) => {
                stats.failed.fetch_add(lost, Ordering::Relaxed);
                let mut last = stats.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none() {
                    crate::log_line!(Error, "telestrip: cannot write the audit log: {error}; {lost} records lost, packets keep flowing");
                }
                *last = Some(error.to_string());
            }
        }
    }

    fn sync(&mut self) {
        if let Some(audit) = self.audit.as_mut() {
            if audit.sync().is_ok() {
                let (seq, hash) = audit.head();
                if seq > 0 {
                    // A second, independent copy of the head: the journal.
                    crate::log_line!(Info, "telestrip: audit chain head: record {seq} {hash}");
                }
            }
        }
    }

    fn counters(&self) -> (String, u64, u64) {
        (
            self.engine.rules().version().to_string(),
            self.engine.counters.sum(|c| &c.packets_accepted)
                + self.engine.counters.sum(|c| &c.packets_dropped)
                + self.engine.counters.sum(|c| &c.packets_rejected),
            self.queue_stats.events_dropped.load(Ordering::Relaxed),
        )
    }

    /// Bypass attempts by kind since the start (kinds never seen left out).
    fn bypass(&self) -> std::collections::BTreeMap<String, u64> {
        crate::stats::Bypass::ALL
            .iter()
            .map(|kind| {
                (
                    kind.as_str().to_string(),
                    self.engine.counters.bypass_of(*kind),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    fn heartbeat_record(&self) -> AuditEvent {
        let (ruleset, packets, events_dropped) = self.counters();
        AuditEvent::Heartbeat {
            gateway: Some(self.gateway.clone()),
            site: self.site.clone(),
            ruleset,
            packets,
            events_dropped,
            bypass: self.bypass(),
        }
    }

    fn stop_record(&self) -> AuditEvent {
        let (ruleset, packets, events_dropped) = self.counters();
        AuditEvent::Stop {
            gateway: Some(self.gateway.clone()),
            site: self.site.clone(),
            ruleset,
            packets,
            events_dropped,
            bypass: self.bypass(),
        }
    }
}
