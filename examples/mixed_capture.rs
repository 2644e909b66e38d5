//! Writes a mixed capture for benchmarks and demos: `cargo run --release --example
//! mixed_capture -- OUT.pcap [SESSIONS]` (default 40,000 sessions = 1,000,000 packets).
//! See `telestrip::testkit::mixed_capture` for the mix; one session in ten is telemetry.

use std::path::PathBuf;
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "mixed.pcap".into()));
    let sessions: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(40_000);
    let frames = telestrip::testkit::mixed_capture(sessions);
    telestrip::testkit::write_pcap(&out, &frames, Duration::from_secs(1_700_000_000))?;
    println!(
        "wrote {} packets ({} sessions, {} with {}) to {}",
        frames.len(),
        sessions,
        sessions.div_ceil(10),
        telestrip::testkit::MIXED_TELEMETRY_NAME,
        out.display()
    );
    Ok(())
}
