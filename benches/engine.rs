//! Criterion benchmarks at each level of the pipeline, reported as elements (packets,
//! names, lookups) per second: wire parsing, inspection, rule matching with 1,000 /
//! 100,000 / 1,000,000 domains, the whole engine with each of those rulesets on packets of
//! known flows and on new flows, the engine on the traffic mix of `benches/compare.py`,
//! and ruleset compilation. Memory is printed, not timed: resident bytes per domain of a
//! compiled ruleset and per tracked flow.
//!
//! Run: `cargo bench --bench engine` (add a filter, e.g. `-- match/`, for one group).

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use telestrip::engine::{Engine, EngineConfig};
use telestrip::inspect::{dns, http, quic, tls};
use telestrip::rules::{load_sources, LoadedFile, RuleSet, Source};
use telestrip::wire::{self, LinkType, Protocol};
use telestrip_testkit::traffic;
use telestrip_testkit::{
    client_hello_with, dns_query, dns_response, http_get, Answer, HelloOptions, Hosts, ACK, SYN,
};

/// A rule file with `count` synthetic domains, half exact names and half `*.` suffixes,
/// plus names that real traffic in the benchmarks uses.
fn synthetic_rules(count: usize) -> Vec<LoadedFile> {
    let mut text = String::with_capacity(count * 40);
    text.push_str("vendor: bench\nrules:\n  - id: bench-many\n    action: drop\n    domains:\n");
    for i in 0..count {
        let name = synthetic_name(i);
        if i % 2 == 0 {
            text.push_str(&format!("      - {name}\n"));
        } else {
            text.push_str(&format!("      - \"*.{name}\"\n"));
        }
    }
    text.push_str("  - id: bench-telemetry\n    action: drop\n    domains: [\"*.events.data.microsoft.com\"]\n");
    load_sources(vec![Source {
        name: "bench.yaml".into(),
        text,
    }])
    .expect("bench rules")
}

/// Deterministic, realistic-looking names: 2-4 labels, 15-35 bytes.
fn synthetic_name(i: usize) -> String {
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let tlds = ["com", "net", "org", "io", "de", "co.uk"];
    let tld = tlds[(h >> 8) as usize % tlds.len()];
    match h % 3 {
        0 => format!("t{i}.metrics-{:x}.{tld}", h >> 40),
        1 => format!("ads{:x}.cdn{i}.{tld}", (h >> 20) & 0xffff),
        _ => format!("host-{i}.{tld}"),
    }
}

fn bench_wire(c: &mut Criterion) {
    let hosts = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443);
    let frame = hosts.tcp(true, 1, ACK, &[0u8; 1200]);
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_ethernet_ipv4_tcp", |b| {
        b.iter(|| wire::parse(LinkType::Ethernet, black_box(&frame)))
    });
    // What a packet of a cached flow costs to read (see `Worker::cached_verdict`).
    group.bench_function("peek_ethernet_ipv4_tcp", |b| {
        b.iter(|| wire::peek(LinkType::Ethernet, black_box(&frame)))
    });
    group.finish();
}

fn bench_inspect(c: &mut Criterion) {
    let small = client_hello_with(&HelloOptions {
        names: vec!["v10.events.data.microsoft.com".into()],
        ..Default::default()
    });
    let large = client_hello_with(&HelloOptions {
        names: vec!["v10.events.data.microsoft.com".into()],
        padding: 1500,
        record_size: 1000,
        ech: true,
        ech_config_id: 0,
    });
    let query = dns_query(1, "v10.events.data.microsoft.com", 1);
    let response = dns_response(
        1,
        "v10.events.data.microsoft.com",
        1,
        &[
            Answer::Cname(
                "v10.events.data.microsoft.com",
                "onedscolprdweu01.westeurope.cloudapp.azure.com",
            ),
            Answer::A(
                "onedscolprdweu01.westeurope.cloudapp.azure.com",
                [20, 50, 80, 210],
            ),
        ],
    );
    let request = http_get("nexus.officeapps.live.com");
    let mut scratch = Vec::new();
    let mut group = c.benchmark_group("inspect");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tls_sni_one_record", |b| {
        b.iter(|| tls::scan_client_hello(black_box(&small), &mut scratch))
    });
    group.bench_function("tls_sni_two_records_1.8kB", |b| {
        b.iter(|| tls::scan_client_hello(black_box(&large), &mut scratch))
    });
    group.bench_function("dns_query", |b| {
        b.iter(|| dns::Message::parse(black_box(&query)).and_then(|m| m.first_question()))
    });
    group.bench_function("dns_response_answers", |b| {
        b.iter(|| {
            dns::Message::parse(black_box(&response)).and_then(|m| m.answers().map(|a| a.count()))
        })
    });
    group.bench_function("http_host", |b| {
        b.iter(|| http::scan_request(black_box(&request)))
    });
    // strip_ech on an HTTPS answer with hints and an ECH configuration: the DNS rewrite,
    // then the IP/UDP packet around it.
    let v6 = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let https = dns_response(
        1,
        "svc.example",
        65,
        &[Answer::Https("svc.example", [10, 77, 0, 3], v6, true)],
    );
    let mut https_packet = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 77, 0, 2], [10, 77, 0, 1], 64)
        .udp(53, 40000)
        .write(&mut https_packet, &https)
        .unwrap();
    let mut stripper = dns::strip::EchStripper::default();
    let (mut message, mut packet) = (Vec::new(), Vec::new());
    group.bench_function("dns_https_answer_strip_ech", |b| {
        b.iter(|| {
            stripper.strip(black_box(&https), &mut message).unwrap();
            telestrip::wire::rewrite::udp_with_payload(&https_packet, &message, &mut packet)
        })
    });
    // One 1,200-byte QUIC v1 Initial: key derivation, header protection, AES-GCM, frames.
    let hello = telestrip_testkit::handshake_client_hello("v10.events.data.microsoft.com", 0);
    let initial =
        telestrip_testkit::quic_first_flight(quic::VERSION_1, &hello, 4096, 1, &[]).remove(0);
    let read_initial = |scratch: &mut quic::InitialScratch| {
        let mut crypto = Vec::new();
        let _ = quic::read_client_initials(black_box(&initial), scratch, |_, data| {
            crypto.extend_from_slice(data)
        });
        tls::scan_handshake(&crypto).is_ok()
    };
    group.bench_function("quic_initial_decrypt_and_sni", |b| {
        b.iter(|| read_initial(&mut quic::InitialScratch::default()))
    });
    // The next Initial to the same connection ID (a hello in two datagrams): keys kept.
    let mut warm = quic::InitialScratch::default();
    group.bench_function("quic_initial_same_connection_id", |b| {
        b.iter(|| read_initial(&mut warm))
    });
    group.finish();
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    for count in [1_000usize, 100_000, 1_000_000] {
        let set = RuleSet::compile(&synthetic_rules(count)).expect("compile");
        let stats = set.stats();
        eprintln!(
            "ruleset {count} domains: {} names, name table {} bytes = {:.1} bytes/domain",
            stats.names,
            stats.name_table_bytes,
            stats.name_table_bytes as f64 / stats.names as f64
        );
        let hit = format!("a.b.{}", synthetic_name(count - 1));
        let miss = "www.some-ordinary-site.example.com";
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{count}_domains/hit"), |b| {
            b.iter(|| set.match_name(black_box(hit.as_bytes()), 443, Protocol::Tcp))
        });
        group.bench_function(format!("{count}_domains/miss"), |b| {
            b.iter(|| set.match_name(black_box(miss.as_bytes()), 443, Protocol::Tcp))
        });
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for count in [100_000usize, 1_000_000] {
        let files = synthetic_rules(count);
        let region = Region::new(GLOBAL);
        let set = RuleSet::compile(&files).expect("compile");
        let held = live_bytes(&region);
        eprintln!(
            "compile {count} domains: the ruleset holds {:.1} MB = {:.1} bytes/domain (name table {:.1} bytes/domain)",
            held as f64 / 1e6,
            held as f64 / count as f64,
            set.stats().name_table_bytes as f64 / count as f64
        );
        drop(set);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("{count}_domains"), |b| {
            b.iter(|| RuleSet::compile(black_box(&files)))
        });
    }
    group.finish();
}

/// Every allocation is counted, so memory figures are the bytes data structures hold
/// (resident-set growth misleads: freed memory is reused, pages are touched lazily).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since the region began. (stats_alloc counts a realloc's
/// growth in `bytes_allocated` and its shrinking in `bytes_deallocated` already;
/// `bytes_reallocated` is the same change again, so it is not added.)
fn live_bytes(region: &Region<'_, System>) -> usize {
    let change = region.change();
    let live = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    live.max(0) as usize
}

/// Rulesets the engine benchmarks run with: compiled once, shared by fresh engines.
fn engine_rulesets() -> Vec<(usize, Arc<RuleSet>)> {
    [1_000usize, 100_000, 1_000_000]
        .into_iter()
        .map(|count| {
            let set = RuleSet::compile(&synthetic_rules(count)).expect("compile");
            (count, Arc::new(set))
        })
        .collect()
}

fn ordinary_or_telemetry(i: usize) -> String {
    if i.is_multiple_of(10) {
        "v10.events.data.microsoft.com".to_string()
    } else {
        format!("www{i}.example.org")
    }
}

fn bench_engine(c: &mut Criterion) {
    for (count, rules) in engine_rulesets() {
        let mut group = c.benchmark_group(format!("engine_{count}_domains"));

        // Known flows: 1,000 decided flows, data packets round robin.
        let engine = Engine::with_shared_rules(Arc::clone(&rules), EngineConfig::default());
        let flows: Vec<Hosts> = (0..1000u16)
            .map(|i| Hosts::new("192.0.2.10", 20000 + i, "198.51.100.20", 443))
            .collect();
        let mut worker = engine.worker();
        let mut events = Vec::new();
        for (i, hosts) in flows.iter().enumerate() {
            let hello = client_hello_with(&HelloOptions {
                names: vec![ordinary_or_telemetry(i)],
                ..Default::default()
            });
            for frame in [
                hosts.tcp(true, 1000, SYN, &[]),
                hosts.tcp(true, 1001, ACK, &hello),
            ] {
                worker.process(LinkType::Ethernet, &frame, Duration::ZERO, &mut events);
            }
        }
        let data: Vec<Vec<u8>> = flows
            .iter()
            .map(|h| h.tcp(true, 50_000, ACK, &[0u8; 1400]))
            .collect();
        group.throughput(Throughput::Elements(data.len() as u64));
        group.bench_function("known_flows", |b| {
            b.iter(|| {
                for frame in &data {
                    black_box(worker.process(
                        LinkType::Ethernet,
                        frame,
                        Duration::ZERO,
                        &mut events,
                    ));
                }
                events.clear();
            })
        });

        // New flows: each packet a ClientHello opening a flow never seen before.
        let new_flows: Vec<(Duration, Vec<u8>)> = (0..10_000u32)
            .map(|i| {
                let hosts = Hosts::new(
                    &format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                    40000,
                    "198.51.100.20",
                    443,
                );
                let hello = client_hello_with(&HelloOptions {
                    names: vec![ordinary_or_telemetry(i as usize)],
                    ..Default::default()
                });
                (Duration::ZERO, hosts.tcp(true, 1001, ACK, &hello))
            })
            .collect();
        fresh_engine_over(&mut group, "new_flows_client_hello", &rules, &new_flows);
        group.finish();
    }
}

/// Times `frames` through a new engine per iteration, so every flow in them is new to it.
fn fresh_engine_over(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rules: &Arc<RuleSet>,
    frames: &[(Duration, Vec<u8>)],
) {
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || Engine::with_shared_rules(Arc::clone(rules), EngineConfig::default()),
            |engine| {
                let mut worker = engine.worker();
                let mut events = Vec::new();
                for (time, frame) in frames {
                    black_box(worker.process(LinkType::Ethernet, frame, *time, &mut events));
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
}

/// The first `packets` frames of the benchmark traffic mix (`testkit::traffic`), with the
/// bundled rules' telemetry names.
fn mixed_frames(packets: u64) -> Vec<(Duration, Vec<u8>)> {
    let files = load_sources(telestrip::rules::bundled_sources()).expect("bundled rules");
    let set = RuleSet::compile(&files).expect("compile");
    let names = traffic::telemetry_names(&files, &set);
    let options = traffic::MixOptions {
        packets,
        ..traffic::MixOptions::default()
    };
    let mut frames = Vec::new();
    traffic::generate(&options, &names, |time, frame| {
        frames.push((time, frame.to_vec()));
        Ok(())
    })
    .expect("generate");
    frames
}

fn bench_mixed(c: &mut Criterion) {
    // The traffic mix of the comparison script: TLS, QUIC, HTTP, DNS, bulk data, IPv6 and
    // VLAN; 10% of named sessions to telemetry.
    let frames = mixed_frames(50_000);
    let rules = Arc::new(RuleSet::compile(&synthetic_rules(100_000)).expect("compile"));
    let mut group = c.benchmark_group("engine_100k_domains");
    fresh_engine_over(&mut group, "mixed_traffic", &rules, &frames);
    group.finish();
}

/// The engine on two cores: the traffic mix split by flow over two workers of one engine
/// (one shared flow table), against one worker doing it all, with the frames in memory.
fn bench_threads(c: &mut Criterion) {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let frames = mixed_frames(100_000);
    let rules = Arc::new(RuleSet::compile(&synthetic_rules(100_000)).expect("compile"));
    let mut lanes: [Vec<(Duration, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
    for (time, frame) in &frames {
        let lane = wire::parse(LinkType::Ethernet, frame).map_or(0, |packet| {
            let key = telestrip::flow::FlowKey::of(&packet).0;
            BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize % 2
        });
        lanes[lane].push((*time, frame.clone()));
    }
    let mut group = c.benchmark_group("engine_threads");
    group.throughput(Throughput::Elements(frames.len() as u64));
    for threads in [1usize, 2] {
        group.bench_function(format!("{threads}_threads_mixed_traffic"), |b| {
            b.iter_batched(
                || Engine::with_shared_rules(Arc::clone(&rules), EngineConfig::default()),
                |engine| {
                    let judge = |frames: &[(Duration, Vec<u8>)]| {
                        let mut worker = engine.worker();
                        let mut events = Vec::new();
                        for (time, frame) in frames {
                            black_box(worker.process(
                                LinkType::Ethernet,
                                frame,
                                *time,
                                &mut events,
                            ));
                        }
                    };
                    if threads == 1 {
                        judge(&frames);
                    } else {
                        std::thread::scope(|scope| {
                            for lane in &lanes {
                                scope.spawn(|| judge(lane));
                            }
                        });
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Resident memory per tracked flow: one million flows (a SYN each) into one engine.
fn report_flow_memory(_: &mut Criterion) {
    const FLOWS: u32 = 1_000_000;
    let engine = Engine::new(RuleSet::empty(), EngineConfig::default());
    let mut worker = engine.worker();
    let mut events = Vec::new();
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            Hosts::new(
                &format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                40000 + (i % 7) as u16,
                "198.51.100.20",
                443,
            )
            .tcp(true, 1000, SYN, &[])
        })
        .collect();
    let region = Region::new(GLOBAL);
    for frame in &frames {
        worker.process(LinkType::Ethernet, frame, Duration::ZERO, &mut events);
    }
    let held = live_bytes(&region);
    eprintln!(
        "flow table: {} flows tracked, holding {:.1} MB = {:.0} bytes/flow",
        engine.flows().len(),
        held as f64 / 1e6,
        held as f64 / f64::from(FLOWS)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_wire, bench_inspect, bench_match, bench_compile, bench_engine, bench_mixed, bench_threads, report_flow_memory
}
criterion_main!(benches);
