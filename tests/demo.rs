//! `telestrip demo` as a newcomer runs it: it must build its network, show every telemetry
//! flow blocked and every ordinary flow passing, and clean up after itself.

mod common;

use std::process::Command;

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn demo_blocks_telemetry_and_passes_the_rest() {
    common::require(&[]);
    let demo = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The demo's namespaces carry its process id (telestrip::lab); other tests running at
    // the same time have labs of their own.
    let own = format!("{}-", demo.id() % 100_000);
    let output = demo.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        text.matches("BLOCKED  (as it should be)").count(),
        6,
        "{text}"
    );
    assert_eq!(text.matches("passed   (as it should)").count(), 5, "{text}");
    assert!(
        text.contains("via quic rule ms-windows-diagtrack"),
        "{text}"
    );
    assert!(text.contains("Audit chain: VERIFIED"), "{text}");
    assert!(text.contains("rule ms-windows-diagtrack"), "{text}");
    assert!(text.contains("Counters: "), "{text}");
    let after = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let left: Vec<String> = String::from_utf8_lossy(&after)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("tsl-") && name[5..].starts_with(&own))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "the demo left namespaces behind: {left:?}");
}
