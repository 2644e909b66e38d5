//! Shared by the integration tests: the lab from `telestrip::lab`, the rule that namespace
//! tests are `#[ignore]`d unless asked for and fail when asked for where they cannot run,
//! and the expectations for the capture fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use telestrip::lab::{BODY, SERVER_V4, SERVER_V6};

pub mod pair_lab;

/// Metrics only a gateway of a pair exports (`pair:`, `shared_state:`); tests/pair.rs checks
/// that it does.
pub const PAIR_METRICS: [&str; 9] = [
    "telestrip_pair_active",
    "telestrip_pair_transitions_total",
    "telestrip_conntrack_event_listeners",
    "telestrip_conntrack_event_listener_drops",
    "telestrip_conntrack_mark_updates_total",
    "telestrip_conntrack_mark_lag_microseconds_total",
    "telestrip_shared_state_up",
    "telestrip_shared_facts_total",
    "telestrip_shared_state_errors_total",
];

/// Metrics only a gateway with `rules_update:` exports; tests/rules_update.rs checks that it
/// does.
pub const PACK_METRICS: [&str; 6] = [
    "telestrip_rules_version",
    "telestrip_rules_generation",
    "telestrip_rules_expiry_timestamp_seconds",
    "telestrip_rules_update_last_attempt_timestamp_seconds",
    "telestrip_rules_update_last_success_timestamp_seconds",
    "telestrip_rules_update_consecutive_failures",
];

/// Metrics only a daemon with `web_config_file:` exports (the refusal counter is always
/// there); tests/control_plane.rs checks that it does.
pub const WEB_METRICS: [&str; 3] = [
    "telestrip_http_requests_refused_total",
    "telestrip_http_web_config_reloads_total",
    "telestrip_http_web_config_last_reload_successful",
];

const EXTRA_TOOLS: [&str; 4] = ["iptables-legacy", "nft", "systemd-analyze", "ethtool"];

/// Fails the test unless this machine can run the namespace tests (root, the lab's tools,
/// and the programs in `more`). Those tests are `#[ignore]`d, so a plain `cargo test` lists
/// them as ignored instead of calling them "ok"; scripts/test.sh runs them as root with
/// `--include-ignored`, and then a missing piece fails the test here.
pub fn require(more: &[&str]) {
    let missing = telestrip::lab::missing().or_else(|| {
        EXTRA_TOOLS
            .iter()
            .chain(more)
            .find(|t| !telestrip::lab::installed(t))
            .map(|t| format!("{t} is not installed"))
    });
    if let Some(reason) = missing {
        not_run(reason);
    }
}

/// For tests that need programs but no namespaces: fails the test unless all of `tools`
/// are installed.
pub fn require_tools(tools: &[&str]) {
    if let Some(tool) = tools.iter().find(|t| !telestrip::lab::installed(t)) {
        not_run(format!("{tool} is not installed"));
    }
}

/// Fails a test that was asked to run (`--include-ignored`) on a machine that cannot run
/// it: a test that returned early would be reported "ok" without having run.
pub fn not_run(reason: String) -> ! {
    panic!("this test needs root and the lab's tools (scripts/test.sh as root installs them), but {reason}")
}

/// Headless Chromium as the machine's probe runs it (no sandbox as root, no background
/// connections), in namespace `netns` when given. Retried once: its first start on a fresh
/// machine sometimes fails.
pub fn chromium(netns: Option<&str>, args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut last = None;
    for _ in 0..2 {
        let mut command = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, "timeout", "60", "chromium"]);
                c
            }
            None => {
                let mut c = std::process::Command::new("timeout");
                c.args(["60", "chromium"]);
                c
            }
        };
        let output = command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .output()
            .unwrap();
        if output.status.success() {
            return output;
        }
        last = Some(output);
    }
    last.unwrap()
}

/// The page at `url` as Chromium rendered it (DOM after load) and a screenshot of it kept at
/// `target/test-artifacts/<name>.png` for people to look at.
pub fn render_page(netns: Option<&str>, url: &str, name: &str) -> String {
    let dom = chromium(netns, &["--dump-dom", url]);
    assert!(
        dom.status.success(),
        "chromium could not load {url}: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        netns,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1100,1300",
            url,
        ],
    );
    assert!(
        shot.status.success() && png.exists(),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    eprintln!("screenshot of {url}: {}", png.display());
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// A lab with servers running.
pub fn lab() -> telestrip::lab::Lab {
    require(&[]);
    let mut lab =
        telestrip::lab::Lab::new(std::path::Path::new(env!("CARGO_BIN_EXE_telestrip"))).unwrap();
    lab.start_servers().unwrap();
    lab
}

pub fn sh(command: &str) {
    telestrip::lab::sh(command).unwrap();
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What tests/fixtures/expected.tsv says of one capture.
#[derive(Default, Debug)]
pub struct Expected {
    /// server, name, via, rule, applied action; one row per matched flow.
    pub flows: Vec<Vec<String>>,
    pub inspected: BTreeMap<String, u64>,
    /// Flows with an ECH extension: `real` (a configuration announced in DNS) and `grease`.
    pub ech: BTreeMap<String, u64>,
}

pub fn expectations() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(fixtures().join("expected.tsv")).unwrap();
    let mut all: BTreeMap<String, Expected> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let entry = all.entry(fields[0].to_string()).or_default();
        match fields[1] {
            "flow" => entry
                .flows
                .push(fields[2..].iter().map(|s| s.to_string()).collect()),
            kind @ ("inspected" | "ech") => {
                let counts = if kind == "ech" {
                    &mut entry.ech
                } else {
                    &mut entry.inspected
                };
                for pair in &fields[2..] {
                    let (key, count) = pair.split_once('=').unwrap();
                    counts.insert(key.to_string(), count.parse().unwrap());
                }
            }
            other => panic!("unknown row kind {other}"),
        }
    }
    all
}

/// The matched flows of `telestrip pcap --format json` output as expected.tsv rows, sorted.
pub fn flow_rows(json: &serde_json::Value) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = json["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap();
            [
                f["server"].as_str().unwrap(),
                if name.is_empty() { "-" } else { name },
                f["via"].as_str().unwrap(),
                f["rule"].as_str().unwrap(),
                f["applied"].as_str().unwrap(),
            ]
            .map(str::to_string)
            .to_vec()
        })
        .collect();
    rows.sort();
    rows
}

/// The nonzero counts of a `telestrip pcap --format json` stats object (`inspected`,
/// `ech_flows`).
pub fn nonzero_counts(json: &serde_json::Value, key: &str) -> BTreeMap<String, u64> {
    json["stats"][key]
        .as_object()
        .unwrap_or_else(|| panic!("no stats.{key} in {json}"))
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// Exit code of a finished command (-1 when killed by a signal).
pub fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Whether curl was refused at once (the bundled rules `reject`): 7 connection refused (a
/// reset to the SYN), 35 TLS connect error, 52 empty reply, 55 send failure, 56 receive
/// failure (a reset after the request). A timeout (28) is not a refusal.
pub fn refused(output: &std::process::Output) -> bool {
    [7, 35, 52, 55, 56].contains(&code(output))
}

/// The daemon's flow events once `done` holds for them (the writer thread prints them a
/// moment after the verdict, and a refused client returns at once), or after 5 s as they are.
pub fn events_when(
    lab: &telestrip::lab::Lab,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let events = lab.events();
        if done(&events) || std::time::Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `telestrip` run with `args` and `input` piped to its standard input (written from another
/// thread, so an input larger than the pipe cannot block against the output): its output.
pub fn telestrip_with_input(args: &[&str], input: Vec<u8>) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Dropped when written: the end of the input.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

/// The gateway's own /metrics page (127.0.0.1:9477), as it is now.
pub fn gateway_metrics(lab: &telestrip::lab::Lab) -> String {
    let output = lab.gateway("curl -sf http://127.0.0.1:9477/metrics");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of one series (name and labels as the exporter writes them, then a space) in a
/// /metrics page; `None` when the page has no such line or its value is not a `T`.
pub fn series<T: std::str::FromStr>(metrics: &str, series: &str) -> Option<T> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// One series of the gateway's /metrics, read now; panics with the page when it is missing.
pub fn gateway_metric(lab: &telestrip::lab::Lab, name: &str) -> u64 {
    let metrics = gateway_metrics(lab);
    series(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Asks the Prometheus in the lab's gateway (127.0.0.1:9090) for `query`; the first value,
/// if any.
pub fn prometheus_value(lab: &telestrip::lab::Lab, query: &str) -> Option<f64> {
    let output = lab.gateway(&format!(
        "curl -s --max-time 2 -G http://127.0.0.1:9090/api/v1/query --data-urlencode 'query={query}'"
    ));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Asks again every 250 ms (up to 20 s) until `query`'s value satisfies `done`; the last
/// value seen.
pub fn prometheus_wait(
    lab: &telestrip::lab::Lab,
    query: &str,
    done: impl Fn(f64) -> bool,
) -> Option<f64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        last = prometheus_value(lab, query);
        if last.is_some_and(&done) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    last
}
