//! Learned state shared between the gateways of a site through Redis (`shared_state:` in the
//! config): the gateway that saw a DNS answer writes what it learned (telemetry addresses,
//! ECH configurations), each as a key that expires with the record's TTL, and publishes it
//! on the site's channel; its peers import what they read there, and everything still
//! unexpired when they (re)connect. After a failover the new gateway then knows the answers
//! its clients still use.
//!
//! Redis is never on the packet path. The engine hands facts to a bounded channel; one
//! thread writes them, another reads the peers'. When Redis is slow or gone each gateway
//! filters on its own: the writer keeps a bounded backlog and retries with backoff, the
//! failure is counted and shown as degraded on `/healthz` and the status page, and both
//! threads reconnect by themselves.
//!
//! Keys: `PREFIX:addr:ADDRESS` = `EXPIRES NAME`, `PREFIX:ech:CONFIG_ID:PUBLIC_NAME` =
//! `EXPIRES` (Unix seconds). Channel `PREFIX:facts`, messages `ORIGIN KEY VALUE` (the
//! stored key and value after the gateway that wrote them, so a gateway skips its own).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::SharedStateConfig;
use crate::engine::Engine;
use crate::flow::SharedFact;
use crate::stats::{Family, MetricSink};

/// Facts waiting between the packet threads and the writer.
const OUTBOX_CAPACITY: usize = 4096;
/// Longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often an idle writer checks its connection.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How often the threads look at the stop flag while idle.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What the sharing threads did, for metrics, `/healthz` and the status page.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Both threads are connected.
    writer_up: AtomicBool,
    reader_up: AtomicBool,
    /// Facts written to Redis, and read from the peers (and imported: not expired).
    pub written: AtomicU64,
    pub imported: AtomicU64,
    /// Facts dropped from the writer's backlog while Redis was unreachable.
    pub backlog_dropped: AtomicU64,
    /// Facts waiting for Redis now.
    pub backlog: AtomicU64,
    /// Failed connections and commands.
    pub errors: AtomicU64,
    /// Messages on the channel that did not parse.
    pub malformed: AtomicU64,
    /// Since when Redis has been unreachable, and why (None: it is reachable).
    down: Mutex<Option<(SystemTime, String)>>,
}

impl SharedStats {
    /// Why sharing is degraded, if it is: Redis unreachable since when, and the last error.
    pub fn degraded(&self) -> Option<String> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.as_ref().map(|(since, why)| {
            let seconds = SystemTime::now()
                .duration_since(*since)
                .unwrap_or_default()
                .as_secs();
            format!("shared state: Redis unreachable for {seconds} s ({why}); filtering on this gateway's own state")
        })
    }

    pub fn connected(&self) -> bool {
        self.writer_up.load(Ordering::Relaxed) && self.reader_up.load(Ordering::Relaxed)
    }

    fn went_down(&self, up: &AtomicBool, why: String) {
        up.store(false, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *down {
            Some((_, last)) => *last = why,
            None => {
                crate::log_line!(Warning, "telestrip: shared state: Redis unreachable ({why}); filtering on this gateway's own state, retrying");
                *down = Some((SystemTime::now(), why));
            }
        }
    }

    fn came_up(&self, up: &AtomicBool) {
        up.store(true, Ordering::Relaxed);
        if self.connected() {
            let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((since, _)) = down.take() {
                let seconds = SystemTime::now()
                    .duration_since(since)
                    .unwrap_or_default()
                    .as_secs();
                crate::log_line!(
                    Notice,
                    "telestrip: shared state: Redis reachable again after {seconds} s"
                );
            }
        }
    }
}

const UP: Family = Family {
    name: "telestrip_shared_state_up",
    help: "1 when the shared state (Redis) is reachable for writing and reading, 0 when this gateway filters on its own state only.",
    labels: &[],
};
const FACTS: Family = Family {
    name: "telestrip_shared_facts_total",
    help: "Learned facts shared through Redis, by result: written (by this gateway), imported (from peers), dropped (backlog full while Redis was unreachable, or the outbox full).",
    labels: &["result"],
};
const BACKLOG: Family = Family {
    name: "telestrip_shared_facts_backlog",
    help: "Learned facts waiting for Redis to come back.",
    labels: &[],
};
const ERRORS: Family = Family {
    name: "telestrip_shared_state_errors_total",
    help: "Failed connections and commands to Redis, and malformed messages on the channel.",
    labels: &["kind"],
};

impl SharedStats {
    pub fn export_metrics(&self, engine: &Engine, sink: &mut dyn MetricSink) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        sink.gauge(&UP, &[], u64::from(self.connected()));
        sink.counter(&FACTS, &["written"], load(&self.written));
        sink.counter(&FACTS, &["imported"], load(&self.imported));
        sink.counter(
            &FACTS,
            &["dropped"],
            load(&self.backlog_dropped) + load(&engine.facts_unshared),
        );
        sink.gauge(&BACKLOG, &[], load(&self.backlog));
        sink.counter(&ERRORS, &["redis"], load(&self.errors));
        sink.counter(&ERRORS, &["malformed"], load(&self.malformed));
    }
}

/// Starts sharing `engine`'s learned facts as gateway `origin`; the threads stop with `stop`.
pub fn spawn(
    config: &SharedStateConfig,
    origin: &str,
    engine: &Arc<Engine>,
    stats: &Arc<SharedStats>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let client = redis::Client::open(config.redis.as_str())
        .map_err(|e| anyhow::anyhow!("shared_state.redis: {e}"))?;
    let (outbox, facts) = sync_channel(OUTBOX_CAPACITY);
    engine.share_facts(outbox);
    let site = Site {
        client,
        prefix: config.prefix.clone(),
        origin: origin.to_string(),
        timeout: Duration::from_millis(config.timeout_ms),
    };
    let writer = Writer {
        site: site.clone(),
        backlog: VecDeque::new(),
        max_backlog: config.backlog,
    };
    let (writer_stats, writer_stop) = (Arc::clone(stats), Arc::clone(stop));
    std::thread::Builder::new()
        .name("telestrip-share-w".into())
        .spawn(move || writer.run(&facts, &writer_stats, &writer_stop))?;
    let reader = Reader {
        site,
        max_import: config.max_import,
    };
    let (engine, reader_stats, reader_stop) =
        (Arc::clone(engine), Arc::clone(stats), Arc::clone(stop));
    std::thread::Builder::new()
        .name("telestrip-share-r".into())
        .spawn(move || reader.run(&engine, &reader_stats, &reader_stop))?;
    Ok(())
}

#[derive(Clone)]
struct Site {
    client: redis::Client,
    prefix: String,
    origin: String,
    timeout: Duration,
}

impl Site {
    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    fn channel(&self) -> String {
        format!("{}:facts", self.prefix)
    }
}

struct Writer {
    site: Site,
    backlog: VecDeque<SharedFact>,
    max_backlog: usize,
}

impl Writer {
    fn run(mut self, facts: &Receiver<SharedFact>, stats: &SharedStats, stop: &AtomicBool) {
        let mut connection = None;
        let mut backoff = Backoff::default();
        let mut last_check = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match facts.recv_timeout(IDLE_POLL) {
                Ok(fact) => self.keep(fact, stats),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(fact) = facts.try_recv() {
                self.keep(fact, stats);
            }
            if connection.is_none() && backoff.due() {
                match self.site.connect() {
                    Ok(c) => {
                        connection = Some(c);
                        backoff.reset();
                        stats.came_up(&stats.writer_up);
                    }
                    Err(error) => {
                        backoff.failed();
                        stats.went_down(&stats.writer_up, error.to_string());
                    }
                }
            }
            if let Some(c) = &mut connection {
                // An idle connection is checked now and then, so an outage shows without
                // waiting for the next fact.
                let check = if self.backlog.is_empty() && last_check.elapsed() >= PING_EVERY {
                    last_check = Instant::now();
                    redis::cmd("PING").query::<()>(c)
                } else {
                    Ok(())
                };
                if let Err(error) = check.and_then(|()| self.flush(c, stats)) {
                    connection = None;
                    backoff.failed();
                    stats.went_down(&stats.writer_up, error.to_string());
                }
            }
            stats
                .backlog
                .store(self.backlog.len() as u64, Ordering::Relaxed);
        }
    }

    fn keep(&mut self, fact: SharedFact, stats: &SharedStats) {
        if self.backlog.len() >= self.max_backlog {
            self.backlog.pop_front();
            stats.backlog_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.backlog.push_back(fact);
    }

    /// Writes the backlog in one pipeline; on error it stays for the next attempt.
    fn flush(
        &mut self,
        connection: &mut redis::Connection,
        stats: &SharedStats,
    ) -> redis::RedisResult<()> {
        let now = unix_now().as_secs();
        self.backlog.retain(|fact| fact.expires() > now);
        if self.backlog.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let channel = self.site.channel();
        for fact in &self.backlog {
            let (key, value) = key_value(&self.site.prefix, fact);
            pipe.cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("EXAT")
                .arg(fact.expires())
                .ignore();
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(format!("{} {key} {value}", self.site.origin))
                .ignore();
        }
        pipe.query::<()>(connection)?;
        stats
            .written
            .fetch_add(self.backlog.len() as u64, Ordering::Relaxed);
        self.backlog.clear();
        Ok(())
    }
}

struct Reader {
    site: Site,
    max_import: usize,
}

impl Reader {
    fn run(self, engine: &Engine, stats: &SharedStats, stop: &AtomicBool) {
        let mut backoff = Backoff::default();
        while !stop.load(Ordering::Relaxed) {
            if !backoff.due() {
                std::thread::sleep(IDLE_POLL.min(backoff.left()));
                continue;
            }
            match self.follow(engine, stats, stop) {
                Ok(()) => return,
                Err(error) => {
                    backoff.failed();
                    stats.went_down(&stats.reader_up, error.to_string());
                }
            }
        }
    }

    /// Subscribes, imports what is stored, then imports what peers publish until `stop`.
    fn follow(
        &self,
        engine: &Engine,
        stats: &SharedStats,
        stop: &AtomicBool,
    ) -> redis::RedisResult<()> {
        let mut subscriber = self.site.connect()?;
        // Subscribed before reading the stored facts, so nothing published in between is
        // missed (a fact seen twice is learned twice, harmlessly).
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(self.site.channel())?;
        pubsub.set_read_timeout(Some(IDLE_POLL))?;
        let mut store = self.site.connect()?;
        self.import_stored(&mut store, engine, stats)?;
        drop(store);
        stats.came_up(&stats.reader_up);
        while !stop.load(Ordering::Relaxed) {
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(error) if error.is_timeout() => continue,
                Err(error) => return Err(error),
            };
            let Ok(payload) = message.get_payload::<String>() else {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match parse_message(&self.site.prefix, &payload) {
                Some((origin, _)) if origin == self.site.origin => {}
                Some((_, fact)) => import(engine, &fact, stats),
                None => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    fn import_stored(
        &self,
        connection: &mut redis::Connection,
        engine: &Engine,
        stats: &SharedStats,
    ) -> redis::RedisResult<()> {
        let mut seen = 0usize;
        for kind in ["addr", "ech"] {
            let pattern = format!("{}:{kind}:*", self.site.prefix);
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(connection)?;
                if !keys.is_empty() {
                    let values: Vec<Option<String>> =
                        redis::cmd("MGET").arg(&keys).query(connection)?;
                    for (key, value) in keys.iter().zip(values) {
                        if seen >= self.max_import {
                            return Ok(());
                        }
                        seen += 1;
                        // None: expired between SCAN and MGET, or not a fact.
                        let fact = value.and_then(|v| parse_key_value(&self.site.prefix, key, &v));
                        if let Some(fact) = fact {
                            import(engine, &fact, stats);
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn import(engine: &Engine, fact: &SharedFact, stats: &SharedStats) {
    if engine.import(fact, unix_now()) {
        stats.imported.fetch_add(1, Ordering::Relaxed);
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Exponential backoff from 100 ms to [`MAX_BACKOFF`].
#[derive(Default)]
struct Backoff {
    next: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    fn due(&self) -> bool {
        self.next.is_none_or(|at| Instant::now() >= at)
    }

    fn left(&self) -> Duration {
        self.next.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    fn failed(&mut self) {
        self.delay = (self.delay * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
        self.next = Some(Instant::now() + self.delay);
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The key and value a fact is stored under.
fn key_value(prefix: &str, fact: &SharedFact) -> (String, String) {
    match fact {
        SharedFact::Address {
            addr,
            name,
            expires,
        } => (format!("{prefix}:addr:{addr}"), format!("{expires} {name}")),
        SharedFact::EchConfig {
            public_name,
            config_id,
            expires,
        } => (
            format!("{prefix}:ech:{config_id}:{public_name}"),
            expires.to_string(),
        ),
    }
}

fn parse_key_value(prefix: &str, key: &str, value: &str) -> Option<SharedFact> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(':')?;
    if let Some(addr) = rest.strip_prefix("addr:") {
        let (expires, name) = value.split_once(' ')?;
        return Some(SharedFact::Address {
            addr: addr.parse().ok()?,
            name: checked_name(name)?.into(),
            expires: expires.parse().ok()?,
        });
    }
    let (config_id, public_name) = rest.strip_prefix("ech:")?.split_once(':')?;
    Some(SharedFact::EchConfig {
        public_name: checked_name(public_name)?.into(),
        config_id: config_id.parse().ok()?,
        expires: value.parse().ok()?,
    })
}

/// A channel message: the gateway that wrote the fact, then its key and value.
fn parse_message<'a>(prefix: &str, text: &'a str) -> Option<(&'a str, SharedFact)> {
    let (origin, stored) = text.split_once(' ')?;
    let (key, value) = stored.split_once(' ')?;
    Some((origin, parse_key_value(prefix, key, value)?))
}

/// A DNS name as the engine learns them: at most 253 bytes of name characters. Anything else
/// on the channel is not a fact a gateway wrote.
fn checked_name(name: &str) -> Option<&str> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'));
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Vec<SharedFact> {
        vec![
            SharedFact::Address {
                addr: "2001:db8::7".parse().unwrap(),
                name: "v10.events.data.microsoft.com".into(),
                expires: 1_800_000_300,
            },
            SharedFact::EchConfig {
                public_name: "public.example.org".into(),
                config_id: 7,
                expires: 1_800_000_060,
            },
        ]
    }

    #[test]
    fn facts_survive_storage_and_the_channel() {
        for fact in facts() {
            let (key, value) = key_value("telestrip:site-a", &fact);
            assert_eq!(
                parse_key_value("telestrip:site-a", &key, &value),
                Some(fact.clone())
            );
            assert_eq!(parse_key_value("telestrip:site-b", &key, &value), None);
            let text = format!("gw-a {key} {value}");
            assert_eq!(
                parse_message("telestrip:site-a", &text),
                Some(("gw-a", fact))
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for text in [
            "",
            "gw-a",
            "gw-a p:addr:10.0.0.1 1800000000",
            "gw-a p:addr:not-an-address 1800000000 t.example",
            "gw-a p:addr:10.0.0.1 soon t.example",
            "gw-a p:ech:300:public.example.org 1800000000",
            "gw-a p:what:1 1800000000 t.example",
            "gw-a p:addr:10.0.0.1 1800000000 <script>",
            "gw-a other:addr:10.0.0.1 1800000000 t.example",
        ] {
            assert_eq!(parse_message("p", text), None, "{text:?}");
        }
    }

    #[test]
    fn backoff_grows_to_its_limit_and_resets() {
        let mut backoff = Backoff::default();
        assert!(backoff.due());
        backoff.failed();
        assert_eq!(backoff.delay, Duration::from_millis(100));
        assert!(!backoff.due());
        for _ in 0..20 {
            backoff.failed();
        }
        assert_eq!(backoff.delay, MAX_BACKOFF);
        backoff.reset();
        assert!(backoff.due());
    }
}
