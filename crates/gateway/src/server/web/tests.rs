use super::*;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/web/testdata")
}

fn config(text: &str) -> anyhow::Result<WebConfig> {
    WebConfig::from_text(text, &testdata())
}

fn error(text: &str) -> String {
    config(text).unwrap_err().to_string()
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
    );
    headers
}

/// A cost-4 hash keeps the tests fast; the server reads any cost.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn certificate_and_key_files_are_read_relative_to_the_file() {
    let web =
        config("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n").unwrap();
    assert!(web.tls.is_some());
    assert_eq!(web.scheme(), "https");
    assert!(!web.authenticates());
    assert_eq!(web.summary(), "TLS, no passwords");
    // The same, inline.
    let cert = std::fs::read_to_string(testdata().join("server.pem")).unwrap();
    let key = std::fs::read_to_string(testdata().join("server.key")).unwrap();
    let inline = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    assert!(config(&inline).unwrap().tls.is_some());
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn an_empty_file_or_section_serves_plain_http_as_the_toolkit_does() {
    assert!(config("{}").unwrap().tls.is_none());
    assert!(config("tls_server_config: {}\n").unwrap().tls.is_none());
    let web = config(&format!("basic_auth_users:\n  alice: '{}'\n", hash("x"))).unwrap();
    assert_eq!(web.summary(), "plain HTTP, basic auth for 1 user");
}

#[test]
fn bad_tls_settings_say_what_is_wrong() {
    assert!(error("tls_server_config:\n  cert_file: server.pem\n")
        .contains("a certificate without a key"),);
    assert!(
        error("tls_server_config:\n  cert_file: nope.pem\n  key_file: server.key\n")
            .contains("nope.pem: No such file")
    );
    assert!(
        error("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n")
            .contains("does not fit"),
        "{}",
        error("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n")
    );
    assert!(
        error("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n")
            .contains("no certificate in it")
    );
    let base = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    assert!(error(&format!("{base}  min_version: TLS10\n")).contains("TLS10 is not supported"));
    assert!(error(&format!(
        "{base}  min_version: TLS13\n  max_version: TLS12\n"
    ))
    .contains("min_version is above max_version"));
    assert!(
        error(&format!("{base}  client_auth_type: RequireAnyClientCert\n"))
            .contains("without checking them")
    );
    assert!(error(&format!(
        "{base}  client_auth_type: RequireAndVerifyClientCert\n"
    ))
    .contains("needs client_ca_file"));
    assert!(error(&format!("{base}  client_ca_file: ca.pem\n")).contains("NoClientCert"));
    assert!(error(&format!(
        "{base}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"
    ))
    .contains("TLS_RSA_WITH_RC4_128_SHA is not one of TLS_ECDHE"));
    assert!(error(&format!("{base}  curve_preferences: [CurveP521]\n")).contains("CurveP521"));
    assert!(
        error(&format!("{base}  client_allowed_sans: [prometheus]\n")).contains("not supported")
    );
    // A typo is an error with its line, not a setting silently ignored.
    let typo = error(&format!("{base}  keyfile: server.key\n"));
    assert!(typo.contains("line 4") || typo.contains(":4:"), "{typo}");
    assert!(typo.contains("keyfile"), "{typo}");
}

#[test]
fn the_settings_exporters_use_are_read() {
    let web = config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
         min_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  \
         curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
         http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
         Strict-Transport-Security: max-age=31536000\n\
         rate_limit:\n  interval: 1s\n  burst: 2\n",
    )
    .unwrap();
    let tls = web.tls.as_ref().unwrap();
    assert!(!tls.ignore_client_order);
    assert_eq!(
        web.summary(),
        "TLS, client certificates, no passwords, at most 2 requests at once, then one every 1s"
    );
    assert_eq!(web.headers().len(), 2);
    assert!(
        error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n")
            .contains("not a valid value")
    );
    assert!(
        error("http_server_config:\n  headers:\n    X-Powered-By: me\n").contains("not one of")
    );
}

#[test]
fn passwords_are_checked_against_bcrypt_hashes() {
    let web = config(&format!(
        "basic_auth_users:\n  prometheus: '{}'\n  officer: '{}'\n",
        hash("scrape secret"),
        hash("other")
    ))
    .unwrap();
    let cache = AuthCache::default();
    assert_eq!(
        web.authenticate(&HeaderMap::new(), &cache),
        Err(Refusal::NoCredentials)
    );
    assert_eq!(
        web.authenticate(&basic("prometheus", "scrape secret"), &cache),
        Ok(())
    );
    assert_eq!(
        web.authenticate(&basic("prometheus", "Scrape secret"), &cache),
        Err(Refusal::BadCredentials)
    );
    // Another user's password, and a user that does not exist.
    assert_eq!(
        web.authenticate(&basic("officer", "scrape secret"), &cache),
        Err(Refusal::BadCredentials)
    );
    assert_eq!(
        web.authenticate(&basic("nobody", "scrape secret"), &cache),
        Err(Refusal::BadCredentials)
    );
    // Bearer tokens and broken headers are no credentials.
    let mut bearer = HeaderMap::new();
    bearer.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer abc"),
    );
    assert_eq!(
        web.authenticate(&bearer, &cache),
        Err(Refusal::NoCredentials)
    );
    let mut broken = HeaderMap::new();
    broken.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic !!!"),
    );
    assert_eq!(
        web.authenticate(&broken, &cache),
        Err(Refusal::NoCredentials)
    );
}

#[test]
fn hashes_from_htpasswd_are_read() {
    // `htpasswd -nbBC 10 "" telestrip` (Apache's $2y$, as the toolkit's docs suggest).
    let web = config(
        "basic_auth_users:\n  a: $2y$10$yvtvSmNA6qAimNU1gwtUZOosXfRcuM6ZCQ8ZSKzu4WNfeE/rKIywe\n",
    )
    .unwrap();
    let cache = AuthCache::default();
    assert_eq!(web.authenticate(&basic("a", "telestrip"), &cache), Ok(()));
    assert!(error("basic_auth_users:\n  a: plaintext\n").contains("not a bcrypt hash"));
    assert!(error(&format!("basic_auth_users:\n  'a:b': '{}'\n", hash("x"))).contains("':'"));
}

#[test]
fn a_login_is_remembered_only_for_the_same_password_and_hash() {
    let cache = AuthCache::default();
    let web = config(&format!("basic_auth_users:\n  p: '{}'\n", hash("right"))).unwrap();
    assert_eq!(web.authenticate(&basic("p", "right"), &cache), Ok(()));
    assert_eq!(cache.0.lock().unwrap().len(), 1);
    assert_eq!(web.authenticate(&basic("p", "right"), &cache), Ok(()));
    assert_eq!(
        web.authenticate(&basic("p", "wrong"), &cache),
        Err(Refusal::BadCredentials)
    );
    // The user's hash changed: the remembered login does not let the old password in.
    let changed = config(&format!("basic_auth_users:\n  p: '{}'\n", hash("new"))).unwrap();
    assert_eq!(
        changed.authenticate(&basic("p", "right"), &cache),
        Err(Refusal::BadCredentials)
    );
    for i in 0..(AUTH_CACHE_ENTRIES + 5) {
        cache.insert(cache_key("u", "h", &i.to_string()));
    }
    assert!(cache.0.lock().unwrap().len() <= AUTH_CACHE_ENTRIES);
}

#[test]
fn the_rate_limit_lets_a_burst_through_then_one_per_interval() {
    let web = config("rate_limit:\n  interval: 1h\n  burst: 3\n").unwrap();
    assert_eq!((0..5).filter(|_| web.admit()).count(), 3);
    let off = config("rate_limit:\n  interval: 0s\n  burst: 1\n").unwrap();
    assert!((0..100).all(|_| off.admit()));
    assert!(error("rate_limit:\n  interval: soon\n  burst: 1\n").contains("rate_limit.interval"));
}

#[test]
fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_one_in_force() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["server.pem", "server.key"] {
        std::fs::copy(testdata().join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().join("web.yml");
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    std::fs::write(&path, tls).unwrap();
    let source = WebConfigSource::load(&path).unwrap();
    let first = source.current();
    assert!(
        Arc::ptr_eq(&first, &source.current()),
        "unchanged: not read again"
    );
    // A user added.
    std::fs::write(
        &path,
        format!("{tls}basic_auth_users:\n  p: '{}'\n", hash("x")),
    )
    .unwrap();
    let second = source.current();
    assert!(second.authenticates());
    assert!(!source.failing());
    assert_eq!(
        source.reloads_ok.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let key_time = std::fs::metadata(dir.path().join("server.key"))
        .unwrap()
        .modified()
        .unwrap();
    // The key replaced by one that does not fit: the configuration before stays.
    std::fs::copy(testdata().join("other.key"), dir.path().join("server.key")).unwrap();
    let third = source.current();
    assert!(Arc::ptr_eq(&second, &third));
    assert!(source.failing());
    source.current();
    assert_eq!(
        source
            .reloads_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the same failure is counted and logged once"
    );
    // The right key restored from a backup with its old time (`cp -p`): the files are
    // those of the configuration in force again, which is no longer failing.
    let key = dir.path().join("server.key");
    std::fs::copy(testdata().join("server.key"), &key).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&key)
        .unwrap()
        .set_modified(key_time)
        .unwrap();
    let fourth = source.current();
    assert!(Arc::ptr_eq(&second, &fourth), "nothing to read again");
    assert!(!source.failing());
}

#[test]
fn a_broken_file_is_tried_again_only_when_a_file_it_read_changes() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, "").unwrap();
    let source = WebConfigSource::load(&path).unwrap();
    // Points at a key that is not there yet.
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";
    std::fs::write(&path, tls).unwrap();
    for _ in 0..20 {
        source.current();
    }
    assert!(source.failing());
    assert_eq!(
        source.reload_attempts.load(Relaxed),
        1,
        "one try per change, not per connection"
    );
    // The files it asked for arrive: read again, and in force.
    for file in ["server.pem", "server.key"] {
        std::fs::copy(testdata().join(file), dir.path().join(file)).unwrap();
    }
    let now = source.current();
    assert!(!source.failing());
    assert!(now.summary().contains("TLS"), "{}", now.summary());
    assert_eq!(source.reload_attempts.load(Relaxed), 2);
    assert_eq!(source.reloads_ok.load(Relaxed), 1);
}
