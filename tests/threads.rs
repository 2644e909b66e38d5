//! `telestrip pcap --threads N` finds what one thread finds: the same matched flows in the
//! same order and the same counters, on the benchmark traffic mix with IP fragments, DNS
//! answers that teach addresses to flows of other threads, a flow inside a tunnel, several
//! files, and a capture read from a pipe.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use telestrip::rules::{bundled_sources, load_sources, RuleSet};
use telestrip_testkit::traffic::{generate, telemetry_names, MixOptions};
use telestrip_testkit::{
    client_hello, dns_query, ip_fragments, tls_flow, tunnel, write_pcap, Hosts, Wrap,
};

/// The mix, then a fragmented telemetry ClientHello and a fragmented DNS query.
fn capture(path: &Path, packets: u64, seed: u64) -> u64 {
    let files = load_sources(bundled_sources()).unwrap();
    let set = RuleSet::compile(&files).unwrap();
    let names = telemetry_names(&files, &set);
    let options = MixOptions {
        packets,
        seed,
        telemetry_percent: 20,
        ..MixOptions::default()
    };
    let mut frames = Vec::new();
    let summary = generate(&options, &names, |_, frame| {
        frames.push(frame.to_vec());
        Ok(())
    })
    .unwrap();
    let hosts = Hosts::new(&format!("10.9.{seed}.1"), 41000, "198.51.100.77", 443);
    for frame in tls_flow(&hosts, &client_hello("v10.events.data.microsoft.com"), 0) {
        if frame.len() > 200 {
            let mut pieces = ip_fragments(&frame, 64, 7);
            pieces.reverse();
            frames.extend(pieces);
        } else {
            frames.push(frame);
        }
    }
    let dns = Hosts::new(&format!("10.9.{seed}.2"), 5300, "10.255.0.53", 53);
    frames.extend(ip_fragments(
        &dns.udp(true, &dns_query(9, "v10.events.data.microsoft.com", 1)),
        16,
        8,
    ));
    // A telemetry flow inside VXLAN: routed by the flow inside, never by the tunnel's.
    let inner = Hosts::new(&format!("10.9.{seed}.3"), 42000, "198.51.100.78", 443);
    for frame in tls_flow(&inner, &client_hello("v10.events.data.microsoft.com"), 0) {
        frames.push(tunnel(&frame, Wrap::Vxlan));
    }
    write_pcap(path, &frames, Duration::from_secs(1_700_000_000)).unwrap();
    summary.expected.total() + 3
}

fn pcap_json(args: &[&str], stdin: Option<&Path>) -> serde_json::Value {
    let args: Vec<&str> = ["pcap", "-q", "--format", "json"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let output = match stdin {
        Some(file) => common::telestrip_with_input(&args, std::fs::read(file).unwrap()),
        None => Command::new(env!("CARGO_BIN_EXE_telestrip"))
            .args(&args)
            .output()
            .unwrap(),
    };
    assert_eq!(output.status.code(), Some(1), "telemetry is in the capture");
    let mut value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    value["stats"]["seconds"] = serde_json::Value::Null;
    value
}

#[test]
fn several_threads_find_the_same_flows_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.pcap");
    let second = dir.path().join("second.pcap");
    let expected = capture(&first, 60_000, 1) + capture(&second, 30_000, 2);
    let files = [first.to_str().unwrap(), second.to_str().unwrap()];
    let one = pcap_json(&files, None);
    let flows = one["flows"].as_array().unwrap();
    assert_eq!(flows.len() as u64, expected);
    assert!(one["stats"]["datagrams_reassembled"].as_u64().unwrap() >= 2);
    assert!(flows
        .iter()
        .any(|f| f["client"].as_str().unwrap().starts_with("10.9.1.3:")));
    // Flows judged by an address a DNS answer taught, on whichever thread they land.
    assert!(flows.iter().any(|f| f["via"] == "learned"));
    for threads in ["2", "3", "8"] {
        let mut args = vec!["--threads", threads];
        args.extend(files);
        let many = pcap_json(&args, None);
        assert_eq!(many["flows"], one["flows"], "--threads {threads}");
        assert_eq!(many["stats"], one["stats"], "--threads {threads}");
        assert_eq!(many["summary"], one["summary"], "--threads {threads}");
    }
}

#[test]
fn a_capture_from_a_pipe_reads_as_the_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mix.pcap");
    capture(&file, 20_000, 3);
    let from_file = pcap_json(&[file.to_str().unwrap()], None);
    for threads in ["1", "2"] {
        let from_pipe = pcap_json(&["--threads", threads, "/dev/stdin"], Some(&file));
        assert_eq!(
            from_pipe["flows"], from_file["flows"],
            "--threads {threads}"
        );
        assert_eq!(
            from_pipe["stats"], from_file["stats"],
            "--threads {threads}"
        );
    }
}

#[test]
fn threads_must_be_at_least_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["pcap", "--threads", "0", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--threads"));
}
