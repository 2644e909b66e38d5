//! The `regex:` name entries of a ruleset, as one `RegexSet` behind a literal test: a regex
//! entry almost always ends in a fixed domain (`...\.apple\.com`), so a name that ends in
//! none of the entries' literal endings is not run through the set at all. Most names a
//! gateway sees match no regex; for them the test is a few byte comparisons instead of a
//! pass of the set's automaton.

use regex::RegexSet;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::domains::RuleIndex;
use super::schema::anchored_regex;

/// Endings are tried one by one: a set with more than this many is run on every name.
const MAX_ENDINGS: usize = 64;

#[derive(Debug)]
pub(super) struct NameRegexes {
    set: RegexSet,
    /// The rule of each pattern of the set, by pattern index.
    rules: Vec<RuleIndex>,
    /// Every name some pattern matches ends with one of these; `None` when a pattern's
    /// endings are not a short list of non-empty literals (then every name is tried).
    endings: Option<Vec<Box<[u8]>>>,
}

impl NameRegexes {
    /// The set of `patterns` (as written in rules, unanchored), pattern `i` for `rules[i]`.
    pub(super) fn new(patterns: &[String], rules: Vec<RuleIndex>) -> Result<Self, regex::Error> {
        let anchored: Vec<String> = patterns.iter().map(|p| anchored_regex(p)).collect();
        let set = RegexSet::new(&anchored)?;
        Ok(Self {
            endings: literal_endings(&anchored),
            set,
            rules,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Calls `visit` with the rule of every pattern that matches `name`.
    pub(super) fn for_each_match(&self, name: &[u8], mut visit: impl FnMut(RuleIndex)) {
        if let Some(endings) = &self.endings {
            if !endings.iter().any(|ending| name.ends_with(ending)) {
                return;
            }
        }
        // RegexSet works on str; names only hold ASCII.
        let Ok(text) = std::str::from_utf8(name) else {
            return;
        };
        for matched in self.set.matches(text).iter() {
            if let Some(&rule) = self.rules.get(matched) {
                visit(rule);
            }
        }
    }
}

/// The literals every match of one of `anchored` ends with, deduplicated; `None` when some
/// pattern has none to offer (its endings are unbounded, too many, or include the empty
/// string), so no name can be ruled out by its ending.
fn literal_endings(anchored: &[String]) -> Option<Vec<Box<[u8]>>> {
    let mut endings: Vec<Box<[u8]>> = Vec::new();
    for pattern in anchored {
        // Parsed with the flags RegexSet::new uses (the defaults).
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let seq = Extractor::new().kind(ExtractKind::Suffix).extract(&hir);
        let literals = seq.literals()?;
        if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
            return None;
        }
        for literal in literals {
            if !endings.iter().any(|e| **e == *literal.as_bytes()) {
                endings.push(literal.as_bytes().into());
            }
        }
        if endings.len() > MAX_ENDINGS {
            return None;
        }
    }
    Some(endings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regexes(patterns: &[&str]) -> NameRegexes {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let rules = (0..patterns.len() as u32).collect();
        NameRegexes::new(&patterns, rules).unwrap()
    }

    fn matches(regexes: &NameRegexes, name: &str) -> Vec<RuleIndex> {
        let mut rules = Vec::new();
        regexes.for_each_match(name.as_bytes(), |rule| rules.push(rule));
        rules
    }

    #[test]
    fn names_are_ruled_out_by_the_literal_endings_of_the_patterns() {
        let set = regexes(&[
            r"[a-z0-9-]+-analytics-events\.apple\.com",
            r"([a-z0-9]+-)?(word|excel)-telemetry(-vip)?\.officeapps\.live\.com",
        ]);
        let endings = set.endings.as_ref().expect("both patterns end in literals");
        for ending in endings {
            let ending = std::str::from_utf8(ending).unwrap();
            assert!(
                ending.ends_with(".apple.com") || ending.ends_with(".officeapps.live.com"),
                "{ending}"
            );
        }
        assert_eq!(matches(&set, "stocks-analytics-events.apple.com"), [0]);
        assert_eq!(
            matches(&set, "nexus-word-telemetry-vip.officeapps.live.com"),
            [1]
        );
        assert_eq!(matches(&set, "excel-telemetry.officeapps.live.com"), [1]);
        assert!(matches(&set, "analytics-events.apple.com").is_empty());
        assert!(matches(&set, "stocks-analytics-events.apple.com.evil.example").is_empty());
        assert!(matches(&set, "www.example.org").is_empty());
    }

    #[test]
    fn the_bundled_regexes_all_end_in_literals() {
        let files = crate::rules::load_sources(crate::rules::bundled_sources()).unwrap();
        let rules = crate::rules::RuleSet::compile(&files).unwrap();
        let regexes = rules
            .regexes
            .as_ref()
            .expect("the bundled rules have regexes");
        assert!(regexes.endings.is_some());
    }

    #[test]
    fn a_pattern_without_a_literal_ending_makes_every_name_tried() {
        for open in [r"telemetry\.[a-z]+", r"[a-z]+", r"(a|b)*"] {
            let set = regexes(&[r"x-events\.apple\.com", open]);
            assert!(set.endings.is_none(), "{open}");
        }
        let set = regexes(&[r"x-events\.apple\.com", r"telemetry\.[a-z]+"]);
        assert_eq!(matches(&set, "telemetry.example"), [1]);
        assert_eq!(matches(&set, "x-events.apple.com"), [0]);
    }

    #[test]
    fn the_test_never_hides_a_match_of_the_set() {
        // Alternations, optional parts, classes and repetitions at the end, checked against
        // the bare set on names built from the patterns' own pieces.
        let patterns = [
            r"[a-z]+-analytics-events\.apple\.com",
            r"(eu|us)-(v10c|watsonc)\.events\.data\.microsoft\.com",
            r"telemetry(-vip)?\.example\.(com|net)",
            r"metrics[0-9]?\.example\.org",
        ];
        let set = regexes(&patterns);
        assert!(set.endings.is_some());
        let anchored: Vec<String> = patterns.iter().map(|p| anchored_regex(p)).collect();
        let bare = RegexSet::new(&anchored).unwrap();
        let firsts = ["", "a-", "stocks-", "eu-", "us-", "x"];
        let middles = [
            "analytics-events.apple.com",
            "v10c.events.data.microsoft.com",
            "watsonc.events.data.microsoft.com",
            "telemetry.example.com",
            "telemetry-vip.example.net",
            "metrics.example.org",
            "metrics7.example.org",
            "metrics77.example.org",
            "example.org",
        ];
        let lasts = ["", ".", "x", ".example"];
        let mut matched = 0;
        for first in firsts {
            for middle in middles {
                for last in lasts {
                    let name = format!("{first}{middle}{last}");
                    let expected: Vec<RuleIndex> =
                        bare.matches(&name).iter().map(|i| i as RuleIndex).collect();
                    matched += expected.len();
                    assert_eq!(matches(&set, &name), expected, "{name}");
                }
            }
        }
        assert!(matched > 10, "the names must exercise the patterns");
    }
}
