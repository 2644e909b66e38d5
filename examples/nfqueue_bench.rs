//! NFQUEUE cost benchmark (needs root, gcc and libnetfilter-queue-dev): telestrip's packet
//! loop against its floor, a trivial C program that accepts every queued packet
//! (`benches/nfqueue/accept_loop.c`, one verdict per packet or batched verdicts), on the same
//! traffic through the lab gateway of `telestrip::lab`, in one run, three rounds with the
//! modes alternating, medians reported:
//!
//! - every packet queued: a flood of 64-byte frames (UDP, 64 flows) that the gateway queues
//!   whole; packets per second delivered through the queue.
//! - new TLS flows: a raw replay of handshakes (each flow a SYN and a ClientHello with its
//!   own name, every pass over them from the next client address) queued whole, with 1 and 2
//!   queues; new flows per second delivered, and per second of the queue threads' CPU time.
//!
//! The load comes from `benches/nfqueue/blast.c` (raw socket, sendmmsg) in the client
//! namespace; it offers more than any mode delivers, and the difference is what the kernel
//! dropped at the full queue (printed). The gateway does not track these flows (raw table
//! NOTRACK), so a million half-open handshakes do not fill its connection table; the server
//! counts arrivals with iptables rules in its raw table and drops them.
//!
//! Run: `cargo build --release --examples && sudo target/release/examples/nfqueue_bench`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use telestrip::lab::{sh, Lab, SERVER_V4};
use telestrip::source::nfqueue;
use telestrip_testkit::{client_hello, Hosts, ACK, SYN};

const SECONDS: u64 = 3;
const ROUNDS: usize = 3;
const UDP_PORT: u16 = 9000;
const TLS_PORT: u16 = 9443;
/// Handshakes in the replay file (flows per pass; each pass uses the next client address).
const TLS_FLOWS: u16 = 20_000;

#[derive(Clone, Copy, PartialEq)]
enum Processor {
    /// No queue rule: the kernel forwards everything.
    None,
    /// `accept_loop Q single` / `batch`, one process per queue.
    CSingle,
    CBatch,
    Telestrip,
}

struct Mode {
    name: &'static str,
    processor: Processor,
    queues: u16,
}

struct Sample {
    offered: f64,
    delivered: f64,
    kernel_dropped: f64,
    /// Delivered packets (or flows) per second of the processor's CPU time.
    per_core_second: f64,
}

fn main() {
    // Only what this benchmark uses (not the lab's servers): root, ip and iptables.
    if let Err(error) = sh("test \"$(id -u)\" = 0 && command -v ip && command -v iptables") {
        eprintln!("nfqueue_bench: needs root, ip and iptables ({error})");
        std::process::exit(2);
    }
    let me = std::env::current_exe().expect("own path");
    let bin = me.parent().and_then(Path::parent).expect("target dir");
    let tools = match build_tools(bin) {
        Ok(tools) => tools,
        Err(error) => {
            eprintln!("nfqueue_bench: {error}");
            std::process::exit(2);
        }
    };
    let mut lab = Lab::new(&bin.join("telestrip")).expect("lab");
    write_loads(lab.dir.path());
    setup_counters(&lab);

    let udp_modes = [
        mode("no queue", Processor::None, 0),
        mode("C loop, verdict per packet", Processor::CSingle, 1),
        mode("C loop, batched verdicts", Processor::CBatch, 1),
        mode("telestrip", Processor::Telestrip, 1),
    ];
    let tls_modes = [
        mode("no queue", Processor::None, 0),
        mode("C loop, batched, 1 queue", Processor::CBatch, 1),
        mode("telestrip, 1 queue", Processor::Telestrip, 1),
        mode("C loop, batched, 2 queues", Processor::CBatch, 2),
        mode("telestrip, 2 queues", Processor::Telestrip, 2),
    ];
    let udp = run_workload(&mut lab, &tools, Workload::Udp, &udp_modes);
    let tls = run_workload(&mut lab, &tools, Workload::Tls, &tls_modes);
    report(
        "Every packet queued: 64-byte UDP frames, 64 flows (packets/s)",
        &udp_modes,
        &udp,
    );
    report(
        "New TLS flows (SYN + ClientHello queued; flows/s)",
        &tls_modes,
        &tls,
    );
}

fn mode(name: &'static str, processor: Processor, queues: u16) -> Mode {
    Mode {
        name,
        processor,
        queues,
    }
}

struct Tools {
    accept_loop: PathBuf,
    blast: PathBuf,
}

/// Compiles the C programs next to the example's binary.
fn build_tools(bin: &Path) -> Result<Tools, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/nfqueue");
    let tools = Tools {
        accept_loop: bin.join("nfqueue-accept-loop"),
        blast: bin.join("nfqueue-blast"),
    };
    for (out, file, libs) in [
        (&tools.accept_loop, "accept_loop.c", "-lnetfilter_queue"),
        (&tools.blast, "blast.c", ""),
    ] {
        sh(&format!(
            "gcc -O2 -Wall -o {} {} {libs}",
            out.display(),
            source.join(file).display()
        ))
        .map_err(|e| format!("building {file} (needs gcc and libnetfilter-queue-dev): {e}"))?;
    }
    Ok(tools)
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Udp,
    Tls,
}

impl Workload {
    fn file(self) -> &'static str {
        match self {
            Workload::Udp => "udp.bin",
            Workload::Tls => "tls.bin",
        }
    }

    fn rule(self) -> String {
        match self {
            Workload::Udp => format!("-p udp --dport {UDP_PORT}"),
            Workload::Tls => format!("-p tcp --dport {TLS_PORT}"),
        }
    }

    /// Packets per unit reported (a TLS flow is two packets).
    fn packets_per_unit(self) -> f64 {
        match self {
            Workload::Udp => 1.0,
            Workload::Tls => 2.0,
        }
    }
}

/// The replay files: IPv4 packets, each after its 2-byte length.
fn write_loads(dir: &Path) {
    let mut udp = Vec::new();
    // 64-byte Ethernet frames: 14 + 20 + 8 + 22 bytes of payload.
    for i in 0..1024u16 {
        let hosts = Hosts::new("10.78.1.2", 20_000 + i % 64, SERVER_V4, UDP_PORT);
        push_ip(&mut udp, &hosts.udp(true, &[0x5a; 22]));
    }
    let mut tls = Vec::new();
    for i in 0..TLS_FLOWS {
        let hosts = Hosts::new("10.78.1.10", 30_000 + i, SERVER_V4, TLS_PORT);
        let seq = 1_000_000 + u32::from(i);
        push_ip(&mut tls, &hosts.tcp(true, seq, SYN, &[]));
        let hello = client_hello(&format!("www{i}.bench.example.org"));
        push_ip(&mut tls, &hosts.tcp(true, seq + 1, ACK, &hello));
    }
    std::fs::write(dir.join(Workload::Udp.file()), udp).expect("write udp.bin");
    std::fs::write(dir.join(Workload::Tls.file()), tls).expect("write tls.bin");
}

fn push_ip(out: &mut Vec<u8>, frame: &[u8]) {
    let ip = &frame[14..];
    out.extend_from_slice(&(ip.len() as u16).to_be_bytes());
    out.extend_from_slice(ip);
}

/// Gateway: the bench flows are not tracked. Server: counts arrivals and drops them.
fn setup_counters(lab: &Lab) {
    let (g, s) = (&lab.gateway, &lab.server);
    for rule in [Workload::Udp.rule(), Workload::Tls.rule()] {
        sh(&format!(
            "ip netns exec {g} iptables -t raw -A PREROUTING {rule} -j CT --notrack"
        ))
        .expect("notrack rule");
    }
    sh(&format!(
        "ip netns exec {s} iptables -t raw -A PREROUTING -p tcp --dport {TLS_PORT} --syn -j DROP && \
         ip netns exec {s} iptables -t raw -A PREROUTING -p tcp --dport {TLS_PORT} -j DROP && \
         ip netns exec {s} iptables -t raw -A PREROUTING -p udp --dport {UDP_PORT} -j DROP"
    ))
    .expect("counting rules");
}

/// Packets the server's raw table counted for `workload` since the last zeroing (for TLS:
/// the ClientHellos, which is one per judged flow).
fn arrived(lab: &Lab, workload: Workload) -> u64 {
    let out = output_in(&lab.server, "iptables -t raw -nvxL PREROUTING");
    let rows: Vec<u64> = out
        .lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    match workload {
        // Rows: TLS SYNs, other TLS packets (the hellos), UDP.
        Workload::Tls => rows.get(1).copied().unwrap_or(0),
        Workload::Udp => rows.get(2).copied().unwrap_or(0),
    }
}

/// The kernel's drops at the bench queues so far (queue full, socket buffer full).
fn kernel_dropped(lab: &Lab) -> u64 {
    let out = output_in(&lab.gateway, "cat /proc/net/netfilter/nfnetlink_queue");
    nfqueue::parse_kernel_queues(&out)
        .iter()
        .map(|q| q.queue_dropped + q.user_dropped)
        .sum()
}

/// What `command` prints in namespace `ns`.
fn output_in(ns: &str, command: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", command])
        .output()
        .expect("ip netns exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CPU seconds used so far by the queue threads: telestrip's `telestrip-q*` threads, or
/// the whole of each C loop.
fn cpu_seconds(processor: Processor, pids: &[u32]) -> f64 {
    let mut nanos = 0u64;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if processor == Processor::Telestrip && !name.starts_with("telestrip-q") {
                continue;
            }
            // /proc/PID/task/TID/schedstat: nanoseconds on a CPU, first field.
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            nanos += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    nanos as f64 / 1e9
}

fn run_workload(
    lab: &mut Lab,
    tools: &Tools,
    workload: Workload,
    modes: &[Mode],
) -> Vec<Vec<Sample>> {
    let mut samples: Vec<Vec<Sample>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (i, mode) in modes.iter().enumerate() {
            eprintln!("round {}: {} ({})", round + 1, mode.name, workload.file());
            samples[i].push(run_mode(lab, tools, workload, mode));
        }
    }
    samples
}

fn run_mode(lab: &mut Lab, tools: &Tools, workload: Workload, mode: &Mode) -> Sample {
    let g = lab.gateway.clone();
    let queue_target = match mode.queues {
        1 => "--queue-num 0".to_string(),
        n => format!("--queue-balance 0:{}", n - 1),
    };
    // telestrip answers with its verdict in the packet mark (bits 4-7) and the packet
    // traverses the chain again (NF_REPEAT), as with deploy/iptables.sh: a marked packet
    // is not queued twice.
    let queue_rule = format!(
        "FORWARD {} -m mark --mark 0/0xf0 -j NFQUEUE {queue_target}",
        workload.rule()
    );
    let mut loops: Vec<Child> = Vec::new();
    let mut pids = Vec::new();
    match mode.processor {
        Processor::None => {}
        Processor::CSingle | Processor::CBatch => {
            let how = if mode.processor == Processor::CSingle {
                "single"
            } else {
                "batch"
            };
            for queue in 0..mode.queues {
                let child = Command::new("ip")
                    .args(["netns", "exec", &g])
                    .arg(&tools.accept_loop)
                    .args([&queue.to_string(), how])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("accept loop");
                pids.push(child.id());
                loops.push(child);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Processor::Telestrip => {
            let queues: Vec<String> = (0..mode.queues).map(|q| q.to_string()).collect();
            lab.start_daemon(&format!("queues: [{}]\nfail: closed\n", queues.join(", ")))
                .expect("telestrip");
            pids.extend(lab.daemon_pid());
        }
    }
    if mode.processor != Processor::None {
        sh(&format!("ip netns exec {g} iptables -A {queue_rule}")).expect("queue rule");
    }
    sh(&format!("ip netns exec {} iptables -t raw -Z", lab.server)).expect("zero counters");
    let dropped_before = kernel_dropped(lab);
    let cpu_before = cpu_seconds(mode.processor, &pids);
    let blast = Command::new("ip")
        .args(["netns", "exec", &lab.client])
        .arg(&tools.blast)
        .arg(lab.dir.path().join(workload.file()))
        .arg(SECONDS.to_string())
        .arg(if workload == Workload::Tls {
            "rotate"
        } else {
            "keep"
        })
        .output()
        .expect("blast");
    // Packets still queued when the sender stops get their verdict within this pause.
    std::thread::sleep(Duration::from_millis(200));
    let cpu = cpu_seconds(mode.processor, &pids) - cpu_before;
    let sent: f64 = String::from_utf8_lossy(&blast.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    let delivered = arrived(lab, workload) as f64;
    let dropped = kernel_dropped(lab).saturating_sub(dropped_before) as f64;
    if mode.processor != Processor::None {
        sh(&format!("ip netns exec {g} iptables -D {queue_rule}")).expect("queue rule");
    }
    match mode.processor {
        Processor::Telestrip => {
            let log = lab.stop_daemon("TERM");
            if delivered == 0.0 {
                eprintln!("telestrip delivered nothing; its log:\n{log}");
            }
        }
        _ => {
            for mut child in loops {
                let _ = sh(&format!("kill -TERM {}", child.id()));
                let _ = child.wait();
            }
        }
    }
    let unit = workload.packets_per_unit();
    let seconds = SECONDS as f64;
    Sample {
        offered: sent / unit / seconds,
        delivered: delivered / seconds,
        kernel_dropped: dropped / unit / seconds,
        per_core_second: if cpu > 0.0 { delivered / cpu } else { 0.0 },
    }
}

fn report(title: &str, modes: &[Mode], samples: &[Vec<Sample>]) {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n{title}, medians of {ROUNDS} rounds of {SECONDS} s");
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>18}",
        "", "offered/s", "delivered/s", "queue drops/s", "per CPU-second"
    );
    for (mode, samples) in modes.iter().zip(samples) {
        let per_core = median(samples.iter().map(|s| s.per_core_second).collect());
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>14.0} {:>18}",
            mode.name,
            median(samples.iter().map(|s| s.offered).collect()),
            median(samples.iter().map(|s| s.delivered).collect()),
            median(samples.iter().map(|s| s.kernel_dropped).collect()),
            if per_core > 0.0 {
                format!("{per_core:.0}")
            } else {
                "-".into()
            }
        );
    }
}
