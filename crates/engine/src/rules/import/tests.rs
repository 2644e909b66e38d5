use super::*;

fn names(list: &ImportedList) -> Vec<String> {
    list.domains.iter().map(ToString::to_string).collect()
}

fn reasons(list: &ImportedList) -> Vec<(usize, &'static str)> {
    list.skipped.iter().map(|s| (s.line, s.reason)).collect()
}

#[test]
fn hosts_lines_block_exact_names_and_report_the_rest() {
    let text = "# comment\n127.0.0.1 localhost\n0.0.0.0 a.example b.example # trailing\n::1 ip6-localhost\n:: c.Example.\n10.0.0.1 intranet.example\n0\n0.0.0.0 a.example\n0.0.0.0 bad_name!.example";
    let list = read_list(text, ListFormat::Hosts, false);
    assert_eq!(names(&list), ["a.example", "b.example", "c.example"]);
    assert_eq!(list.duplicates, 1);
    assert_eq!(list.comments, 1);
    assert_eq!(
        reasons(&list),
        [
            (2, "a name of the local machine"),
            (4, "a name of the local machine"),
            (6, "maps names to a real address (a redirect, not a block)"),
            (7, "not an address followed by names"),
            (9, "not a valid domain name"),
        ]
    );
    // The last line has no newline (like the NVIDIA list): still read.
    assert_eq!(list.lines, 9);
}

#[test]
fn subdomains_option_adds_a_suffix_entry_per_name() {
    let list = read_list("0.0.0.0 t.example\n", ListFormat::Hosts, true);
    assert_eq!(names(&list), ["*.t.example", "t.example"]);
    let list = read_list("t.example\n*.u.example\n", ListFormat::Domains, true);
    assert_eq!(names(&list), ["*.t.example", "t.example", "*.u.example"]);
}

#[test]
fn adblock_rules_cover_the_name_and_below_exceptions_become_allow_entries() {
    let text = "[Adblock Plus 2.0]\n! Title: test\n||ads.example^\n||important.example^$important\n@@||ok.ads.example^\n||tracker.example^$third-party\n||cdn.example/ads/*\nexample.com##.banner\n/ads[0-9]+/\n||x.example^$denyallow=keep.x.example\n||gone.example^\n||gone.example^$badfilter\n|exact.example^\n||weird.example^$dnstype=AAAA\n";
    let list = read_list(text, ListFormat::Adblock, false);
    assert_eq!(
        names(&list),
        [
            "ads.example",
            "*.ads.example",
            "important.example",
            "*.important.example",
            "x.example",
            "*.x.example",
            "exact.example"
        ]
    );
    let exceptions: Vec<String> = list.exceptions.iter().map(ToString::to_string).collect();
    assert_eq!(
        exceptions,
        [
            "ok.ads.example",
            "*.ok.ads.example",
            "keep.x.example",
            "*.keep.x.example"
        ]
    );
    assert_eq!(list.comments, 2);
    assert_eq!(
        reasons(&list),
        [
            (
                6,
                "modifier only a browser can honour ($third-party, $domain, resource types...)"
            ),
            (7, "URL path or port (a network filter sees only names)"),
            (8, "cosmetic (element hiding) rule"),
            (9, "regular expression rule (write a regex: entry by hand)"),
            (14, "modifier a network filter does not support"),
        ]
    );
}

#[test]
fn dnsmasq_address_lines_block_names_and_below() {
    let text = "address=/a.example/b.example/0.0.0.0\naddress=/c.example/\naddress=/d.example/#\naddress=/e.example/192.0.2.1\nserver=/f.example/192.0.2.53\naddress=/#/\nbogus\n";
    let list = read_list(text, ListFormat::Dnsmasq, false);
    assert_eq!(
        names(&list),
        [
            "a.example",
            "*.a.example",
            "b.example",
            "*.b.example",
            "c.example",
            "*.c.example",
            "d.example",
            "*.d.example"
        ]
    );
    assert_eq!(
        reasons(&list),
        [
            (4, "maps names to a real address (a redirect, not a block)"),
            (
                5,
                "server=/local= forward or answer locally, they do not block"
            ),
            (6, "address=/#/ matches every name"),
            (7, "not a dnsmasq option=value line"),
        ]
    );
}

#[test]
fn cidr_lists_take_addresses_prefixes_and_ranges() {
    let text = "# WindowsSpyBlocker style\n192.0.2.7\n198.51.100.0/24\n203.0.113.5/24\n40.90.23.0-40.90.23.255\n10.0.0.1-10.0.0.6\n2001:db8::1\n2001:db8:1::/48\nnot-an-address\n10.0.0.9-10.0.0.1\n";
    let list = read_list(text, ListFormat::Cidr, false);
    let cidrs: Vec<String> = list.cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(
        cidrs,
        [
            "192.0.2.7/32",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "40.90.23.0/24",
            "10.0.0.1/32",
            "10.0.0.2/31",
            "10.0.0.4/31",
            "10.0.0.6/32",
            "2001:db8::1/128",
            "2001:db8:1::/48"
        ]
    );
    assert_eq!(list.adjusted.len(), 1);
    assert_eq!(list.adjusted[0].line, 4);
    assert_eq!(
        reasons(&list),
        [
            (9, "not an address, prefix or first-last range"),
            (10, "a range whose ends differ in family or are reversed"),
        ]
    );
}

#[test]
fn domain_lists_take_names_and_suffixes_and_reject_inner_wildcards() {
    let text = "# Title\na.example\n*.b.example\n*.ads*.example\ntwo words\n192.0.2.1\n";
    let list = read_list(text, ListFormat::Domains, false);
    assert_eq!(names(&list), ["a.example", "*.b.example"]);
    assert_eq!(
        reasons(&list),
        [
            (4, "a wildcard inside a name (write a regex: entry by hand)"),
            (5, "more than one word on the line"),
            (6, "an address where a name was expected"),
        ]
    );
}

#[test]
fn formats_are_detected_from_the_lines() {
    let cases = [
        (
            "# hosts\n0.0.0.0 a.example\n0.0.0.0 b.example\n",
            ListFormat::Hosts,
        ),
        ("! adblock\n||a.example^\n", ListFormat::Adblock),
        ("address=/a.example/0.0.0.0\n", ListFormat::Dnsmasq),
        ("192.0.2.1\n198.51.100.0/24\n", ListFormat::Cidr),
        ("a.example\n*.b.example\n", ListFormat::Domains),
    ];
    for (text, format) in cases {
        assert_eq!(ListFormat::detect(text), format, "{text}");
    }
}

#[test]
fn written_rules_load_back_with_the_same_entries_and_source() {
    let list = read_list(
        "||a.example^\n@@||ok.a.example^\n",
        ListFormat::Adblock,
        false,
    );
    let options = ImportOptions {
        format: ListFormat::Adblock,
        rule_id: "t-list".into(),
        action: Action::Drop,
        category: "advertising".into(),
        source: "https://lists.example/list.txt".into(),
        date: "2026-11-23".into(),
        subdomains: false,
    };
    let mut yaml = String::from("vendor: t\nrules:\n");
    write_rules(&list, &options, "00112233", &mut yaml);
    let files = crate::rules::load_sources(vec![crate::rules::Source {
        name: "t.yaml".into(),
        text: yaml.clone(),
    }])
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let rules = &files[0].spec.rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1].action, Action::Allow);
    assert_eq!(rules[1].id.0, "t-list-exceptions");
    let source = rules[0].source.as_ref().unwrap();
    assert_eq!(source.url, "https://lists.example/list.txt");
    assert_eq!(source.imported, "2026-11-23");
    assert_eq!(source.sha256.as_deref(), Some("00112233"));
    assert_eq!(rules[0].domains, list.domains);
}

#[test]
fn yaml_scalars_are_quoted_when_they_would_change_meaning() {
    assert_eq!(quote("a.example"), "a.example");
    assert_eq!(quote("*.a.example"), "\"*.a.example\"");
    assert_eq!(quote("123"), "\"123\"");
    assert_eq!(quote("1e5"), "\"1e5\"");
    assert_eq!(quote("yes"), "\"yes\"");
    assert_eq!(quote("a: b"), "\"a: b\"");
}

#[test]
fn entries_below_a_listed_suffix_are_left_out() {
    let text = "||example.com^\n||ads.example.com^\n||other.example^\n0.0.0.0 x\n";
    let list = read_list(text, ListFormat::Adblock, false);
    assert_eq!(
        names(&list),
        [
            "example.com",
            "*.example.com",
            "other.example",
            "*.other.example"
        ]
    );
    assert_eq!(list.covered, 2);
    let list = read_list(
        "address=/t.example/0.0.0.0\naddress=/a.t.example/0.0.0.0\n",
        ListFormat::Dnsmasq,
        false,
    );
    assert_eq!(names(&list), ["t.example", "*.t.example"]);
}
