//! `telestrip demo` as a newcomer runs it: it must build its network, show every telemetry
//! flow blocked and every ordinary flow passing, and clean up after itself.

mod common;

use std::process::Command;

#[test]
fn demo_blocks_telemetry_and_passes_the_rest() {
    if !common::can_run() {
        return;
    }
    let before = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let output = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .arg("demo")
        .output()
        .unwrap();
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
    assert_eq!(before, after, "the demo left namespaces behind");
}
