//! Faults a gateway meets: the daemon killed in the middle of traffic (fail open and fail
//! closed) and restarted, rule files that are invalid or unreadable at start, and an audit
//! log whose disk is full. Namespace tests need root and run in CI.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BODY, SERVER_V4};
use telestrip::lab::Lab;

const TELEMETRY: &str = "v10.events.data.microsoft.com";

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn expected_download(size: usize) -> Vec<u8> {
    let pattern: Vec<u8> = (0..=255u8).collect::<Vec<_>>().repeat(256);
    pattern.iter().copied().cycle().take(size).collect()
}

/// Starts a rate-limited download in the client namespace (about 8 s).
fn slow_download(lab: &Lab, size: usize, file: &std::path::Path) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.client])
        .args(["curl", "-sk", "--max-time", "40", "--limit-rate", "2M"])
        .arg("--resolve")
        .arg(format!("www.example.org:443:{SERVER_V4}"))
        .arg("-o")
        .arg(file)
        .arg(format!("https://www.example.org/bytes/{size}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills the daemon with SIGKILL while a download runs, checks what the fail mode lets
/// through, restarts it and reports how long it took to filter again.
fn kill_mid_traffic(fail: &str) {
    let mut lab = common::lab();
    let config = format!("queues: [0]\nfail: {fail}\n");
    lab.start_telestrip(&config, fail).unwrap();
    let size = 16_000_000;
    let file = lab.dir.path().join("download");
    let mut download = slow_download(&lab, size, &file);
    std::thread::sleep(Duration::from_secs(2));
    lab.stop_daemon("KILL");
    // New flows: fail open lets them through unfiltered, fail closed stops them all.
    let telemetry = lab.https(TELEMETRY, SERVER_V4, "");
    let allowed = lab.https("www.example.org", SERVER_V4, "");
    if fail == "open" {
        assert_eq!(
            String::from_utf8_lossy(&telemetry.stdout),
            BODY,
            "fail open"
        );
        assert_eq!(String::from_utf8_lossy(&allowed.stdout), BODY, "fail open");
    } else {
        assert_eq!(code(&telemetry), 28, "fail closed let telemetry through");
        assert_eq!(code(&allowed), 28, "fail closed let a new flow through");
    }
    // Restarted: it filters again, and the download decided before the kill (kernel fast
    // path) went on through both and is byte-exact.
    let started = Instant::now();
    lab.start_daemon(&config).unwrap();
    let ready = started.elapsed();
    let blocked = lab.https(TELEMETRY, SERVER_V4, "");
    assert!(
        common::refused(&blocked),
        "after the restart telemetry passes: curl exit {}",
        code(&blocked)
    );
    let allowed = lab.https("www.example.org", SERVER_V4, "");
    assert_eq!(String::from_utf8_lossy(&allowed.stdout), BODY);
    println!(
        "fail {fail}: the restarted daemon had its queue bound and was filtering {} ms after start",
        ready.as_millis()
    );
    let status = download.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(download.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        status.success(),
        "download across the kill failed: {stderr}"
    );
    assert!(
        std::fs::read(&file).unwrap() == expected_download(size),
        "download across the kill is not byte-exact"
    );
}

#[test]
fn killed_mid_traffic_with_fail_open_then_restarted() {
    kill_mid_traffic("open");
}

#[test]
fn killed_mid_traffic_with_fail_closed_then_restarted() {
    kill_mid_traffic("closed");
}

/// `telestrip run` with the given rules directory contents; returns (exit code, stderr).
fn run_with_rules(setup: impl Fn(&std::path::Path)) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    setup(&rules);
    let config = dir.path().join("telestrip.yaml");
    std::fs::write(
        &config,
        format!("queues: [0]\nrules: {}\nlisten: null\n", rules.display()),
    )
    .unwrap();
    // In a network namespace of its own, bounded in time: should a case start after all,
    // it binds no queue of the machine's and stops by itself.
    let output = Command::new("timeout")
        .args(["20", "unshare", "--net"])
        .arg(env!("CARGO_BIN_EXE_telestrip"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    (
        code(&output),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn invalid_or_unreadable_rules_stop_the_start_with_a_clear_error() {
    common::require(&[]);
    let good =
        "vendor: acme\nrules:\n  - id: acme-t\n    action: drop\n    domains: [t.acme.example]\n";
    // One good file and one with an error: nothing is loaded, not even the good file.
    let (code, stderr) = run_with_rules(|rules| {
        std::fs::write(rules.join("a.yaml"), good).unwrap();
        std::fs::write(
            rules.join("b.yaml"),
            "vendor: b\nrules:\n  - id: b-x\n    action: explode\n    domains: [x.example]\n",
        )
        .unwrap();
    });
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not starting"), "{stderr}");
    assert!(stderr.contains("b.yaml:4"), "no file:line in: {stderr}");
    assert!(!stderr.contains("filtering"), "{stderr}");
    // Rule files that cannot be read: a dangling link, a directory.
    let (code, stderr) = run_with_rules(|rules| {
        std::fs::write(rules.join("a.yaml"), good).unwrap();
        std::os::unix::fs::symlink("/nonexistent/rules.yaml", rules.join("c.yaml")).unwrap();
        std::fs::create_dir(rules.join("d.yaml")).unwrap();
    });
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("c.yaml: cannot read"), "{stderr}");
    assert!(stderr.contains("d.yaml: not a regular file"), "{stderr}");
    // A rules directory that does not exist.
    let (code, stderr) = run_with_rules(|rules| std::fs::remove_dir(rules).unwrap());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("rules"), "{stderr}");
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn a_full_audit_disk_keeps_packets_flowing_and_shows_on_healthz() {
    let mut lab = common::lab();
    let logs = lab.audit_dir().unwrap();
    // A 64 KiB file system of its own for the audit log.
    common::sh(&format!(
        "mount -t tmpfs -o size=64k,mode=0750,uid=65534 telestrip-audit {}",
        logs.display()
    ));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(logs.clone());
    let audit = logs.join("audit.jsonl");
    lab.start_telestrip(
        &format!(
            "queues: [0]\nfail: open\nlisten: 127.0.0.1:9477\naudit:\n  path: {}\n  heartbeat_seconds: 1\n",
            audit.display()
        ),
        "open",
    )
    .unwrap();
    let health = |lab: &Lab| {
        let out = lab.gateway("curl -s -w '\\n%{http_code}' http://127.0.0.1:9477/healthz");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(health(&lab).ends_with("200"), "{}", health(&lab));
    // Fill the disk.
    let filler = logs.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    for _ in 0..3 {
        assert!(common::refused(&lab.https(TELEMETRY, SERVER_V4, "")));
        let allowed = lab.https("www.example.org", SERVER_V4, "");
        assert_eq!(
            String::from_utf8_lossy(&allowed.stdout),
            BODY,
            "packets stopped flowing"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health(&lab).ends_with("503") {
        assert!(
            Instant::now() < deadline,
            "healthz never reported the full disk: {}",
            health(&lab)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = health(&lab);
    assert!(report.to_lowercase().contains("audit"), "{report}");
    let metrics = lab.gateway("curl -s http://127.0.0.1:9477/metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("telestrip_audit_records_total{result=\"failed\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no failed audit records counted:\n{metrics}"));
    assert!(failed > 0);
    // Space again: the log recovers, and its chain is intact.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health(&lab).ends_with("200") {
        assert!(
            Instant::now() < deadline,
            "healthz did not recover: {}",
            health(&lab)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(common::refused(&lab.https(TELEMETRY, SERVER_V4, "")));
    lab.stop_daemon("TERM");
    let verify = Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert_eq!(
        code(&verify),
        0,
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
