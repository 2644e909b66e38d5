//! Inline benchmark (needs root, iperf3, and the lab's tools): in one run, on the lab network
//! of `telestrip::lab` (client — gateway — server namespaces), measures with no filter, with
//! telestrip inline (enforcing; one queue, one queue with busy polling, two queues) and in
//! dry run, three rounds with the modes alternating, reporting medians:
//! - bulk TCP throughput through the gateway (iperf3, 3 s),
//! - new flows per second: TCP connect + a TLS ClientHello + server's close, 2 client threads,
//! - TCP connect latency (the client's SYN crosses NFQUEUE when inline), p50/p99,
//! - the CPU time telestrip's packet threads spent on those flows (from the kernel's
//!   scheduler accounting), as new TLS flows classified per second of one core, and the
//!   mean number of packets per verdict system call.
//!
//! Run: `cargo build --release && sudo target/release/examples/inline_bench`
//! (the example re-runs itself in the namespaces as `serve` and `connect` helpers).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use telestrip::lab::{Lab, SERVER_V4};
use telestrip_testkit::client_hello;

const FLOW_PORT: u16 = 9443;
const CONNECTIONS: usize = 3000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(),
        Some("connect") => connect(
            args.get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(CONNECTIONS),
        ),
        _ => bench(),
    }
}

/// Server helper: accepts, reads the ClientHello, answers one byte, closes.
fn serve() {
    let listener = TcpListener::bind(("0.0.0.0", FLOW_PORT)).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"x");
        });
    }
}

/// Client helper: `count` flows over 2 threads; prints flows/s and connect p50/p99 in µs.
fn connect(count: usize) {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..2 {
        handles.push(std::thread::spawn(move || {
            let mut latencies = Vec::with_capacity(count / 2);
            for i in 0..count / 2 {
                let name = format!("www{t}-{i}.example.org");
                let hello = client_hello(&name);
                let begin = Instant::now();
                let Ok(mut stream) = TcpStream::connect((SERVER_V4, FLOW_PORT)) else {
                    continue;
                };
                latencies.push(begin.elapsed().as_micros() as u64);
                let _ = stream.write_all(&hello);
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte);
                let _ = stream.shutdown(Shutdown::Both);
            }
            latencies
        }));
    }
    let mut latencies: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{:.0} {} {}",
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}

struct Figures {
    gbits: f64,
    flows_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    /// New flows per second of packet-thread CPU time (0: no daemon).
    flows_per_core_second: f64,
}

/// CPU time (seconds) the daemon's packet threads (`telestrip-q*`) have used so far.
fn packet_thread_cpu(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("telestrip-q"))
        })
        .filter_map(|task| {
            // `se.sum_exec_runtime : <milliseconds>` (microsecond precision).
            let sched = std::fs::read_to_string(task.path().join("sched")).ok()?;
            let line = sched
                .lines()
                .find(|l| l.starts_with("se.sum_exec_runtime"))?;
            line.split(':').nth(1)?.trim().parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1000.0
}

fn measure(lab: &Lab, me: &str) -> Figures {
    let iperf = lab.client(&format!("iperf3 -c {SERVER_V4} -t 3 -J"));
    let json: serde_json::Value = serde_json::from_slice(&iperf.stdout).unwrap_or_default();
    let gbits = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9;
    let cpu_before = packet_thread_cpu(lab.daemon_pid());
    let flows = lab.client(&format!("{me} connect {CONNECTIONS}"));
    let cpu = packet_thread_cpu(lab.daemon_pid()) - cpu_before;
    let text = String::from_utf8_lossy(&flows.stdout);
    let parts: Vec<f64> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    Figures {
        gbits,
        flows_per_second: parts.first().copied().unwrap_or(0.0),
        p50_us: parts.get(1).copied().unwrap_or(0.0) as u64,
        p99_us: parts.get(2).copied().unwrap_or(0.0) as u64,
        flows_per_core_second: if cpu > 0.0 {
            CONNECTIONS as f64 / cpu
        } else {
            0.0
        },
    }
}

fn bench() {
    if let Some(missing) = telestrip::lab::missing() {
        eprintln!("inline_bench: {missing}");
        std::process::exit(2);
    }
    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let telestrip = me.replace("/examples/inline_bench", "/telestrip");
    let mut lab = Lab::new(std::path::Path::new(&telestrip)).unwrap();
    lab.start_servers().unwrap();
    let spawn = |args: &str| {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.server,
                "sh",
                "-c",
                &format!("exec {args}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut iperf_server = spawn("iperf3 -s");
    let mut flow_server = spawn(&format!("{me} serve"));
    std::thread::sleep(Duration::from_millis(500));

    // Three rounds, the modes alternating, so drift of the shared machine hits all alike.
    // (name, firewall queues, config); the first runs with no firewall rules at all.
    let modes = [
        ("no filter", "", ""),
        ("telestrip inline", "0", "queues: [0]\nfail: open\n"),
        (
            "inline, busy poll",
            "0",
            "queues: [0]\nfail: open\nbusy_poll_us: 200\n",
        ),
        ("inline, 2 queues", "0:1", "queues: [0, 1]\nfail: open\n"),
        (
            "telestrip dry run",
            "0",
            "queues: [0]\nfail: open\nenforce: false\n",
        ),
    ];
    let mut samples: Vec<Vec<Figures>> = modes.iter().map(|_| Vec::new()).collect();
    let mut logs: Vec<String> = modes.iter().map(|_| String::new()).collect();
    for _round in 0..3 {
        for (i, (_, queues, config)) in modes.iter().enumerate() {
            lab.remove_firewall().unwrap();
            if !config.is_empty() {
                lab.start_telestrip_on(queues, config, "open").unwrap();
            }
            samples[i].push(measure(&lab, me));
            if !config.is_empty() {
                logs[i] = lab.stop_daemon("TERM");
            }
        }
    }
    let median = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let rows: Vec<(&str, Figures, String)> = modes
        .iter()
        .zip(samples)
        .zip(logs)
        .map(|(((name, _, _), s), log)| {
            let f = Figures {
                gbits: median(s.iter().map(|f| f.gbits).collect()),
                flows_per_second: median(s.iter().map(|f| f.flows_per_second).collect()),
                p50_us: median(s.iter().map(|f| f.p50_us as f64).collect()) as u64,
                p99_us: median(s.iter().map(|f| f.p99_us as f64).collect()) as u64,
                flows_per_core_second: median(s.iter().map(|f| f.flows_per_core_second).collect()),
            };
            (*name, f, log)
        })
        .collect();
    for server in [&mut iperf_server, &mut flow_server] {
        let _ = server.kill();
        let _ = server.wait();
    }

    let base = &rows[0].1;
    println!(
        "{:<18} {:>12} {:>10} {:>14} {:>14} {:>22}",
        "", "bulk Gbit/s", "flows/s", "connect p50", "connect p99", "flows/s per core"
    );
    for (name, f, _) in &rows {
        println!(
            "{name:<18} {:>7.2} ({:>3.0}%) {:>10.0} {:>11} µs {:>11} µs {:>22.0}",
            f.gbits,
            100.0 * f.gbits / base.gbits.max(1e-9),
            f.flows_per_second,
            f.p50_us,
            f.p99_us,
            f.flows_per_core_second
        );
    }
    for (name, f, _) in rows.iter().skip(1) {
        println!(
            "{name}: added connect latency p50 {} µs, p99 {} µs",
            f.p50_us as i64 - base.p50_us as i64,
            f.p99_us as i64 - base.p99_us as i64
        );
    }
    for (name, _, log) in rows.iter().skip(1) {
        if let Some(line) = log.lines().find(|l| l.contains("stopping.")) {
            println!(
                "{name}: {}",
                line.trim_start_matches("telestrip: stopping. ")
            );
        }
    }
}
