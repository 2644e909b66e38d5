//! A test network of three namespaces, client — gateway — server, joined by veth pairs, with
//! real servers on the server (HTTPS and HTTP from tests/fixtures/servers.py, dnsmasq) and
//! telestrip inline on the gateway. Addresses exist only inside the namespaces:
//! client 10.78.1.2 / fd78:1::2, gateway 10.78.1.1 + 10.78.2.1 / fd78:1::1 + fd78:2::1,
//! server 10.78.2.2 / fd78:2::2. Everything is removed when the `Lab` is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SERVER_V4: &str = "10.78.2.2";
pub const SERVER_V6: &str = "fd78:2::2";

/// Why a namespace test cannot run here, if it cannot. In CI (CI=true) the caller panics.
pub fn missing_requirement() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in [
        "ip",
        "iptables",
        "ip6tables",
        "iptables-legacy",
        "nft",
        "systemd-analyze",
        "curl",
        "dig",
        "dnsmasq",
        "openssl",
        "python3",
    ] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Returns false (after saying why) when the test cannot run outside CI; panics in CI.
pub fn can_run() -> bool {
    match missing_requirement() {
        None => true,
        Some(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("namespace tests must run in CI, but {reason}")
        }
        Some(reason) => {
            eprintln!("namespace test NOT RUN: {reason} (it runs in CI as root)");
            false
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    pub client: String,
    pub gateway: String,
    pub server: String,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
    daemon: Option<Child>,
}

impl Lab {
    pub fn new() -> Self {
        let id = format!(
            "{}-{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            client: format!("tsl-c{id}"),
            gateway: format!("tsl-g{id}"),
            server: format!("tsl-s{id}"),
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
            daemon: None,
        };
        let (c, g, s) = (&lab.client, &lab.gateway, &lab.server);
        for ns in [c, g, s] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        sh(&format!(
            "ip link add c0 netns {c} type veth peer name gc netns {g}"
        ));
        sh(&format!(
            "ip link add s0 netns {s} type veth peer name gs netns {g}"
        ));
        for (ns, dev, v4, v6) in [
            (c, "c0", "10.78.1.2/24", "fd78:1::2/64"),
            (g, "gc", "10.78.1.1/24", "fd78:1::1/64"),
            (g, "gs", "10.78.2.1/24", "fd78:2::1/64"),
            (s, "s0", "10.78.2.2/24", "fd78:2::2/64"),
        ] {
            sh(&format!("ip -n {ns} addr add {v4} dev {dev} && ip -n {ns} addr add {v6} dev {dev} nodad && ip -n {ns} link set {dev} up"));
        }
        sh(&format!("ip -n {c} route add default via 10.78.1.1 && ip -n {c} -6 route add default via fd78:1::1"));
        sh(&format!("ip -n {s} route add default via 10.78.2.1 && ip -n {s} -6 route add default via fd78:2::1"));
        sh(&format!(
            "ip netns exec {g} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
        ));
        lab
    }

    /// Starts the HTTPS/HTTP servers and dnsmasq on the server, and waits until they answer.
    pub fn start_servers(&mut self) {
        let dir = self.dir.path();
        sh(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=t -keyout {0}/key.pem -out {0}/cert.pem 2>/dev/null",
            dir.display()
        ));
        let servers = fixtures().join("servers.py");
        let web = self.spawn_in(
            &self.server.clone(),
            &format!(
                "python3 {} --cert {1}/cert.pem --key {1}/key.pem --seconds 300",
                servers.display(),
                dir.display()
            ),
        );
        self.children.push(web);
        let dns = self.spawn_in(&self.server.clone(), &format!(
            "dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address={SERVER_V4} --listen-address={SERVER_V6} \
             --address=/v10.events.data.microsoft.com/{SERVER_V4} --address=/www.example.org/{SERVER_V4} --log-facility=/dev/null"
        ));
        self.children.push(dns);
        self.wait_for(|lab| {
            lab.client_ok(&format!(
                "curl -s -o /dev/null --max-time 1 http://{SERVER_V4}/"
            ))
        });
        self.wait_for(|lab| {
            lab.client_ok(&format!(
                "dig +time=1 +tries=1 +short @{SERVER_V4} www.example.org | grep -q ."
            ))
        });
    }

    /// Installs deploy/iptables.sh on the gateway and starts `telestrip run` with `config`.
    pub fn start_telestrip(&mut self, config: &str, fail: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iptables.sh");
        sh(&format!(
            "ip netns exec {} bash {} add --queues 0 --fail {fail}",
            self.gateway,
            script.display()
        ));
        self.start_daemon(config);
    }

    /// Starts (or restarts) only the daemon.
    pub fn start_daemon(&mut self, config: &str) {
        let path = self.dir.path().join("telestrip.yaml");
        std::fs::write(&path, config).unwrap();
        let events = std::fs::File::create(self.events_path()).unwrap();
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.gateway,
                env!("CARGO_BIN_EXE_telestrip"),
                "run",
                "--config",
            ])
            .arg(&path)
            .stdout(events)
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let log = self.dir.path().join("daemon.log");
        self.wait_for(|_| {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("filtering on NFQUEUE"))
        });
    }

    /// Stops the daemon with `signal` and returns its log.
    pub fn stop_daemon(&mut self, signal: &str) -> String {
        if let Some(mut child) = self.daemon.take() {
            sh(&format!("kill -{signal} {}", child.id()));
            let _ = child.wait();
        }
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// Matched-flow events the daemon wrote so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.events_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Runs a shell command in the client namespace.
    pub fn client(&self, command: &str) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "timeout",
                "20",
                "sh",
                "-c",
                command,
            ])
            .output()
            .unwrap()
    }

    pub fn client_ok(&self, command: &str) -> bool {
        self.client(command).status.success()
    }

    /// HTTPS GET of `name` at `addr` with curl (`--resolve`, so no DNS is involved).
    pub fn https(&self, name: &str, addr: &str, extra: &str) -> Output {
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        self.client(&format!(
            "curl -sk --max-time 3 {extra} --resolve {name}:443:{host} https://{name}/"
        ))
    }

    fn spawn_in(&self, ns: &str, command: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("exec {command}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_for(&self, ready: impl Fn(&Lab) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if ready(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("lab did not get ready in 15 s");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
            let events = std::fs::read_to_string(self.events_path()).unwrap_or_default();
            eprintln!("--- telestrip log:\n{log}--- matched flows:\n{events}---");
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client, &self.gateway, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn sh(command: &str) {
    let output = Command::new("sh").args(["-c", command]).output().unwrap();
    assert!(
        output.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
