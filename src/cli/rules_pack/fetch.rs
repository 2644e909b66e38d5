//! Reading a published pack from where it is: an HTTP(S) URL (conditional requests, retries
//! with backoff and Retry-After), a local directory, or a tarball of one.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rulepack::manifest::{MANIFEST, MAX_MANIFEST_BYTES};

/// The answer to a request.
pub enum Fetched {
    /// The server says the manifest did not change since the validators sent.
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Why a file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Worth trying again later: the server is down, busy or failing.
    #[error("{0}")]
    Unreachable(String),
    /// The source answered, but not with the file.
    #[error("{0}")]
    Refused(String),
    /// The file is larger than it may be.
    #[error("{what}: larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
}

/// HTTP validators of the last manifest fetched from this source.
#[derive(Default, Clone)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Where the pack comes from.
pub enum PackSource {
    Http {
        base: String,
        agent: ureq::Agent,
        attempts: u32,
        /// Longest wait between tries (a Retry-After above it is cut to it).
        max_wait: Duration,
    },
    Directory(PathBuf),
    /// A tarball read into memory: the directory holding `manifest.json`, by file name.
    Tarball {
        path: PathBuf,
        files: HashMap<String, Vec<u8>>,
    },
}

/// Largest tarball read (a pack with a few large imported lists).
const MAX_TARBALL_BYTES: u64 = 1 << 30;

impl PackSource {
    pub fn open(source: &str, attempts: u32, timeout: Duration) -> Result<Self, FetchError> {
        if source.starts_with("http://") || source.starts_with("https://") {
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build();
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .tls_config(tls)
                .user_agent(concat!("telestrip/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            let base = if source.ends_with('/') {
                source.to_string()
            } else {
                format!("{source}/")
            };
            return Ok(PackSource::Http {
                base,
                agent,
                attempts: attempts.max(1),
                max_wait: Duration::from_secs(300),
            });
        }
        let path = PathBuf::from(source);
        if path.is_dir() {
            return Ok(PackSource::Directory(path));
        }
        if path.is_file() {
            let files = read_tarball(&path)?;
            return Ok(PackSource::Tarball { path, files });
        }
        Err(FetchError::Unreachable(format!(
            "{source}: neither an http(s) URL nor an existing directory or tarball"
        )))
    }

    /// Fetches `name` (at most `limit` bytes); for the manifest, `validators` make the
    /// request conditional.
    pub fn get(
        &self,
        name: &str,
        limit: u64,
        validators: Option<&Validators>,
    ) -> Result<Fetched, FetchError> {
        match self {
            PackSource::Http {
                base,
                agent,
                attempts,
                max_wait,
            } => http_get(
                agent,
                &format!("{base}{name}"),
                limit,
                validators,
                *attempts,
                *max_wait,
            ),
            PackSource::Directory(dir) => {
                let path = dir.join(name);
                let bytes = read_limited(&path, limit)?;
                Ok(Fetched::Body {
                    bytes,
                    etag: None,
                    last_modified: None,
                })
            }
            PackSource::Tarball { path, files } => match files.get(name) {
                Some(bytes) if bytes.len() as u64 <= limit => Ok(Fetched::Body {
                    bytes: bytes.clone(),
                    etag: None,
                    last_modified: None,
                }),
                Some(_) => Err(FetchError::TooLarge {
                    what: format!("{name} in {}", path.display()),
                    limit,
                }),
                None => Err(FetchError::Refused(format!(
                    "{name}: not in {}",
                    path.display()
                ))),
            },
        }
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FetchError> {
    let file = std::fs::File::open(path)
        .map_err(|e| FetchError::Refused(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FetchError::Refused(format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads a `.tar` or gzip-compressed tar (detected by its magic bytes) into memory: the
/// regular files of the directory that holds `manifest.json`.
fn read_tarball(path: &Path) -> Result<HashMap<String, Vec<u8>>, FetchError> {
    let bad = |e: &dyn std::fmt::Display| FetchError::Refused(format!("{}: {e}", path.display()));
    let bytes = read_limited(path, MAX_TARBALL_BYTES)?;
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes.as_slice()).take(MAX_TARBALL_BYTES))
    } else {
        Box::new(bytes.as_slice())
    };
    let mut archive = tar::Archive::new(reader);
    let mut by_path: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    for entry in archive.entries().map_err(|e| bad(&e))? {
        let mut entry = entry.map_err(|e| bad(&e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| bad(&e))?.into_owned();
        let mut content = Vec::new();
        entry
            .by_ref()
            .take(MAX_TARBALL_BYTES)
            .read_to_end(&mut content)
            .map_err(|e| bad(&e))?;
        by_path.insert(name, content);
    }
    let root = by_path
        .keys()
        .filter(|p| p.file_name().is_some_and(|n| n == MANIFEST))
        .min_by_key(|p| p.components().count())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| bad(&format!("no {MANIFEST} in the archive")))?;
    Ok(by_path
        .into_iter()
        .filter(|(p, _)| p.parent() == Some(root.as_path()))
        .filter_map(|(p, content)| Some((p.file_name()?.to_str()?.to_string(), content)))
        .collect())
}

fn http_get(
    agent: &ureq::Agent,
    url: &str,
    limit: u64,
    validators: Option<&Validators>,
    attempts: u32,
    max_wait: Duration,
) -> Result<Fetched, FetchError> {
    let mut last_error = String::new();
    for attempt in 0..attempts {
        let mut request = agent.get(url);
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(date) = &v.last_modified {
                request = request.header("If-Modified-Since", date);
            }
        }
        let mut wait = Duration::from_secs(1 << attempt.min(8));
        match request.call() {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                match status {
                    200 => {
                        let (etag, last_modified) = (header("etag"), header("last-modified"));
                        let bytes = response
                            .body_mut()
                            .with_config()
                            .limit(limit)
                            .read_to_vec()
                            .map_err(|e| match e {
                                ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge {
                                    what: url.to_string(),
                                    limit,
                                },
                                other => FetchError::Unreachable(format!("{url}: {other}")),
                            });
                        match bytes {
                            Ok(bytes) => {
                                return Ok(Fetched::Body {
                                    bytes,
                                    etag,
                                    last_modified,
                                })
                            }
                            Err(FetchError::Unreachable(e)) => last_error = e,
                            Err(refused) => return Err(refused),
                        }
                    }
                    304 if validators.is_some() => return Ok(Fetched::NotModified),
                    429 | 500..=599 => {
                        if let Some(seconds) = header("retry-after").and_then(|v| retry_after(&v)) {
                            wait = seconds;
                        }
                        last_error = format!("{url}: HTTP {status}");
                    }
                    _ => return Err(FetchError::Refused(format!("{url}: HTTP {status}"))),
                }
            }
            Err(error) => last_error = format!("{url}: {error}"),
        }
        if attempt + 1 < attempts {
            let wait = wait.min(max_wait);
            eprintln!(
                "telestrip: {last_error}; trying again in {} s ({} of {attempts})",
                wait.as_secs(),
                attempt + 2
            );
            std::thread::sleep(wait);
        }
    }
    Err(FetchError::Unreachable(last_error))
}

/// Retry-After as seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Largest manifest or signature fetched.
pub const MANIFEST_LIMIT: u64 = MAX_MANIFEST_BYTES;
