//! `telestrip pcap` on a capture larger than its memory budget, with one thread and with
//! `--threads 8`: the pages around the read position (and, with packet threads, those
//! they still need) are all it keeps mapped, so its resident memory does not grow with
//! the capture. (Before, with 4 or 8 threads it kept nearly the whole file resident.) Its own
//! test binary: the peak resident memory of waited-for children is counted per process.

use std::process::{Command, Stdio};

use pcap_file::pcap::{PcapPacket, PcapWriter};

use nix::sys::resource::{getrusage, UsageWho};
use telestrip::rules::{bundled_sources, load_sources, RuleSet};
use telestrip_testkit::traffic::{generate, telemetry_names, MixOptions};

#[test]
fn reading_keeps_resident_memory_far_below_the_capture_size() {
    let dir = std::env::temp_dir().join(format!("telestrip-threads-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mix.pcap");
    let files = load_sources(bundled_sources()).unwrap();
    let set = RuleSet::compile(&files).unwrap();
    let options = MixOptions {
        packets: 400_000,
        seed: 11,
        ..MixOptions::default()
    };
    // Written as generated: a test process grown by the whole capture would pass that
    // size on to the child it forks, and the child's peak would count it.
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut writer = PcapWriter::new(file).unwrap();
    generate(&options, &telemetry_names(&files, &set), |time, frame| {
        writer
            .write_packet(&PcapPacket::new(time, frame.len() as u32, frame))
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
    .unwrap();
    drop(writer);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 250 << 20, "the capture is {size} bytes");

    // One reading thread (its pages kept by the capture's helper thread), then eight
    // packet threads behind a reader. Kilobytes on Linux; the peak of the largest child
    // waited for so far.
    let mut peaks = Vec::new();
    for threads in ["1", "8"] {
        let status = Command::new(env!("CARGO_BIN_EXE_telestrip"))
            .args(["pcap", "-q", "--threads", threads])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "telemetry is in the capture");
        peaks.push(getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss() as u64 * 1024);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    for (threads, peak) in ["1", "8"].iter().zip(&peaks) {
        assert!(
            *peak < size / 2,
            "peak resident memory {} MB (by --threads {threads} or before) for a {} MB capture",
            peak >> 20,
            size >> 20
        );
    }
}
