//! The daemon's control-plane HTTP server (tokio and axum, on its own thread): `/metrics`
//! for Prometheus, `/healthz` and `/readyz` for service managers and load balancers, and a
//! status page at `/` (`/status.json` for scripts) for the compliance officer.

mod status;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::audit::AuditStats;
use crate::conntrack::AnnounceStats;
use crate::engine::Engine;
use crate::metrics::{Metrics, RunInfo, CONTENT_TYPE};
use crate::pair::PairState;
use crate::shared::SharedStats;
use crate::source::nfqueue;
use crate::source::SourceStats;

/// How often the per-vendor history behind the status page is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// History kept: a day and an hour, so "last 24 hours" always has a starting point.
const SAMPLES_KEPT: usize = 25 * 60;

/// The outcome of the last rule reload.
#[derive(Clone, Debug)]
pub struct ReloadStatus {
    pub time: SystemTime,
    pub ok: bool,
    /// The new ruleset version, or the error.
    pub message: String,
}

/// Blocked and only-logged matched flows of one vendor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub blocked: u64,
    pub logged: u64,
}

/// Cumulative per-vendor tallies, sampled once a minute.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<(u64, BTreeMap<String, Tally>)>,
}

impl History {
    pub fn record(&mut self, unix_seconds: u64, tally: BTreeMap<String, Tally>) {
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back((unix_seconds, tally));
    }

    /// The last sample taken at or before `unix_seconds`; before the first: nothing counted.
    pub fn at(&self, unix_seconds: u64) -> BTreeMap<String, Tally> {
        self.samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= unix_seconds)
            .map(|(_, tally)| tally.clone())
            .unwrap_or_default()
    }
}

/// Current cumulative tallies per vendor, from the engine's per-rule counters.
pub fn tally(engine: &Engine) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (series, count) in engine.flow_counts.snapshot() {
        let entry = tallies.entry(series.vendor.to_string()).or_default();
        if series.action.blocks() {
            entry.blocked += count;
        } else if series.action == crate::rules::Action::Log {
            entry.logged += count;
        }
    }
    tallies
}

pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Everything the control plane shows, shared with the daemon.
pub struct ControlPlane {
    pub engine: Arc<Engine>,
    pub metrics: Metrics,
    pub queue_stats: Arc<SourceStats>,
    /// NFQUEUE queue numbers (empty in passive mode).
    pub queues: Vec<u16>,
    pub audit: Option<Arc<AuditStats>>,
    pub run: RunInfo,
    pub started: SystemTime,
    pub reload: Mutex<Option<ReloadStatus>>,
    pub history: Mutex<History>,
    /// Set once every packet thread runs.
    pub ready: AtomicBool,
    /// A gateway pair: block verdicts written to the connection table (`pair.announce_verdicts`).
    pub announce: Option<Arc<AnnounceStats>>,
    /// A gateway pair: learned state shared through Redis (`shared_state`).
    pub shared: Option<Arc<SharedStats>>,
    /// A gateway pair: active or standby, conntrackd listening (`pair:`).
    pub pair: Option<Arc<PairState>>,
}

impl ControlPlane {
    pub fn new(
        engine: Arc<Engine>,
        metrics: Metrics,
        queue_stats: Arc<SourceStats>,
        queues: Vec<u16>,
        audit: Option<Arc<AuditStats>>,
        run: RunInfo,
    ) -> Self {
        let started = SystemTime::now();
        let mut history = History::default();
        history.record(unix_seconds(started), BTreeMap::new());
        metrics.set_ruleset(&engine.rules());
        Self {
            engine,
            metrics,
            queue_stats,
            queues,
            audit,
            run,
            started,
            reload: Mutex::new(None),
            history: Mutex::new(history),
            ready: AtomicBool::new(false),
            announce: None,
            shared: None,
            pair: None,
        }
    }

    pub fn render_metrics(&self) -> String {
        let kernel: Vec<_> = nfqueue::kernel_queues()
            .into_iter()
            .filter(|q| self.queues.contains(&q.queue))
            .collect();
        self.metrics.render(|sink| {
            self.engine.export_metrics(sink);
            self.queue_stats.export_metrics(&kernel, sink);
            // Without an audit log the series exist at zero, as alerts expect.
            match &self.audit {
                Some(audit) => audit.export_metrics(sink),
                None => AuditStats::default().export_metrics(sink),
            }
            if let Some(announce) = &self.announce {
                announce.export_metrics(sink);
            }
            if let Some(shared) = &self.shared {
                shared.export_metrics(&self.engine, sink);
            }
            if let Some(pair) = &self.pair {
                pair.export_metrics(sink);
            }
        })
    }

    /// Why the daemon is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        let audit = self.audit.as_ref()?;
        let last = audit.last_error.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .map(|error| format!("audit log not writable: {error}"))
    }

    /// Why the daemon works with less than it was configured for (it still filters), if it
    /// does.
    pub fn degraded(&self) -> Option<String> {
        let reasons: Vec<String> = [
            self.pair.as_ref().and_then(|p| p.degraded()),
            self.shared.as_ref().and_then(|s| s.degraded()),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    pub fn record_reload(&self, status: ReloadStatus) {
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
    }

    fn sample(&self) {
        let tally = tally(&self.engine);
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(unix_seconds(SystemTime::now()), tally);
    }
}

/// Binds `addr` now (so a bad address fails the start) and serves on a thread of its own.
pub fn spawn(addr: SocketAddr, control: Arc<ControlPlane>) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the control plane: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("telestrip-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let sampler = Arc::clone(&control);
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(SAMPLE_EVERY);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        sampler.sample();
                    }
                });
                let app = router(control);
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(error) = axum::serve(listener, app).await {
                            crate::log_line!(
                                Error,
                                "telestrip: the control-plane server stopped: {error}"
                            );
                        }
                    }
                    Err(error) => {
                        crate::log_line!(Error, "telestrip: control-plane server: {error}")
                    }
                }
            });
        })?;
    Ok(bound)
}

pub fn router(control: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(control)
}

async fn metrics(State(control): State<Arc<ControlPlane>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        control.render_metrics(),
    )
        .into_response()
}

async fn healthz(State(control): State<Arc<ControlPlane>>) -> Response {
    match control.problem() {
        // Still filtering: healthy for a service manager, but the body says what is missing.
        None => match control.degraded() {
            Some(degraded) => (StatusCode::OK, format!("degraded: {degraded}\n")).into_response(),
            None => (StatusCode::OK, "ok\n").into_response(),
        },
        Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response(),
    }
}

async fn readyz(State(control): State<Arc<ControlPlane>>) -> Response {
    if control.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn status_page(State(control): State<Arc<ControlPlane>>) -> Html<String> {
    Html(status::page(&status::Status::of(
        &control,
        SystemTime::now(),
    )))
}

async fn status_json(State(control): State<Arc<ControlPlane>>) -> Response {
    let status = status::Status::of(&control, SystemTime::now());
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&status).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
