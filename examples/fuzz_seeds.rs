//! Writes seed corpora for the fuzz targets in `fuzz/` from the project's own fixtures: every
//! frame of the captures in tests/fixtures (for `frame`), their transport payloads by port (DNS,
//! TLS, QUIC, HTTP), each capture as an engine input, the bundled and imported rule files, the
//! example configuration. Usage: cargo run --release --example fuzz_seeds -- OUTPUT_DIR
//! (`fuzz/run.sh` calls it with fuzz/corpus).

use std::path::{Path, PathBuf};

use telestrip::source::pcap::CaptureReader;
use telestrip::wire::{self, LinkType, Protocol};
use telestrip_testkit::fuzzing::engine_input;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds OUTPUT_DIR")?,
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut written = 0usize;
    let mut write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        written += 1;
        std::fs::write(dir.join(name), bytes)
    };
    let mut captures: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    captures.sort();
    for capture in &captures {
        let stem = capture
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let mut reader = CaptureReader::open(capture)?;
        let mut frames = Vec::new();
        let mut link = LinkType::Ethernet;
        while let Some(Ok(frame)) = reader.next_frame() {
            link = frame.link;
            frames.push(frame.data.to_vec());
        }
        for (n, frame) in frames.iter().enumerate().take(64) {
            write("frame", &format!("{stem}-{n}"), frame)?;
            let Ok(packet) = wire::parse(link, frame) else {
                continue;
            };
            if packet.payload.is_empty() {
                continue;
            }
            let port = packet.dst_port.min(packet.src_port);
            let target = match (packet.protocol, port) {
                (_, 53) => "dns",
                (Protocol::Tcp, 443) => "tls",
                (Protocol::Udp, 443) => "quic",
                (Protocol::Tcp, 80) => "http",
                _ => continue,
            };
            write(target, &format!("{stem}-{n}"), packet.payload)?;
        }
        let selector = match link {
            LinkType::Ethernet => 0,
            LinkType::RawIp => 1,
            _ => 2,
        };
        let refs: Vec<&[u8]> = frames.iter().take(400).map(Vec::as_slice).collect();
        write("engine", &stem, &engine_input(selector, &refs))?;
    }
    // HTTPS answers offering ECH (none of the captures has one), for the ech stripping.
    use telestrip_testkit::{dns_response, Answer};
    let v6 = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    write(
        "dns",
        "https-ech",
        &dns_response(
            1,
            "svc.example",
            65,
            &[Answer::Https("svc.example", [10, 77, 0, 3], v6, true)],
        ),
    )?;
    write(
        "dns",
        "https-ech-two-and-a",
        &dns_response(
            2,
            "svc.example",
            65,
            &[
                Answer::Cname("svc.example", "cdn.example"),
                Answer::Https("cdn.example", [10, 77, 0, 3], v6, true),
                Answer::Https("cdn.example", [10, 77, 0, 4], v6, true),
                Answer::A("cdn.example", [10, 77, 0, 3]),
            ],
        ),
    )?;
    for dir in ["rules", "tests/fixtures/import"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                write("rules_yaml", &name, &std::fs::read(&path)?)?;
            }
        }
    }
    write(
        "config",
        "telestrip.yaml",
        &std::fs::read(root.join("deploy/telestrip.yaml"))?,
    )?;
    write(
        "audit_line",
        "start",
        br#"{"seq":1,"time":"2026-11-23T12:00:00.000000Z","kind":"start","ruleset":"de806da9b701","prev":"","hash":"00"}"#,
    )?;
    println!("wrote {written} seed files under {}", out.display());
    Ok(())
}
