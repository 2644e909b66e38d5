//! What a gateway of a pair can see of the pair (`pair:` in the config), checked every second
//! without privileges: whether it holds the virtual addresses keepalived moves (it is the
//! active one; both at once is a split brain), and whether something listens to the kernel's
//! connection events (conntrackd; without it no verdict reaches the other gateway), with the
//! events that listener lost. Changes are logged; the state goes to the metrics, `/healthz`
//! and the status page.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::stats::{Family, MetricSink};

/// How often the pair's state is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Multicast groups of conntrack events (NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY) in the
/// group bitmap of /proc/net/netlink.
const CONNTRACK_EVENT_GROUPS: u32 = 0b111;
/// NETLINK_NETFILTER.
const NETFILTER_PROTOCOL: u32 = 12;

#[derive(Debug, Default)]
pub struct PairState {
    /// Virtual addresses are configured, so `active` means something.
    pub watches_addresses: bool,
    /// This gateway holds every virtual address.
    pub active: AtomicBool,
    /// Times this gateway became active or stopped being active.
    pub transitions: AtomicU64,
    /// Netlink sockets that listen to connection events (conntrackd has one).
    pub event_listeners: AtomicU64,
    /// Events those sockets lost because they did not read fast enough.
    pub event_listener_drops: AtomicU64,
    /// The first check has run.
    checked: AtomicBool,
}

const ACTIVE: Family = Family {
    name: "telestrip_pair_active",
    help: "1 while this gateway holds every virtual address of its pair (it is the one filtering), 0 on standby. More than one active gateway in a pair is a split brain.",
    labels: &[],
};
const TRANSITIONS: Family = Family {
    name: "telestrip_pair_transitions_total",
    help: "Times this gateway became active or went to standby.",
    labels: &[],
};
const LISTENERS: Family = Family {
    name: "telestrip_conntrack_event_listeners",
    help: "Sockets listening to the kernel's connection events (conntrackd has one); 0: nothing replicates the connection table or telestrip's verdicts to the other gateway.",
    labels: &[],
};
const LISTENER_DROPS: Family = Family {
    name: "telestrip_conntrack_event_listener_drops",
    help: "Connection events the listening sockets lost (read too slowly): replication to the other gateway may miss connections or verdicts.",
    labels: &[],
};

impl PairState {
    /// The state of a pair whose virtual addresses are watched (`watches_addresses`) or not.
    pub fn new(watches_addresses: bool) -> Self {
        Self {
            watches_addresses,
            ..Self::default()
        }
    }

    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if self.watches_addresses {
            sink.gauge(&ACTIVE, &[], u64::from(self.active.load(Ordering::Relaxed)));
        }
        sink.counter(&TRANSITIONS, &[], load(&self.transitions));
        sink.gauge(&LISTENERS, &[], load(&self.event_listeners));
        sink.gauge(&LISTENER_DROPS, &[], load(&self.event_listener_drops));
    }

    /// Why the pair is degraded, if it is.
    pub fn degraded(&self) -> Option<String> {
        let checked = self.checked.load(Ordering::Relaxed);
        (checked && self.event_listeners.load(Ordering::Relaxed) == 0).then(|| {
            "pair: nothing listens to connection events (is conntrackd running?): verdicts and connections are not replicated to the other gateway".to_string()
        })
    }
}

/// Starts the checks; they stop with `stop`.
pub fn spawn(
    virtual_addresses: Vec<IpAddr>,
    state: &Arc<PairState>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<()> {
    let (state, stop) = (Arc::clone(state), Arc::clone(stop));
    std::thread::Builder::new()
        .name("telestrip-pair".into())
        .spawn(move || {
            let mut listening = None;
            while !stop.load(Ordering::Relaxed) {
                check(&virtual_addresses, &state, &mut listening);
                std::thread::sleep(CHECK_EVERY);
            }
        })?;
    Ok(())
}

fn check(virtual_addresses: &[IpAddr], state: &PairState, listening: &mut Option<bool>) {
    if !virtual_addresses.is_empty() {
        let held = local_addresses();
        let active = virtual_addresses.iter().all(|a| held.contains(a));
        let was = state.active.swap(active, Ordering::Relaxed);
        if was != active || !state.checked.load(Ordering::Relaxed) {
            if state.checked.load(Ordering::Relaxed) {
                state.transitions.fetch_add(1, Ordering::Relaxed);
            }
            crate::log_line!(
                Notice,
                "telestrip: pair: this gateway is {}",
                if active {
                    "active (it holds the virtual addresses)"
                } else {
                    "on standby"
                }
            );
        }
    }
    let (listeners, drops) = std::fs::read_to_string("/proc/net/netlink")
        .map(|table| event_listeners(&table))
        .unwrap_or((0, 0));
    state.event_listeners.store(listeners, Ordering::Relaxed);
    state.event_listener_drops.store(drops, Ordering::Relaxed);
    let now = listeners > 0;
    if *listening != Some(now) {
        if now {
            crate::log_line!(
                Info,
                "telestrip: pair: conntrackd listens to connection events"
            );
        } else {
            crate::log_line!(Warning, "telestrip: pair: nothing listens to connection events (conntrackd down?): verdicts are not replicated");
        }
        *listening = Some(now);
    }
    state.checked.store(true, Ordering::Relaxed);
}

fn local_addresses() -> HashSet<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return HashSet::new();
    };
    interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .collect()
}

/// Sockets of /proc/net/netlink (this network namespace's) subscribed to connection events,
/// and the messages they dropped.
fn event_listeners(table: &str) -> (u64, u64) {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let protocol: u32 = fields.get(1)?.parse().ok()?;
            let groups = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let drops: u64 = fields.get(8)?.parse().ok()?;
            (protocol == NETFILTER_PROTOCOL && groups & CONNTRACK_EVENT_GROUPS != 0)
                .then_some(drops)
        })
        .fold((0, 0), |(count, sum), drops| (count + 1, sum + drops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrackd_is_seen_in_the_netlink_table() {
        let table = "\
sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
00000000275ab3cb 12  3342662801 00000000 0        0        0     2        0        1039712
0000000088d51f4c 12  2207232497 00000007 0        0        0     2        3        1040702
00000000f97b5991 0   0          00000000 0        0        0     2        0        1039243
00000000aaaaaaaa 12  77         00000004 0        0        0     2        1        1040703
00000000bbbbbbbb 0   78         00000007 0        0        0     2        0        1040704
";
        assert_eq!(event_listeners(table), (2, 4));
        assert_eq!(event_listeners("sk Eth\n"), (0, 0));
    }

    #[test]
    fn the_active_gateway_holds_every_virtual_address() {
        let state = PairState::new(true);
        let mut listening = None;
        check(&["127.0.0.1".parse().unwrap()], &state, &mut listening);
        assert!(state.active.load(Ordering::Relaxed), "loopback is held");
        check(
            &["127.0.0.1".parse().unwrap(), "192.0.2.254".parse().unwrap()],
            &state,
            &mut listening,
        );
        assert!(!state.active.load(Ordering::Relaxed));
        assert_eq!(state.transitions.load(Ordering::Relaxed), 1);
    }
}
