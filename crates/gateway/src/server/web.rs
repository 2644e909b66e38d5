//! The control plane's web configuration: TLS, basic authentication, response headers and a
//! rate limit, read from a file in the format of the Prometheus exporter toolkit
//! (`--web.config.file` of node_exporter and the other exporters), so a site that already
//! serves its exporters over TLS with passwords reuses its certificates, users and scrape
//! configurations. Paths in the file are relative to the file's directory, as there.
//!
//! What the toolkit has and telestrip does not: HTTP/2 (`http2` is read and ignored: the
//! server speaks HTTP/1.1), client certificates without verification
//! (`RequestClientCert`, `RequireAnyClientCert`), `client_allowed_sans`, TLS 1.0 and 1.1,
//! and the curves and suites rustls does not implement. Each is refused with a message
//! rather than ignored.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Successful logins remembered, so a scrape every few seconds costs one bcrypt check,
/// not one per request (the toolkit caches them too). Cleared when full.
const AUTH_CACHE_ENTRIES: usize = 64;

/// A bcrypt hash at the toolkit's documented cost (10): an unknown user is checked against
/// it, so a refusal takes as long whether or not the user exists (a match still refuses).
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("no such user", 10).unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    /// Read for compatibility; the server speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitConfig {
    interval: String,
    burst: u32,
}

/// A web configuration, loaded and checked: what each connection is served with.
#[derive(Debug)]
pub struct WebConfig {
    /// `None`: plain HTTP (the file may still ask for passwords).
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash; empty: no password asked.
    users: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<RateLimit>,
    /// The files the configuration was read from, with what they looked like then.
    sources: Vec<Stamp>,
    /// Whether client certificates are required (for the start-up log and `config check`).
    client_certificates: bool,
}

/// A token bucket: `burst` requests at once, then one per `interval`.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    burst: u32,
    bucket: Mutex<(f64, Instant)>,
}

/// Why a request was refused before it reached a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoCredentials,
    BadCredentials,
    RateLimited,
}

/// A file as it looked when it was read: path, modification time, length.
type Stamp = (PathBuf, Option<SystemTime>, u64);

/// Whether any of the files changed since they were stamped.
fn stale(stamps: &[Stamp]) -> bool {
    stamps.iter().any(|old| stamp(&old.0) != *old)
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok();
    (
        path.to_path_buf(),
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.map_or(0, |m| m.len()),
    )
}

impl WebConfig {
    /// Reads and checks a web configuration file; errors name the file (and line).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_noting(path, &mut Vec::new())
    }

    /// [`WebConfig::load`], stamping in `touched` every file it reads as it goes, so that
    /// a load that fails is known to be worth trying again only once one of them changes.
    fn load_noting(path: &Path, touched: &mut Vec<Stamp>) -> anyhow::Result<Self> {
        let name = path.display().to_string();
        // Stamped before it is read: a change while it is read is seen next time.
        touched.push(stamp(path));
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{name}: cannot read: {e}"))?;
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}", crate::rules::yaml_error(&name, &e)))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::build(file, dir, touched).map_err(|e| anyhow::anyhow!("{name}: {e}"))
    }

    /// Checks text as a web configuration file in `dir` (tests, `config check`).
    pub fn from_text(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let file: WebConfigFile = serde_yaml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", crate::rules::yaml_error("web config", &e)))?;
        Self::build(file, dir, &mut Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn build(file: WebConfigFile, dir: &Path, sources: &mut Vec<Stamp>) -> Result<Self, String> {
        let mut client_certificates = false;
        let tls = match file.tls_server_config {
            Some(tls) if tls.has_certificate() => {
                // VerifyClientCertIfGiven lets clients without one in: not a gate.
                client_certificates =
                    tls.client_auth_type.as_deref() == Some("RequireAndVerifyClientCert");
                Some(Arc::new(tls.server_config(dir, sources)?))
            }
            // As in the toolkit: a section without certificate or key serves plain HTTP.
            _ => None,
        };
        for (user, hash) in &file.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(format!(
                    "basic_auth_users: {user:?} is not a user name (empty, or with ':')"
                ));
            }
            if let Err(error) = hash.parse::<bcrypt::HashParts>() {
                return Err(format!(
                    "basic_auth_users: {user}: not a bcrypt hash ({error}); make one with \
                     `telestrip config hash-password` or `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                ));
            }
        }
        let headers = match file.http_server_config {
            Some(http) => response_headers(&http.headers)?,
            None => Vec::new(),
        };
        let rate_limit = match file.rate_limit {
            Some(limit) => {
                let interval = humantime::parse_duration(&limit.interval)
                    .map_err(|e| format!("rate_limit.interval: {:?}: {e}", limit.interval))?;
                // An interval of 0 turns the limiter off, as in the toolkit.
                (!interval.is_zero()).then(|| RateLimit {
                    interval,
                    burst: limit.burst.max(1),
                    bucket: Mutex::new((f64::from(limit.burst.max(1)), Instant::now())),
                })
            }
            None => None,
        };
        Ok(Self {
            tls,
            users: file.basic_auth_users,
            headers,
            rate_limit,
            sources: std::mem::take(sources),
            client_certificates,
        })
    }

    /// Whether any file it was read from changed since.
    pub fn changed(&self) -> bool {
        stale(&self.sources)
    }

    /// One line for the start-up log and `config check`.
    pub fn summary(&self) -> String {
        let mut parts = vec![if self.tls.is_some() {
            "TLS".to_string()
        } else {
            "plain HTTP".to_string()
        }];
        if self.client_certificates {
            parts.push("client certificates".into());
        }
        parts.push(match self.users.len() {
            0 => "no passwords".into(),
            1 => "basic auth for 1 user".into(),
            n => format!("basic auth for {n} users"),
        });
        if let Some(limit) = &self.rate_limit {
            parts.push(format!(
                "at most {} requests at once, then one every {}",
                limit.burst,
                humantime::format_duration(limit.interval)
            ));
        }
        parts.join(", ")
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Whether clients must show a certificate the configured CA signed.
    pub fn verifies_clients(&self) -> bool {
        self.client_certificates
    }

    /// Whether the file asks for passwords.
    pub fn authenticates(&self) -> bool {
        !self.users.is_empty()
    }

    /// The headers every response carries.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Takes a token from the bucket; false when it is empty.
    pub fn admit(&self) -> bool {
        let Some(limit) = &self.rate_limit else {
            return true;
        };
        let mut bucket = limit.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() / limit.interval.as_secs_f64();
        bucket.0 = (bucket.0 + refill).min(f64::from(limit.burst));
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Checks the request's basic-auth credentials (bcrypt, slow on purpose: call it off
    /// the server's thread). `Ok` when the file asks for none.
    pub fn authenticate(&self, headers: &HeaderMap, cache: &AuthCache) -> Result<(), Refusal> {
        if self.users.is_empty() {
            return Ok(());
        }
        let (user, password) = basic_credentials(headers).ok_or(Refusal::NoCredentials)?;
        let hash = self.users.get(&user);
        let key = cache_key(&user, hash.map_or("", String::as_str), &password);
        if hash.is_some() && cache.contains(&key) {
            return Ok(());
        }
        let hash: &str = match hash {
            Some(hash) => hash,
            None => unknown_user_hash(),
        };
        // An unknown user is checked against a hash no password matches: same cost.
        let matches = bcrypt::verify(&password, hash).unwrap_or(false);
        if matches && self.users.contains_key(&user) {
            cache.insert(key);
            Ok(())
        } else {
            Err(Refusal::BadCredentials)
        }
    }
}

/// Successful logins, by a hash of user, password hash and password.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashSet<[u8; 32]>>);

impl AuthCache {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= AUTH_CACHE_ENTRIES {
            set.clear();
        }
        set.insert(key);
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user, hash, password] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().into()
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The response headers the toolkit allows, checked as it checks them.
fn response_headers(
    configured: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    const ALLOWED: [&str; 5] = [
        "Content-Security-Policy",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "X-XSS-Protection",
        "Strict-Transport-Security",
    ];
    let mut headers = Vec::new();
    for (name, value) in configured {
        if !ALLOWED.contains(&name.as_str()) {
            return Err(format!(
                "http_server_config.headers: {name} is not one of {}",
                ALLOWED.join(", ")
            ));
        }
        if value.is_empty() {
            continue;
        }
        let valid = match name.as_str() {
            "X-Frame-Options" => ["deny", "sameorigin"].contains(&value.to_lowercase().as_str()),
            "X-Content-Type-Options" => value.eq_ignore_ascii_case("nosniff"),
            _ => true,
        };
        let header_value = HeaderValue::from_str(value)
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| {
                format!("http_server_config.headers: {name}: {value:?} is not a valid value")
            })?;
        headers.push((
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?,
            header_value,
        ));
    }
    Ok(headers)
}

impl TlsServerConfig {
    fn has_certificate(&self) -> bool {
        self.cert.is_some()
            || self.key.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
    }

    fn server_config(
        &self,
        dir: &Path,
        sources: &mut Vec<(PathBuf, Option<SystemTime>, u64)>,
    ) -> Result<ServerConfig, String> {
        let mut read =
            |field: &str, inline: &Option<String>, file: &Option<PathBuf>| match (inline, file) {
                (Some(_), Some(_)) => Err(format!(
                    "tls_server_config: {field} and {field}_file are both given; give one"
                )),
                (Some(text), None) => Ok(Some((text.as_bytes().to_vec(), field.to_string()))),
                (None, Some(file)) => {
                    let path = dir.join(file);
                    sources.push(stamp(&path));
                    std::fs::read(&path)
                        .map(|bytes| Some((bytes, path.display().to_string())))
                        .map_err(|e| {
                            format!("tls_server_config.{field}_file: {}: {e}", path.display())
                        })
                }
                (None, None) => Ok(None),
            };
        let (cert_pem, cert_from) = read("cert", &self.cert, &self.cert_file)?
            .ok_or("tls_server_config: a key without a certificate (cert_file or cert)")?;
        let (key_pem, key_from) = read("key", &self.key, &self.key_file)?
            .ok_or("tls_server_config: a certificate without a key (key_file or key)")?;
        let ca = read("client_ca", &self.client_ca, &self.client_ca_file)?;

        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{cert_from}: not a PEM certificate chain: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{cert_from}: no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{key_from}: not a PEM private key: {e}"))?;

        if !self.client_allowed_sans.is_empty() {
            return Err(
                "tls_server_config.client_allowed_sans: not supported by telestrip; \
                 use a client CA of its own for the scrapers instead"
                    .into(),
            );
        }
        let provider = Arc::new(self.provider()?);
        let versions = self.versions()?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| format!("tls_server_config: {e}"))?;
        let auth_type = self.client_auth_type.as_deref().unwrap_or("NoClientCert");
        let builder = match auth_type {
            "NoClientCert" => {
                if ca.is_some() {
                    return Err(
                        "tls_server_config: a client CA is given but client_auth_type \
                         is NoClientCert; set RequireAndVerifyClientCert"
                            .into(),
                    );
                }
                builder.with_no_client_auth()
            }
            "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
                let (ca_pem, ca_from) = ca.ok_or_else(|| {
                    format!("tls_server_config: client_auth_type {auth_type} needs client_ca_file")
                })?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                    let cert =
                        cert.map_err(|e| format!("{ca_from}: not a PEM certificate: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{ca_from}: not a usable CA certificate: {e}"))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                let verifier = if auth_type == "VerifyClientCertIfGiven" {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("{ca_from}: client CA: {e}"))?,
                )
            }
            "RequestClientCert" | "RequireAnyClientCert" => {
                return Err(format!(
                    "tls_server_config.client_auth_type: {auth_type} accepts certificates \
                     without checking them; telestrip supports RequireAndVerifyClientCert and \
                     VerifyClientCertIfGiven"
                ))
            }
            other => {
                return Err(format!(
                    "tls_server_config.client_auth_type: {other:?} is not one of \
                     NoClientCert, RequireAndVerifyClientCert, VerifyClientCertIfGiven"
                ))
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{key_from} does not fit {cert_from}: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        Ok(config)
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
        let rank = |field: &str, value: &Option<String>, default: u8| match value.as_deref() {
            None => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(old @ ("TLS10" | "TLS11")) => Err(format!(
                "tls_server_config.{field}: {old} is not supported (TLS 1.2 and 1.3 only)"
            )),
            Some(other) => Err(format!(
                "tls_server_config.{field}: {other:?} is not TLS12 or TLS13"
            )),
        };
        let min = rank("min_version", &self.min_version, 12)?;
        let max = rank("max_version", &self.max_version, 13)?;
        if min > max {
            return Err("tls_server_config: min_version is above max_version".into());
        }
        Ok(
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, version)| version)
                .collect(),
        )
    }

    /// rustls with ring, narrowed to the configured TLS 1.2 suites and curves.
    fn provider(&self) -> Result<rustls::crypto::CryptoProvider, String> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            let mut suites: Vec<_> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect();
            for name in &self.cipher_suites {
                let suite = rustls::crypto::ring::ALL_CIPHER_SUITES
                    .iter()
                    .find(|s| {
                        s.version() == &rustls::version::TLS12
                            && format!("{:?}", s.suite()) == *name
                    })
                    .ok_or_else(|| {
                        format!(
                            "tls_server_config.cipher_suites: {name} is not one of {}",
                            rustls::crypto::ring::ALL_CIPHER_SUITES
                                .iter()
                                .filter(|s| s.version() == &rustls::version::TLS12)
                                .map(|s| format!("{:?}", s.suite()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                suites.push(*suite);
            }
            // The configured order is the server's preference.
            suites.sort_by_key(|s| {
                self.cipher_suites
                    .iter()
                    .position(|n| *n == format!("{:?}", s.suite()))
                    .unwrap_or(0)
            });
            provider.cipher_suites = suites;
        }
        if !self.curve_preferences.is_empty() {
            let mut groups = Vec::new();
            for name in &self.curve_preferences {
                let group: &'static dyn rustls::crypto::SupportedKxGroup = match name.as_str() {
                    "X25519" => rustls::crypto::ring::kx_group::X25519,
                    "CurveP256" => rustls::crypto::ring::kx_group::SECP256R1,
                    "CurveP384" => rustls::crypto::ring::kx_group::SECP384R1,
                    other => {
                        return Err(format!(
                            "tls_server_config.curve_preferences: {other} is not one of \
                             X25519, CurveP256, CurveP384"
                        ))
                    }
                };
                groups.push(group);
            }
            provider.kx_groups = groups;
        }
        Ok(provider)
    }
}

/// The web configuration in force, read again when one of its files changes (certificates
/// renewed by an ACME client, a user added), as the toolkit reads it for every connection.
/// A change that does not load keeps the configuration in force, and is logged once; it is
/// tried again only when one of the files that load read changes again, not on every
/// connection (a scrape storm against a broken file would parse it, and its keys, each time).
pub struct WebConfigSource {
    path: PathBuf,
    current: Mutex<Arc<WebConfig>>,
    /// The last reload that failed; cleared by a good one.
    failed: Mutex<Option<FailedLoad>>,
    pub reloads_ok: std::sync::atomic::AtomicU64,
    /// Distinct failures (each logged once).
    pub reloads_failed: std::sync::atomic::AtomicU64,
    /// Loads tried after a change, good or not.
    pub reload_attempts: std::sync::atomic::AtomicU64,
}

struct FailedLoad {
    error: String,
    /// The files that load read, as they were.
    touched: Vec<Stamp>,
}

impl WebConfigSource {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            current: Mutex::new(Arc::new(WebConfig::load(path)?)),
            failed: Mutex::new(None),
            reloads_ok: Default::default(),
            reloads_failed: Default::default(),
            reload_attempts: Default::default(),
        })
    }

    /// Whether the files changed since into something that does not load.
    pub fn failing(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<WebConfig> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let worth_trying = failed.as_ref().is_none_or(|last| stale(&last.touched));
        if worth_trying && !current.changed() {
            // Every file is again as it was when the configuration in force was read
            // (restored with its old time, e.g. `cp -p` from a backup): nothing to read.
            if failed.take().is_some() {
                crate::log_line!(
                    Info,
                    "telestrip: control plane: {} is back to the configuration in force",
                    self.path.display()
                );
            }
        } else if worth_trying {
            self.reload_attempts.fetch_add(1, Relaxed);
            let mut touched = Vec::new();
            match WebConfig::load_noting(&self.path, &mut touched) {
                Ok(config) => {
                    *current = Arc::new(config);
                    *failed = None;
                    self.reloads_ok.fetch_add(1, Relaxed);
                    crate::log_line!(
                        Info,
                        "telestrip: control plane: {} read again ({})",
                        self.path.display(),
                        current.summary()
                    );
                }
                Err(error) => {
                    let error = error.to_string();
                    if failed.as_ref().is_none_or(|last| last.error != error) {
                        self.reloads_failed.fetch_add(1, Relaxed);
                        crate::log_line!(
                            Error,
                            "telestrip: control plane: {error}; the configuration read before stays in force"
                        );
                    }
                    *failed = Some(FailedLoad { error, touched });
                }
            }
        }
        Arc::clone(&current)
    }
}

#[cfg(test)]
mod tests;
