use std::io::{Read, Write};
use std::time::Duration;

use super::*;
use crate::engine::EngineConfig;
use crate::rules::load_rules;
use crate::wire::LinkType;
use telestrip_testkit::{client_hello, tls_flow, Hosts};

fn control(enforce: bool) -> Arc<ControlPlane> {
    Arc::new(control_plane(enforce))
}

fn control_plane(enforce: bool) -> ControlPlane {
    let (_, rules) = load_rules(None).unwrap();
    let engine = Arc::new(Engine::new(
        rules,
        EngineConfig {
            enforce,
            ..EngineConfig::default()
        },
    ));
    let run = RunInfo {
        mode: "nfqueue",
        fail: "open",
        enforce,
        strip_ech: true,
        gateway: Some("gw-test".into()),
        site: Some("site-test".into()),
    };
    let metrics = Metrics::new(&run).unwrap();
    let audit = Some(Arc::new(AuditStats::default()));
    ControlPlane::new(
        engine,
        metrics,
        Arc::new(SourceStats::default()),
        vec![0],
        audit,
        run,
    )
}

/// Sends `flows` TLS connections to a bundled telemetry name through the engine.
fn telemetry_flows(control: &ControlPlane, flows: u16) {
    let mut worker = control.engine.worker();
    let mut events = Vec::new();
    for i in 0..flows {
        let hosts = Hosts::new("10.0.0.2", 40_000 + i, "192.0.2.1", 443);
        for frame in tls_flow(&hosts, &client_hello("v10.events.data.microsoft.com"), 0) {
            worker.process(
                LinkType::Ethernet,
                &frame,
                Duration::from_secs(1),
                &mut events,
            );
        }
    }
}

/// One GET over plain TCP (HTTP/1.0, so the server closes): status line and body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let (head, body) = request(addr, "GET", path, "");
    (head.lines().next().unwrap().to_string(), body)
}

/// One request with extra header lines: the whole head and the body.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{headers}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn history_answers_with_the_last_sample_at_or_before_a_time() {
    let mut history = History::default();
    let tally = |blocked| BTreeMap::from([("v".to_string(), Tally { blocked, logged: 0 })]);
    history.record(100, tally(1));
    history.record(160, tally(5));
    assert_eq!(history.at(99), BTreeMap::new());
    assert_eq!(history.at(100), tally(1));
    assert_eq!(history.at(159), tally(1));
    assert_eq!(history.at(1000), tally(5));
}

#[test]
fn history_keeps_a_bounded_number_of_samples() {
    let mut history = History::default();
    for minute in 0..(SAMPLES_KEPT as u64 + 10) {
        history.record(minute * 60, BTreeMap::new());
    }
    assert_eq!(history.samples.len(), SAMPLES_KEPT);
}

#[test]
fn the_status_counts_blocked_flows_per_vendor_and_says_the_mode() {
    let control = control(true);
    telemetry_flows(&control, 3);
    let status = status::Status::of(&control, SystemTime::now());
    assert_eq!(
        status.vendors,
        [status::VendorRow {
            vendor: "microsoft".into(),
            blocked_last_hour: 3,
            blocked_last_day: 3,
            logged_last_day: 0,
            blocked_since_start: 3,
        }]
    );
    assert_eq!(status.blocked_per_hour.len(), 24);
    assert_eq!(
        status.blocked_per_hour.last(),
        Some(&("now".to_string(), 3))
    );
    let page = status::page(&status);
    assert!(page.contains("Enforcing"), "{page}");
    assert!(page.contains(&status.ruleset));
    assert!(
        page.contains("<td>microsoft</td><td class=\"n\">3</td>"),
        "{page}"
    );
    // The ECH settings in force (this control plane strips ECH keys) and what they did.
    let counters = control.engine.counters.shard();
    counters.ech_answer(crate::stats::EchAnswer::Stripped);
    counters.ech_answer(crate::stats::EchAnswer::Hidden);
    let page = status::page(&status::Status::of(&control, SystemTime::now()));
    assert!(
        page.contains("flows with real ECH: allow (0 since the start); ECH keys in DNS answers: taken out (2 answers so far)"),
        "{page}"
    );
}

#[test]
fn flows_older_than_the_window_are_not_in_the_last_hour() {
    let control = control(true);
    telemetry_flows(&control, 2);
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    control
        .history
        .lock()
        .unwrap()
        .record(unix_seconds(later) - 5400, tally(&control.engine));
    telemetry_flows(&control, 1);
    let status = status::Status::of(&control, later);
    assert_eq!(status.vendors[0].blocked_last_hour, 1);
    assert_eq!(status.vendors[0].blocked_last_day, 3);
}

#[test]
fn dry_run_shows_flows_as_only_logged() {
    let control = control(false);
    telemetry_flows(&control, 2);
    let status = status::Status::of(&control, SystemTime::now());
    assert_eq!(status.vendors[0].blocked_since_start, 0);
    assert_eq!(status.vendors[0].logged_last_day, 2);
    assert!(status::page(&status).contains("Dry run"));
}

#[test]
fn the_server_serves_metrics_health_and_status() {
    let control = control(true);
    telemetry_flows(&control, 2);
    let addr = spawn("127.0.0.1:0".parse().unwrap(), Arc::clone(&control)).unwrap();
    let (status_line, body) = get(addr, "/metrics");
    assert!(status_line.contains("200"), "{status_line}");
    assert!(
        body.contains("telestrip_flows_total{action=\"reject\",group=\"default\",rule=\"ms-windows-diagtrack\",vendor=\"microsoft\"} 2"),
        "{body}"
    );
    assert!(body.contains("telestrip_ruleset_info{sha256=\""), "{body}");
    assert!(
        body.contains("telestrip_gateway_info{gateway=\"gw-test\",site=\"site-test\"} 1"),
        "{body}"
    );
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    assert!(get(addr, "/healthz").0.contains("200"));
    assert!(get(addr, "/readyz").0.contains("503"));
    control.ready.store(true, Ordering::Relaxed);
    assert!(get(addr, "/readyz").0.contains("200"));
    let (status_line, page) = get(addr, "/");
    assert!(
        status_line.contains("200") && page.contains("microsoft"),
        "{page}"
    );
    assert!(
        page.contains(
            "<span id=\"gateway\">gw-test</span> at site <span id=\"site\">site-test</span>"
        ),
        "{page}"
    );
    let json: serde_json::Value = serde_json::from_str(&get(addr, "/status.json").1).unwrap();
    assert_eq!(json["vendors"][0]["blocked_since_start"], 2);
    assert_eq!(
        (&json["gateway"], &json["site"]),
        (&"gw-test".into(), &"site-test".into())
    );
    // An audit log that cannot be written makes the daemon unhealthy, and says why.
    *control.audit.as_ref().unwrap().last_error.lock().unwrap() =
        Some("No space left on device".into());
    let (status_line, body) = get(addr, "/healthz");
    assert!(
        status_line.contains("503") && body.contains("No space left"),
        "{body}"
    );
}

#[test]
fn passwords_are_asked_refusals_counted_and_nothing_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  prometheus: '{}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            bcrypt::hash("scrape", 4).unwrap()
        ),
    )
    .unwrap();
    let mut plane = control_plane(true);
    plane.web = Some(Arc::new(WebConfigSource::load(&web).unwrap()));
    let control = Arc::new(plane);
    let addr = spawn("127.0.0.1:0".parse().unwrap(), Arc::clone(&control)).unwrap();
    let (head, _) = request(addr, "GET", "/metrics", "");
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    assert!(
        head.contains("www-authenticate: Basic realm=\"telestrip\""),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    // "prometheus:wrong" and "prometheus:scrape" in base64.
    let (head, _) = request(
        addr,
        "GET",
        "/",
        "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n",
    );
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    let right = "Authorization: Basic cHJvbWV0aGV1czpzY3JhcGU=\r\n";
    for path in ["/", "/status.json", "/metrics", "/healthz", "/readyz"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let (head, _) = request(addr, method, path, right);
            assert!(head.starts_with("HTTP/1.0 405"), "{method} {path}: {head}");
        }
    }
    let (head, body) = request(addr, "GET", "/metrics", right);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    for (reason, count) in [
        ("no_credentials", 1),
        ("bad_credentials", 1),
        ("method", 20),
        ("tls_handshake", 0),
    ] {
        let line = format!("telestrip_http_requests_refused_total{{reason=\"{reason}\"}} {count}");
        assert!(body.contains(&line), "{line} in {body}");
    }
    assert!(body.contains("telestrip_http_web_config_reloads_total{result=\"failed\"} 0"));
}

/// GET over TLS with rustls, trusting the test CA, with the test client certificate when
/// `with_certificate`: the status line, or the error.
fn get_over_tls(addr: SocketAddr, path: &str, with_certificate: bool) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/web/testdata");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(testdata.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = if with_certificate {
        let chain = CertificateDer::pem_file_iter(testdata.join("client.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(testdata.join("client.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, std::net::TcpStream::connect(addr).unwrap());
    write!(tls, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

#[test]
fn client_certificates_from_the_configured_ca_are_required_when_asked_for() {
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/web/testdata");
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.pem\n  key_file: {0}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.pem\n",
            testdata.display()
        ),
    )
    .unwrap();
    let mut plane = control_plane(true);
    plane.web = Some(Arc::new(WebConfigSource::load(&web).unwrap()));
    let control = Arc::new(plane);
    let addr = spawn("127.0.0.1:0".parse().unwrap(), Arc::clone(&control)).unwrap();
    assert_eq!(
        get_over_tls(addr, "/healthz", true).as_deref(),
        Ok("HTTP/1.0 200 OK")
    );
    let refused = get_over_tls(addr, "/healthz", false);
    assert!(refused.is_err(), "{refused:?}");
    // Plain HTTP to the TLS port is no request either.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    write!(plain, "GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // Both counted once the server has seen the handshakes fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while control.http.tls_handshake.load(Ordering::Relaxed) < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(control.http.tls_handshake.load(Ordering::Relaxed), 2);
}
