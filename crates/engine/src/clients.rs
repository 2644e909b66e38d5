//! Client groups: the address prefixes of the config's `clients:` section, each with its own
//! service profiles and enforcement (servers that run Defender, a pilot subnet in dry run).
//! Every flow is judged, counted and recorded under its client's group; a client in no
//! group belongs to [`DEFAULT_GROUP`].

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::rules::cidr::CidrTable;
use crate::rules::{Profiles, RuleSet};

/// The group of clients no `clients:` prefix covers.
pub const DEFAULT_GROUP: &str = "default";

/// Most groups, the default included: the group is a metric label, so it stays few.
pub const MAX_GROUPS: usize = 32;

/// One group as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientGroup {
    pub name: String,
    pub prefixes: Vec<IpNet>,
    /// Service profiles on for this group, besides those on for everyone.
    pub profiles: Vec<String>,
    /// `None`: the global `enforce` setting.
    pub enforce: Option<bool>,
}

/// Every group, and the table that finds a client's group.
#[derive(Debug)]
pub struct ClientGroups {
    /// Profiles on for every client.
    everyone: Vec<String>,
    /// Index 0 is the default group.
    groups: Vec<ClientGroup>,
    prefixes: CidrTable,
}

/// A group's policy resolved against one ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    pub name: Arc<str>,
    pub profiles: Profiles,
    pub enforce: bool,
}

impl ClientGroups {
    /// Groups from the config. `everyone` lists the profiles on for all clients. Errors
    /// name the group: a duplicate or reserved name, too many groups, a prefix in two groups.
    pub fn new(everyone: Vec<String>, groups: Vec<ClientGroup>) -> Result<Self, String> {
        if groups.len() + 1 > MAX_GROUPS {
            return Err(format!(
                "{} client groups; at most {} are supported (the group is a metric label)",
                groups.len(),
                MAX_GROUPS - 1
            ));
        }
        let mut all = vec![default_group()];
        let mut prefixes = CidrTable::default();
        let mut seen_prefixes: Vec<(IpNet, &str)> = Vec::new();
        for group in &groups {
            if all.iter().any(|g| g.name == group.name) {
                return Err(format!(
                    "client group {:?} is defined twice (or uses the reserved name {DEFAULT_GROUP:?})",
                    group.name
                ));
            }
            if group.prefixes.is_empty() {
                return Err(format!("client group {:?} has no prefixes", group.name));
            }
            for prefix in &group.prefixes {
                let prefix = prefix.trunc();
                if let Some((_, other)) = seen_prefixes.iter().find(|(p, _)| *p == prefix) {
                    return Err(format!(
                        "prefix {prefix} is in client groups {other:?} and {:?}",
                        group.name
                    ));
                }
                seen_prefixes.push((prefix, &group.name));
                prefixes.insert(prefix, group_index(all.len()));
            }
            all.push(group.clone());
        }
        Ok(Self {
            everyone,
            groups: all,
            prefixes,
        })
    }

    /// The group of `client`: the one with the longest prefix that contains it, else the
    /// default group (0).
    pub fn group_of(&self, client: IpAddr) -> u8 {
        if self.prefixes.is_empty() {
            return 0;
        }
        let mut best: Option<(u8, u32)> = None;
        self.prefixes.for_each_match(client, |group, prefix| {
            if best.is_none_or(|(longest, _)| prefix > longest) {
                best = Some((prefix, group));
            }
        });
        best.and_then(|(_, group)| u8::try_from(group).ok())
            .unwrap_or(0)
    }

    /// The groups' names, the default group first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.name.as_str())
    }

    /// How many groups there are, the default group included (at least 1).
    pub fn count(&self) -> usize {
        self.groups.len()
    }

    /// Every profile name the config turns on, for everyone or a group.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.everyone
            .iter()
            .chain(self.groups.iter().flat_map(|g| &g.profiles))
            .map(String::as_str)
    }

    /// Each group's profiles and enforcement under `rules`, in group order. Profiles the
    /// rules do not define are left out (`config check` reports them).
    pub fn resolve(&self, rules: &RuleSet, enforce: bool) -> Vec<GroupPolicy> {
        let on_for_all = profile_set(rules, &self.everyone);
        self.groups
            .iter()
            .map(|group| GroupPolicy {
                name: Arc::from(group.name.as_str()),
                profiles: profile_set(rules, &group.profiles).union(on_for_all),
                enforce: group.enforce.unwrap_or(enforce),
            })
            .collect()
    }
}

impl Default for ClientGroups {
    /// Every client in the default group, no profile on.
    fn default() -> Self {
        Self {
            everyone: Vec::new(),
            groups: vec![default_group()],
            prefixes: CidrTable::default(),
        }
    }
}

fn default_group() -> ClientGroup {
    ClientGroup {
        name: DEFAULT_GROUP.to_string(),
        prefixes: Vec::new(),
        profiles: Vec::new(),
        enforce: None,
    }
}

fn profile_set(rules: &RuleSet, names: &[String]) -> Profiles {
    names
        .iter()
        .filter_map(|name| rules.profile(name))
        .fold(Profiles::NONE, |set, profile| set.with(profile.index))
}

fn group_index(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, prefixes: &[&str]) -> ClientGroup {
        ClientGroup {
            name: name.to_string(),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            profiles: Vec::new(),
            enforce: None,
        }
    }

    #[test]
    fn longest_prefix_decides_the_group() {
        let groups = ClientGroups::new(
            Vec::new(),
            vec![
                group("office", &["10.0.0.0/8", "2001:db8::/32"]),
                group("servers", &["10.1.0.0/16"]),
            ],
        )
        .unwrap();
        assert_eq!(groups.group_of("10.2.3.4".parse().unwrap()), 1);
        assert_eq!(groups.group_of("10.1.3.4".parse().unwrap()), 2);
        assert_eq!(groups.group_of("2001:db8::5".parse().unwrap()), 1);
        assert_eq!(groups.group_of("192.0.2.1".parse().unwrap()), 0);
        assert_eq!(
            groups.names().collect::<Vec<_>>(),
            ["default", "office", "servers"]
        );
    }

    #[test]
    fn bad_groups_are_refused_with_the_group_named() {
        let twice = ClientGroups::new(Vec::new(), vec![group("a", &["10.0.0.0/8"]); 2]);
        assert!(twice.unwrap_err().contains("\"a\" is defined twice"));
        let reserved = ClientGroups::new(Vec::new(), vec![group("default", &["10.0.0.0/8"])]);
        assert!(reserved.is_err());
        let shared = ClientGroups::new(
            Vec::new(),
            vec![group("a", &["10.0.0.0/8"]), group("b", &["10.0.0.0/8"])],
        );
        assert!(shared
            .unwrap_err()
            .contains("10.0.0.0/8 is in client groups"));
        let empty = ClientGroups::new(Vec::new(), vec![group("a", &[])]);
        assert!(empty.unwrap_err().contains("no prefixes"));
    }
}
