//! Audit logs shipped to a central host with real rsyslog (deploy/rsyslog/): two gateways in
//! network namespaces ship their logs over RELP to a central rsyslog that writes one file
//! per gateway. The central copies must be byte-exact and verify, also after a cut link and
//! after a gateway's rsyslog restarted while the central host was away; a line lost on the
//! way would break the copy's chain.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use telestrip::audit::AuditWriter;
use telestrip_testkit::{audit_flow, gateway_heartbeat, gateway_start};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rsyslog");

struct Net {
    id: String,
    dir: tempfile::TempDir,
    central: Option<Child>,
    shippers: Vec<Option<Child>>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("tsr-{}-{name}", self.id)
    }

    fn sh(&self, command: &str) {
        common::sh(command);
    }

    fn up() -> Self {
        let net = Net {
            id: format!("{}", std::process::id() % 100_000),
            dir: tempfile::tempdir().unwrap(),
            central: None,
            shippers: vec![None, None],
        };
        let (central, a, b) = (net.ns("central"), net.ns("a"), net.ns("b"));
        for ns in [&central, &a, &b] {
            net.sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        }
        for (ns, index) in [(&a, 1), (&b, 2)] {
            net.sh(&format!(
                "ip link add c{index} netns {central} type veth peer name uplink netns {ns}"
            ));
            net.sh(&format!(
                "ip -n {central} addr add 10.80.{index}.1/24 dev c{index} && ip -n {central} link set c{index} up"
            ));
            net.sh(&format!(
                "ip -n {ns} addr add 10.80.{index}.2/24 dev uplink && ip -n {ns} link set dev uplink up"
            ));
        }
        net
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an rsyslog main configuration for `name` (work directory, host name) that
    /// includes `file` of deploy/rsyslog with its placeholders replaced, and starts rsyslogd.
    fn rsyslog(&self, ns: &str, name: &str, file: &str, replace: &[(&str, String)]) -> Child {
        let work = self.dir().join(name);
        std::fs::create_dir_all(work.join("spool")).unwrap();
        let mut text = std::fs::read_to_string(Path::new(DEPLOY).join(file)).unwrap();
        for (placeholder, value) in replace {
            text = text.replace(placeholder, value);
        }
        std::fs::write(work.join(file), text).unwrap();
        let main = work.join("rsyslog.conf");
        std::fs::write(
            &main,
            format!(
                "global(workDirectory=\"{}\" localHostname=\"{name}\")\ninclude(file=\"{}\")\n",
                work.join("spool").display(),
                work.join(file).display()
            ),
        )
        .unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "rsyslogd", "-n", "-f"])
            .arg(&main)
            .arg("-i")
            .arg(work.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("rsyslogd.log")).unwrap())
            .spawn()
            .unwrap()
    }

    fn start_central(&mut self) {
        let fleet = self.dir().join("fleet");
        let child = self.rsyslog(
            "central",
            "central",
            "telestrip-central.conf",
            &[("@DIR@", fleet.display().to_string())],
        );
        self.central = Some(child);
    }

    fn start_shipper(&mut self, index: usize) {
        let gateway = ["a", "b"][index];
        let log = self.log(index);
        // What the systemd drop-in runs before rsyslog starts.
        let spool = self.dir().join(format!("gw-{gateway}")).join("spool");
        common::sh(&format!(
            "sh {DEPLOY}/telestrip-ship-rewind.sh {} {}",
            log.display(),
            spool.display()
        ));
        let child = self.rsyslog(
            gateway,
            &format!("gw-{gateway}"),
            "telestrip-ship.conf",
            &[
                ("@AUDIT_LOG@", log.display().to_string()),
                ("@CENTRAL@", format!("10.80.{}.1", index + 1)),
            ],
        );
        self.shippers[index] = Some(child);
    }

    /// Stops an rsyslogd cleanly (SIGTERM) and waits for it.
    fn stop(child: Option<Child>) {
        if let Some(mut child) = child {
            common::sh(&format!("kill -TERM {}", child.id()));
            let _ = child.wait();
        }
    }

    fn log(&self, index: usize) -> PathBuf {
        self.dir().join(format!("gw-{}.jsonl", ["a", "b"][index]))
    }

    fn copy(&self, index: usize) -> PathBuf {
        self.dir()
            .join("fleet")
            .join(format!("gw-{}", ["a", "b"][index]))
            .join("audit.jsonl")
    }

    /// What the central copies lack or have more, and the rsyslog logs, for a failure.
    fn differences(&self) -> String {
        let mut text = String::new();
        for index in 0..2 {
            let source = std::fs::read_to_string(self.log(index)).unwrap_or_default();
            let copy = std::fs::read_to_string(self.copy(index)).unwrap_or_default();
            let (s, c): (Vec<&str>, Vec<&str>) = (source.lines().collect(), copy.lines().collect());
            let first = s.iter().zip(&c).position(|(a, b)| a != b);
            let seqs: Vec<String> = c
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|r| r["seq"].to_string())
                .collect();
            text.push_str(&format!(
                "\ngateway {index}: {} lines written, {} arrived, first difference at line {first:?}; sequence as arrived: {}",
                s.len(),
                c.len(),
                seqs.join(" ")
            ));
        }
        for name in ["central", "gw-a", "gw-b"] {
            let log = std::fs::read_to_string(self.dir().join(name).join("rsyslogd.log"))
                .unwrap_or_default();
            text.push_str(&format!("\n--- {name}\n{log}"));
        }
        text
    }

    /// Waits until both central copies are whole; fails with what differs.
    fn wait_arrived(&self, what: &str, seconds: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        while !(self.arrived(0) && self.arrived(1)) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {seconds} s waiting for {what}:{}",
                self.differences()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The central copy holds the gateway's log byte for byte, line by line in order, once
    /// the lines a shipper delivered twice (RELP is at-least-once) are set aside.
    fn arrived(&self, index: usize) -> bool {
        let source = std::fs::read_to_string(self.log(index)).unwrap();
        let copy = std::fs::read_to_string(self.copy(index)).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let once: Vec<&str> = copy.lines().filter(|line| seen.insert(*line)).collect();
        once == source.lines().collect::<Vec<_>>()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in self
            .shippers
            .iter_mut()
            .chain([&mut self.central])
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["central", "a", "b"] {
            let _ = telestrip::lab::sh(&format!("ip netns del {}", self.ns(name)));
        }
    }
}

/// Appends `count` flow records (and a heartbeat) to a gateway's log, as the daemon does.
fn append(writer: &mut AuditWriter, gateway: &str, count: u16, port: &mut u16) {
    for _ in 0..count {
        *port += 1;
        writer.append(
            SystemTime::now(),
            audit_flow("microsoft", "ms-windows-diagtrack", "drop", *port),
        );
    }
    writer.append(
        SystemTime::now(),
        gateway_heartbeat(gateway, "hq", u64::from(*port)),
    );
    writer.commit().unwrap();
}

fn verify(path: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
#[ignore = "needs root, network namespaces, rsyslog and rsyslog-relp; scripts/test.sh runs it"]
fn audit_logs_reach_the_central_host_whole_across_restarts_and_cut_links() {
    common::require(&["rsyslogd"]);
    let mut net = Net::up();
    let mut writers = Vec::new();
    for (index, gateway) in ["gw-a", "gw-b"].into_iter().enumerate() {
        let mut writer = AuditWriter::open(&net.log(index)).unwrap();
        writer.append(SystemTime::now(), gateway_start(gateway, "hq", true));
        writer.commit().unwrap();
        writers.push(writer);
    }
    let mut ports = [40_000u16, 50_000];
    net.start_central();
    net.start_shipper(0);
    net.start_shipper(1);
    for (index, gateway) in ["gw-a", "gw-b"].into_iter().enumerate() {
        append(&mut writers[index], gateway, 20, &mut ports[index]);
    }
    net.wait_arrived("both logs at the central host", 30);

    // A cut link: gateway A's lines wait on its disk and follow when the link is back.
    net.sh(&format!("ip -n {} link set dev uplink down", net.ns("a")));
    append(&mut writers[0], "gw-a", 50, &mut ports[0]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!net.arrived(0), "nothing can arrive over a cut link");
    net.sh(&format!("ip -n {} link set dev uplink up", net.ns("a")));
    net.wait_arrived("A's lines after the link is back", 90);

    // A's rsyslog restarts while lines are written.
    Net::stop(net.shippers[0].take());
    append(&mut writers[0], "gw-a", 20, &mut ports[0]);
    net.start_shipper(0);
    net.wait_arrived("A's lines after its shipper restarted", 60);

    // The central host restarts, the gateways' disk queues hold what it misses.
    Net::stop(net.central.take());
    append(&mut writers[1], "gw-b", 20, &mut ports[1]);
    std::thread::sleep(Duration::from_secs(2));
    net.start_central();
    net.wait_arrived("B's lines after the central host restarted", 90);

    // The central host goes away; meanwhile A's rsyslog restarts with lines not yet sent.
    Net::stop(net.central.take());
    append(&mut writers[0], "gw-a", 100, &mut ports[0]);
    append(&mut writers[1], "gw-b", 10, &mut ports[1]);
    std::thread::sleep(Duration::from_secs(2));
    Net::stop(net.shippers[0].take());
    append(&mut writers[0], "gw-a", 10, &mut ports[0]);
    net.start_shipper(0);
    std::thread::sleep(Duration::from_secs(2));
    net.start_central();
    net.wait_arrived("both logs whole after the restarts", 90);

    // The central copies verify on their own, record for record (lines delivered twice
    // are said and skipped).
    for index in 0..2 {
        let (ok, report) = verify(&net.copy(index));
        assert!(ok, "{report}");
        eprintln!("central copy of gateway {index}: {report}");
    }
    let lines = std::fs::read_to_string(net.log(0)).unwrap().lines().count();
    assert_eq!(lines, 206, "start, flows and heartbeats: {lines}");
    let (_, report) = verify(&net.copy(0));
    assert!(
        report.contains(&format!("VERIFIED: {lines} records")),
        "{report}"
    );

    // Had a record been lost on the way, the copy's chain would say so.
    let copy = std::fs::read_to_string(net.copy(0)).unwrap();
    let lost: Vec<&str> = copy
        .lines()
        .filter(|line| !line.starts_with("{\"seq\":100,"))
        .collect();
    assert!(lost.len() < copy.lines().count());
    let damaged = net.dir().join("damaged.jsonl");
    std::fs::write(&damaged, lost.join("\n") + "\n").unwrap();
    let (ok, report) = verify(&damaged);
    assert!(!ok && report.contains("1 records are missing"), "{report}");
}
