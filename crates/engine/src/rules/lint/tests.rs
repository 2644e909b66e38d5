use super::*;
use crate::rules::{load_sources, Source};

/// Lints one file; returns (line, message) of every finding but the missing-`no_match`
/// note, which most fixtures here would get (it has a test of its own).
fn lint_text(text: &str) -> Vec<(Option<usize>, String)> {
    lint_all(text)
        .into_iter()
        .filter(|(_, message)| !message.contains("has no no_match test cases"))
        .collect()
}

fn lint_all(text: &str) -> Vec<(Option<usize>, String)> {
    let files = load_sources(vec![Source {
        name: "t.yaml".into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    lint(&files)
        .into_iter()
        .map(|f| (f.error.line, f.error.message))
        .collect()
}

#[test]
fn a_rule_that_lists_names_without_no_match_cases_gets_a_note() {
    let text = file(&[
        rule("a", "drop", "    domains: [t.example]\n"),
        rule(
            "b",
            "drop",
            "    domains: [u.example]\n    tests:\n      no_match: [v.example]\n",
        ),
        rule("c", "drop", "    cidrs: [192.0.2.0/24]\n"),
    ]);
    let findings = lint_all(&text);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].0, Some(3));
    assert!(findings[0].1.contains("rule a has no no_match test cases"));
}

#[test]
fn a_profile_allow_entry_is_no_conflict_with_the_block_it_overrides() {
    let text = file(&[
        rule("all", "drop", "    domains: [\"*.t.example\"]\n"),
        rule("one", "drop", "    domains: [x.t.example]\n"),
        rule(
            "edr",
            "allow",
            "    profile: edr\n    domains: [x.t.example, y.t.example]\n",
        ),
    ]);
    let conflicts = |text: &str| {
        lint_text(text)
            .into_iter()
            .filter(|(_, message)| message.contains("conflict"))
            .count()
    };
    assert_eq!(conflicts(&text), 0, "{:?}", lint_text(&text));
    // The same allow rule outside a profile overrides the blocks for everyone: reported.
    assert_eq!(conflicts(&text.replace("    profile: edr\n", "")), 1);
}

const REF: &str = "    references: [https://vendor.example/docs]\n";

fn rule(id: &str, action: &str, body: &str) -> String {
    format!("  - id: {id}\n    action: {action}\n{REF}{body}")
}

fn file(rules: &[String]) -> String {
    format!("vendor: t\nrules:\n{}", rules.concat())
}

#[test]
fn clean_rules_have_no_findings() {
    let text = file(&[
        rule("a", "drop", "    domains: [t.example, \"*.u.example\"]\n"),
        rule("b", "allow", "    domains: [ok.t.example]\n"),
    ]);
    assert_eq!(lint_text(&text), []);
}

#[test]
fn an_entry_listed_twice_in_one_rule() {
    let text = file(&[rule(
        "a",
        "drop",
        "    domains:\n      - t.example\n      - u.example\n      - t.example\n",
    )]);
    assert_eq!(
        lint_text(&text),
        [(Some(9), "t.example is listed twice in rule a".to_string())]
    );
}

#[test]
fn the_same_entry_in_two_rules() {
    let text = file(&[
        rule("a", "drop", "    domains: [t.example]\n"),
        rule("b", "drop", "    domains:\n      - t.example\n"),
    ]);
    assert_eq!(
        lint_text(&text),
        [(
            Some(11),
            "t.example is also listed by rule a at t.yaml:3; remove one".to_string()
        )]
    );
}

#[test]
fn an_entry_covered_by_a_suffix_of_the_same_rule_is_redundant() {
    let text = file(&[rule(
        "a",
        "drop",
        "    domains:\n      - \"*.t.example\"\n      - x.t.example\n    cidrs: [192.0.2.0/24, 192.0.2.9]\n",
    )]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(8),
                "x.t.example is already covered by *.t.example of the same rule; remove it"
                    .to_string()
            ),
            (
                Some(9),
                "192.0.2.9/32 is already covered by 192.0.2.0/24 of the same rule; remove it"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn an_entry_covered_by_a_suffix_of_another_rule_is_a_note() {
    let text = file(&[
        rule("a", "drop", "    domains: [\"*.t.example\"]\n"),
        rule(
            "b",
            "drop",
            "    domains:\n      - x.t.example\n      - \"*.y.t.example\"\n",
        ),
    ]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(11),
                "x.t.example is inside *.t.example of rule a at t.yaml:3 with the same action; it only decides that its flows count under rule b (remove it if that is not meant)".to_string()
            ),
            (
                Some(12),
                "*.y.t.example is inside *.t.example of rule a at t.yaml:3 with the same action; it only decides that its flows count under rule b (remove it if that is not meant)".to_string()
            ),
        ]
    );
}

#[test]
fn a_more_specific_entry_with_another_action_is_not_shadowed() {
    // A drop inside a log suffix, or an allow inside a drop suffix: deliberate.
    let text = file(&[
        rule("a", "log", "    domains: [\"*.t.example\"]\n"),
        rule("b", "drop", "    domains: [x.t.example]\n"),
        rule("c", "allow", "    domains: [ok.x.t.example]\n"),
    ]);
    assert_eq!(lint_text(&text), []);
}

#[test]
fn a_narrower_rule_is_not_covered_by_a_port_restricted_one() {
    let text = file(&[
        rule(
            "a",
            "drop",
            "    domains: [\"*.t.example\"]\n    ports: [443]\n",
        ),
        rule("b", "drop", "    domains: [x.t.example]\n"),
    ]);
    assert_eq!(lint_text(&text), []);
}

#[test]
fn allow_and_block_conflicts() {
    let text = file(&[
        rule("a", "allow", "    domains: [\"*.t.example\", u.example]\n"),
        rule(
            "b",
            "drop",
            "    domains:\n      - x.t.example\n      - u.example\n",
        ),
    ]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(11),
                "allow/block conflict: x.t.example of rule b is inside *.t.example of allow rule a at t.yaml:3; the allow rule wins, so x.t.example is never blocked".to_string()
            ),
            (
                Some(12),
                "allow/block conflict: u.example is blocked by rule b (drop) and allowed by rule a at t.yaml:3; the allow rule wins, so the block never takes effect".to_string()
            ),
        ]
    );
}

#[test]
fn public_suffixes_are_over_broad() {
    let text = file(&[rule(
        "a",
        "drop",
        "    domains:\n      - \"*.com\"\n      - \"*.co.uk\"\n      - \"*.vendor.co.uk\"\n",
    )]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(7),
                "*.com is over-broad: com is a public suffix, so this covers every site registered under it".to_string()
            ),
            (
                Some(8),
                "*.co.uk is over-broad: co.uk is a public suffix, so this covers every site registered under it".to_string()
            ),
            (
                Some(9),
                "*.vendor.co.uk is already covered by *.co.uk of the same rule; remove it"
                    .to_string()
            ),
        ]
    );
}

#[test]
fn cidr_duplicates_coverage_conflicts_and_huge_blocks() {
    let text = file(&[
        rule(
            "a",
            "drop",
            "    cidrs:\n      - 192.0.2.0/24\n      - 10.0.0.0/7\n",
        ),
        rule(
            "b",
            "drop",
            "    cidrs:\n      - 192.0.2.0/24\n      - 192.0.2.7\n",
        ),
        rule("c", "allow", "    cidrs: [\"2001:db8::/32\"]\n"),
        rule("d", "drop", "    cidrs: [\"2001:db8::1\"]\n"),
    ]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(8),
                "10.0.0.0/7 is over-broad: it covers more than a /8".to_string()
            ),
            (
                Some(13),
                "192.0.2.0/24 is also listed by rule a at t.yaml:3; remove one".to_string()
            ),
            (
                Some(14),
                "192.0.2.7/32 is inside 192.0.2.0/24 of rule a at t.yaml:3 with the same action; it only decides that its flows count under rule b (remove it if that is not meant)".to_string()
            ),
            (
                Some(22),
                "allow/block conflict: 2001:db8::1/128 of rule d is inside 2001:db8::/32 of allow rule c at t.yaml:15; the allow rule wins, so 2001:db8::1/128 is never blocked".to_string()
            ),
        ]
    );
}

#[test]
fn regexes_that_never_match_need_not_be_regexes_or_lack_tests() {
    let text = file(&[rule(
        "a",
        "drop",
        "    domains:\n      - \"regex:Telemetry[0-9]+\\\\.example\"\n      - \"regex:v10\\\\.example\"\n      - \"regex:x[0-9]+\\\\.example\"\n      - \"regex:y[0-9]+\\\\.example\"\n    tests:\n      match: [x1.example]\n",
    )]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(7),
                "regex:Telemetry[0-9]+\\.example never matches: it requires 'T', which a name compared by rules never contains (names are lowercase letters, digits, '-', '_' and '.')".to_string()
            ),
            (
                Some(8),
                "regex:v10\\.example matches only v10.example: write it as an exact entry (exact names are checked first and faster)".to_string()
            ),
            (
                Some(8),
                "regex:v10\\.example matches none of the rule's match tests".to_string()
            ),
            (
                Some(10),
                "regex:y[0-9]+\\.example matches none of the rule's match tests".to_string()
            ),
        ]
    );
}

#[test]
fn slow_regexes_are_reported() {
    let text = file(&[rule(
        "a",
        "drop",
        "    domains: [\"regex:(?:[a-z0-9]{1,63}\\\\.){1,40}example\"]\n    tests:\n      match: [a.example]\n",
    )]);
    let findings = lint_text(&text);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0]
            .1
            .contains("is slow: it compiles to more than 64 KiB"),
        "{findings:?}"
    );
}

#[test]
fn the_same_entry_with_other_actions() {
    let text = file(&[
        rule(
            "a",
            "drop",
            "    domains: [t.example]\n    cidrs: [192.0.2.1]\n",
        ),
        rule("b", "log", "    domains: [t.example]\n"),
        rule("c", "allow", "    cidrs: [192.0.2.1]\n"),
    ]);
    assert_eq!(
        lint_text(&text),
        [
            (
                Some(7),
                "allow/block conflict: 192.0.2.1/32 is blocked by rule a (drop) and allowed by rule c at t.yaml:12; the allow rule wins, so the block never takes effect".to_string()
            ),
            (
                Some(11),
                "t.example is drop in rule a at t.yaml:3 and log here; on the same entry the blocking rule a takes effect".to_string()
            ),
        ]
    );
}

#[test]
fn rules_without_references() {
    let text = "vendor: t\nrules:\n  - id: a\n    action: drop\n    domains: [t.example]\n";
    assert_eq!(
        lint_text(text),
        [(
            Some(3),
            "rule a has no references (cite the public documents its entries rest on)".to_string()
        )]
    );
}

#[test]
fn findings_across_files_name_the_other_file() {
    let files = load_sources(vec![
        Source {
            name: "a.yaml".into(),
            text: format!(
                "vendor: a\nrules:\n{}",
                rule("a", "drop", "    domains: [\"*.t.example\"]\n")
            ),
        },
        Source {
            name: "b.yaml".into(),
            text: format!(
                "vendor: b\nrules:\n{}",
                rule("b", "drop", "    domains: [x.t.example]\n")
            ),
        },
    ])
    .unwrap();
    let findings: Vec<_> = lint(&files)
        .into_iter()
        .filter(|f| !f.error.message.contains("no no_match test cases"))
        .collect();
    assert_eq!(findings.len(), 1);
    assert_eq!(
        findings[0].error.to_string(),
        "b.yaml:6: x.t.example is inside *.t.example of rule a at a.yaml:3 with the same action; it only decides that its flows count under rule b (remove it if that is not meant)"
    );
    assert_eq!(findings[0].severity, Severity::Note);
}

#[test]
fn a_site_file_that_blocks_a_logged_entry_gets_a_note_not_a_warning() {
    let two_files = |first: &str, second: &str| {
        load_sources(vec![
            Source {
                name: "a.yaml".into(),
                text: format!(
                    "vendor: a\nrules:\n{}",
                    rule("a", first, "    domains: [t.example]\n")
                ),
            },
            Source {
                name: "site.yaml".into(),
                text: format!(
                    "vendor: site\nrules:\n{}",
                    rule("s", second, "    domains: [t.example]\n")
                ),
            },
        ])
        .unwrap()
    };
    let findings = |files: &[LoadedFile]| -> Vec<(Severity, String)> {
        lint(files)
            .into_iter()
            .filter(|f| !f.error.message.contains("no no_match test cases"))
            .map(|f| (f.severity, f.error.to_string()))
            .collect()
    };
    assert_eq!(
        findings(&two_files("log", "reject")),
        [(
            Severity::Note,
            "site.yaml:6: t.example is log in rule a at a.yaml:3 and reject here; on the same entry the blocking rule s takes effect".to_string()
        )]
    );
    // Two blocking actions: still only the first loaded takes effect, a warning.
    assert_eq!(
        findings(&two_files("drop", "reject")),
        [(
            Severity::Warning,
            "site.yaml:6: t.example is drop in rule a at a.yaml:3 and reject here; only the rule loaded first takes effect".to_string()
        )]
    );
}
