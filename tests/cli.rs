//! The `telestrip` binary as a user meets it: other capture formats, bad input, exit codes,
//! rules check and explain, help text.

mod common;

use std::borrow::Cow;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use telestrip_testkit::{client_hello, tls_flow, write_pcap, write_pcap_linktype, Hosts, Vlan};

fn telestrip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn telemetry_frames() -> Vec<Vec<u8>> {
    let hosts = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443);
    tls_flow(&hosts, &client_hello("v10.events.data.microsoft.com"), 0)
}

fn path(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// A pcap of one TLS flow to a telemetry name, written as `name` in `dir`: its path and bytes.
fn telemetry_capture(dir: &tempfile::TempDir, name: &str) -> (String, Vec<u8>) {
    let file = path(dir, name);
    write_pcap(Path::new(&file), &telemetry_frames(), Duration::ZERO).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    (file, bytes)
}

#[test]
fn reads_pcapng_with_nanosecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "ns.pcapng");
    let mut writer = PcapNgWriter::new(std::fs::File::create(&file).unwrap()).unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        })
        .unwrap();
    for (i, frame) in telemetry_frames().iter().enumerate() {
        // 2023-11-14T22:13:20.5 plus i ms, in nanosecond ticks.
        let ticks = 1_700_000_000_500_000_000u64 + i as u64 * 1_000_000;
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(ticks),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: vec![],
            })
            .unwrap();
    }
    drop(writer);
    let output = telestrip(&["pcap", "-q", "--format", "csv", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let csv = text(&output.stdout);
    assert!(csv.contains("2023-11-14T22:13:20.503000Z,tcp,192.0.2.10:40000,198.51.100.20:443,v10.events.data.microsoft.com,sni"), "{csv}");
}

#[test]
fn a_capture_time_beyond_year_9999_is_shown_not_fatal() {
    // pcapng with one-second ticks (if_tsresol 0) lets a damaged file claim any time.
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "far.pcapng");
    let mut writer = PcapNgWriter::new(std::fs::File::create(&file).unwrap()).unwrap();
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![InterfaceDescriptionOption::IfTsResol(0)],
        })
        .unwrap();
    for frame in telemetry_frames() {
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                // Raw ticks: 10^15 seconds after 1970.
                timestamp: Duration::from_nanos(1_000_000_000_000_000),
                original_len: frame.len() as u32,
                data: Cow::Borrowed(&frame),
                options: vec![],
            })
            .unwrap();
    }
    drop(writer);
    let output = telestrip(&["pcap", "-q", "--format", "csv", &file]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let csv = text(&output.stdout);
    assert!(
        csv.contains("unix:1000000000000000.000000,tcp,192.0.2.10:40000"),
        "{csv}"
    );
}

#[test]
fn reads_raw_ip_and_vlan_captures() {
    let dir = tempfile::tempdir().unwrap();
    let raw = path(&dir, "raw.pcap");
    let frames: Vec<Vec<u8>> = telemetry_frames()
        .into_iter()
        .map(|f| f[14..].to_vec())
        .collect();
    write_pcap_linktype(
        Path::new(&raw),
        &frames,
        Duration::from_secs(1),
        DataLink::RAW,
    )
    .unwrap();
    let qinq = path(&dir, "qinq.pcap");
    let hosts =
        Hosts::new("2001:db8::10", 40000, "2001:db8::20", 443).with_vlan(Vlan::Double(10, 20));
    write_pcap(
        Path::new(&qinq),
        &tls_flow(&hosts, &client_hello("oca.microsoft.com"), 50),
        Duration::from_secs(1),
    )
    .unwrap();
    for (file, name) in [
        (&raw, "v10.events.data.microsoft.com"),
        (&qinq, "oca.microsoft.com"),
    ] {
        let output = telestrip(&["pcap", "-q", "--format", "csv", file]);
        assert_eq!(output.status.code(), Some(1));
        assert!(text(&output.stdout).contains(name), "{file}");
    }
}

#[test]
fn clean_capture_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(&dir, "clean.pcap");
    let hosts = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443);
    write_pcap(
        Path::new(&file),
        &tls_flow(&hosts, &client_hello("www.example.org"), 0),
        Duration::ZERO,
    )
    .unwrap();
    let output = telestrip(&["pcap", "-q", &file]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("No flow matched a rule."));
    assert!(text(&output.stdout).contains("Read 6 packets"));
}

#[test]
fn bad_capture_files_give_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = path(&dir, "empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text_file = path(&dir, "notes.txt");
    std::fs::write(&text_file, b"this is not a capture\n").unwrap();
    let tiny = path(&dir, "tiny.pcap");
    std::fs::write(&tiny, b"\xd4\xc3").unwrap();
    let header_only = path(&dir, "header.pcap");
    std::fs::write(&header_only, b"\xd4\xc3\xb2\xa1\x02\x00").unwrap();
    let missing = path(&dir, "missing.pcap");
    let cases = [
        (&empty, "the file is empty"),
        (&text_file, "not a pcap or pcapng file"),
        (&tiny, "not a pcap or pcapng file"),
        (&header_only, "corrupt or truncated"),
        (&missing, "cannot open"),
    ];
    for (file, message) in cases {
        let output = telestrip(&["pcap", "-q", file]);
        assert_eq!(output.status.code(), Some(2), "{file}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(message) && stderr.contains(file.as_str()),
            "{file}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn truncated_capture_keeps_what_was_read_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = telemetry_capture(&dir, "cut.pcap");
    std::fs::write(&file, &bytes[..bytes.len() - 20]).unwrap();
    let output = telestrip(&["pcap", "-q", "--format", "csv", &file]);
    // The telemetry flow before the cut is still reported (exit 1), with a warning.
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("v10.events.data.microsoft.com"));
    assert!(
        text(&output.stderr).contains("corrupt or truncated after 5 packets"),
        "{}",
        text(&output.stderr)
    );

    let clean = path(&dir, "clean-cut.pcap");
    let hosts = Hosts::new("192.0.2.10", 40000, "198.51.100.20", 443);
    write_pcap(
        Path::new(&clean),
        &tls_flow(&hosts, &client_hello("www.example.org"), 0),
        Duration::ZERO,
    )
    .unwrap();
    let bytes = std::fs::read(&clean).unwrap();
    std::fs::write(&clean, &bytes[..bytes.len() - 20]).unwrap();
    // Nothing found, but the input was damaged: not a clean bill of health.
    assert_eq!(telestrip(&["pcap", "-q", &clean]).status.code(), Some(2));
}

/// The README's way to audit a capture something may cut while it is read: piped in, it is
/// read through a buffer (not mapped), with the same result as the file; a stream that
/// stops inside a record is reported like a cut file.
#[test]
fn a_capture_piped_in_reads_as_the_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let (file, bytes) = telemetry_capture(&dir, "piped.pcap");
    let from_file = telestrip(&["pcap", "-q", "--format", "csv", &file]);
    let csv_from_stdin = ["pcap", "-q", "--format", "csv", "/dev/stdin"];
    let piped = common::telestrip_with_input(&csv_from_stdin, bytes.clone());
    assert_eq!(piped.status.code(), Some(1), "{}", text(&piped.stderr));
    assert!(text(&piped.stdout).contains("v10.events.data.microsoft.com"));
    assert_eq!(text(&piped.stdout), text(&from_file.stdout));

    let cut = common::telestrip_with_input(&csv_from_stdin, bytes[..bytes.len() - 20].to_vec());
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut.stderr));
    assert!(
        text(&cut.stderr).contains("corrupt or truncated after 5 packets"),
        "{}",
        text(&cut.stderr)
    );
}

#[test]
fn garbage_rules_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [a.example]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "vendor: v\nrules:\n  - id: b\n    action: drop\n    domains: [\"a b\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("binary.yml"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let capture = path(&dir, "c.pcap");
    write_pcap(Path::new(&capture), &telemetry_frames(), Duration::ZERO).unwrap();
    let rules = dir.path().to_str().unwrap();

    let output = telestrip(&["pcap", "-q", "--rules", rules, &capture]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.yaml:5:"), "{stderr}");
    assert!(stderr.contains("binary.yml"), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");

    let check = telestrip(&["rules", "check", rules]);
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stdout).contains("error: "));

    let empty = tempfile::tempdir().unwrap();
    let output = telestrip(&["rules", "check", empty.path().to_str().unwrap()]);
    assert!(text(&output.stdout).contains("no rule files"));
}

#[test]
fn rules_check_reports_counts_and_failing_tests() {
    let ok = telestrip(&["rules", "check"]);
    assert_eq!(ok.status.code(), Some(0));
    let out = text(&ok.stdout);
    // The counts of the bundled rules as written in rules/.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let rules: usize = texts
        .iter()
        .map(|t| t.lines().filter(|l| l.starts_with("  - id: ")).count())
        .sum();
    let counts = format!("{} files, {rules} rules", texts.len());
    assert!(out.contains(&counts), "{counts}: {out}");
    assert!(out.contains("0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [\"*.a.example\"]\n    tests:\n      match: [a.example]\n      no_match: [x.a.example]\n",
    )
    .unwrap();
    let failing = telestrip(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(failing.status.code(), Some(1));
    let out = text(&failing.stdout);
    assert!(
        out.contains("t.yaml:7: rule a: test expects a.example to match"),
        "{out}"
    );
    assert!(
        out.contains("t.yaml:8: rule a: test expects x.a.example not to match"),
        "{out}"
    );
    assert!(out.contains("0 passed, 2 failed"), "{out}");
}

#[test]
fn explain_says_which_rule_and_why() {
    let out = text(&telestrip(&["rules", "explain", "US-V10.events.data.microsoft.com."]).stdout);
    assert!(
        out.contains("ms-1ds-collector (microsoft, reject)"),
        "{out}"
    );
    assert!(
        out.contains("suffix entry *.events.data.microsoft.com"),
        "{out}"
    );
    assert!(
        out.contains("Verdict: reject by rule ms-1ds-collector"),
        "{out}"
    );

    let out = text(&telestrip(&["rules", "explain", "events.data.microsoft.com"]).stdout);
    assert!(
        out.contains("No rule matches events.data.microsoft.com."),
        "{out}"
    );
    assert!(
        out.contains("not events.data.microsoft.com itself"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("n.yaml"),
        "vendor: v\nrules:\n  - id: net\n    action: reject\n    cidrs: [203.0.113.0/24]\n",
    )
    .unwrap();
    let out = text(
        &telestrip(&[
            "rules",
            "explain",
            "203.0.113.9",
            "--rules",
            dir.path().to_str().unwrap(),
        ])
        .stdout,
    );
    assert!(out.contains("CIDR entry 203.0.113.0/24"), "{out}");
    assert!(out.contains("Verdict: reject by rule net"), "{out}");

    let bad = telestrip(&["rules", "explain", "not a name"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("neither an IP address nor a valid host name"));
}

#[test]
fn help_teaches_the_commands() {
    let help = text(&telestrip(&["--help"]).stdout);
    for word in ["pcap", "rules", "telemetry"] {
        assert!(help.contains(word), "{help}");
    }
    let pcap_help = text(&telestrip(&["pcap", "--help"]).stdout);
    assert!(pcap_help.contains("Exit code"), "{pcap_help}");
    assert!(pcap_help.contains("Example:"), "{pcap_help}");
    assert!(pcap_help.contains("--dry-run"), "{pcap_help}");
}

#[test]
fn config_check_names_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    std::fs::create_dir(&audit_dir).unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "queues: [0]\ngateway: gw-1\nsite: hq\naudit:\n  path: {}/audit.jsonl\n",
            audit_dir.display()
        ),
    )
    .unwrap();
    let output = telestrip(&["config", "check", &good.display().to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("OK (gateway gw-1, site hq)"));

    // A wrong value: file, line and column, and what is expected.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "queues: [0]\nfail: sometimes\n").unwrap();
    let output = telestrip(&["config", "check", &bad.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output.stdout);
    assert!(
        shown.contains("bad.yaml:2:7") && shown.contains("open"),
        "{shown}"
    );

    // The rules it points to are checked too, and the directories it names.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("acme.yaml"),
        "vendor: acme\nrules:\n  - id: x\n    action: explode\n",
    )
    .unwrap();
    let pointing = dir.path().join("pointing.yaml");
    std::fs::write(
        &pointing,
        format!(
            "rules: {}\naudit:\n  path: {}/missing/audit.jsonl\n",
            rules.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let output = telestrip(&["config", "check", &pointing.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let shown = text(&output.stdout);
    assert!(shown.contains("acme.yaml:4"), "{shown}");
    assert!(shown.contains("missing does not exist"), "{shown}");

    let output = telestrip(&["config", "check", "/nonexistent/telestrip.yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
#[ignore = "needs man (man-db); scripts/test.sh installs it and runs this"]
fn man_pages_render_and_completions_load() {
    common::require_tools(&["man", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let output = telestrip(&["man", &dir.path().display().to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for expected in [
        "telestrip.1",
        "telestrip-run.1",
        "telestrip-rules-check.1",
        "telestrip-report.1",
        "telestrip-config-check.1",
        "telestrip-audit-verify.1",
    ] {
        assert!(
            dir.path().join(expected).exists(),
            "{expected} among {pages:?}"
        );
    }
    for page in &pages {
        let shown = std::process::Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(
            shown.status.success(),
            "{}: {}",
            page.display(),
            text(&shown.stderr)
        );
        assert!(text(&shown.stdout).contains("NAME"), "{}", page.display());
    }
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completions bash) && complete -p telestrip",
            env!("CARGO_BIN_EXE_telestrip")
        ))
        .output()
        .unwrap();
    assert!(
        text(&loaded.stdout).contains("-F _telestrip telestrip"),
        "{}",
        text(&loaded.stderr)
    );
    for (shell, first) in [
        ("zsh", "#compdef telestrip"),
        ("fish", "complete -c telestrip"),
    ] {
        let script = text(&telestrip(&["completions", shell]).stdout);
        assert!(script.contains(first), "{shell}: {script}");
    }
}
