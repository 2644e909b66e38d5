//! Signed rule distribution with real parts: packs signed by `telestrip rules publish` (and
//! one by the `minisign` tool), served by a real HTTP server in a namespace, fetched by both
//! gateways of the pair lab (scripts/pair-lab.sh) while their daemons run inline. Every bad
//! pack is refused with the rules in force left as they are; a download through the active
//! gateway keeps running through an accepted and a refused update.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pair_lab::{wait_for, Pair, PACK_URL};

const PASSWORD: &str = "pack-test-password";
/// The download that runs through the updates: 30 s at the server's 100 KB/s.
const DOWNLOAD_BYTES: usize = 3_000_000;
/// A name the second pack starts to block.
const NEW_NAME: &str = "newly.example.net";

fn telestrip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_telestrip"))
        .args(args)
        .env("TELESTRIP_KEY_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A minisign key pair in `dir` (`pub.key`, `sec.key`), the secret key under PASSWORD.
fn minisign_keys(dir: &Path) {
    let generated = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n%s\\n' {PASSWORD} {PASSWORD} | minisign -G -p {0}/pub.key -s {0}/sec.key",
            dir.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated));
}

/// `rules publish RULES --key KEYS/sec.key --output OUT`, which must succeed.
fn publish_pack(rules: &Path, keys: &Path, out: &Path) {
    let published = telestrip(&[
        "rules",
        "publish",
        rules.to_str().unwrap(),
        "--key",
        keys.join("sec.key").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(published.status.success(), "{}", text(&published));
}

/// A rule directory: the bundled rules plus `extra` files.
fn rules_dir(root: &Path, name: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    for (file, content) in extra {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

fn site_rule(id: &str, domain: &str, test_name: &str) -> String {
    format!(
        "vendor: site\ndescription: Site rules of the update test.\nrules:\n  - id: {id}\n    action: drop\n    category: telemetry\n    description: A rule the test publishes.\n    domains: [{domain}]\n    references: [https://example.org/telestrip-update-test]\n    tests:\n      match: [{test_name}]\n"
    )
}

struct Lab {
    pair: Pair,
    keys: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Lab {
    fn pack(&self) -> PathBuf {
        self.pair.dir().join("www/pack")
    }

    fn secret(&self) -> String {
        self.keys.path().join("sec.key").display().to_string()
    }

    fn public(&self) -> String {
        self.keys.path().join("pub.key").display().to_string()
    }

    fn publish(&self, rules: &Path, out: &Path, version: u64, extra: &[&str]) -> Output {
        let (secret, out, version) = (
            self.secret(),
            out.display().to_string(),
            version.to_string(),
        );
        let mut args = vec![
            "rules",
            "publish",
            rules.to_str().unwrap(),
            "--key",
            &secret,
        ];
        args.extend(["--output", &out, "--ruleset-version", &version]);
        args.extend(extra);
        let output = telestrip(&args);
        assert!(output.status.success(), "publish: {}", text(&output));
        output
    }

    /// `telestrip rules update` in a gateway's namespace; its exit code and output.
    fn update(&self, gateway: &str, extra: &str) -> (i32, String) {
        let output = self.pair.run(
            gateway,
            &format!(
                "{} rules update --config {} {extra}",
                env!("CARGO_BIN_EXE_telestrip"),
                self.pair
                    .dir()
                    .join(gateway)
                    .join("telestrip.yaml")
                    .display()
            ),
        );
        (output.status.code().unwrap_or(-1), text(&output))
    }

    fn current(&self, gateway: &str) -> String {
        std::fs::read_link(self.pair.dir().join(gateway).join("rules/current"))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn version_in_force(&self, gateway: &str) -> f64 {
        self.pair.metric(
            gateway,
            &format!("telestrip_rules_version{{source=\"{PACK_URL}\"}}"),
        )
    }

    fn wait_version(&self, gateway: &str, version: f64) {
        wait_for(
            &format!("gateway {gateway} to run ruleset version {version}"),
            20,
            || self.version_in_force(gateway) == version,
        );
    }

    /// Serves `dir` as the pack: a copy with fresh modification times, as a server (or an
    /// attacker) offering it anew would (the published directory stays as it is).
    fn serve(&self, dir: &Path) {
        let pack = self.pack();
        let _ = std::fs::remove_dir_all(&pack);
        common::sh(&format!("cp -r {} {}", dir.display(), pack.display()));
    }

    /// Expects `update` on `gateway` to refuse, saying `why`, with nothing changed.
    fn refused(&self, gateway: &str, why: &str, code: i32) {
        let before = self.current(gateway);
        let version = self.version_in_force(gateway);
        let (got, output) = self.update(gateway, "");
        assert_eq!(got, code, "expected exit {code} ({why}): {output}");
        assert!(output.contains(why), "expected {why:?} in: {output}");
        assert!(output.contains("The rules in force stay"), "{output}");
        assert_eq!(self.current(gateway), before, "current switched: {output}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(self.version_in_force(gateway), version);
    }
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn signed_rule_updates_reach_both_gateways_and_bad_packs_change_nothing() {
    common::require(&[
        "minisign",
        "keepalived",
        "conntrackd",
        "conntrack",
        "redis-server",
        "dnsmasq",
    ]);
    let keys = tempfile::tempdir().unwrap();
    minisign_keys(keys.path());
    let pair = Pair::up_with(Some(&keys.path().join("pub.key")));
    let mut lab = Lab {
        pair,
        keys,
        work: tempfile::tempdir().unwrap(),
    };
    let work = lab.work.path();
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    step("lab up");

    // Version 1: the bundled rules. The minisign tool verifies what telestrip signed.
    let v1_rules = rules_dir(work, "rules-v1", &[]);
    let v1 = work.join("v1");
    lab.publish(&v1_rules, &v1, 1, &[]);
    let checked = Command::new("minisign")
        .args(["-Vm", v1.join("manifest.json").to_str().unwrap()])
        .args(["-p", &lab.public()])
        .output()
        .unwrap();
    assert!(checked.status.success(), "minisign: {}", text(&checked));
    assert!(text(&checked).contains("telestrip ruleset 1"));
    lab.serve(&v1);
    for gateway in ["a", "b"] {
        let (code, output) = lab.update(gateway, "");
        assert_eq!(code, 0, "{output}");
        assert!(output.contains("Accepted ruleset version 1"), "{output}");
        lab.wait_version(gateway, 1.0);
    }
    step("both gateways run version 1");
    // Nothing new: the server answers the conditional request with 304.
    let (code, output) = lab.update("a", "");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("HTTP 304"), "{output}");
    let served = std::fs::read_to_string(lab.pair.dir().join("www.log")).unwrap();
    assert!(
        served.contains("\"GET /pack/manifest.json HTTP/1.1\" 304"),
        "{served}"
    );

    step("304 seen");
    // A download through A keeps running through an accepted and a refused update.
    let download = lab.pair.dir().join("download");
    let done = lab.pair.dir().join("download.done");
    lab.pair.spawn(
        "client",
        &format!(
            "timeout 90 curl -sk -o {} https://10.79.2.10/slow/{DOWNLOAD_BYTES} && touch {}",
            download.display(),
            done.display()
        ),
        None,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let (download, stop) = (download.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            // The longest time the download did not grow, while it ran.
            let (mut size, mut since, mut longest) = (0, Instant::now(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let now = std::fs::metadata(&download).map_or(0, |m| m.len());
                if now != size {
                    longest = longest.max(since.elapsed());
                    (size, since) = (now, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            longest
        })
    };
    wait_for("the download to start", 10, || {
        std::fs::metadata(&download).is_ok_and(|m| m.len() > 0)
    });
    let blocked_before = lab.pair.run(
        "client",
        &format!("curl -sk --max-time 3 -o /dev/null --resolve {NEW_NAME}:443:10.79.2.10 https://{NEW_NAME}/bytes/10"),
    );
    assert!(
        blocked_before.status.success(),
        "{NEW_NAME} passes before version 2"
    );
    // Version 2 adds a rule; both gateways accept it and block the name.
    let site = site_rule("site-new-telemetry", NEW_NAME, NEW_NAME);
    let v2_rules = rules_dir(work, "rules-v2", &[("site.yaml", &site)]);
    let v2 = work.join("v2");
    lab.publish(&v2_rules, &v2, 2, &[]);
    lab.serve(&v2);
    for gateway in ["a", "b"] {
        let (code, output) = lab.update(gateway, "");
        assert_eq!(code, 0, "{output}");
        assert!(
            output.contains("Accepted ruleset version 2") && output.contains("1 added, 0 removed"),
            "{output}"
        );
        lab.wait_version(gateway, 2.0);
    }
    let blocked = lab.pair.run(
        "client",
        &format!("curl -sk --max-time 3 -o /dev/null --resolve {NEW_NAME}:443:10.79.2.10 https://{NEW_NAME}/bytes/10"),
    );
    assert!(
        !blocked.status.success(),
        "{NEW_NAME} is blocked by version 2"
    );
    step("version 2 in force on both, the new name blocked");
    // Version 3 with a file changed after signing: refused by A while the download runs.
    let v3_rules = rules_dir(
        work,
        "rules-v3",
        &[("site.yaml", &site.replace("A rule the test", "Changed"))],
    );
    let v3 = work.join("v3");
    lab.publish(&v3_rules, &v3, 3, &[]);
    lab.serve(&v3);
    std::fs::write(
        lab.pack().join("site.yaml"),
        site.replace(NEW_NAME, "other.example.net"),
    )
    .unwrap();
    lab.refused("a", "the manifest says", 1);
    assert!(
        !done.exists(),
        "the download still runs after both updates (make it slower if this fails)"
    );
    wait_for("the download to complete", 60, || done.exists());
    stop.store(true, Ordering::Relaxed);
    let longest_pause = watch.join().unwrap();
    let body = std::fs::read(&download).unwrap();
    assert_eq!(body.len(), DOWNLOAD_BYTES, "the download is complete");
    assert!(
        body.chunks(256)
            .all(|c| c == &(0..=255u8).collect::<Vec<_>>()[..c.len()]),
        "the download is byte-exact"
    );
    // The server sends every 100 ms; a reload that held packets would show as a pause.
    assert!(
        longest_pause < Duration::from_secs(3),
        "the download paused for {longest_pause:?}"
    );

    step("download complete");
    // Every bad pack is refused on B; B keeps version 2.
    // A manifest changed after signing.
    let v4 = work.join("v4");
    lab.publish(&v2_rules, &v4, 4, &[]);
    lab.serve(&v4);
    let manifest = lab.pack().join("manifest.json");
    let changed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"ruleset_version\": 4", "\"ruleset_version\": 40");
    std::fs::write(&manifest, changed).unwrap();
    lab.refused("b", "bad signature", 1);
    // A replayed older pack, validly signed.
    lab.serve(&v1);
    lab.refused("b", "is not newer than version 2", 1);
    // An expired pack.
    let expired = work.join("expired");
    lab.publish(&v2_rules, &expired, 50, &["--valid-for", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    lab.serve(&expired);
    lab.refused("b", "the manifest expired", 1);
    // An HTML error page where a rule file should be.
    let v5 = work.join("v5");
    lab.publish(&v3_rules, &v5, 5, &[]);
    lab.serve(&v5);
    std::fs::write(
        lab.pack().join("site.yaml"),
        "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
    )
    .unwrap();
    lab.refused("b", "site.yaml is an HTML page", 1);
    // A pack that would block a name on the site's must-keep-working list.
    let breaking = rules_dir(
        work,
        "rules-breaking",
        &[
            ("site.yaml", &site),
            (
                "wide.yaml",
                &site_rule("site-too-wide", "\"*.example.org\"", "www.example.org")
                    .replace("vendor: site", "vendor: wide"),
            ),
        ],
    );
    let v6 = work.join("v6");
    lab.publish(&breaking, &v6, 60, &[]);
    lab.serve(&v6);
    lab.refused("b", "which is on this site's must_keep_working list", 1);
    // A pack that drops most of the rules.
    let truncated = work.join("rules-truncated");
    std::fs::create_dir_all(&truncated).unwrap();
    std::fs::write(truncated.join("site.yaml"), &site).unwrap();
    let v7 = work.join("v7");
    lab.publish(&truncated, &v7, 70, &[]);
    lab.serve(&v7);
    lab.refused("b", "more than max_removed_percent 10%", 1);
    // Rules whose own tests fail, signed with the minisign tool (not by `rules publish`,
    // which would refuse them): the signature is good, the rules are not.
    let failing = work.join("failing");
    common::sh(&format!("cp -a {} {}", v2.display(), failing.display()));
    let bad_site = site_rule("site-new-telemetry", NEW_NAME, "not-covered.example.com");
    std::fs::write(failing.join("site.yaml"), &bad_site).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(failing.join("manifest.json")).unwrap()).unwrap();
    manifest["ruleset_version"] = 80.into();
    for file in manifest["files"].as_array_mut().unwrap() {
        if file["name"] == "site.yaml" {
            file["sha256"] = telestrip::rulepack::manifest::sha256_hex(bad_site.as_bytes()).into();
            file["bytes"] = bad_site.len().into();
        }
    }
    std::fs::write(
        failing.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    let signed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {PASSWORD} | minisign -S -s {} -m {}/manifest.json",
            lab.secret(),
            failing.display()
        ))
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", text(&signed));
    lab.serve(&failing);
    lab.refused("b", "test expects not-covered.example.com to match", 1);
    // Files that did not change were copied from the generation in force, not downloaded:
    // each gateway fetched the unchanged microsoft.yaml once, for version 1.
    let served = std::fs::read_to_string(lab.pair.dir().join("www.log")).unwrap();
    assert_eq!(
        served.matches("GET /pack/microsoft.yaml ").count(),
        2,
        "{served}"
    );
    // The server down: exit code 3 after the configured tries.
    common::sh(&format!(
        "kill $(cat {}) 2>/dev/null || true",
        lab.pair.dir().join("www.pid").display()
    ));
    lab.refused("b", "Could not update from", 3);
    let failures = format!("telestrip_rules_update_consecutive_failures{{source=\"{PACK_URL}\"}}");
    wait_for("B's metrics to count 8 failed updates in a row", 15, || {
        lab.pair.metric("b", &failures) == 8.0
    });

    step("every bad pack refused");
    // An air-gapped site: the next pack carried as a tarball.
    let v9 = work.join("v9");
    lab.publish(&v2_rules, &v9, 90, &[]);
    let tarball = work.join("pack.tar.gz");
    common::sh(&format!(
        "tar czf {} -C {} .",
        tarball.display(),
        v9.display()
    ));
    let (code, output) = lab.update("b", &format!("--from {}", tarball.display()));
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Accepted ruleset version 90"), "{output}");
    lab.wait_version("b", 90.0);
    wait_for("B's metrics to count no failure", 15, || {
        lab.pair.metric("b", &failures) == 0.0
    });
    // Rollback to the generation before.
    let rolled = telestrip(&[
        "rules",
        "rollback",
        "--config",
        lab.pair.dir().join("b/telestrip.yaml").to_str().unwrap(),
    ]);
    assert!(rolled.status.success(), "{}", text(&rolled));
    lab.wait_version("b", 2.0);

    step("tarball accepted, rolled back");
    // A generation damaged on disk: the daemon falls back to the newest one that verifies,
    // never to nothing.
    let current = lab.pair.dir().join("b/rules").join(lab.current("b"));
    std::fs::write(current.join("site.yaml"), "vendor: site\nrules: []\n").unwrap();
    common::sh(&format!(
        "kill -HUP $(cat {})",
        lab.pair.dir().join("b/telestrip.pid").display()
    ));
    lab.wait_version("b", 1.0);

    step("fallback seen");
    // The evidence: metrics, audit records on both gateways, and the report lists the updates.
    let metrics = lab
        .pair
        .run("b", "curl -s --max-time 2 http://127.0.0.1:9477/metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for name in common::PACK_METRICS {
        assert!(
            metrics.contains(&format!("{name}{{source=\"{PACK_URL}\"}} ")),
            "gateway b does not export {name}"
        );
    }
    let expiry = lab.pair.metric(
        "b",
        &format!("telestrip_rules_expiry_timestamp_seconds{{source=\"{PACK_URL}\"}}"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 29.0 * 86_400.0, "expiry {expiry}");
    for gateway in ["a", "b"] {
        assert!(lab.pair.audit_verifies(gateway), "gateway {gateway}'s log");
    }
    // The writer thread appends the fallback's record just after the switch.
    wait_for("B's audit record of the fallback", 10, || {
        lab.pair
            .audit_records("b")
            .iter()
            .any(|r| r["kind"] == "rules_update" && r["switched_by"] == "fallback")
    });
    let records = lab.pair.audit_records("b");
    let updates: Vec<(u64, String)> = records
        .iter()
        .filter(|r| r["kind"] == "rules_update")
        .map(|r| {
            (
                r["ruleset_version"].as_u64().unwrap(),
                r["switched_by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        (1, "update"),
        (2, "update"),
        (90, "update"),
        (2, "rollback"),
        (1, "fallback"),
    ] {
        assert!(
            updates.contains(&(expected.0, expected.1.to_string())),
            "no rules_update record {expected:?} in {updates:?}"
        );
    }
    let record = records
        .iter()
        .find(|r| r["kind"] == "rules_update" && r["ruleset_version"] == 2)
        .unwrap();
    assert_eq!(record["added"], 1);
    assert_eq!(record["added_sample"][0], NEW_NAME);
    assert_eq!(record["previous_version"], 1);
    let report = telestrip(&[
        "report",
        lab.pair.dir().join("b/audit/audit.jsonl").to_str().unwrap(),
    ]);
    let report = text(&report);
    assert!(report.contains("Signed rule updates:"), "{report}");
    for line in [
        "update: ruleset version 2 (was 1)",
        "rollback: ruleset version 2",
        "update: ruleset version 90 (was 2)",
    ] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
}

/// The ETag path and a directory source, on loopback: the second run sends If-None-Match and
/// gets 304; a directory (a mounted medium) is read without HTTP.
#[test]
fn etags_make_unchanged_manifests_cost_one_request() {
    common::require_tools(&["minisign", "python3"]);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    minisign_keys(keys);
    let pack = dir.path().join("pack");
    let rules = rules_dir(dir.path(), "rules", &[]);
    publish_pack(&rules, keys, &pack);
    let log = dir.path().join("server.log");
    let mut server = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/etag_server.py"
        ))
        .args(["--dir", pack.to_str().unwrap(), "--seconds", "60"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let config = dir.path().join("telestrip.yaml");
    std::fs::write(
        &config,
        format!(
            "rules_update:\n  source: http://127.0.0.1:{}/\n  public_key_file: {}\n  state_dir: {}\n",
            port.trim(),
            keys.join("pub.key").display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let update = |extra: &[&str]| {
        let mut args = vec!["rules", "update", "--config", config.to_str().unwrap()];
        args.extend(extra);
        let output = telestrip(&args);
        (output.status.code(), text(&output))
    };
    let (code, first) = update(&[]);
    assert_eq!(code, Some(0), "{first}");
    assert!(first.contains("Accepted ruleset version 1"), "{first}");
    let (code, second) = update(&[]);
    assert_eq!(code, Some(0), "{second}");
    assert!(second.contains("HTTP 304"), "{second}");
    let _ = server.kill();
    let _ = server.wait();
    let served = std::fs::read_to_string(&log).unwrap();
    assert!(
        served.contains("GET /manifest.json 304 if-none-match=yes"),
        "{served}"
    );
    // The same pack from a directory: nothing new, said so.
    let (code, from_dir) = update(&["--from", pack.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{from_dir}");
    assert!(from_dir.contains("version 1 is in force"), "{from_dir}");
    let status = telestrip(&["rules", "status", "--config", config.to_str().unwrap()]);
    let status = text(&status);
    assert!(
        status.contains("* generation 1: ruleset version 1") && status.contains("0 failure(s)"),
        "{status}"
    );
}

/// A rule that names a list file (`domains_file`): the pack carries the list, signed like
/// the rule files, and a gateway that accepts the pack blocks the list's names; a list
/// changed in the pack is refused.
#[test]
fn a_pack_carries_the_list_files_its_rules_name() {
    common::require_tools(&["minisign"]);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    minisign_keys(keys);
    let names: String = (0..5000)
        .map(|i| format!("tracker-{i}.list.example\n"))
        .collect();
    let site = "vendor: site\ndescription: A rule with a list file.\nrules:\n  - id: site-list\n    action: drop\n    category: telemetry\n    description: The list's names.\n    domains_file: site-list.list\n    references: [https://example.org/telestrip-list-test]\n    tests:\n      match: [tracker-4999.list.example]\n      no_match: [list.example]\n";
    let rules = rules_dir(
        dir.path(),
        "rules",
        &[("site.yaml", site), ("site-list.list", &names)],
    );
    let pack = dir.path().join("pack");
    publish_pack(&rules, keys, &pack);
    assert_eq!(
        std::fs::read_to_string(pack.join("site-list.list")).unwrap(),
        names
    );
    let manifest = std::fs::read_to_string(pack.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"site-list.list\""), "{manifest}");
    let config = dir.path().join("telestrip.yaml");
    std::fs::write(
        &config,
        format!(
            "rules_update:\n  source: {}\n  public_key_file: {}\n  state_dir: {}\n",
            pack.display(),
            keys.join("pub.key").display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let update = telestrip(&["rules", "update", "--config", config.to_str().unwrap()]);
    assert!(
        text(&update).contains("Accepted ruleset version 1"),
        "{}",
        text(&update)
    );
    let current = dir.path().join("state/current");
    let explain = telestrip(&[
        "rules",
        "explain",
        "--rules",
        current.to_str().unwrap(),
        "tracker-1234.list.example",
    ]);
    assert!(
        text(&explain).contains("site-list (site, drop)"),
        "{}",
        text(&explain)
    );
    // A list edited after signing: a new pack (version 2, one name more) whose list is
    // changed on the way is refused, naming the list. (An unchanged list is not fetched
    // again: the gateway copies its own checked copy.)
    std::fs::write(
        rules.join("site-list.list"),
        format!("{names}newly-listed.example\n"),
    )
    .unwrap();
    publish_pack(&rules, keys, &pack);
    std::fs::write(
        pack.join("site-list.list"),
        format!("{names}newly-listed.examp1e\n"),
    )
    .unwrap();
    let tampered = telestrip(&["rules", "update", "--config", config.to_str().unwrap()]);
    let shown = text(&tampered);
    assert_ne!(tampered.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("site-list.list: SHA-256") && shown.contains("changed after signing"),
        "{shown}"
    );
}
