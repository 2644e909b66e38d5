//! The gateway pair of scripts/pair-lab.sh, driven from tests: namespaces, commands in them,
//! what the gateways and the server's sinks report. Removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pair-lab.sh");
pub const FLOWS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pair_flows.py");
pub const TELEMETRY: &str = "v10.events.data.microsoft.com";
/// The server's second address, which DNS gives the telemetry name.
pub const LEARNED_ADDRESS: &str = "10.79.2.20";
pub const DOWNLOAD_BYTES: usize = 1_500_000;
/// Where the gateways of [`Pair::up_with`] fetch signed rules from.
pub const PACK_URL: &str = "http://10.79.2.10:8080/pack/";

pub struct Pair {
    pub id: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Pair {
    pub fn up() -> Self {
        Self::up_with(None)
    }

    /// With `pack_key` (a minisign public key file), the gateways take signed rules from
    /// `DIR/www/pack`, which the server serves at [`PACK_URL`].
    pub fn up_with(pack_key: Option<&Path>) -> Self {
        let pair = Pair {
            id: format!("{}", std::process::id() % 100_000),
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
        };
        let dir = pair.dir().display().to_string();
        let mut args = vec!["up", &pair.id, &dir, env!("CARGO_BIN_EXE_telestrip")];
        let key = pack_key.map(|k| k.display().to_string());
        args.extend(key.as_deref());
        let output = pair.lab(&args);
        assert!(
            output.status.success(),
            "the pair lab did not come up: {}{}",
            String::from_utf8_lossy(&output.stderr),
            pair.logs()
        );
        pair
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn lab(&self, args: &[&str]) -> Output {
        Command::new("bash").arg(LAB).args(args).output().unwrap()
    }

    pub fn ns(&self, name: &str) -> String {
        format!("tsp-{}-{name}", self.id)
    }

    pub fn run(&self, ns: &str, command: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "sh", "-c", command])
            .output()
            .unwrap()
    }

    pub fn spawn(&mut self, ns: &str, command: &str, stdout: Option<&Path>) -> u32 {
        let out = match stdout {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "sh", "-c", command])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    pub fn master(&self) -> String {
        let output = self.lab(&["master", &self.id]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// One sample of a gateway's metric (the line that starts with `series`).
    pub fn metric(&self, gateway: &str, series: &str) -> f64 {
        let output = self.run(
            gateway,
            "curl -s --max-time 2 http://127.0.0.1:9477/metrics",
        );
        let text = String::from_utf8_lossy(&output.stdout);
        super::series(&text, series).unwrap_or_else(|| panic!("no {series} on gateway {gateway}"))
    }

    pub fn health(&self, gateway: &str) -> String {
        let output = self.run(
            gateway,
            "curl -s --max-time 2 http://127.0.0.1:9477/healthz",
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the server's sinks received: TCP bytes or UDP datagrams from `client_port` on
    /// `listener` (`tcp:ADDR:PORT`), None if that client never reached it.
    pub fn received(&self, listener: &str, client_port: u16) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir().join("sink.json")).ok()?;
        let counts: serde_json::Value = serde_json::from_str(&text).ok()?;
        counts[listener][client_port.to_string()].as_u64()
    }

    /// The kernel's connection table on `gateway` (conntrackd writes the other gateway's
    /// connections into it).
    pub fn connections(&self, gateway: &str) -> String {
        let output = self.run(gateway, "conntrack -L 2>/dev/null");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Packets the kernel handed to telestrip on `gateway` (its queue's sequence number).
    pub fn queued(&self, gateway: &str) -> u64 {
        let output = self.run(gateway, "cat /proc/net/netfilter/nfnetlink_queue");
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .nth(7)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no queue bound on {gateway}: {text}"))
    }

    /// Packets the kernel dropped on `gateway` because their connection carries the block mark.
    pub fn dropped_on_mark(&self, gateway: &str) -> u64 {
        let output = self.run(gateway, "iptables -L TELESTRIP -v -x -n");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find(|l| l.contains("DROP") && l.contains("connmark match  0x20/0xf0"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no connmark drop rule on {gateway}: {text}"))
    }

    pub fn audit_verifies(&self, gateway: &str) -> bool {
        let log = self.dir().join(gateway).join("audit/audit.jsonl");
        Command::new(env!("CARGO_BIN_EXE_telestrip"))
            .args(["audit", "verify"])
            .arg(&log)
            .output()
            .unwrap()
            .status
            .success()
    }

    pub fn audit_records(&self, gateway: &str) -> Vec<serde_json::Value> {
        let log = self.dir().join(gateway).join("audit/audit.jsonl");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A QUIC flow from the client: an Initial for `name`, then a datagram every 100 ms for
    /// 60 s from the same port, which this returns.
    pub fn quic_flow(&mut self, name: &str) -> u16 {
        self.client_flow(
            &format!("quic-{name}"),
            &format!("quic {name} 10.79.2.10 --port 443 --seconds 60"),
        )
    }

    /// A TCP connection from the client to the server's sink that sends its ClientHello for
    /// `name` only once `trigger` exists: its verdict is pending until then. Returns the
    /// connection's local port.
    pub fn pending_flow(&mut self, name: &str, trigger: &Path) -> u16 {
        self.client_flow(
            &format!("hold-{name}"),
            &format!(
                "hold {name} 10.79.2.10 --port 8443 --trigger {} --seconds 60",
                trigger.display()
            ),
        )
    }

    /// Runs `pair_flows.py ARGUMENTS` on the client (for at most 70 s) and returns the local
    /// port it prints first.
    fn client_flow(&mut self, label: &str, arguments: &str) -> u16 {
        let port_file = self.dir().join(format!("{label}.port"));
        self.spawn(
            "client",
            &format!("timeout 70 python3 {FLOWS} {arguments}"),
            Some(&port_file),
        );
        let mut port = None;
        wait_for(&format!("the port of {label}"), 10, || {
            port = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            port.is_some()
        });
        port.unwrap()
    }

    /// The client's local port of its TCP connection to `destination` (ADDR:PORT).
    pub fn client_port_to(&self, destination: &str) -> Option<u16> {
        let output = self.run("client", "ss -tn");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(4) == Some(&destination))
                .then(|| fields.get(3)?.rsplit(':').next()?.parse().ok())?
        })
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        for file in [
            "a/telestrip.log",
            "b/telestrip.log",
            "a/keepalived.log",
            "b/keepalived.log",
            "a/failover.log",
            "b/failover.log",
            "a/conntrackd.log",
            "b/conntrackd.log",
            "www.log",
        ] {
            let content = std::fs::read_to_string(self.dir().join(file)).unwrap_or_default();
            let tail: Vec<&str> = content
                .lines()
                .filter(|l| !l.contains("audit chain head"))
                .collect();
            let start = tail.len().saturating_sub(15);
            text.push_str(&format!("\n--- {file}\n{}", tail[start..].join("\n")));
        }
        text
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir: PathBuf = self.dir().to_path_buf();
        let _ = self.lab(&["down", &self.id, &dir.display().to_string()]);
    }
}

/// Polls `done` every 100 ms for at most `seconds`.
pub fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
