//! The control plane served beyond loopback as Prometheus exporters serve it: TLS and
//! basic auth from a web configuration file, a real Prometheus scraping over TLS with
//! credentials, curl and openssl from the client side of the gateway for what a stranger
//! would try, a certificate renewed while the daemon runs. Needs root.

mod common;

use std::path::Path;

/// The gateway's address on the client side, where the control plane listens.
const GATEWAY_V4: &str = "10.78.1.1";
const PORT: u16 = 9477;

fn text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn sh(command: &str) -> std::process::Output {
    let output = std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .unwrap();
    assert!(output.status.success(), "{command}: {}", text(&output));
    output
}

/// A CA, and a server certificate for the gateway's address signed by it (serial `serial`),
/// as an admin makes them with openssl.
fn make_certificates(dir: &Path, serial: u32) {
    let d = dir.display();
    if !dir.join("ca.pem").exists() {
        sh(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/ca.key \
             -out {d}/ca.pem -days 2 -subj '/CN=site CA' 2>&1"
        ));
    }
    sh(&format!(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/new.key \
         -out {d}/new.csr -subj '/CN=gateway' 2>&1 && \
         printf 'subjectAltName=IP:{GATEWAY_V4}\\nextendedKeyUsage=serverAuth\\n' > {d}/ext && \
         openssl x509 -req -in {d}/new.csr -CA {d}/ca.pem -CAkey {d}/ca.key -set_serial {serial} \
         -out {d}/new.pem -days 2 -extfile {d}/ext 2>&1 && \
         chmod 0644 {d}/new.key && mv {d}/new.key {d}/gateway.key && mv {d}/new.pem {d}/gateway.pem"
    ));
}

fn telestrip(args: &[&str], stdin: &str) -> std::process::Output {
    common::telestrip_with_input(args, stdin.as_bytes().to_vec())
}

use common::prometheus_value;

/// Waits (up to 20 s) until `query` is at least `at_least` in Prometheus; the last value.
fn wait_for(lab: &telestrip::lab::Lab, query: &str, at_least: f64) -> Option<f64> {
    common::prometheus_wait(lab, query, |value| value >= at_least)
}

/// The serial number of the certificate the control plane shows a new connection.
fn served_serial(lab: &telestrip::lab::Lab) -> String {
    let output = lab.client(&format!(
        "echo | openssl s_client -connect {GATEWAY_V4}:{PORT} 2>/dev/null | openssl x509 -noout -serial"
    ));
    text(&output).trim().to_string()
}

#[test]
#[ignore = "needs root and the lab's tools: scripts/test.sh runs it as root"]
fn prometheus_scrapes_over_tls_with_a_password_and_strangers_are_refused_and_counted() {
    common::require(&["prometheus", "htpasswd", "openssl"]);
    let mut lab = common::lab();
    let web = lab.dir.path().join("web");
    std::fs::create_dir(&web).unwrap();
    make_certificates(&web, 1);
    // One user hashed by telestrip, one by Apache's htpasswd, as the toolkit's docs say.
    let hashed = telestrip(&["config", "hash-password"], "scrape secret\n");
    assert_eq!(hashed.status.code(), Some(0), "{}", text(&hashed));
    let prometheus_hash = String::from_utf8(hashed.stdout).unwrap().trim().to_string();
    let officer_hash = text(&sh("htpasswd -nbBC 10 '' 'officer secret' | tr -d ':\\n'"));
    // And htpasswd accepts telestrip's hash.
    std::fs::write(
        web.join("htpasswd"),
        format!("prometheus:{prometheus_hash}\n"),
    )
    .unwrap();
    sh(&format!(
        "htpasswd -vb {} prometheus 'scrape secret' 2>&1",
        web.join("htpasswd").display()
    ));
    let web_config = web.join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: gateway.pem\n  key_file: gateway.key\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: '{prometheus_hash}'\n  officer: '{officer_hash}'\n"
        ),
    )
    .unwrap();
    // The daemon reads the files again as the user it drops to.
    sh(&format!("chown -R nobody {}", web.display()));

    let config = format!(
        "queues: [0]\nfail: open\nlisten: {GATEWAY_V4}:{PORT}\nweb_config_file: {}\n",
        web_config.display()
    );
    let config_path = lab.dir.path().join("telestrip.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let check = telestrip(&["config", "check", &config_path.display().to_string()], "");
    let shown = text(&check);
    assert_eq!(check.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!(
            "control plane: https://{GATEWAY_V4}:{PORT}/ (TLS, basic auth for 2 users)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("warning: "), "{shown}");
    // Without the web configuration, config check warns.
    let bare = lab.dir.path().join("bare.yaml");
    std::fs::write(&bare, format!("queues: [0]\nlisten: {GATEWAY_V4}:{PORT}\n")).unwrap();
    let shown = text(&telestrip(
        &["config", "check", &bare.display().to_string()],
        "",
    ));
    assert!(
        shown.contains("beyond loopback, without TLS or passwords"),
        "{shown}"
    );

    lab.start_telestrip(&config, "open").unwrap();
    assert!(
        lab.log().contains(&format!(
            "status page on https://{GATEWAY_V4}:{PORT}/, metrics on https://{GATEWAY_V4}:{PORT}/metrics (TLS, basic auth for 2 users)"
        )),
        "{}",
        lab.log()
    );

    // A real Prometheus scrapes over TLS, checking the certificate, with a password file.
    let dir = lab.dir.path().to_path_buf();
    std::fs::write(dir.join("password"), "scrape secret").unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: telestrip\n    \
             scheme: https\n    tls_config:\n      ca_file: {0}/web/ca.pem\n    basic_auth:\n      \
             username: prometheus\n      password_file: {0}/password\n    static_configs:\n      \
             - targets: ['{GATEWAY_V4}:{PORT}']\n",
            dir.display()
        ),
    )
    .unwrap();
    lab.spawn_in_gateway(&format!(
        "prometheus --config.file={0}/prometheus.yml --storage.tsdb.path={0}/tsdb --web.listen-address=127.0.0.1:9090 --log.level=warn",
        dir.display()
    ))
    .unwrap();
    assert_eq!(
        wait_for(&lab, "up{job=\"telestrip\"}", 1.0),
        Some(1.0),
        "Prometheus never scraped telestrip over TLS: {}",
        lab.log()
    );
    assert_eq!(prometheus_value(&lab, "telestrip_enforcing"), Some(1.0));

    // From the client side, what a stranger would try.
    let ca = format!("--cacert {}/web/ca.pem", dir.display());
    let url = format!("https://{GATEWAY_V4}:{PORT}");
    let status = |args: &str| -> String {
        text(&lab.client(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 {ca} {args}"
        )))
    };
    assert_eq!(status(&format!("{url}/metrics")), "401");
    assert_eq!(status(&format!("-u prometheus:wrong {url}/metrics")), "401");
    assert_eq!(status(&format!("-u nobody:scrape {url}/")), "401");
    assert_eq!(
        status(&format!("-u 'officer:officer secret' {url}/")),
        "200"
    );
    assert_eq!(
        status(&format!(
            "-u 'officer:officer secret' -X POST {url}/metrics"
        )),
        "405"
    );
    assert_eq!(
        status(&format!(
            "-u 'officer:officer secret' -X DELETE {url}/status.json"
        )),
        "405"
    );
    let page = lab.client(&format!(
        "curl -s -i --max-time 3 {ca} -u 'officer:officer secret' {url}/"
    ));
    let page = text(&page);
    assert!(page.contains("Enforcing"), "{page}");
    assert!(page.contains("x-content-type-options: nosniff"), "{page}");
    // Plain HTTP to the TLS port, and TLS 1.1: no page, only a failed handshake.
    let plain = lab.client(&format!(
        "curl -s --max-time 3 -u 'officer:officer secret' http://{GATEWAY_V4}:{PORT}/"
    ));
    assert!(!text(&plain).contains("Enforcing"), "{}", text(&plain));
    let old = lab.client(&format!(
        "echo | openssl s_client -tls1_1 -cipher DEFAULT@SECLEVEL=0 -connect {GATEWAY_V4}:{PORT} 2>&1"
    ));
    assert!(
        !old.status.success() && text(&old).contains("alert"),
        "{}",
        text(&old)
    );
    // A client that does not know the CA refuses the certificate (it is not a public one).
    let unknown = lab.client(&format!(
        "curl -s --max-time 3 -u 'officer:officer secret' {url}/"
    ));
    assert_eq!(common::code(&unknown), 60, "{}", text(&unknown));

    let metrics = text(&lab.client(&format!(
        "curl -s --max-time 3 {ca} -u 'prometheus:scrape secret' {url}/metrics"
    )));
    for name in common::WEB_METRICS {
        assert!(
            metrics.contains(&format!("\n{name}")),
            "{name} missing: {metrics}"
        );
    }
    // Refusals counted, as Prometheus sees them.
    for (reason, at_least) in [
        ("no_credentials", 1.0),
        ("bad_credentials", 2.0),
        ("method", 2.0),
        ("tls_handshake", 3.0),
    ] {
        let query = format!("telestrip_http_requests_refused_total{{reason=\"{reason}\"}}");
        let value = wait_for(&lab, &query, at_least);
        assert!(
            value.is_some_and(|v| v >= at_least),
            "{query}: {value:?}, expected at least {at_least}"
        );
    }

    // The certificate renewed in place (as an ACME client does): the next connection gets
    // the new one, without a restart, and Prometheus goes on scraping.
    assert!(
        served_serial(&lab).contains("serial=01"),
        "{}",
        served_serial(&lab)
    );
    make_certificates(&web, 2);
    sh(&format!("chown -R nobody {}", web.display()));
    assert!(served_serial(&lab).contains("serial=02"), "{}", lab.log());
    let reloads = wait_for(
        &lab,
        "telestrip_http_web_config_reloads_total{result=\"ok\"}",
        1.0,
    );
    assert!(reloads.is_some_and(|n| n >= 1.0), "{reloads:?}");
    assert!(
        lab.log()
            .contains("read again (TLS, basic auth for 2 users)"),
        "{}",
        lab.log()
    );
    // A broken renewal (a key that does not fit) keeps the certificate in force.
    sh(&format!(
        "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out {0}/other.key 2>&1 && \
         chmod 0644 {0}/other.key && mv {0}/other.key {0}/gateway.key",
        web.display()
    ));
    assert!(served_serial(&lab).contains("serial=02"), "{}", lab.log());
    assert!(
        lab.log()
            .contains("the configuration read before stays in force"),
        "{}",
        lab.log()
    );
    let failed = wait_for(
        &lab,
        "telestrip_http_web_config_reloads_total{result=\"failed\"}",
        1.0,
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{failed:?}");
    assert_eq!(prometheus_value(&lab, "up{job=\"telestrip\"}"), Some(1.0));
}
