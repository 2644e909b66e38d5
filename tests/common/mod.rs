//! Shared by the namespace tests: the lab from `telestrip::lab`, and the rule that these
//! tests run in CI (as root, with every tool installed) and fail there if they cannot.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use telestrip::lab::{SERVER_V4, SERVER_V6};

const EXTRA_TOOLS: [&str; 4] = ["iptables-legacy", "nft", "systemd-analyze", "ethtool"];

/// Returns false (after saying why) when the tests cannot run outside CI; panics in CI.
pub fn can_run() -> bool {
    let missing = telestrip::lab::missing().or_else(|| {
        EXTRA_TOOLS
            .iter()
            .find(|t| !telestrip::lab::installed(t))
            .map(|t| format!("{t} is not installed"))
    });
    match missing {
        None => true,
        Some(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("namespace tests must run in CI, but {reason}")
        }
        Some(reason) => {
            eprintln!("namespace test NOT RUN: {reason} (it runs in CI as root)");
            false
        }
    }
}

/// A lab with servers running.
pub fn lab() -> Option<telestrip::lab::Lab> {
    if !can_run() {
        return None;
    }
    let mut lab =
        telestrip::lab::Lab::new(std::path::Path::new(env!("CARGO_BIN_EXE_telestrip"))).unwrap();
    lab.start_servers().unwrap();
    Some(lab)
}

pub fn sh(command: &str) {
    telestrip::lab::sh(command).unwrap();
}
