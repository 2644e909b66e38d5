//! The Debian package as an admin meets it: built with scripts/build-deb.sh (cargo-deb),
//! lintian-clean, installed with dpkg on this machine, its commands run from the installed
//! paths (config check, rules check, demo, man pages, bash completion, systemd's notify
//! protocol), the services left disabled, and purged without a trace.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        text(&output)
    );
    text(&output)
}

/// The cargo profile the test binary was built with (the package packs that binary).
fn profile() -> &'static str {
    let binary = Path::new(env!("CARGO_BIN_EXE_telestrip"));
    match binary
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
    {
        Some("debug") => "dev",
        Some("release") => "release",
        Some("checked") => "checked",
        other => panic!("cannot tell the profile of {binary:?} ({other:?})"),
    }
}

/// Purges the package if a failed test left it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "telestrip"]);
    }
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn the_debian_package_installs_works_and_purges_cleanly() {
    common::require(&["cargo-deb", "lintian", "dpkg-deb", "man"]);
    let owner = run("dpkg", &["-S", "/usr/bin/telestrip"]);
    assert!(
        !Path::new("/usr/bin/telestrip").exists() || owner.status.success(),
        "/usr/bin/telestrip exists and is not from the package: not overwriting it"
    );
    let built = ok(
        "bash",
        &[
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"),
            "--profile",
            profile(),
            "--no-build",
        ],
    );
    let deb = built
        .lines()
        .find(|l| l.trim_end().ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb in: {built}"))
        .trim()
        .to_string();
    // lintian: no error and no warning (the two overridden tags are explained in
    // deploy/debian/lintian-overrides).
    ok("lintian", &["--fail-on", "error,warning", &deb]);

    let _installed = Installed;
    ok("dpkg", &["-i", &deb]);
    // Installing leaves the firewall alone: nothing enabled, no queue rule.
    for unit in ["telestrip.service", "telestrip-rules-update.timer"] {
        assert!(
            !Path::new("/etc/systemd/system/multi-user.target.wants")
                .join(unit)
                .exists()
                && !Path::new("/etc/systemd/system/timers.target.wants")
                    .join(unit)
                    .exists(),
            "{unit} was enabled by installing"
        );
    }
    assert!(Path::new("/var/log/telestrip").is_dir());
    let conffiles = ok(
        "dpkg-query",
        &["--showformat=${Conffiles}", "-W", "telestrip"],
    );
    assert!(
        conffiles.contains("/etc/telestrip/telestrip.yaml"),
        "{conffiles}"
    );

    // The commands from the installed paths.
    let checked = ok(
        "/usr/bin/telestrip",
        &["config", "check", "/etc/telestrip/telestrip.yaml"],
    );
    assert!(
        checked.contains("/etc/telestrip/telestrip.yaml: OK"),
        "{checked}"
    );
    ok(
        "/usr/bin/telestrip",
        &["rules", "check", "/usr/share/telestrip/rules", "--strict"],
    );
    ok(
        "systemd-analyze",
        &[
            "verify",
            "/lib/systemd/system/telestrip.service",
            "/lib/systemd/system/telestrip-rules-update.service",
            "/lib/systemd/system/telestrip-rules-update.timer",
        ],
    );
    let page = Command::new("man")
        .args(["-l", "/usr/share/man/man1/telestrip-rules-update.1.gz"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let page = text(&page);
    assert!(
        page.contains("telestrip-rules-update") && page.contains("--from"),
        "{page}"
    );
    let completion = ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/telestrip && complete -p telestrip",
        ],
    );
    assert!(
        completion.contains("-F _telestrip telestrip"),
        "{completion}"
    );
    for file in [
        "/usr/share/zsh/vendor-completions/_telestrip",
        "/usr/share/fish/vendor_completions.d/telestrip.fish",
    ] {
        assert!(std::fs::metadata(file).unwrap().len() > 1000, "{file}");
    }
    notify_socket_hears_ready_and_watchdog();
    let demo = ok("/usr/bin/telestrip", &["demo"]);
    assert!(demo.contains("Audit chain: VERIFIED"), "{demo}");

    // Purge: nothing of the package left.
    ok("dpkg", &["--purge", "telestrip"]);
    for path in [
        "/usr/bin/telestrip",
        "/etc/telestrip",
        "/var/log/telestrip",
        "/var/lib/telestrip",
        "/usr/share/telestrip",
        "/lib/systemd/system/telestrip.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    assert!(!run("dpkg", &["-s", "telestrip"]).status.success());
}

/// The installed daemon tells a notify socket (as systemd's `Type=notify` opens one) that it
/// is ready, and feeds the watchdog: passive mode on the loopback of a namespace of its own.
fn notify_socket_hears_ready_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    // The daemon sends as its unprivileged user.
    std::fs::set_permissions(
        &socket_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = dir.path().join("passive.yaml");
    std::fs::write(&config, "mode: passive\ninterfaces: [lo]\nlisten: null\n").unwrap();
    let namespace = format!("tspk-{}", std::process::id() % 100_000);
    ok("ip", &["netns", "add", &namespace]);
    // Its log as journald would take it: stderr is "the journal's stream" named in
    // JOURNAL_STREAM (device:inode), so each line carries its syslog priority.
    let log_path = dir.path().join("stderr");
    let log = std::fs::File::create(&log_path).unwrap();
    let stream = {
        use std::os::unix::fs::MetadataExt;
        let meta = log.metadata().unwrap();
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            &namespace,
            "/usr/bin/telestrip",
            "run",
            "--config",
        ])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("JOURNAL_STREAM", stream)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline
        && !(heard.iter().any(|m: &String| m.contains("READY=1"))
            && heard.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        if let Ok(n) = socket.recv(&mut buffer) {
            heard.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = run("ip", &["netns", "del", &namespace]);
    let said = std::fs::read_to_string(&log_path).unwrap();
    let ready = heard.iter().find(|m| m.contains("READY=1"));
    assert!(
        ready.is_some_and(|m| m.contains("STATUS=")),
        "heard {heard:?}; daemon said {said}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("<6>telestrip: ruleset "))
            && said.lines().all(|l| l.starts_with('<')),
        "every log line carries a journald priority: {said}"
    );
    assert!(
        heard.iter().any(|m| m.contains("WATCHDOG=1")),
        "heard {heard:?}"
    );
}
