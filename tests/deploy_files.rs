//! The files in deploy/ that admins install: they must load on a real kernel, agree with
//! each other (queues, fail mode, mark field) and with the example config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn in_netns(ns: &str, command: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", command])
        .output()
        .unwrap()
}

struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let name = format!("{name}-{}", std::process::id());
        common::sh(&format!("ip netns add {name}"));
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn example_config_unit_and_rules_agree() {
    let config = telestrip::config::Config::load(&deploy("telestrip.yaml")).unwrap();
    assert_eq!(config.queues, [0, 1]);
    assert_eq!(config.mark_shift, 4);
    assert_eq!(config.fail, telestrip::config::FailMode::Open);
    let unit = std::fs::read_to_string(deploy("telestrip.service")).unwrap();
    assert!(unit.contains("iptables.sh add --queues 0:1 --fail open --mark-shift 4"));
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW"));
    let nft = std::fs::read_to_string(deploy("nftables.conf")).unwrap();
    assert!(nft.contains("queue flags bypass,fanout to 0-1"));
    assert!(nft.contains("meta mark & 0xf0 == 0x10"));
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn systemd_unit_verifies() {
    common::require(&[]);
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("telestrip.service"))
        .unwrap()
        .replace("/usr/bin/telestrip", env!("CARGO_BIN_EXE_telestrip"))
        .replace(
            "/usr/lib/telestrip/iptables.sh",
            deploy("iptables.sh").to_str().unwrap(),
        );
    let path = dir.path().join("telestrip.service");
    std::fs::write(&path, unit).unwrap();
    // The rule updater and its timer, verified together.
    let updater = std::fs::read_to_string(deploy("telestrip-rules-update.service"))
        .unwrap()
        .replace("/usr/bin/telestrip", env!("CARGO_BIN_EXE_telestrip"));
    let updater_path = dir.path().join("telestrip-rules-update.service");
    std::fs::write(&updater_path, updater).unwrap();
    let timer_path = dir.path().join("telestrip-rules-update.timer");
    std::fs::copy(deploy("telestrip-rules-update.timer"), &timer_path).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args([&path, &updater_path, &timer_path])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn iptables_script_is_idempotent_with_nft_and_legacy_backends() {
    common::require(&[]);
    for backend in ["iptables", "iptables-legacy"] {
        let ns = Netns::new("tsdep");
        let script = deploy("iptables.sh");
        for _ in 0..2 {
            let add = in_netns(
                &ns.0,
                &format!(
                    "bash {} add --queues 0:1 --fail closed --iptables {backend}",
                    script.display()
                ),
            );
            assert!(
                add.status.success(),
                "{backend}: {}",
                String::from_utf8_lossy(&add.stderr)
            );
        }
        for tool in [
            backend.to_string(),
            backend.replace("iptables", "ip6tables"),
        ] {
            let rules =
                String::from_utf8(in_netns(&ns.0, &format!("{tool} -S TELESTRIP")).stdout).unwrap();
            assert_eq!(
                rules.lines().filter(|l| l.starts_with("-A")).count(),
                24,
                "{tool}:\n{rules}"
            );
            assert!(
                rules.contains("--queue-balance 0:1") && !rules.contains("--queue-bypass"),
                "{tool}:\n{rules}"
            );
            // Bare ACKs of the two common header sizes stay in the kernel.
            assert_eq!(
                rules
                    .lines()
                    .filter(|l| l.contains("--tcp-flags FIN,SYN,RST,PSH,ACK,URG ACK")
                        && l.contains("-j ACCEPT"))
                    .count(),
                2,
                "{tool}:\n{rules}"
            );
            // A QUIC client's later Initials go up even on an allowed flow (decoys).
            assert!(
                rules.contains("-m u32 --u32") && rules.contains("--ctdir ORIGINAL"),
                "{tool}:\n{rules}"
            );
            // Tunnels go up too: telestrip judges the flows inside them.
            for proto in ["-p ipencap", "-p gre"] {
                assert!(rules.contains(proto), "{tool}: {proto}\n{rules}");
            }
            let forward =
                String::from_utf8(in_netns(&ns.0, &format!("{tool} -S FORWARD")).stdout).unwrap();
            assert_eq!(forward.matches("-j TELESTRIP").count(), 1, "{tool}");
        }
        let remove = in_netns(
            &ns.0,
            &format!("bash {} remove --iptables {backend}", script.display()),
        );
        assert!(remove.status.success());
        assert!(
            !in_netns(&ns.0, &format!("{backend} -S TELESTRIP"))
                .status
                .success(),
            "{backend}: chain left"
        );
    }
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn nftables_ruleset_loads_except_where_the_kernel_lacks_queue() {
    common::require(&[]);
    let ns = Netns::new("tsnft");
    let original = std::fs::read_to_string(deploy("nftables.conf")).unwrap();
    // Everything but the queue statement must be accepted by this kernel.
    let without_queue = original.replace("queue flags bypass,fanout to 0-1", "counter");
    assert_eq!(
        original.matches("queue flags bypass,fanout to 0-1").count(),
        4
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-queue.nft");
    std::fs::write(&path, &without_queue).unwrap();
    let output = in_netns(&ns.0, &format!("nft -f {}", path.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed =
        String::from_utf8(in_netns(&ns.0, "nft list table inet telestrip").stdout).unwrap();
    assert!(listed.contains("ct mark set"), "{listed}");
    in_netns(&ns.0, "nft delete table inet telestrip");
    // The real file: loads where the kernel has nft_queue; elsewhere only the queue rule fails.
    let output = in_netns(
        &ns.0,
        &format!("nft -f {}", deploy("nftables.conf").display()),
    );
    if !output.status.success() {
        let errors = String::from_utf8_lossy(&output.stderr);
        let error_lines: Vec<&str> = errors.lines().filter(|l| l.contains("Error")).collect();
        // One error per queue statement.
        assert_eq!(error_lines.len(), 4, "{errors}");
        assert!(
            errors.contains("queue flags bypass,fanout to 0-1"),
            "{errors}"
        );
        eprintln!(
            "note: this kernel has no nft queue support; iptables.sh is the variant to use here"
        );
    }
}

#[test]
fn example_web_config_loads_once_its_placeholder_is_replaced() {
    use telestrip::server::web::WebConfig;
    let dir = tempfile::tempdir().unwrap();
    let testdata =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/gateway/src/server/web/testdata");
    std::fs::copy(testdata.join("server.pem"), dir.path().join("gateway.pem")).unwrap();
    std::fs::copy(testdata.join("server.key"), dir.path().join("gateway.key")).unwrap();
    let example = std::fs::read_to_string(deploy("telestrip-web.yml")).unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, &example).unwrap();
    // As shipped, no password works: the placeholder is refused with what to do.
    let error = WebConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("prometheus: not a bcrypt hash"), "{error}");
    assert!(error.contains("telestrip config hash-password"), "{error}");
    let hash = "$2y$10$yvtvSmNA6qAimNU1gwtUZOosXfRcuM6ZCQ8ZSKzu4WNfeE/rKIywe";
    std::fs::write(&path, example.replace("REPLACE-WITH-A-BCRYPT-HASH", hash)).unwrap();
    let web = WebConfig::load(&path).unwrap();
    assert_eq!(web.summary(), "TLS, basic auth for 1 user");
    assert_eq!(web.headers().len(), 3);
    let config = std::fs::read_to_string(deploy("telestrip.yaml")).unwrap();
    assert!(config.contains("# web_config_file: /etc/telestrip/web.yml"));
}
