//! The compiled CIDR table: one hash map per prefix length present, probed longest first.
//! Rule sets rarely hold more than a few distinct prefix lengths, so a lookup is a handful
//! of probes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::domains::RuleIndex;

#[derive(Debug, Default)]
pub struct CidrTable {
    /// (prefix length, masked IPv4 address → rules), longest prefix first.
    v4: Vec<(u8, HashMap<u32, Vec<RuleIndex>>)>,
    /// Same for IPv6.
    v6: Vec<(u8, HashMap<u128, Vec<RuleIndex>>)>,
    len: usize,
}

impl CidrTable {
    pub fn insert(&mut self, net: IpNet, rule: RuleIndex) {
        self.len += 1;
        match net {
            IpNet::V4(net) => {
                let prefix = net.prefix_len();
                let key = u32::from(net.network());
                if let Some(map) = level(&mut self.v4, prefix) {
                    push_rule(map, key, rule);
                }
            }
            IpNet::V6(net) => {
                let prefix = net.prefix_len();
                let key = u128::from(net.network());
                if let Some(map) = level(&mut self.v6, prefix) {
                    push_rule(map, key, rule);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `visit(rule, prefix_len)` for every rule whose prefix contains `addr`.
    /// IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn for_each_match(&self, addr: IpAddr, mut visit: impl FnMut(RuleIndex, u8)) {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                for (prefix, map) in &self.v4 {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                    if let Some(rules) = map.get(&(bits & mask)) {
                        rules.iter().for_each(|&r| visit(r, *prefix));
                    }
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                for (prefix, map) in &self.v6 {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                    if let Some(rules) = map.get(&(bits & mask)) {
                        rules.iter().for_each(|&r| visit(r, *prefix));
                    }
                }
            }
        }
    }
}

fn level<K>(
    levels: &mut Vec<(u8, HashMap<K, Vec<RuleIndex>>)>,
    prefix: u8,
) -> Option<&mut HashMap<K, Vec<RuleIndex>>> {
    if !levels.iter().any(|(p, _)| *p == prefix) {
        levels.push((prefix, HashMap::new()));
        levels.sort_by_key(|level| std::cmp::Reverse(level.0));
    }
    levels
        .iter_mut()
        .find(|(p, _)| *p == prefix)
        .map(|(_, map)| map)
}

fn push_rule<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<RuleIndex>>,
    key: K,
    rule: RuleIndex,
) {
    let rules = map.entry(key).or_default();
    if !rules.contains(&rule) {
        rules.push(rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(table: &CidrTable, addr: &str) -> Vec<(RuleIndex, u8)> {
        let mut out = Vec::new();
        table.for_each_match(addr.parse().unwrap(), |r, p| out.push((r, p)));
        out
    }

    #[test]
    fn longest_prefix_comes_first() {
        let mut table = CidrTable::default();
        table.insert("192.0.2.0/24".parse().unwrap(), 1);
        table.insert("192.0.2.128/25".parse().unwrap(), 2);
        table.insert("0.0.0.0/0".parse().unwrap(), 3);
        assert_eq!(hits(&table, "192.0.2.200"), vec![(2, 25), (1, 24), (3, 0)]);
        assert_eq!(hits(&table, "192.0.2.1"), vec![(1, 24), (3, 0)]);
        assert_eq!(hits(&table, "198.51.100.1"), vec![(3, 0)]);
    }

    #[test]
    fn ipv6_and_mapped_ipv4() {
        let mut table = CidrTable::default();
        table.insert("2001:db8::/32".parse().unwrap(), 1);
        table.insert("203.0.113.7/32".parse().unwrap(), 2);
        assert_eq!(hits(&table, "2001:db8::1"), vec![(1, 32)]);
        assert_eq!(hits(&table, "::ffff:203.0.113.7"), vec![(2, 32)]);
        assert!(hits(&table, "2001:db9::1").is_empty());
    }
}
