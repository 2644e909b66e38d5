use super::*;

fn load(text: &str) -> Result<Vec<LoadedFile>, RuleErrors> {
    load_sources(vec![Source {
        name: "test.yaml".into(),
        text: text.into(),
    }])
}

fn compile(text: &str) -> RuleSet {
    RuleSet::compile(&load(text).unwrap()).unwrap()
}

fn first_error(text: &str) -> RuleError {
    load(text).unwrap_err().0.remove(0)
}

fn winner(set: &RuleSet, name: &str) -> Option<(String, Action)> {
    set.match_name(name.as_bytes(), 443, Protocol::Tcp)
        .and_then(|h| set.rule(h.rule))
        .map(|r| (r.id.to_string(), r.action))
}

#[test]
fn unknown_fields_are_errors_with_line_and_column() {
    let error =
        first_error("vendor: v\nrules:\n  - id: a\n    action: drop\n    domain: [x.example]\n");
    assert_eq!(error.file, "test.yaml");
    assert_eq!(error.line, Some(5));
    assert!(error.column.is_some());
    assert!(
        error.message.contains("unknown field `domain`"),
        "{}",
        error.message
    );
    assert!(error.to_string().starts_with("test.yaml:5:"));
}

#[test]
fn bad_values_name_their_position() {
    let cases = [
        (
            "    action: dorp\n    domains: [x.example]\n",
            4,
            "unknown variant `dorp`",
        ),
        (
            "    action: drop\n    domains: [\"a*.example\"]\n",
            5,
            "'*' is only allowed",
        ),
        (
            "    action: drop\n    domains: [\"bad name.example\"]\n",
            5,
            "not a valid domain name",
        ),
        (
            "    action: drop\n    domains: [\"regex:(unclosed\"]\n",
            5,
            "bad regex",
        ),
        (
            "    action: drop\n    cidrs: [192.0.2.1/24]\n",
            5,
            "host bits set",
        ),
        (
            "    action: drop\n    cidrs: [not-an-address]\n",
            5,
            "not an address",
        ),
        (
            "    action: drop\n    ports: [70000]\n    domains: [x.example]\n",
            5,
            "",
        ),
    ];
    for (body, line, message) in cases {
        let text = format!("vendor: v\nrules:\n  - id: a\n{body}");
        let error = first_error(&text);
        assert_eq!(error.line, Some(line), "{body}: {error}");
        assert!(error.message.contains(message), "{body}: {error}");
    }
}

#[test]
fn a_rule_must_match_something() {
    let error = first_error("vendor: v\nrules:\n  - id: empty\n    action: drop\n");
    assert_eq!(error.line, Some(3));
    assert!(error.message.contains("neither domains nor cidrs"));
}

#[test]
fn duplicate_ids_across_files_point_at_the_first() {
    let file = |name: &str| Source {
        name: name.into(),
        text: "vendor: v\nrules:\n  - id: same\n    action: drop\n    domains: [x.example]\n"
            .into(),
    };
    let errors = load_sources(vec![file("a.yaml"), file("b.yaml")]).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].file, "b.yaml");
    assert!(errors.0[0].message.contains("first defined at a.yaml:3"));
}

#[test]
fn every_bad_file_is_reported() {
    let errors = load_sources(vec![
        Source {
            name: "one.yaml".into(),
            text: "vendor: [\n".into(),
        },
        Source {
            name: "two.yaml".into(),
            text: "".into(),
        },
        Source {
            name: "three.yaml".into(),
            text: "vendor: Upper\nrules: []\n".into(),
        },
    ])
    .unwrap_err();
    let files: Vec<&str> = errors.0.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["one.yaml", "two.yaml", "three.yaml"]);
}

#[test]
fn exact_suffix_and_regex_entries_follow_the_contract() {
    let set = compile(
        "vendor: v\nrules:\n  - id: exact\n    action: drop\n    domains: [host.example]\n  - id: below\n    action: drop\n    domains: [\"*.below.example\"]\n  - id: pattern\n    action: log\n    domains: [\"regex:tracker[0-9]+\\\\.example\"]\n",
    );
    assert_eq!(winner(&set, "host.example").unwrap().0, "exact");
    assert_eq!(winner(&set, "a.host.example"), None);
    assert_eq!(winner(&set, "a.below.example").unwrap().0, "below");
    assert_eq!(winner(&set, "below.example"), None);
    assert_eq!(winner(&set, "tracker42.example").unwrap().0, "pattern");
    // Regexes are anchored: a longer name does not match.
    assert_eq!(winner(&set, "x.tracker42.example"), None);
    assert_eq!(winner(&set, "tracker42.example.evil"), None);
}

#[test]
fn allow_beats_a_more_specific_block_and_specific_beats_general() {
    let set = compile(
        "vendor: v\nrules:\n  - id: general\n    action: drop\n    domains: [\"*.example\"]\n  - id: specific\n    action: reject\n    domains: [\"*.t.example\"]\n  - id: exception\n    action: allow\n    domains: [\"*.example\"]\n    ports: [8443]\n",
    );
    assert_eq!(winner(&set, "x.t.example").unwrap().0, "specific");
    assert_eq!(winner(&set, "x.example").unwrap().0, "general");
    let on_8443 = set
        .match_name(b"x.t.example", 8443, Protocol::Tcp)
        .and_then(|h| set.rule(h.rule))
        .unwrap();
    assert_eq!(&*on_8443.id, "exception");
}

#[test]
fn on_equal_entries_blocking_beats_log_and_then_the_first_loaded_wins() {
    let set = compile(
        "vendor: v\nrules:\n  - id: logged\n    action: log\n    domains: [t.example, \"*.s.example\"]\n    cidrs: [192.0.2.0/24]\n  - id: site-block\n    action: reject\n    domains: [t.example, \"*.s.example\"]\n    cidrs: [192.0.2.0/24]\n  - id: later-drop\n    action: drop\n    domains: [t.example]\n  - id: wide-block\n    action: drop\n    domains: [\"*.u.example\"]\n  - id: narrow-log\n    action: log\n    domains: [x.u.example]\n",
    );
    assert_eq!(
        winner(&set, "t.example"),
        Some(("site-block".into(), Action::Reject))
    );
    assert_eq!(winner(&set, "x.s.example").unwrap().0, "site-block");
    let by_addr = set
        .match_addr("192.0.2.9".parse().unwrap(), 443, Protocol::Tcp)
        .and_then(|h| set.rule(h.rule))
        .unwrap();
    assert_eq!(&*by_addr.id, "site-block");
    // Specificity still comes first: a logged exact name inside a blocked suffix is logged.
    assert_eq!(winner(&set, "x.u.example").unwrap().0, "narrow-log");
    let explained = set.explain_name(b"t.example");
    assert_eq!(
        set.resolve(&explained, Profiles::NONE)
            .and_then(|h| set.rule(h.rule))
            .map(|r| r.id.to_string()),
        Some("site-block".into())
    );
}

#[test]
fn protocol_restrictions_apply() {
    let set = compile("vendor: v\nrules:\n  - id: udp-only\n    action: drop\n    protocols: [udp]\n    domains: [q.example]\n");
    assert!(set.match_name(b"q.example", 443, Protocol::Udp).is_some());
    assert!(set.match_name(b"q.example", 443, Protocol::Tcp).is_none());
}

#[test]
fn cidr_entries_match_addresses() {
    let set = compile("vendor: v\nrules:\n  - id: net\n    action: drop\n    cidrs: [203.0.113.0/24, \"2001:db8::/32\", 198.51.100.7]\n");
    let hit = |a: &str| {
        set.match_addr(a.parse().unwrap(), 443, Protocol::Tcp)
            .is_some()
    };
    assert!(hit("203.0.113.200"));
    assert!(hit("2001:db8::1"));
    assert!(hit("198.51.100.7"));
    assert!(!hit("198.51.100.8"));
}

#[test]
fn ruleset_version_follows_content() {
    let a = compile("vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [a.example]\n");
    let b = compile("vendor: v\nrules:\n  - id: a\n    action: drop\n    domains: [b.example]\n");
    assert_ne!(a.sha256(), b.sha256());
    assert_eq!(a.sha256().len(), 64);
    assert_eq!(a.version().len(), 12);
}

#[test]
fn scales_to_many_names() {
    let mut text =
        String::from("vendor: v\nrules:\n  - id: many\n    action: drop\n    domains:\n");
    for i in 0..20_000 {
        text.push_str(&format!("      - \"*.d{i}.example\"\n"));
    }
    let set = compile(&text);
    assert_eq!(set.stats().names, 20_000);
    assert!(winner(&set, "x.d19999.example").is_some());
    assert!(winner(&set, "x.d20000.example").is_none());
    // About 40-50 bytes per name; generous bound so allocator changes do not break it.
    assert!(set.stats().name_table_bytes < 20_000 * 100);
}

mod bundled {
    use super::*;

    fn set() -> RuleSet {
        RuleSet::compile(&load_sources(bundled_sources()).unwrap()).unwrap()
    }

    #[test]
    fn every_rule_has_references_and_a_description() {
        for file in load_sources(bundled_sources()).unwrap() {
            for rule in &file.spec.rules {
                assert!(
                    !rule.references.is_empty(),
                    "{} has no references",
                    rule.id.0
                );
                assert!(
                    rule.references.iter().all(|r| r.starts_with("https://")),
                    "{}",
                    rule.id.0
                );
                assert!(
                    !rule.description.is_empty(),
                    "{} has no description",
                    rule.id.0
                );
                assert!(
                    !rule.tests.should_match.is_empty(),
                    "{} has no tests",
                    rule.id.0
                );
            }
        }
    }

    #[test]
    fn blocks_documented_telemetry_endpoints() {
        let set = set();
        for name in [
            "v10.events.data.microsoft.com",
            "v10c.events.data.microsoft.com",
            "eu-v10c.events.data.microsoft.com",
            "watson.telemetry.microsoft.com",
            "umwatsonc.events.data.microsoft.com",
            "oca.telemetry.microsoft.com",
            "self.events.data.microsoft.com",
            "mobile.events.data.microsoft.com",
            "browser.events.data.msn.com",
            "nexus.officeapps.live.com",
            "dc.services.visualstudio.com",
            "vortex.data.microsoft.com",
        ] {
            let (id, action) = winner(&set, name).unwrap_or_else(|| panic!("{name} not matched"));
            assert!(action.blocks(), "{name} matched {id} with {action}");
        }
    }

    #[test]
    fn does_not_break_updates_sign_in_or_main_sites() {
        let set = set();
        for name in [
            "download.windowsupdate.com",
            "fe3.delivery.mp.microsoft.com",
            "sls.update.microsoft.com",
            "login.microsoftonline.com",
            "login.live.com",
            "aadcdn.msftauth.net",
            "www.microsoft.com",
            "microsoft.com",
            "learn.microsoft.com",
            "www.office.com",
            "outlook.office365.com",
            "teams.microsoft.com",
            "activation-v2.sls.microsoft.com",
            "www.bing.com",
            "update.code.visualstudio.com",
            "marketplace.visualstudio.com",
        ] {
            if let Some((id, action)) = winner(&set, name) {
                assert!(!action.blocks(), "{name} would be blocked by {id}");
            }
        }
    }
}

#[test]
fn every_file_of_the_rules_directory_is_bundled_in_load_order() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("rules/{n}"))
        .collect();
    on_disk.sort();
    let bundled: Vec<&str> = load::BUNDLED.iter().map(|(name, _)| *name).collect();
    assert_eq!(bundled, on_disk);
    // Bundled and loaded from the directory, the ruleset is the same.
    let from_dir = RuleSet::compile(&load_dir(&dir).unwrap()).unwrap();
    let from_binary = RuleSet::compile(&load_sources(bundled_sources()).unwrap()).unwrap();
    assert_eq!(from_dir.stats(), from_binary.stats());
}

#[test]
fn a_profile_rule_must_allow_and_applies_only_when_its_profile_is_on() {
    let error = first_error(
        "vendor: v\nrules:\n  - id: a\n    action: drop\n    profile: p\n    domains: [x.example]\n",
    );
    assert!(error.message.contains("must be an allow rule"), "{error}");
    assert_eq!(error.line, Some(3));
    let set = compile(
        "vendor: v\nrules:\n  - id: all\n    action: drop\n    domains: [\"*.example\"]\n  - id: edr\n    action: allow\n    profile: edr\n    domains: [x.example]\n",
    );
    assert_eq!(
        winner(&set, "x.example"),
        Some(("all".into(), Action::Drop))
    );
    let edr = set.profile("edr").unwrap();
    let hit = set
        .match_name_with(
            b"x.example",
            443,
            Protocol::Tcp,
            Profiles::NONE.with(edr.index),
        )
        .unwrap();
    assert_eq!(&*set.rule(hit.rule).unwrap().id, "edr");
    assert_eq!(set.profiles().len(), 1);
    assert!(set.profile("other").is_none());
}

#[test]
fn every_bundled_rule_that_lists_names_has_cases_beyond_its_own_entries() {
    let files = load_sources(bundled_sources()).unwrap();
    for file in &files {
        for rule in &file.spec.rules {
            if rule.domains.is_empty() {
                continue;
            }
            assert!(
                !rule.tests.no_match.is_empty(),
                "{}: rule {} has no no_match cases",
                file.name,
                rule.id.0
            );
            let own: Vec<String> = rule.domains.iter().map(ToString::to_string).collect();
            let beyond = rule
                .tests
                .should_match
                .iter()
                .chain(&rule.tests.no_match)
                .any(|case| !own.contains(&case.to_lowercase()));
            assert!(
                beyond,
                "{}: rule {} only tests its own entries",
                file.name, rule.id.0
            );
        }
    }
}

#[test]
fn must_keep_entries_are_found_at_their_line_in_block_and_flow_style() {
    let text = "vendor: v\nmust_keep_working:\n  - name: block.example\n    why: a\n  - {name: \"Flow.Example.\", why: b}\n  - {why: 'c, d', name: last.example}\nrules:\n  - id: r\n    action: reject\n    domains: [block.example, flow.example]\n    overrides_must_keep_working:\n      - {why: e, name: flow.example}\n      - name: block.example\n        why: f\n";
    let files = load_sources(vec![source("v.yaml", text)]).unwrap();
    let file = &files[0];
    assert_eq!(file.line_of_keep_working("block.example"), Some(3));
    assert_eq!(file.line_of_keep_working("flow.example"), Some(5));
    assert_eq!(file.line_of_keep_working("last.example"), Some(6));
    assert_eq!(file.line_of_keep_working("why.example"), None);
    assert_eq!(file.line_of_keep_override("r", "flow.example"), Some(12));
    assert_eq!(file.line_of_keep_override("r", "block.example"), Some(13));
}

fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.into(),
        text: text.into(),
    }
}

const LISTED_RULE: &str =
    "vendor: v\nrules:\n  - id: big\n    action: reject\n    domains: [inline.example]\n    domains_file: big.list\n";

#[test]
fn a_list_file_beside_the_rule_file_adds_its_entries() {
    let files = load_sources(vec![
        source("dir/v.yaml", LISTED_RULE),
        source(
            "dir/big.list",
            "# a comment\none.example\n\n*.two.example   # trailing comment\nregex:t[0-9]+\\.example\n",
        ),
        // Not named by any rule: read by nobody.
        source("dir/other.list", "not even a name!\n"),
    ])
    .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].lists.len(), 1);
    let set = RuleSet::compile(&files).unwrap();
    for name in [
        "inline.example",
        "one.example",
        "a.two.example",
        "t7.example",
    ] {
        assert_eq!(
            winner(&set, name),
            Some(("big".into(), Action::Reject)),
            "{name}"
        );
    }
    assert_eq!(winner(&set, "two.example"), None);
    // The list is part of the ruleset's identity.
    let changed = load_sources(vec![
        source("dir/v.yaml", LISTED_RULE),
        source("dir/big.list", "one.example\n"),
    ])
    .unwrap();
    assert_ne!(RuleSet::compile(&changed).unwrap().sha256(), set.sha256());
}

#[test]
fn list_file_mistakes_name_the_list_and_its_line() {
    let errors = load_sources(vec![
        source("dir/v.yaml", LISTED_RULE),
        source(
            "dir/big.list",
            "ok.example\nbad name.example\n*.x*.example\n",
        ),
    ])
    .unwrap_err();
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0].starts_with("dir/big.list:2: "), "{shown:?}");
    assert!(shown[1].starts_with("dir/big.list:3: "), "{shown:?}");
    // Missing, in another directory, or a path.
    let missing = load_sources(vec![
        source("dir/v.yaml", LISTED_RULE),
        source("elsewhere/big.list", "a.example\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("dir/v.yaml:3: rule big: domains_file dir/big.list not found"),
        "{missing}"
    );
    let path = load_sources(vec![source(
        "dir/v.yaml",
        &LISTED_RULE.replace("big.list", "../big.list"),
    )])
    .unwrap_err()
    .to_string();
    assert!(
        path.contains("must be the name of a .list file in the same directory"),
        "{path}"
    );
    // In-memory sources without a directory (the bundled rules) have no list files.
    let bundled = load_sources(vec![source("v.yaml", LISTED_RULE)])
        .unwrap_err()
        .to_string();
    assert!(
        bundled.contains("list files are read from a rule directory"),
        "{bundled}"
    );
}

#[test]
fn a_rule_with_only_a_list_file_is_not_a_rule_that_matches_nothing() {
    let only_list =
        "vendor: v\nrules:\n  - id: big\n    action: reject\n    domains_file: big.list\n";
    let files = load_sources(vec![
        source("d/v.yaml", only_list),
        source("d/big.list", "x.example\n"),
    ])
    .unwrap();
    assert_eq!(files[0].spec.rules[0].domains.len(), 1);
    let empty = load_sources(vec![
        source("d/v.yaml", only_list),
        source("d/big.list", "# nothing\n"),
    ])
    .unwrap_err()
    .to_string();
    assert!(empty.contains("matches nothing"), "{empty}");
}
