//! The manifest of a rule pack and its minisign signature (`manifest.json` and
//! `manifest.json.minisig`, which the `minisign` tool verifies too).

use std::io::Cursor;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File name of the manifest in a pack.
pub const MANIFEST: &str = "manifest.json";
/// File name of the manifest's signature in a pack.
pub const SIGNATURE: &str = "manifest.json.minisig";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Largest manifest or signature read (a pack of 10,000 files fits many times over).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest rule file a pack may carry (a 1M-name imported list is about 30 MB).
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// How far in the future `issued` may lie before the manifest is refused (clock skew).
pub const ISSUED_SKEW: Duration = Duration::from_secs(3600);

/// What a publisher signs: which files make the ruleset, in which version, valid until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Grows with every publication; an update never accepts one not above the last.
    pub ruleset_version: u64,
    /// RFC 3339, UTC.
    pub issued: String,
    /// RFC 3339, UTC: after this the pack is refused (an attacker cannot freeze a site on it).
    pub expires: String,
    /// The oldest telestrip that understands these rules.
    pub min_telestrip: String,
    pub files: Vec<PackFile>,
}

/// One rule file of a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// A plain file name (`microsoft.yaml`), never a path.
    pub name: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// Why a pack, or a part of it, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("the public key is not a minisign public key: {0}")]
    BadPublicKey(String),
    #[error("{0} is an HTML page, not a signature or manifest (an error page of the server?)")]
    HtmlPage(&'static str),
    #[error("the signature cannot be read: {0}")]
    BadSignatureFormat(String),
    #[error("signed by key {found}, but the pinned key is {pinned}")]
    WrongKey { found: String, pinned: String },
    #[error("bad signature: the manifest was not signed by the pinned key {key} or was changed after signing")]
    BadSignature { key: String },
    #[error("the signed manifest cannot be read: {0}")]
    Malformed(String),
    #[error("manifest format {0} is not known to this telestrip (it reads format {FORMAT})")]
    UnknownFormat(u32),
    #[error("the manifest expired at {0}")]
    Expired(String),
    #[error("the manifest was issued at {0}, in the future (is this machine's clock right?)")]
    IssuedInFuture(String),
    #[error("the rules need telestrip {need} or newer; this is {have}")]
    TelestripTooOld { need: String, have: String },
    #[error("{0:?} is not a plain rule file name (letters, digits, '.', '-', '_', ending .yaml, .yml or .list)")]
    BadFileName(String),
    #[error("{0} is listed twice in the manifest")]
    DuplicateFile(String),
    #[error("{name}: {got} bytes, the manifest says {want}")]
    SizeMismatch { name: String, want: u64, got: u64 },
    #[error("{name}: SHA-256 {got}, the manifest says {want} (changed after signing, or a partial download)")]
    HashMismatch {
        name: String,
        want: String,
        got: String,
    },
}

/// A publisher's public key, pinned in the config.
#[derive(Clone)]
pub struct PublicKey {
    key: minisign::PublicKey,
    id: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    /// Reads a key as minisign writes it: the whole `minisign.pub` file (an untrusted comment
    /// line, then the key), or the key line alone (`RWQ...`).
    pub fn parse(text: &str) -> Result<Self, PackError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with("untrusted comment:"))
            .ok_or_else(|| PackError::BadPublicKey("empty".into()))?;
        let key = minisign::PublicKey::from_base64(line)
            .map_err(|e| PackError::BadPublicKey(e.to_string()))?;
        let id = key_id(key.keynum());
        Ok(Self { key, id })
    }

    /// The key id as minisign prints it (16 upper-case hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A minisign key number as minisign prints it: the 8 bytes as a little-endian number in hex.
pub fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// Whether bytes look like an HTML page (what a misconfigured server or proxy answers).
pub fn looks_like_html(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    text.starts_with("<!doctype html") || text.starts_with("<html") || text.starts_with("<head")
}

/// Verifies `signature` over `manifest_bytes` with the pinned key, then reads the manifest.
/// Validity in time, version and files are checked by [`Manifest::check`].
pub fn verify(
    key: &PublicKey,
    manifest_bytes: &[u8],
    signature: &[u8],
) -> Result<Manifest, PackError> {
    if looks_like_html(signature) {
        return Err(PackError::HtmlPage(SIGNATURE));
    }
    if looks_like_html(manifest_bytes) {
        return Err(PackError::HtmlPage(MANIFEST));
    }
    let text = std::str::from_utf8(signature)
        .map_err(|_| PackError::BadSignatureFormat("not text".into()))?;
    let signature = minisign::SignatureBox::from_string(text)
        .map_err(|e| PackError::BadSignatureFormat(e.to_string()))?;
    let found = key_id(signature.keynum());
    if found != key.id {
        return Err(PackError::WrongKey {
            found,
            pinned: key.id.clone(),
        });
    }
    minisign::verify(
        &key.key,
        &signature,
        Cursor::new(manifest_bytes),
        true,
        false,
        false,
    )
    .map_err(|_| PackError::BadSignature {
        key: key.id.clone(),
    })?;
    serde_json::from_slice(manifest_bytes).map_err(|e| PackError::Malformed(e.to_string()))
}

impl Manifest {
    /// The checks that need no other state: format, names, time, telestrip version.
    pub fn check(&self, now: SystemTime, telestrip_version: &str) -> Result<(), PackError> {
        if self.format != FORMAT {
            return Err(PackError::UnknownFormat(self.format));
        }
        let mut seen = std::collections::HashSet::new();
        for file in &self.files {
            if !valid_file_name(&file.name) {
                return Err(PackError::BadFileName(file.name.clone()));
            }
            if !seen.insert(file.name.as_str()) {
                return Err(PackError::DuplicateFile(file.name.clone()));
            }
            if file.bytes > MAX_FILE_BYTES
                || file.sha256.len() != 64
                || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(PackError::Malformed(format!(
                    "{}: size or SHA-256 out of range",
                    file.name
                )));
            }
        }
        if self.files.is_empty() {
            return Err(PackError::Malformed("no files".into()));
        }
        if self.expires_at()? <= now {
            return Err(PackError::Expired(self.expires.clone()));
        }
        if self.issued_at()? > now + ISSUED_SKEW {
            return Err(PackError::IssuedInFuture(self.issued.clone()));
        }
        if version_tuple(&self.min_telestrip) > version_tuple(telestrip_version) {
            return Err(PackError::TelestripTooOld {
                need: self.min_telestrip.clone(),
                have: telestrip_version.to_string(),
            });
        }
        Ok(())
    }

    pub fn expires_at(&self) -> Result<SystemTime, PackError> {
        parse_time("expires", &self.expires)
    }

    pub fn issued_at(&self) -> Result<SystemTime, PackError> {
        parse_time("issued", &self.issued)
    }

    /// The listed file `name`, if any.
    pub fn file(&self, name: &str) -> Option<&PackFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

impl PackFile {
    /// Describes `bytes` as the pack file `name`.
    pub fn of(name: &str, bytes: &[u8]) -> Self {
        Self {
            name: name.to_string(),
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        }
    }

    /// Checks downloaded or stored bytes against this entry.
    pub fn check(&self, bytes: &[u8]) -> Result<(), PackError> {
        if bytes.len() as u64 != self.bytes {
            return Err(PackError::SizeMismatch {
                name: self.name.clone(),
                want: self.bytes,
                got: bytes.len() as u64,
            });
        }
        let got = sha256_hex(bytes);
        if !got.eq_ignore_ascii_case(&self.sha256) {
            return Err(PackError::HashMismatch {
                name: self.name.clone(),
                want: self.sha256.clone(),
                got,
            });
        }
        Ok(())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A rule file name a pack may carry: no directories, no hidden files, `.yaml`/`.yml`, or
/// `.list` for the list files rules name (`domains_file`).
pub fn valid_file_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && (name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".list"))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn parse_time(field: &str, text: &str) -> Result<SystemTime, PackError> {
    humantime::parse_rfc3339(text)
        .map_err(|e| PackError::Malformed(format!("{field}: {text:?}: {e}")))
}

/// `1.2.3` as numbers for comparison (missing parts are 0, anything after `-` or `+` ignored).
fn version_tuple(version: &str) -> Vec<u64> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut parts: Vec<u64> = core
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    while parts.len() < 3 {
        parts.push(0);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (minisign::KeyPair, PublicKey) {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key = PublicKey::parse(&pair.pk.to_base64()).unwrap();
        (pair, key)
    }

    fn manifest(version: u64, expires: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            ruleset_version: version,
            issued: "2026-12-01T00:00:00Z".into(),
            expires: expires.into(),
            min_telestrip: "0.1.0".into(),
            files: vec![PackFile::of("a.yaml", b"rules")],
        }
    }

    fn sign(pair: &minisign::KeyPair, bytes: &[u8]) -> Vec<u8> {
        minisign::sign(Some(&pair.pk), &pair.sk, Cursor::new(bytes), None, None)
            .unwrap()
            .into_string()
            .into_bytes()
    }

    #[test]
    fn a_signed_manifest_verifies_and_a_changed_one_does_not() {
        let (pair, key) = keypair();
        let bytes = serde_json::to_vec(&manifest(7, "2027-01-01T00:00:00Z")).unwrap();
        let signature = sign(&pair, &bytes);
        assert_eq!(verify(&key, &bytes, &signature).unwrap().ruleset_version, 7);
        let changed = String::from_utf8(bytes)
            .unwrap()
            .replace("\"ruleset_version\":7", "\"ruleset_version\":8");
        assert!(matches!(
            verify(&key, changed.as_bytes(), &signature),
            Err(PackError::BadSignature { .. })
        ));
    }

    #[test]
    fn another_publishers_signature_names_both_keys() {
        let (pair, _) = keypair();
        let (_, pinned) = keypair();
        let bytes = serde_json::to_vec(&manifest(1, "2027-01-01T00:00:00Z")).unwrap();
        let error = verify(&pinned, &bytes, &sign(&pair, &bytes)).unwrap_err();
        assert!(matches!(error, PackError::WrongKey { .. }), "{error}");
        assert!(error.to_string().contains(pinned.id()));
    }

    #[test]
    fn an_html_page_is_named_as_such() {
        let (_, key) = keypair();
        let page = b"<!DOCTYPE html><html><body>404</body></html>";
        assert_eq!(
            verify(&key, b"{}", page).unwrap_err(),
            PackError::HtmlPage(SIGNATURE)
        );
    }

    #[test]
    fn time_and_version_checks() {
        let now = humantime::parse_rfc3339("2026-12-04T00:00:00Z").unwrap();
        assert!(manifest(1, "2027-01-01T00:00:00Z")
            .check(now, "0.1.0")
            .is_ok());
        assert!(matches!(
            manifest(1, "2026-12-03T00:00:00Z").check(now, "0.1.0"),
            Err(PackError::Expired(_))
        ));
        let mut newer = manifest(1, "2027-01-01T00:00:00Z");
        newer.min_telestrip = "0.10.0".into();
        assert!(matches!(
            newer.check(now, "0.9.3"),
            Err(PackError::TelestripTooOld { .. })
        ));
        let mut bad = manifest(1, "2027-01-01T00:00:00Z");
        bad.files[0].name = "../etc/passwd.yaml".into();
        assert!(matches!(
            bad.check(now, "0.1.0"),
            Err(PackError::BadFileName(_))
        ));
    }

    #[test]
    fn file_checks_name_size_and_hash() {
        let file = PackFile::of("a.yaml", b"rules");
        assert!(file.check(b"rules").is_ok());
        assert!(matches!(
            file.check(b"rulez"),
            Err(PackError::HashMismatch { .. })
        ));
        assert!(matches!(
            file.check(b"rule"),
            Err(PackError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn key_id_is_what_minisign_prints() {
        // minisign -G writes "untrusted comment: minisign public key 1F3B..." with the
        // key number's bytes read as a little-endian u64.
        assert_eq!(key_id(&[1, 2, 3, 4, 5, 6, 7, 0xAB]), "AB07060504030201");
    }
}
