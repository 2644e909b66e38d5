//! `telestrip demo`: builds a client — gateway — server network in namespaces (see
//! [`crate::lab`]), runs telestrip inline on the gateway with the bundled rules, sends real
//! client traffic (curl, dig) to telemetry and ordinary names, and prints what was blocked,
//! what passed, the matched flows and the counters. Everything is removed afterwards.

use std::io::Write;
use std::process::Output;

use crate::lab::{self, Lab, SERVER_V4, SERVER_V6};

/// One thing the demo client tries, and whether telestrip should stop it.
struct Step {
    what: String,
    command: String,
    telemetry: bool,
}

pub fn run(out: &mut dyn Write) -> Result<bool, String> {
    if let Some(missing) = lab::missing() {
        return Err(format!("the demo cannot run: {missing}"));
    }
    let telestrip = std::env::current_exe().map_err(|e| e.to_string())?;
    writeln!(out, "Building the demo network: client 10.78.1.2 — gateway (telestrip) — server 10.78.2.2, IPv4 and IPv6, in network namespaces ...").map_err(|e| e.to_string())?;
    let mut lab = Lab::new(&telestrip)?;
    lab.start_servers()?;
    let audit = lab.audit_dir()?.join("audit.jsonl");
    lab.start_telestrip(
        &format!(
            "queues: [0]\nfail: open\nlisten: 127.0.0.1:9477\naudit:\n  path: {}\n",
            audit.display()
        ),
        "open",
    )?;
    writeln!(
        out,
        "telestrip is running inline on the gateway with the bundled rules, an audit log and its status page.\n"
    )
    .map_err(|e| e.to_string())?;

    let curl = |name: &str, addr: &str, extra: &str| {
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        format!("curl -sk --max-time 3 {extra} --resolve {name}:443:{host} https://{name}/")
    };
    let quic_py = lab.dir.path().join("quic.py");
    let quic = |name: &str| {
        format!(
            "python3 {} get {name} {SERVER_V4} --timeout 2",
            quic_py.display()
        )
    };
    let steps = [
        Step { what: "HTTPS (TLS 1.3) to v10.events.data.microsoft.com".into(), command: curl("v10.events.data.microsoft.com", SERVER_V4, "--tlsv1.3"), telemetry: true },
        Step { what: "HTTPS (TLS 1.2) to watson.telemetry.microsoft.com".into(), command: curl("watson.telemetry.microsoft.com", SERVER_V4, "--tlsv1.2 --tls-max 1.2"), telemetry: true },
        Step { what: "HTTPS over IPv6 to v10c.events.data.microsoft.com".into(), command: curl("v10c.events.data.microsoft.com", SERVER_V6, ""), telemetry: true },
        Step { what: "HTTP to nexus.officeapps.live.com".into(), command: format!("curl -s --max-time 3 -H 'Host: nexus.officeapps.live.com' http://{SERVER_V4}/"), telemetry: true },
        Step { what: "HTTP/3 (QUIC) to v10.events.data.microsoft.com".into(), command: quic("v10.events.data.microsoft.com"), telemetry: true },
        Step { what: "DNS query for v10.events.data.microsoft.com".into(), command: format!("dig +time=2 +tries=1 +short @{SERVER_V4} v10.events.data.microsoft.com | grep -qx {SERVER_V4}"), telemetry: true },
        Step { what: "HTTPS (TLS 1.3) to www.example.org".into(), command: curl("www.example.org", SERVER_V4, "--tlsv1.3"), telemetry: false },
        Step { what: "HTTPS to learn.microsoft.com (an explicit allow rule)".into(), command: curl("learn.microsoft.com", SERVER_V4, ""), telemetry: false },
        Step { what: "HTTP/3 (QUIC) to www.example.org".into(), command: quic("www.example.org"), telemetry: false },
        Step { what: "HTTPS over IPv6 to www.example.org".into(), command: curl("www.example.org", SERVER_V6, ""), telemetry: false },
        Step { what: "DNS query for www.example.org".into(), command: format!("dig +time=2 +tries=1 +short @{SERVER_V4} www.example.org | grep -qx {SERVER_V4}"), telemetry: false },
    ];
    let mut as_expected = true;
    for step in &steps {
        let output: Output = lab.client(&step.command);
        let passed = output.status.success();
        let verdict = match (passed, step.telemetry) {
            (false, true) => "BLOCKED  (as it should be)",
            (true, false) => "passed   (as it should)",
            (true, true) => "PASSED   -- telemetry got through!",
            (false, false) => "FAILED   -- an ordinary flow was stopped!",
        };
        as_expected &= passed != step.telemetry;
        writeln!(out, "  {:<58} {verdict}", step.what).map_err(|e| e.to_string())?;
    }
    let metrics = lab.gateway("curl -s --max-time 2 http://127.0.0.1:9477/metrics");
    let log = lab.stop_daemon("TERM");
    writeln!(
        out,
        "\nWhat telestrip recorded (one JSON line per matched flow on its stdout):"
    )
    .map_err(|e| e.to_string())?;
    for event in lab.events() {
        writeln!(
            out,
            "  {:<5} {:<22} {:<32} via {:<4} rule {:<28} {}",
            event["protocol"].as_str().unwrap_or(""),
            event["server"].as_str().unwrap_or(""),
            event["name"].as_str().unwrap_or(""),
            event["via"].as_str().unwrap_or(""),
            event["rule"].as_str().unwrap_or(""),
            event["applied"].as_str().unwrap_or("")
        )
        .map_err(|e| e.to_string())?;
    }
    if let Some(stop) = log.lines().find(|l| l.contains("stopping.")) {
        writeln!(
            out,
            "\nCounters: {}",
            stop.trim_start_matches("telestrip: stopping. ")
        )
        .map_err(|e| e.to_string())?;
    }
    writeln!(
        out,
        "\nA few of the Prometheus metrics at http://127.0.0.1:9477/metrics (status page at /):"
    )
    .map_err(|e| e.to_string())?;
    for line in String::from_utf8_lossy(&metrics.stdout)
        .lines()
        .filter(|l| {
            (l.starts_with("telestrip_flows_total") && !l.ends_with(" 0"))
                || l.starts_with("telestrip_packets_total")
                || l.starts_with("telestrip_ruleset_info")
        })
    {
        writeln!(out, "  {line}").map_err(|e| e.to_string())?;
    }
    writeln!(
        out,
        "\nThe audit log, checked and summarised as a compliance officer would (telestrip report {}):",
        audit.display()
    )
    .map_err(|e| e.to_string())?;
    match crate::report::build(
        std::slice::from_ref(&audit),
        crate::report::Period::default(),
    ) {
        Ok(report) => {
            for line in crate::report::text(&report).lines().skip(2) {
                writeln!(out, "  {line}").map_err(|e| e.to_string())?;
            }
            as_expected &= report.chain.verified;
        }
        Err(error) => {
            writeln!(out, "  cannot read the audit log: {error}").map_err(|e| e.to_string())?;
            as_expected = false;
        }
    }
    writeln!(
        out,
        "\n{}",
        if as_expected {
            "Every telemetry flow was blocked and every ordinary flow passed. Only the first packets of each flow went through telestrip; the kernel handled the rest."
        } else {
            "Something did not go as expected; see the lines marked above."
        }
    )
    .map_err(|e| e.to_string())?;
    Ok(as_expected)
}
