//! Learned state shared between two gateways through a real Redis (`shared_state:`): what
//! one learns from a DNS answer the other knows within moments, a gateway that connects
//! later reads what is stored, and an outage is shown as degraded, counted, bridged by a
//! backlog, and recovered from without help.
mod common;

use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use telestrip::config::SharedStateConfig;
use telestrip::engine::{Engine, EngineConfig};
use telestrip::rules::{bundled_sources, load_sources, RuleSet};
use telestrip::shared::{self, SharedStats};
use telestrip::wire::LinkType;
use telestrip_testkit::{dns_response, Answer, Hosts};

struct Redis {
    child: Child,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = Self { child };
        wait_for("redis answers", || {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        });
        redis
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `done` every 50 ms for at most 10 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Gateway {
    engine: Arc<Engine>,
    stats: Arc<SharedStats>,
    stop: Arc<AtomicBool>,
}

impl Gateway {
    fn start(name: &str, port: u16) -> Self {
        let files = load_sources(bundled_sources()).unwrap();
        let engine = Arc::new(Engine::new(
            RuleSet::compile(&files).unwrap(),
            EngineConfig::default(),
        ));
        let stats = Arc::new(SharedStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let config = SharedStateConfig {
            redis: format!("redis://127.0.0.1:{port}/0"),
            prefix: format!("telestrip-test:{port}"),
            timeout_ms: 200,
            backlog: 100,
            max_import: 1000,
        };
        shared::spawn(&config, name, &engine, &stats, &stop).unwrap();
        Self {
            engine,
            stats,
            stop,
        }
    }

    /// The gateway sees a DNS answer for a telemetry name with `addr` (TTL 300 s).
    fn sees_answer(&self, addr: [u8; 4]) {
        let dns = Hosts::new("192.0.2.10", 5353, "192.0.2.53", 53);
        let answer = dns.udp(
            false,
            &dns_response(
                1,
                "v10.events.data.microsoft.com",
                1,
                &[Answer::A("v10.events.data.microsoft.com", addr)],
            ),
        );
        let mut events = Vec::new();
        self.engine
            .worker()
            .process(LinkType::Ethernet, &answer, now(), &mut events);
    }

    fn knows(&self, addr: [u8; 4]) -> bool {
        self.engine
            .learned()
            .with_name(IpAddr::from(addr), now(), |name| name.to_string())
            .is_some_and(|name| name == "v10.events.data.microsoft.com")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

#[test]
#[ignore = "needs redis-server; scripts/test.sh installs it and runs it"]
fn learned_addresses_reach_the_peer_and_survive_a_redis_outage() {
    common::require_tools(&["redis-server", "redis-cli"]);
    let port = free_port();
    let redis = Redis::start(port);
    let a = Gateway::start("gw-a", port);
    let b = Gateway::start("gw-b", port);
    wait_for("both connected", || {
        a.stats.connected() && b.stats.connected()
    });
    assert_eq!(a.stats.degraded(), None);

    // What A learns, B knows; A does not import its own facts back.
    a.sees_answer([198, 51, 100, 7]);
    wait_for("B imports A's fact", || b.knows([198, 51, 100, 7]));
    assert_eq!(a.stats.imported.load(Ordering::Relaxed), 0);
    assert_eq!(a.stats.written.load(Ordering::Relaxed), 1);
    // Stored with its TTL.
    let ttl = Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "ttl",
            &format!("telestrip-test:{port}:addr:198.51.100.7"),
        ])
        .output()
        .unwrap();
    let ttl: u64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!((250..=300).contains(&ttl), "TTL {ttl}");

    // A gateway that connects later reads what is stored.
    let c = Gateway::start("gw-c", port);
    wait_for("C reads the stored fact", || c.knows([198, 51, 100, 7]));

    // Redis goes away: both keep working, say they are degraded, count the failure.
    redis.stop();
    a.sees_answer([198, 51, 100, 8]);
    wait_for("A notices the outage", || a.stats.degraded().is_some());
    wait_for("B notices the outage", || b.stats.degraded().is_some());
    assert!(a.stats.errors.load(Ordering::Relaxed) > 0);
    assert!(a.knows([198, 51, 100, 8]), "A filters on its own state");
    assert!(!b.knows([198, 51, 100, 8]));

    // Redis comes back: both reconnect by themselves, A's backlog reaches B.
    let _redis = Redis::start(port);
    wait_for("A and B recover", || {
        a.stats.degraded().is_none() && b.stats.degraded().is_none()
    });
    wait_for("B imports what A learned during the outage", || {
        b.knows([198, 51, 100, 8])
    });
}
