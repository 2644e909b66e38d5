//! The YAML rule file schema (one file per vendor, see `rules/README.md`).
//!
//! Values are checked while they are deserialised, so serde_yaml attaches the line and column
//! of the offending value to every error; unknown fields are errors too.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::inspect::Name;

/// One rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub vendor: Ident,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Names the whole ruleset must never block (connectivity checks, certificate
    /// revocation, updates, sign-in, stores): checked with every file's rules by `rules
    /// check`, `rules test` and rule updates. A site file may hold only these.
    #[serde(default)]
    pub must_keep_working: Vec<KeepWorking>,
}

/// One entry of `must_keep_working`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepWorking {
    pub name: HostName,
    /// What breaks when it is blocked.
    pub why: String,
    #[serde(default)]
    pub references: Vec<String>,
}

/// A host name as written in a rule file, checked and normalised (lowercase, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName(pub String);

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match Name::from_bytes(text.as_bytes()) {
            Some(name) => Ok(HostName(name.as_str().to_string())),
            None => Err(de::Error::custom(format!("{text:?} is not a host name"))),
        }
    }
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: Ident,
    pub action: Action,
    #[serde(default)]
    pub description: String,
    /// What kind of data the endpoint carries: telemetry, crash-reports, advertising-id, ...
    #[serde(default)]
    pub category: Option<Ident>,
    #[serde(default)]
    pub domains: Vec<DomainPattern>,
    /// A list file beside the rule file (`NAME.list`) with more entries, one per line
    /// (`name`, `*.name` or `regex:...`; `#` comments): a large imported list loads
    /// without a million YAML scalars.
    #[serde(default)]
    pub domains_file: Option<String>,
    #[serde(default)]
    pub cidrs: Vec<Cidr>,
    /// Server ports the rule applies to; empty means every port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Transport protocols the rule applies to; empty means every protocol.
    #[serde(default)]
    pub protocols: Vec<ProtocolSpec>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub tests: RuleTests,
    /// Where the entries came from, for rules written by `telestrip rules import`.
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// An opt-in service profile: the rule (an `allow`) applies only to clients whose
    /// configuration turns the profile on.
    #[serde(default)]
    pub profile: Option<Ident>,
    /// `must_keep_working` names this (blocking) rule blocks on purpose, each with the
    /// decision behind it: a site that follows stricter guidance than the vendor's.
    #[serde(default)]
    pub overrides_must_keep_working: Vec<KeepOverride>,
}

/// A `must_keep_working` name a rule blocks knowingly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepOverride {
    pub name: HostName,
    /// The decision: whose guidance, what the site accepts to lose.
    pub why: String,
    #[serde(default)]
    pub references: Vec<String>,
}

/// The list an imported rule was made from: every entry of the rule comes from it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The list's address or file, as given to the importer.
    pub url: String,
    /// The format it was read as: hosts, adblock, domains, dnsmasq or cidr.
    pub format: String,
    /// Day of the import (YYYY-MM-DD, UTC).
    pub imported: String,
    /// SHA-256 of the list as imported, so a later import shows whether it changed.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Names (or addresses) a rule must and must not match; run by `rules check`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTests {
    #[serde(default, rename = "match")]
    pub should_match: Vec<String>,
    #[serde(default)]
    pub no_match: Vec<String>,
}

/// What happens to a flow that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Discard silently.
    Drop,
    /// Discard and tell the client (TCP RST, ICMP unreachable, NXDOMAIN for DNS).
    Reject,
    /// Let it pass and record it.
    Log,
    /// Explicit exception: beats every blocking rule for the same flow.
    Allow,
}

impl Action {
    /// Drop and reject stop the flow; log and allow let it pass.
    pub fn blocks(self) -> bool {
        matches!(self, Action::Drop | Action::Reject)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Log => "log",
            Action::Allow => "allow",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    Tcp,
    Udp,
}

/// A vendor name, rule id or category: lowercase letters, digits, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(pub String);

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let valid = !text.is_empty()
            && text.len() <= 128
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if valid {
            Ok(Ident(text))
        } else {
            Err(de::Error::custom(format!(
                "{text:?} is not a valid identifier (use 1-128 of a-z, 0-9, '-', '_', '.')"
            )))
        }
    }
}

/// One entry of `domains`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `host.example`: that name only.
    Exact(String),
    /// `*.example`: every name below `example`, not `example` itself. Holds `example`.
    Suffix(String),
    /// `regex:...`: an anchored regular expression over the lowercased name.
    Regex(String),
}

impl DomainPattern {
    /// Parses one entry as written in a rule file (or given to `rules explain`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(pattern) = text.strip_prefix("regex:") {
            let anchored = anchored_regex(pattern);
            return match regex::Regex::new(&anchored) {
                Ok(_) => Ok(DomainPattern::Regex(pattern.to_string())),
                Err(error) => Err(format!("bad regex {pattern:?}: {error}")),
            };
        }
        let (is_suffix, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(format!(
                "{text:?}: '*' is only allowed as a leading '*.' (use a regex: entry for other patterns)"
            ));
        }
        let name = Name::from_bytes(rest.as_bytes())
            .ok_or_else(|| format!("{text:?} is not a valid domain name"))?;
        let name = name.as_str().to_string();
        Ok(if is_suffix {
            DomainPattern::Suffix(name)
        } else {
            DomainPattern::Exact(name)
        })
    }
}

/// Wraps a rule's regex so it must match the whole name.
pub fn anchored_regex(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Suffix(name) => write!(f, "*.{name}"),
            DomainPattern::Regex(pattern) => write!(f, "regex:{pattern}"),
        }
    }
}

impl<'de> Deserialize<'de> for DomainPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DomainPattern::parse(&text).map_err(de::Error::custom)
    }
}

/// One entry of `cidrs`: `192.0.2.0/24`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Ok(net) = text.parse::<IpNet>() {
            if net.trunc() != net {
                return Err(de::Error::custom(format!(
                    "{text:?} has host bits set; did you mean {}?",
                    net.trunc()
                )));
            }
            return Ok(Cidr(net));
        }
        match text.parse::<IpAddr>() {
            Ok(addr) => Ok(Cidr(IpNet::from(addr))),
            Err(_) => Err(de::Error::custom(format!(
                "{text:?} is not an address or CIDR prefix"
            ))),
        }
    }
}
