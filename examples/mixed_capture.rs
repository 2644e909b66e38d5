//! Writes a realistic, reproducible traffic mix for benchmarks and tool comparisons:
//!
//! ```text
//! cargo run --release --example mixed_capture -- OUT.pcap [--packets N] [--telemetry-percent P]
//!     [--seed S] [--rate PACKETS_PER_SECOND] [--expect OUT.expected.tsv]
//! ```
//!
//! Defaults: 1,000,000 packets, 10% of named sessions to telemetry names from the bundled
//! rules' own test cases, seed 1, 100,000 packets/s of capture time. The expected matches
//! (via, name, rule, flows) go to `OUT.expected.tsv` unless `--expect` says otherwise. See
//! `telestrip_testkit::traffic` for the mix.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use telestrip::rules::{bundled_sources, load_sources, RuleSet};
use telestrip_testkit::traffic::{generate, telemetry_names, MixOptions};

#[derive(Parser)]
#[command(about = "Write a realistic mixed capture and the matches telestrip must find in it")]
struct Args {
    /// The pcap file to write.
    out: PathBuf,
    /// Packets to write (exactly).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Percent of named sessions (TLS, QUIC, HTTP, DNS) that go to telemetry names.
    #[arg(long, default_value_t = 10)]
    telemetry_percent: u32,
    /// Seed of the mix: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Packets per second of capture time.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Where the expected matches go (default: OUT with .expected.tsv).
    #[arg(long)]
    expect: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let files = load_sources(bundled_sources())?;
    let set = RuleSet::compile(&files)?;
    let names = telemetry_names(&files, &set);
    let options = MixOptions {
        packets: args.packets,
        telemetry_percent: args.telemetry_percent,
        seed: args.seed,
        packets_per_second: args.rate,
        ..MixOptions::default()
    };
    let started = Instant::now();
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&args.out)?);
    let mut writer = PcapWriter::with_header(file, PcapHeader::default())?;
    let summary = generate(&options, &names, |time, frame| {
        writer
            .write_packet(&PcapPacket::new(time, frame.len() as u32, frame))
            .map(|_| ())
            .map_err(std::io::Error::other)
    })?;
    writer.into_writer().flush()?;
    let expect = args
        .expect
        .unwrap_or_else(|| args.out.with_extension("expected.tsv"));
    let mut out = std::fs::File::create(&expect)?;
    summary.expected.write_tsv(&mut out)?;
    let sessions: Vec<String> = summary
        .sessions
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    println!(
        "wrote {} packets ({} bytes) to {} in {:.1} s: sessions {}; {} IPv6, {} VLAN-tagged",
        summary.packets,
        summary.bytes,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        sessions.join(", "),
        summary.ipv6_sessions,
        summary.vlan_sessions,
    );
    println!(
        "expected {} matched flows ({} distinct telemetry names of {}) in {}",
        summary.expected.total(),
        summary
            .expected
            .flows
            .keys()
            .map(|(_, name, _)| name)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        names.len(),
        expect.display()
    );
    Ok(())
}
