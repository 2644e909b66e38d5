//! A test network of three namespaces, client — gateway — server, joined by veth pairs, with
//! real servers on the server (HTTPS and HTTP from `tests/fixtures/servers.py`, dnsmasq) and
//! telestrip inline on the gateway. Used by `telestrip demo` and the namespace tests.
//! Addresses exist only inside the namespaces: client 10.78.1.2 / fd78:1::2, gateway
//! 10.78.1.1 + 10.78.2.1 / fd78:1::1 + fd78:2::1, server 10.78.2.2 / fd78:2::2.
//! Everything is removed when the [`Lab`] is dropped. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SERVER_V4: &str = "10.78.2.2";
pub const SERVER_V6: &str = "fd78:2::2";
/// A name whose DNS HTTPS record (from the lab's dnsmasq) offers ECH: alpn h2, both
/// server addresses as hints, and an ECH configuration for [`ECH_PUBLIC_NAME`]. It has A
/// and AAAA records too: given an empty AAAA answer, Chromium was seen to look the name up
/// again through the system's resolver, which knows no HTTPS records, and not use ECH.
pub const ECH_NAME: &str = "ech.example.org";
pub const ECH_PUBLIC_NAME: &str = "public.example.org";
/// A name no rule matches, which the lab's dnsmasq answers with a CNAME to
/// [`CLOAK_TARGET`], a telemetry name the bundled rules reject: CNAME cloaking.
pub const CLOAKED_NAME: &str = "cloaked.example.org";
pub const CLOAK_TARGET: &str = "vortex.data.microsoft.com";

/// The record data of [`ECH_NAME`]'s HTTPS record, in hex for dnsmasq's `--dns-rr`.
fn ech_https_record_hex() -> String {
    let v4: std::net::Ipv4Addr = SERVER_V4.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let v6: std::net::Ipv6Addr = SERVER_V6.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
    let list = crate::inspect::dns::ech_config_list(7, ECH_PUBLIC_NAME);
    // Priority 1, target "." (RFC 9460 §2.2), then the parameters in key order.
    let mut rdata = vec![0, 1, 0];
    rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']);
    rdata.extend_from_slice(&[0, 4, 0, 4]);
    rdata.extend_from_slice(&v4.octets());
    rdata.extend_from_slice(&[0, 5]);
    rdata.extend_from_slice(&(list.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&list);
    rdata.extend_from_slice(&[0, 6, 0, 16]);
    rdata.extend_from_slice(&v6.octets());
    rdata.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What the test servers answer to a plain GET (see tests/fixtures/servers.py).
pub const BODY: &str = "telestrip test server\n";

/// The test servers, embedded so the demo works from the binary alone.
const SERVERS_PY: &str = include_str!("../tests/fixtures/servers.py");
/// The QUIC (HTTP/3) server and client, embedded likewise.
const QUIC_PY: &str = include_str!("../tests/fixtures/quic.py");
/// The firewall script of deploy/, embedded for the same reason.
const IPTABLES_SH: &str = include_str!("../deploy/iptables.sh");

/// Programs the lab runs, with the Debian package of each.
pub const TOOLS: [(&str, &str); 9] = [
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("curl", "curl"),
    ("dig", "dnsutils"),
    ("dnsmasq", "dnsmasq-base"),
    ("openssl", "openssl"),
    ("python3", "python3"),
    ("sysctl", "procps"),
];

/// What is missing to build a lab here: not root, or programs not installed.
pub fn missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0") {
        return Some("it needs root (network namespaces and firewall rules)".into());
    }
    let absent: Vec<(&str, &str)> = TOOLS
        .iter()
        .copied()
        .filter(|(tool, _)| !installed(tool))
        .collect();
    if absent.is_empty() {
        let aioquic = Command::new("python3")
            .args(["-c", "import aioquic"])
            .status()
            .is_ok_and(|s| s.success());
        return (!aioquic).then(|| {
            "aioquic (the QUIC server) is not installed; pip install aioquic".to_string()
        });
    }
    let mut packages: Vec<&str> = absent.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let tools: Vec<&str> = absent.iter().map(|(t, _)| *t).collect();
    Some(format!(
        "{} not installed; on Debian: apt-get install {}",
        tools.join(", "),
        packages.join(" ")
    ))
}

pub fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    pub client: String,
    pub gateway: String,
    pub server: String,
    pub dir: tempfile::TempDir,
    telestrip: PathBuf,
    children: Vec<Child>,
    daemon: Option<Child>,
}

impl Lab {
    /// Builds the three namespaces; `telestrip` is the binary to run on the gateway.
    pub fn new(telestrip: &Path) -> Result<Self, String> {
        let id = format!(
            "{}-{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            client: format!("tsl-c{id}"),
            gateway: format!("tsl-g{id}"),
            server: format!("tsl-s{id}"),
            dir: tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?,
            telestrip: telestrip.to_path_buf(),
            children: Vec::new(),
            daemon: None,
        };
        // The daemon drops to an unprivileged user (config `user:`, nobody by default): it
        // must still read the rule files the tests write here.
        std::fs::set_permissions(
            lab.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| format!("temporary directory: {e}"))?;
        let (c, g, s) = (&lab.client, &lab.gateway, &lab.server);
        for ns in [c, g, s] {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"))?;
        }
        sh(&format!(
            "ip link add c0 netns {c} type veth peer name gc netns {g}"
        ))?;
        sh(&format!(
            "ip link add s0 netns {s} type veth peer name gs netns {g}"
        ))?;
        for (ns, dev, v4, v6) in [
            (c, "c0", "10.78.1.2/24", "fd78:1::2/64"),
            (g, "gc", "10.78.1.1/24", "fd78:1::1/64"),
            (g, "gs", "10.78.2.1/24", "fd78:2::1/64"),
            (s, "s0", "10.78.2.2/24", "fd78:2::2/64"),
        ] {
            sh(&format!("ip -n {ns} addr add {v4} dev {dev} && ip -n {ns} addr add {v6} dev {dev} nodad && ip -n {ns} link set {dev} up"))?;
        }
        sh(&format!("ip -n {c} route add default via 10.78.1.1 && ip -n {c} -6 route add default via fd78:1::1"))?;
        sh(&format!("ip -n {s} route add default via 10.78.2.1 && ip -n {s} -6 route add default via fd78:2::1"))?;
        sh(&format!(
            "ip netns exec {g} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
        ))?;
        Ok(lab)
    }

    /// Starts the HTTPS/HTTP servers, the QUIC server (UDP 443) and dnsmasq (which answers v10.events.data.microsoft.com
    /// and www.example.org with the server's address, and [`CLOAKED_NAME`] with a CNAME to
    /// [`CLOAK_TARGET`]) and waits until they answer.
    pub fn start_servers(&mut self) -> Result<(), String> {
        let dir = self.dir.path().to_path_buf();
        std::fs::write(dir.join("servers.py"), SERVERS_PY).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("quic.py"), QUIC_PY).map_err(|e| e.to_string())?;
        sh(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=telestrip-lab -keyout {0}/key.pem -out {0}/cert.pem 2>/dev/null",
            dir.display()
        ))?;
        let web = self.spawn_in(
            &self.server.clone(),
            &format!(
                "python3 {0}/servers.py --cert {0}/cert.pem --key {0}/key.pem --seconds 600",
                dir.display()
            ),
        )?;
        self.children.push(web);
        let quic = self.spawn_in(
            &self.server.clone(),
            &format!(
                "python3 {0}/quic.py serve --cert {0}/cert.pem --key {0}/key.pem --seconds 600",
                dir.display()
            ),
        )?;
        self.children.push(quic);
        let dns = self.spawn_in(&self.server.clone(), &format!(
            "dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address={SERVER_V4} --listen-address={SERVER_V6} \
             --address=/v10.events.data.microsoft.com/{SERVER_V4} --address=/v10.events.data.microsoft.com/{SERVER_V6} \
             --address=/www.example.org/{SERVER_V4} --address=/www.example.org/{SERVER_V6} \
             --address=/{ECH_NAME}/{SERVER_V4} --address=/{ECH_NAME}/{SERVER_V6} --dns-rr={ECH_NAME},65,{ech} \
             --host-record={CLOAK_TARGET},{SERVER_V4},{SERVER_V6} --cname={CLOAKED_NAME},{CLOAK_TARGET} --log-facility=/dev/null",
            ech = ech_https_record_hex()
        ))?;
        self.children.push(dns);
        self.wait_for(|lab| {
            lab.client_ok(&format!(
                "curl -s -o /dev/null --max-time 1 http://{SERVER_V4}/"
            ))
        })?;
        self.wait_for(|lab| {
            lab.client_ok(&format!(
                "dig +time=1 +tries=1 +short @{SERVER_V4} www.example.org | grep -q ."
            ))
        })?;
        self.wait_for(|lab| lab.quic("www.example.org", SERVER_V4, "").status.success())
    }

    /// Installs the firewall rules of deploy/iptables.sh on the gateway and starts
    /// `telestrip run` with `config`.
    pub fn start_telestrip(&mut self, config: &str, fail: &str) -> Result<(), String> {
        self.start_telestrip_on("0", config, fail)
    }

    /// The same with the firewall rules queueing to `queues` (`0`, or `0:1` to balance
    /// flows over two queues; `config` must list the same queues).
    pub fn start_telestrip_on(
        &mut self,
        queues: &str,
        config: &str,
        fail: &str,
    ) -> Result<(), String> {
        self.firewall(&format!("add --queues {queues} --fail {fail}"))?;
        self.start_daemon(config)
    }

    /// Makes programs in the client namespace resolve names through the server's dnsmasq
    /// (so through the gateway): `ip netns exec` mounts /etc/netns/CLIENT/resolv.conf over
    /// /etc/resolv.conf. Removed with the lab.
    pub fn resolve_through_server(&self) -> Result<(), String> {
        let dir = Path::new("/etc/netns").join(&self.client);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {SERVER_V4}\n"))
            .map_err(|e| format!("{}: {e}", dir.display()))
    }

    /// Removes the firewall rules from the gateway (traffic is then forwarded unfiltered).
    pub fn remove_firewall(&self) -> Result<(), String> {
        self.firewall("remove")
    }

    /// Runs deploy/iptables.sh with `arguments` in the gateway.
    fn firewall(&self, arguments: &str) -> Result<(), String> {
        let script = self.dir.path().join("iptables.sh");
        std::fs::write(&script, IPTABLES_SH).map_err(|e| e.to_string())?;
        sh(&format!(
            "ip netns exec {} bash {} {arguments}",
            self.gateway,
            script.display()
        ))
    }

    /// Starts (or restarts) only the daemon.
    pub fn start_daemon(&mut self, config: &str) -> Result<(), String> {
        self.start_daemon_with_env(config, &[])
    }

    /// Starts the daemon with extra environment variables (fault injection in tests).
    pub fn start_daemon_with_env(
        &mut self,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<(), String> {
        let path = self.dir.path().join("telestrip.yaml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let events = std::fs::File::create(self.events_path()).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(self.log_path()).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.gateway])
            .arg(&self.telestrip)
            .args(["run", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(events)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting telestrip: {e}"))?;
        self.daemon = Some(child);
        let log = self.log_path();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("telestrip: filtering")) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "telestrip exited at start ({status}); its log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "telestrip did not start filtering within 15 s; its log:\n{}",
            self.log()
        ))
    }

    /// Stops the daemon with `signal` (TERM, KILL, ...) and returns its log.
    pub fn stop_daemon(&mut self, signal: &str) -> String {
        if let Some(mut child) = self.daemon.take() {
            let _ = sh(&format!("kill -{signal} {}", child.id()));
            let _ = child.wait();
        }
        self.log()
    }

    /// Waits for the daemon to exit by itself (up to `limit`); its exit code.
    pub fn wait_daemon_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self.daemon.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.daemon = None;
                    return status.code();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Process id of the running daemon.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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

    /// Runs a shell command in the client namespace (20 s at most).
    pub fn client(&self, command: &str) -> Output {
        run_in(&self.client, command)
    }

    /// Runs a shell command in the client namespace, `seconds` at most: for a program
    /// that runs until the test tells it to stop, however long a loaded machine takes.
    pub fn client_within(&self, command: &str, seconds: u32) -> Output {
        run_within(&self.client, command, seconds)
    }

    /// Runs a shell command in the gateway namespace (20 s at most).
    pub fn gateway(&self, command: &str) -> Output {
        run_in(&self.gateway, command)
    }

    /// Starts a long-running program in the gateway namespace; stopped with the lab.
    pub fn spawn_in_gateway(&mut self, command: &str) -> Result<(), String> {
        let child = self.spawn_in(&self.gateway.clone(), command)?;
        self.children.push(child);
        Ok(())
    }

    /// A directory for the audit log, owned by the user the daemon drops to (nobody, the
    /// default of `user:`), as an admin or systemd's LogsDirectory makes it: the daemon
    /// creates files there once it is unprivileged.
    pub fn audit_dir(&self) -> Result<PathBuf, String> {
        let logs = self.dir.path().join("log");
        sh(&format!("install -d -o nobody -m 0750 {}", logs.display()))?;
        Ok(logs)
    }

    /// Starts a long-running program in the server namespace; stopped with the lab.
    pub fn spawn_in_server(&mut self, command: &str) -> Result<(), String> {
        let child = self.spawn_in(&self.server.clone(), command)?;
        self.children.push(child);
        Ok(())
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

    /// An HTTP/3 GET of `name` at `addr` with aioquic (`quic.py get`, no DNS involved):
    /// exit 0 with the body, or 28 when the connection did not complete in 2 s.
    pub fn quic(&self, name: &str, addr: &str, extra: &str) -> Output {
        self.client(&format!(
            "python3 {}/quic.py get {name} {addr} --timeout 2 {extra}",
            self.dir.path().display()
        ))
    }

    fn spawn_in(&self, ns: &str, command: &str) -> Result<Child, String> {
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("exec {command}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{command}: {e}"))
    }

    fn wait_for(&self, ready: impl Fn(&Lab) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if ready(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the lab did not get ready within 15 s; telestrip log:\n{}",
            self.log()
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- telestrip log:\n{}--- matched flows:\n{}---",
                self.log(),
                std::fs::read_to_string(self.events_path()).unwrap_or_default()
            );
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
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.client));
    }
}

/// Runs a shell command in namespace `ns`, killed after 20 s.
fn run_in(ns: &str, command: &str) -> Output {
    run_within(ns, command, 20)
}

/// Runs a shell command in namespace `ns`, killed after `seconds`.
fn run_within(ns: &str, command: &str, seconds: u32) -> Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "timeout",
            &seconds.to_string(),
            "sh",
            "-c",
            command,
        ])
        .output()
        .unwrap_or_else(|e| Output {
            status: std::process::ExitStatus::default(),
            stdout: Vec::new(),
            stderr: e.to_string().into_bytes(),
        })
}

/// Runs a shell command; its stderr is the error.
pub fn sh(command: &str) -> Result<(), String> {
    let output = Command::new("sh")
        .args(["-c", command])
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
