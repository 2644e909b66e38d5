//! The daemon's control-plane HTTP server (tokio and axum, on its own thread): `/metrics`
//! for Prometheus, `/healthz` and `/readyz` for service managers and load balancers, and a
//! status page at `/` (`/status.json` for scripts) for the compliance officer. Read only:
//! every page answers GET and HEAD, anything else is refused. Beyond loopback it is served
//! with TLS and passwords from a web configuration file (`web`).

mod status;
pub mod web;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
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
use crate::stats::{Family, MetricSink};
use web::{AuthCache, Refusal, WebConfigSource};

/// How often the per-vendor history behind the status page is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// History kept: a day and an hour, so "last 24 hours" always has a starting point.
const SAMPLES_KEPT: usize = 25 * 60;
/// Connections served at once; more are closed at once (and counted).
const MAX_CONNECTIONS: usize = 64;
/// Time a client has for the TLS handshake, and for each request's headers.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// TLS and passwords for the control plane (`web_config_file`); absent: plain HTTP.
    pub web: Option<Arc<WebConfigSource>>,
    pub http: HttpStats,
}

/// Why requests to the control plane were refused.
#[derive(Debug, Default)]
pub struct HttpStats {
    tls_handshake: AtomicU64,
    no_credentials: AtomicU64,
    bad_credentials: AtomicU64,
    rate_limited: AtomicU64,
    method: AtomicU64,
    too_many_connections: AtomicU64,
}

const HTTP_REFUSED: Family = Family {
    name: "telestrip_http_requests_refused_total",
    help: "Requests and connections the control plane refused, by reason: tls_handshake (failed or timed out, plain HTTP to the TLS port included), no_credentials and bad_credentials (basic auth, answered 401), rate_limited (429), method (anything but GET and HEAD, 405: nothing is writable), too_many_connections.",
    labels: &["reason"],
};
const WEB_CONFIG_OK: Family = Family {
    name: "telestrip_http_web_config_last_reload_successful",
    help: "1 when the control plane serves the web configuration file as it is now; 0 when the file or one it names changed and did not load (a renewed certificate that does not fit its key, say): the configuration before stays in force.",
    labels: &[],
};
const WEB_CONFIG_RELOADS: Family = Family {
    name: "telestrip_http_web_config_reloads_total",
    help: "Times the control plane's web configuration file was read again after it or a file it names changed, by result (failed: the configuration before stays in force).",
    labels: &["result"],
};

impl HttpStats {
    fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::NoCredentials => &self.no_credentials,
            Refusal::BadCredentials => &self.bad_credentials,
            Refusal::RateLimited => &self.rate_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn export_metrics(&self, web: Option<&WebConfigSource>, sink: &mut dyn MetricSink) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (reason, counter) in [
            ("tls_handshake", &self.tls_handshake),
            ("no_credentials", &self.no_credentials),
            ("bad_credentials", &self.bad_credentials),
            ("rate_limited", &self.rate_limited),
            ("method", &self.method),
            ("too_many_connections", &self.too_many_connections),
        ] {
            sink.counter(&HTTP_REFUSED, &[reason], load(counter));
        }
        if let Some(web) = web {
            sink.counter(&WEB_CONFIG_RELOADS, &["ok"], load(&web.reloads_ok));
            sink.counter(&WEB_CONFIG_RELOADS, &["failed"], load(&web.reloads_failed));
            sink.gauge(&WEB_CONFIG_OK, &[], u64::from(!web.failing()));
        }
    }
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
            web: None,
            http: HttpStats::default(),
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
            self.http.export_metrics(self.web.as_deref(), sink);
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
    // bcrypt checks run on the blocking pool: two at a time at most, so a password guesser
    // cannot take more than the control plane's share of the machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
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
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, control).await,
                    Err(error) => {
                        crate::log_line!(Error, "telestrip: control-plane server: {error}")
                    }
                }
            });
        })?;
    Ok(bound)
}

/// Accepts connections for ever: TLS first when the web configuration has a certificate,
/// then HTTP/1.1 with the configuration's passwords, rate limit and headers.
async fn serve(listener: tokio::net::TcpListener, control: Arc<ControlPlane>) {
    let app = router(Arc::clone(&control));
    let cache = Arc::new(AuthCache::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, mostly: wait instead of spinning.
                crate::log_line!(Warning, "telestrip: control plane: accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            control
                .http
                .too_many_connections
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let web = control.web.as_ref().map(|source| source.current());
        let (control, app, cache) = (Arc::clone(&control), app.clone(), Arc::clone(&cache));
        tokio::spawn(async move {
            let _slot = slot;
            let tls = web.as_ref().and_then(|web| web.tls.clone());
            match tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, web, control, app, cache).await,
                        _ => {
                            control.http.tls_handshake.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                None => serve_connection(stream, web, control, app, cache).await,
            }
        });
    }
}

async fn serve_connection<Io>(
    io: Io,
    web: Option<Arc<web::WebConfig>>,
    control: Arc<ControlPlane>,
    app: Router,
    cache: Arc<AuthCache>,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let (web, control, app, cache) = (
            web.clone(),
            Arc::clone(&control),
            app.clone(),
            Arc::clone(&cache),
        );
        async move { Ok::<_, Infallible>(answer(request, web, &control, app, cache).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(CLIENT_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// One request: rate limit and passwords first, then the page, then the configured headers.
async fn answer(
    request: Request<hyper::body::Incoming>,
    web: Option<Arc<web::WebConfig>>,
    control: &ControlPlane,
    app: Router,
    cache: Arc<AuthCache>,
) -> Response {
    use tower::ServiceExt;
    let refusal = match &web {
        Some(web) if !web.admit() => Some(Refusal::RateLimited),
        Some(web) if web.authenticates() => {
            let (web, headers) = (Arc::clone(web), request.headers().clone());
            tokio::task::spawn_blocking(move || web.authenticate(&headers, &cache))
                .await
                .unwrap_or(Err(Refusal::BadCredentials))
                .err()
        }
        _ => None,
    };
    let mut response = match refusal {
        Some(refusal) => {
            control.http.refused(refusal);
            refusal_response(refusal)
        }
        None => {
            let response = app
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                control.http.method.fetch_add(1, Ordering::Relaxed);
            }
            response
        }
    };
    if let Some(web) = &web {
        for (name, value) in web.headers() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

fn refusal_response(refusal: Refusal) -> Response {
    match refusal {
        Refusal::NoCredentials | Refusal::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"telestrip\"")],
            "Unauthorized\n",
        )
            .into_response(),
        Refusal::RateLimited => {
            (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
        }
    }
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
