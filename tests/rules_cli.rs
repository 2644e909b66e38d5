//! The rule maintainer's commands as a maintainer meets them: `rules import` on real-format
//! lists (golden files), `rules check` lint with `--strict`, `rules test` with captures and
//! expectations, `rules diff`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn telestrip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Compares `actual` with the golden file, or rewrites it under UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = fixtures().join("import").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it; review the diff)"
    );
}

/// The import report without its timing and with the fixture directory shortened.
fn stable_report(report: &str) -> String {
    let dir = fixtures().join("import").display().to_string();
    report
        .replace(&dir, "import")
        .lines()
        .map(|line| match line.rfind(" in ") {
            Some(at) if line.starts_with("Wrote ") => {
                let after = line[at..]
                    .find(" ms")
                    .map_or("", |end| &line[at + end + 3..]);
                format!("{} in N ms{after}", &line[..at])
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn importers_match_their_golden_files() {
    let cases: &[(&str, &[&str])] = &[
        ("wsb-hosts.txt", &[]),
        ("wsb-firewall.txt", &["--format", "cidr"]),
        ("nvidia.hosts", &["--subdomains"]),
        ("adblock.txt", &["--category", "advertising"]),
        ("domains.txt", &["--format", "domains"]),
        ("dnsmasq.conf", &["--action", "reject"]),
    ];
    for (file, extra) in cases {
        let input = fixtures().join("import").join(file);
        let source = format!("https://lists.example/{file}");
        let mut args = vec![
            "rules",
            "import",
            input.to_str().unwrap(),
            "--vendor",
            "sample",
            "--source",
            &source,
            "--date",
            "2026-11-23",
        ];
        args.extend_from_slice(extra);
        let output = telestrip(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            text(&output.stderr)
        );
        golden(&format!("{file}.expected.yaml"), &text(&output.stdout));
        golden(
            &format!("{file}.expected.log"),
            &stable_report(&text(&output.stderr)),
        );

        // What was written loads, compiles and passes `rules check`.
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("imported.yaml");
        std::fs::write(&rules, &output.stdout).unwrap();
        let check = telestrip(&["rules", "check", rules.to_str().unwrap()]);
        assert_eq!(
            check.status.code(),
            Some(0),
            "{file}: {}",
            text(&check.stdout)
        );
    }
}

#[test]
fn imported_rules_block_what_the_list_blocks() {
    let input = fixtures().join("import/adblock.txt");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("list.yaml");
    let output = telestrip(&[
        "rules",
        "import",
        input.to_str().unwrap(),
        "--vendor",
        "sample",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let verdict = |name: &str| {
        let explain = telestrip(&["rules", "explain", name, "--rules", out.to_str().unwrap()]);
        let stdout = text(&explain.stdout);
        stdout
            .lines()
            .find(|l| l.starts_with("Verdict:") || l.starts_with("No rule"))
            .unwrap_or_default()
            .to_string()
    };
    // `||name^`: the name and below; `@@` and `$denyallow` exceptions; `$badfilter` cancels.
    assert!(verdict("telemetry.vendor.example").starts_with("Verdict: reject"));
    assert!(verdict("a.b.telemetry.vendor.example").starts_with("Verdict: reject"));
    assert!(verdict("ok.metrics.vendor.example").starts_with("Verdict: allow"));
    assert!(verdict("status.events.vendor.example").starts_with("Verdict: allow"));
    assert!(verdict("x.events.vendor.example").starts_with("Verdict: reject"));
    assert!(verdict("old.vendor.example").starts_with("No rule"));
    // `$third-party` is a browser notion: not imported rather than blocking too much.
    assert!(verdict("ads.vendor.example").starts_with("No rule"));
    // Written in one step: no temporary file left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn import_reports_a_list_with_nothing_to_import() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("empty.txt");
    std::fs::write(&list, "# only a comment\n! and another\n").unwrap();
    let output = telestrip(&[
        "rules",
        "import",
        list.to_str().unwrap(),
        "--vendor",
        "v",
        "--format",
        "hosts",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("no entries found when read as hosts"),
        "{}",
        text(&output.stderr)
    );
    let bad_vendor = telestrip(&[
        "rules",
        "import",
        list.to_str().unwrap(),
        "--vendor",
        "Bad Vendor",
    ]);
    assert_eq!(bad_vendor.status.code(), Some(2));
}

fn write_rules(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn check_reports_lint_warnings_with_file_and_line_and_strict_fails_on_them() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        "v.yaml",
        "vendor: v\nrules:\n  - id: broad\n    action: drop\n    references: [https://vendor.example/docs]\n    domains:\n      - \"*.co.uk\"\n      - t.example\n      - t.example\n  - id: open\n    action: allow\n    references: [https://vendor.example/docs]\n    domains: [t.example]\n",
    );
    let rules = dir.path().to_str().unwrap();
    let output = telestrip(&["rules", "check", rules]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let file = dir.path().join("v.yaml").display().to_string();
    assert!(
        stdout.contains(&format!("warning: {file}:7: *.co.uk is over-broad")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "warning: {file}:9: t.example is listed twice in rule broad"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "warning: {file}:8: allow/block conflict: t.example is blocked by rule broad (drop) and allowed by rule open at {file}:10"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("Lint: 3 warning(s)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "note: {file}:3: rule broad has no no_match test cases"
        )),
        "{stdout}"
    );

    let strict = telestrip(&["rules", "check", rules, "--strict"]);
    let stdout = text(&strict.stdout);
    assert_eq!(strict.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("error: {file}:7: *.co.uk")),
        "{stdout}"
    );
}

#[test]
fn the_bundled_rules_pass_check_strict() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let output = telestrip(&["rules", "check", rules.to_str().unwrap(), "--strict"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

/// `telestrip rules test --pcap PCAP --expect EXPECT` with the bundled rules.
fn rules_test_capture(pcap: &Path, expect: &Path) -> (Option<i32>, String) {
    let output = telestrip(&[
        "rules",
        "test",
        "--pcap",
        pcap.to_str().unwrap(),
        "--expect",
        expect.to_str().unwrap(),
    ]);
    (output.status.code(), text(&output.stdout))
}

#[test]
fn rules_test_checks_captures_against_expected_matches() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = fixtures().join("dns-tcp.pcap");
    let expect = write_rules(
        dir.path(),
        "dns-tcp.expect",
        "# name  rule\nv10.events.data.microsoft.com ms-windows-diagtrack\nwatson.telemetry.microsoft.com ms-windows-error-reporting\nwww.example.org -\n",
    );
    let (code, stdout) = rules_test_capture(&pcap, &expect);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("rules/microsoft.yaml: "), "{stdout}");
    assert!(stdout.contains("All tests pass."), "{stdout}");

    // A wrong expectation and an unlisted match both fail, each with its reason.
    let wrong = write_rules(
        dir.path(),
        "wrong.expect",
        "v10.events.data.microsoft.com ms-1ds-collector\n",
    );
    let (code, stdout) = rules_test_capture(&pcap, &wrong);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("wrong.expect:1: v10.events.data.microsoft.com expected rule ms-1ds-collector, the captures show rule ms-windows-diagtrack"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL watson.telemetry.microsoft.com matched rule ms-windows-error-reporting in the captures, but"),
        "{stdout}"
    );
    assert!(stdout.contains("2 failure(s)."), "{stdout}");
}

#[test]
fn rules_test_reports_failing_rule_cases() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(
        dir.path(),
        "v.yaml",
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [t.example]\n    tests:\n      match: [t.example, u.example]\n",
    );
    let output = telestrip(&["rules", "test", dir.path().to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("v.yaml:7: rule a: test expects u.example to match, but it does not"),
        "{stdout}"
    );
    assert!(stdout.contains("1 rules, 2 cases, 1 failing"), "{stdout}");
}

#[test]
fn rules_diff_shows_what_would_be_newly_blocked_and_unblocked() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    write_rules(
        &old,
        "v.yaml",
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [t.example, keep.example]\n",
    );
    write_rules(
        &new,
        "v.yaml",
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [keep.example, \"*.wide.example\"]\n  - id: b\n    action: log\n    domains: [t.example]\n",
    );
    let output = telestrip(&[
        "rules",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Newly blocked (1):\n  + *.wide.example  no rule -> drop (a)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Unblocked (1):\n  - t.example  drop (a) -> log (b)"),
        "{stdout}"
    );
    assert!(stdout.contains("Rules added: b"), "{stdout}");
    assert!(
        stdout.contains("1 newly blocked, 1 unblocked, 0 decided differently"),
        "{stdout}"
    );

    let same = telestrip(&[
        "rules",
        "diff",
        old.to_str().unwrap(),
        old.to_str().unwrap(),
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
}

/// A copy of the bundled rules in a temporary directory, to add a site's files to.
fn bundled_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(bundled).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn a_rule_that_blocks_a_must_keep_working_name_fails_check_and_test() {
    let dir = bundled_copy();
    write_rules(
        dir.path(),
        "site.yaml",
        "vendor: site\nrules:\n  - id: site-block-ncsi\n    action: drop\n    references: [https://intranet.example/policy]\n    domains: [\"*.msftconnecttest.com\"]\n    tests:\n      match: [www.msftconnecttest.com]\n      no_match: [msftconnecttest.com]\n",
    );
    let rules = dir.path().to_str().unwrap();
    let check = telestrip(&["rules", "check", rules]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    let microsoft = dir.path().join("microsoft.yaml").display().to_string();
    let site = dir.path().join("site.yaml").display().to_string();
    assert!(
        stdout.contains(&format!("{microsoft}:")),
        "the failure names the file that lists the name: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "must_keep_working www.msftconnecttest.com (Windows network connectivity status indicator; blocked, Windows reports \"no internet\") is blocked on tcp/443 by rule site-block-ncsi (site, drop) at {site}:3"
        )),
        "{stdout}"
    );
    let test = telestrip(&["rules", "test", rules]);
    assert_eq!(test.status.code(), Some(1), "{}", text(&test.stdout));
    assert!(text(&test.stdout).contains("must_keep_working www.msftconnecttest.com"));
}

#[test]
fn a_site_file_may_hold_only_its_own_must_keep_working_names() {
    let dir = bundled_copy();
    // The site needs a name the bundled rules block: the check says which rule to override.
    write_rules(
        dir.path(),
        "keep.yaml",
        "vendor: site\nmust_keep_working:\n  - name: intranet.example\n    why: the intranet\n  - name: V10.Events.Data.Microsoft.com.\n    why: a vendor tool the site runs\n",
    );
    let output = telestrip(&["rules", "check", dir.path().to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("keep.yaml:5: must_keep_working v10.events.data.microsoft.com (a vendor tool the site runs) is blocked on tcp/443 by rule ms-windows-diagtrack (microsoft, reject)"),
        "{stdout}"
    );
    assert!(!stdout.contains("intranet.example"), "{stdout}");
    let bad = write_rules(
        dir.path(),
        "keep.yaml",
        "vendor: site\nmust_keep_working:\n  - name: not a name\n    why: x\n",
    );
    let output = telestrip(&["rules", "check", bad.to_str().unwrap()]);
    let stdout = text(&output.stdout) + &text(&output.stderr);
    assert!(stdout.contains("keep.yaml:3:"), "{stdout}");
    assert!(
        stdout.contains("\"not a name\" is not a host name"),
        "{stdout}"
    );
}

#[test]
fn a_site_rule_blocks_a_logged_must_keep_name_only_with_a_stated_override() {
    let dir = bundled_copy();
    let rules = dir.path().to_str().unwrap();
    let site_rule = "vendor: site\nrules:\n  - id: site-windows-settings\n    action: reject\n    references: [https://intranet.example/dsk-decision]\n    domains: [settings-win.data.microsoft.com]\n    tests:\n      match: [settings-win.data.microsoft.com]\n      no_match: [settings.data.microsoft.com]\n";
    write_rules(dir.path(), "site.yaml", site_rule);
    let check = telestrip(&["rules", "check", "--strict", rules]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("must_keep_working settings-win.data.microsoft.com")
            && stdout.contains("by rule site-windows-settings (site, reject)")
            && stdout.contains("overrides_must_keep_working"),
        "the failure says how to block it on purpose: {stdout}"
    );

    let why = "the supervisory authorities ask that nothing is sent at level Security";
    let site = dir.path().join("site.yaml");
    write_rules(
        dir.path(),
        "site.yaml",
        &format!("{site_rule}    overrides_must_keep_working:\n      - name: Settings-Win.Data.Microsoft.com\n        why: {why}\n"),
    );
    let check = telestrip(&["rules", "check", "--strict", rules]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "note: {}:11: rule site-windows-settings blocks must_keep_working settings-win.data.microsoft.com",
            site.display()
        )) && stdout.contains(&format!("by decision: {why}")),
        "{stdout}"
    );
    // The vendor's rule logs the same entry; the site's blocking rule takes effect.
    assert!(
        stdout.contains("is log in rule ms-windows-diagnostic-settings")
            && stdout.contains("the blocking rule site-windows-settings takes effect"),
        "{stdout}"
    );
    let test = telestrip(&["rules", "test", rules]);
    assert_eq!(test.status.code(), Some(0), "{}", text(&test.stdout));
    let explain = telestrip(&[
        "rules",
        "explain",
        "settings-win.data.microsoft.com",
        "--rules",
        rules,
    ]);
    let stdout = text(&explain.stdout);
    assert!(
        stdout.contains("Verdict: reject by rule site-windows-settings (on equally specific entries a blocking rule beats log)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "blocked on tcp/443, udp/443, tcp/80, dns on purpose by rule site-windows-settings: {why}"
        )),
        "{stdout}"
    );

    // An override that no longer holds is a failure, not a silent leftover.
    write_rules(
        dir.path(),
        "site.yaml",
        &format!(
            "{}    overrides_must_keep_working:\n      - name: settings-win.data.microsoft.com\n        why: x\n      - name: wiki.intranet.example\n        why: y\n",
            site_rule.replace("action: reject", "action: log")
        ),
    );
    let check = telestrip(&["rules", "check", rules]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("site.yaml:11: rule site-windows-settings overrides must_keep_working settings-win.data.microsoft.com, but the rules do not block settings-win.data.microsoft.com"),
        "{stdout}"
    );
    assert!(
        stdout.contains("site.yaml:13: rule site-windows-settings overrides must_keep_working wiki.intranet.example, but no file lists wiki.intranet.example under must_keep_working"),
        "{stdout}"
    );
    // The override belongs to the rule that decides: another blocking rule listed first
    // decides the name, so it fails, and the override says so.
    write_rules(
        dir.path(),
        "site.yaml",
        &format!(
            "{site_rule}  - id: site-second\n    action: drop\n    references: [https://intranet.example/dsk-decision]\n    domains: [settings-win.data.microsoft.com]\n    tests:\n      match: [settings-win.data.microsoft.com]\n      no_match: [settings.data.microsoft.com]\n    overrides_must_keep_working:\n      - name: settings-win.data.microsoft.com\n        why: z\n"
        ),
    );
    let check = telestrip(&["rules", "check", rules]);
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("rule site-second overrides must_keep_working settings-win.data.microsoft.com, but settings-win.data.microsoft.com is decided on tcp/443 by rule site-windows-settings at {}:3, not by this rule", site.display())),
        "{stdout}"
    );
}

#[test]
fn on_a_capture_a_blocking_rule_beats_a_log_rule_for_the_same_name_whichever_loads_first() {
    let dir = bundled_copy();
    // Loaded before microsoft.yaml, which rejects the same exact name.
    write_rules(
        dir.path(),
        "0-site.yaml",
        "vendor: site\nrules:\n  - id: site-watson-log\n    action: log\n    references: [https://intranet.example/watson]\n    domains: [watson.telemetry.microsoft.com]\n",
    );
    let expect = write_rules(
        dir.path(),
        "capture.expect",
        "v10.events.data.microsoft.com ms-windows-diagtrack\nwatson.telemetry.microsoft.com ms-windows-error-reporting\nwww.example.org -\n",
    );
    let output = telestrip(&[
        "rules",
        "test",
        dir.path().to_str().unwrap(),
        "--pcap",
        fixtures().join("dns-tcp.pcap").to_str().unwrap(),
        "--expect",
        expect.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("site-watson-log"), "{stdout}");
}
