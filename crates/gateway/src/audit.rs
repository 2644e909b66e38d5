//! The tamper-evident audit log: JSON lines, one record per matched flow plus records of the
//! daemon's own life (start, reload, heartbeat, stop), each carrying the hash of the one
//! before, so `telestrip audit verify` finds a removed, inserted, reordered, edited or cut
//! line and names it.
//!
//! A line is `{"seq":N,"time":...,"kind":...,<fields>,"prev":"<hex>","hash":"<hex>"}` where
//! `hash` is the SHA-256 of the line's text up to `"prev":"<hex>"` closed with `}`. The chain
//! continues across restarts (the writer resumes from the file's last line) and rotation
//! (a file moved away is noticed before the next write; the new file goes on from the old
//! file's last hash, also kept in `<path>.head`). The chain shows that records were not
//! changed after the fact relative to a head seen earlier (the heartbeat records and the
//! journal carry the head); it does not stop someone able to rewrite the whole file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::FlowEvent;
use crate::output::format_system_time;
use crate::stats::{Family, MetricSink};

/// `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the text after the body of a line looks like: `,"hash":"` + 64 hex digits + `"}`.
const HASH_FIELD: &str = ",\"hash\":\"";
const HASH_SUFFIX_LEN: usize = HASH_FIELD.len() + 64 + 2;

/// What a record says happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditEvent {
    /// A flow (or DNS message) matched a rule.
    Flow {
        rule: String,
        vendor: String,
        /// What was done: drop, reject, log or allow.
        action: String,
        /// The rule's own action (differs from `action` in dry run).
        rule_action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        via: String,
        protocol: String,
        /// The client's address, or its keyed pseudonym (`p:` + hex).
        client: String,
        client_port: u16,
        server: String,
        server_port: u16,
        /// The client's group (`clients:` in the config); absent in logs of older versions,
        /// which had only the default group.
        #[serde(default = "default_group", skip_serializing_if = "is_default_group")]
        group: String,
        /// The service profile whose allow rule let the flow pass.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// The epoch of the key `client` was pseudonymised with ([`key_epoch`]); absent when
        /// the address is in clear, and in logs of older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_epoch: Option<String>,
    },
    /// The daemon started filtering.
    Start {
        /// The gateway and its site (`gateway:`, `site:` in the config); absent in logs of
        /// older versions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        telestrip: String,
        ruleset: String,
        sha256: String,
        rules: usize,
        mode: String,
        enforce: bool,
        fail: String,
        /// Seconds between heartbeat records of this run (longer silences are gaps).
        heartbeat_seconds: u64,
        /// Bytes of a cut-off last line (a crash mid-write) removed before resuming.
        #[serde(default, skip_serializing_if = "is_zero")]
        discarded_bytes: u64,
        /// The epoch of the pseudonymisation key in force (absent: addresses in clear).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_epoch: Option<String>,
        /// Epochs of keys reported compromised (`audit.compromised_key_epochs`): pseudonyms
        /// made with them must be taken as identifying.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        compromised_key_epochs: Vec<String>,
    },
    /// The pseudonymisation key, or the list of compromised key epochs, changed while the
    /// daemon ran (SIGHUP): records after this one use `key_epoch`.
    PseudonymKey {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_epoch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_key_epoch: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        compromised_key_epochs: Vec<String>,
    },
    /// A rule reload, successful or not.
    Reload {
        ok: bool,
        /// The ruleset in force afterwards.
        ruleset: String,
        sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A generation of signed rules is in force: at start, and whenever the daemon switches
    /// to another (an accepted update, a rollback). The same generation may be recorded by
    /// several starts; the report counts each switch once.
    RulesUpdate {
        generation: u64,
        /// The publisher's version; `previous_version` the one the update replaced.
        ruleset_version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_version: Option<u64>,
        /// The publisher's minisign key id.
        key_id: String,
        source: String,
        issued: String,
        expires: String,
        /// When `rules update` accepted it, and when `current` was switched to it.
        accepted: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switched: Option<String>,
        /// `update`, `rollback`, or `fallback` (the generation in force failed its checks,
        /// this older one stands in).
        switched_by: String,
        /// Names and address blocks: in the pack, added and removed by the update, and the
        /// first of each (sorted, up to 100).
        entries: usize,
        added: usize,
        removed: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added_sample: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed_sample: Vec<String>,
        /// The ruleset's own version (as in `start` and `reload`).
        ruleset: String,
    },
    /// The daemon is alive; cumulative counters since its start.
    Heartbeat {
        /// As in `Start`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        ruleset: String,
        packets: u64,
        /// Matched-flow events lost because the writer fell behind (not in this log).
        events_dropped: u64,
        /// Attempts to get around the filter by kind, as `telestrip_bypass_attempts_total`
        /// counts them (`quic`, `ech`: real ECH, `doh`, `svcb`, `learned_address`). Absent
        /// in logs of older versions.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        bypass: BTreeMap<String, u64>,
    },
    /// The daemon stopped cleanly.
    Stop {
        /// As in `Start`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        ruleset: String,
        packets: u64,
        events_dropped: u64,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        bypass: BTreeMap<String, u64>,
    },
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// One line of the log, as written and read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev: String,
}

/// Replaces client addresses by a keyed hash (HMAC-SHA-256), so the log shows which
/// records come from the same client without saying who it is.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
    epoch: String,
}

/// The public name of a pseudonymisation key: 16 hex digits of a SHA-256 over a label and
/// the key. The same key gives the same epoch on every gateway and after every restart; the
/// epoch does not reveal the key. Records name it, so a key can be rotated and a compromised
/// one reported without breaking the chain.
pub fn key_epoch(key: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(b"telestrip pseudonymisation key epoch\0");
    digest.update(key);
    hex(&digest.finalize()[..8])
}

/// Whether `text` is written as [`key_epoch`] writes epochs.
pub fn is_key_epoch(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Pseudonymizer {
    /// Reads the secret from `path` (surrounding whitespace ignored); at least 16 bytes.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot read the pseudonymisation key: {e}",
                path.display()
            )
        })?;
        let key = text.trim_ascii().to_vec();
        if key.len() < 16 {
            anyhow::bail!(
                "{}: the pseudonymisation key has {} bytes; use at least 16 (for example `head -c 32 /dev/urandom | base64`)",
                path.display(),
                key.len()
            );
        }
        Ok(Self::new(&key))
    }

    pub fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            epoch: key_epoch(key),
        }
    }

    /// The key's epoch ([`key_epoch`]).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// `p:` and the first 128 bits of HMAC-SHA-256(key, address text), in hex.
    pub fn pseudonym(&self, addr: IpAddr) -> String {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(addr.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("p:{}", hex(&digest[..16]))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl AuditEvent {
    /// The record of a matched flow, with the client pseudonymised when configured.
    pub fn flow(event: &FlowEvent, pseudonymizer: Option<&Pseudonymizer>) -> Self {
        AuditEvent::Flow {
            rule: event.rule.to_string(),
            vendor: event.vendor.to_string(),
            action: event.applied.to_string(),
            rule_action: event.action.to_string(),
            name: event.name.clone(),
            via: event.via.to_string(),
            protocol: event.protocol.to_string(),
            client: pseudonymizer
                .map_or_else(|| event.client.to_string(), |p| p.pseudonym(event.client)),
            client_port: event.client_port,
            server: event.server.to_string(),
            server_port: event.server_port,
            group: event.group.to_string(),
            profile: event.profile.as_deref().map(str::to_string),
            key_epoch: pseudonymizer.map(|p| p.epoch.clone()),
        }
    }
}

fn default_group() -> String {
    crate::clients::DEFAULT_GROUP.to_string()
}

fn is_default_group(group: &str) -> bool {
    group == crate::clients::DEFAULT_GROUP
}

/// Counters and health of the audit writer, shared with the metrics and `/healthz`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records appended to the log.
    pub written: AtomicU64,
    /// Records that could not be written (disk full, file unwritable): lost.
    pub failed: AtomicU64,
    /// The last write error, cleared by the next successful write.
    pub last_error: Mutex<Option<String>>,
}

const AUDIT_RECORDS: Family = Family {
    name: "telestrip_audit_records_total",
    help: "Audit log records, by result.",
    labels: &["result"],
};

impl AuditStats {
    /// Reports the records written and lost to `sink`.
    pub fn export_metrics(&self, sink: &mut dyn MetricSink) {
        let written = self.written.load(Ordering::Relaxed);
        sink.counter(&AUDIT_RECORDS, &["written"], written);
        sink.counter(
            &AUDIT_RECORDS,
            &["failed"],
            self.failed.load(Ordering::Relaxed),
        );
    }
}

/// Appends records to the chain. Records are staged with [`AuditWriter::append`] and written
/// in one piece by [`AuditWriter::commit`]; a failed commit leaves the file and the chain as
/// they were after the last good one.
pub struct AuditWriter {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the open file, to notice rotation.
    identity: (u64, u64),
    /// Length of the file after the last good commit.
    committed_len: u64,
    committed: (u64, String),
    seq: u64,
    head: String,
    staged: Vec<u8>,
    staged_records: u64,
    discarded_bytes: u64,
}

impl AuditWriter {
    /// Opens (or creates) the log at `path` and resumes its chain: from the file's last
    /// line, else from `<path>.head` (the file was rotated away while stopped), else anew.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = Self {
            path: path.to_path_buf(),
            file: None,
            identity: (0, 0),
            committed_len: 0,
            committed: (0, GENESIS.to_string()),
            seq: 0,
            head: GENESIS.to_string(),
            staged: Vec::new(),
            staged_records: 0,
            discarded_bytes: 0,
        };
        writer.reopen()?;
        Ok(writer)
    }

    /// Bytes of a cut-off last line removed when the log was opened.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded_bytes
    }

    /// (sequence number, hash) of the last committed record.
    pub fn head(&self) -> (u64, &str) {
        (self.committed.0, &self.committed.1)
    }

    fn head_path(&self) -> PathBuf {
        head_path(&self.path)
    }

    /// Opens the file at the path and resumes the chain from its end (first open only).
    fn reopen(&mut self) -> io::Result<()> {
        let mut file = self.open_file()?;
        let (last, len) = last_line(&mut file)?;
        if let Some(cut) = len.checked_sub(last.end).filter(|&cut| cut > 0) {
            file.set_len(last.end)?;
            self.committed_len = last.end;
            self.discarded_bytes += cut;
        }
        let resumed = match last.text.as_deref().map(parse_line) {
            Some(Ok((record, hash))) => Some((record.seq, hash)),
            Some(Err(_)) => None,
            None => read_head_file(&self.head_path()),
        };
        if let Some((seq, hash)) = resumed {
            self.seq = seq;
            self.head = hash;
        }
        self.committed = (self.seq, self.head.clone());
        self.file = Some(file);
        Ok(())
    }

    /// Opens (or creates) the file at the path for appending, without touching the chain.
    fn open_file(&mut self) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let meta = file.metadata()?;
        self.identity = (meta.dev(), meta.ino());
        self.committed_len = meta.len();
        Ok(file)
    }

    /// Notices a log file moved away (rotation) or removed, and continues in a new file.
    fn follow_rotation(&mut self) -> io::Result<()> {
        let moved = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != self.identity,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if moved || self.file.is_none() {
            self.write_head_file()?;
            self.file = Some(self.open_file()?);
        }
        Ok(())
    }

    /// Stages one record; written by the next [`commit`](Self::commit).
    pub fn append(&mut self, time: SystemTime, event: AuditEvent) {
        let record = Record {
            seq: self.seq + 1,
            time: format_system_time(time),
            event,
            prev: std::mem::take(&mut self.head),
        };
        let (line, hash) = seal(&record);
        self.staged.extend_from_slice(line.as_bytes());
        self.seq = record.seq;
        self.head = hash;
        self.staged_records += 1;
    }

    /// Writes the staged records; returns how many. On error nothing of them stays in the
    /// file and the chain goes on from the last good record.
    pub fn commit(&mut self) -> Result<u64, (u64, io::Error)> {
        if self.staged.is_empty() {
            return Ok(0);
        }
        let records = std::mem::take(&mut self.staged_records);
        let staged = std::mem::take(&mut self.staged);
        let result = self.follow_rotation().and_then(|()| {
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| io::Error::other("log not open"))?;
            file.write_all(&staged)
        });
        match result {
            Ok(()) => {
                self.committed_len += staged.len() as u64;
                self.committed = (self.seq, self.head.clone());
                Ok(records)
            }
            Err(error) => {
                // Take back a partial write, so the file holds whole records only.
                if let Some(file) = self.file.as_mut() {
                    let _ = file.set_len(self.committed_len);
                }
                (self.seq, self.head) = self.committed.clone();
                Err((records, error))
            }
        }
    }

    /// Flushes to disk and records the head next to the log (for resuming after rotation).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.sync_data()?;
        }
        self.write_head_file()
    }

    fn write_head_file(&self) -> io::Result<()> {
        if self.committed.0 == 0 {
            return Ok(());
        }
        let path = self.head_path();
        let temporary = path.with_extension("head.tmp");
        std::fs::write(
            &temporary,
            format!("{} {}\n", self.committed.0, self.committed.1),
        )?;
        std::fs::rename(&temporary, &path)
    }
}

/// The text of a record with its hash, and the hash.
fn seal(record: &Record) -> (String, String) {
    // Serialising a struct of strings and integers cannot fail.
    let body = serde_json::to_string(record).unwrap_or_default();
    let hash = hex(&Sha256::digest(body.as_bytes()));
    let mut line = body;
    line.pop();
    line.push_str(HASH_FIELD);
    line.push_str(&hash);
    line.push_str("\"}\n");
    (line, hash)
}

/// Why a line is not a valid record.
#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    /// No `"hash"` at the end: not written by telestrip, or cut.
    NoHash,
    /// The hash does not match the text: the line was edited.
    Altered,
    /// Not a record (bad JSON or fields).
    Malformed(String),
}

/// Checks a line's own hash and parses it (without the trailing newline).
pub fn parse_line(line: &str) -> Result<(Record, String), LineError> {
    let Some(split) = line.len().checked_sub(HASH_SUFFIX_LEN) else {
        return Err(LineError::NoHash);
    };
    let (Some(body), Some(suffix)) = (line.get(..split), line.get(split..)) else {
        return Err(LineError::NoHash);
    };
    let Some(hash) = suffix
        .strip_prefix(HASH_FIELD)
        .and_then(|s| s.strip_suffix("\"}"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Err(LineError::NoHash);
    };
    let text = format!("{body}}}");
    if hex(&Sha256::digest(text.as_bytes())) != hash {
        return Err(LineError::Altered);
    }
    let record: Record =
        serde_json::from_str(&text).map_err(|e| LineError::Malformed(e.to_string()))?;
    Ok((record, hash.to_string()))
}

/// The last complete line of a file and where it ends (its newline included).
struct LastLine {
    text: Option<String>,
    end: u64,
}

/// Finds the last newline-terminated line; bytes after it are a cut-off line.
fn last_line(file: &mut File) -> io::Result<(LastLine, u64)> {
    let len = file.metadata()?.len();
    let window = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::with_capacity(window as usize);
    Read::by_ref(file).take(window).read_to_end(&mut tail)?;
    let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok((LastLine { text: None, end: 0 }, len));
    };
    let start = tail[..last_newline]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let text = String::from_utf8_lossy(&tail[start..last_newline]).into_owned();
    let end = len - window + last_newline as u64 + 1;
    Ok((
        LastLine {
            text: Some(text),
            end,
        },
        len,
    ))
}

/// Where the head of the chain of the log at `path` is kept while the log is rotated away.
pub fn head_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

fn read_head_file(path: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_string()))
}

/// Where verification stopped, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// What verification found.
#[derive(Debug, Default, Clone)]
pub struct Verification {
    /// Valid records read before the first break (or all of them).
    pub records: u64,
    /// (seq, hash) of the first and last valid record.
    pub first: Option<(u64, String)>,
    pub last: Option<(u64, String)>,
    pub broken: Option<ChainBreak>,
    /// Lines identical to a record already read (a shipper that delivers at least once, as
    /// RELP does after a reconnect, sent it twice): skipped, they add and hide nothing.
    pub repeated: u64,
    /// Things that are not proof of tampering but limit what the log proves.
    pub warnings: Vec<String>,
}

/// The hashes of the latest [`REPEAT_WINDOW`] records by number, to recognise repeats.
#[derive(Default)]
struct RecentRecords {
    hashes: std::collections::HashMap<u64, String>,
    order: std::collections::VecDeque<u64>,
}

impl RecentRecords {
    fn keep(&mut self, seq: u64, hash: &str) {
        if self.order.len() == REPEAT_WINDOW {
            if let Some(oldest) = self.order.pop_front() {
                self.hashes.remove(&oldest);
            }
        }
        self.order.push_back(seq);
        self.hashes.insert(seq, hash.to_string());
    }

    fn holds(&self, seq: u64, hash: &str) -> bool {
        self.hashes.get(&seq).is_some_and(|known| known == hash)
    }
}

/// A run of lines that repeat earlier records (see [`verify`]).
#[derive(Default)]
struct Replay {
    next_seq: u64,
    last_hash: String,
    lines: u64,
    /// Lines of the run not yet shown to be copies of the originals.
    unproven: u64,
}

/// How many of the latest records a repeated line may repeat (a shipper resends at most its
/// window of unacknowledged lines; RELP's is 128).
const REPEAT_WINDOW: usize = 65_536;

impl Verification {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Reads the files in order as one chain, calling `each` for every valid record until the
/// first break. Files that cannot be read are an error.
pub fn verify(paths: &[PathBuf], mut each: impl FnMut(&Record)) -> io::Result<Verification> {
    let mut found = Verification::default();
    let mut expected: Option<(u64, String)> = None;
    let mut last_kind_stop = false;
    // (seq, hash) of the latest records, and the run of repeated lines being read, to
    // recognise lines a shipper delivered twice.
    let mut recent = RecentRecords::default();
    let mut replay: Option<Replay> = None;
    'files: for path in paths {
        let file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let mut raw = Vec::new();
        let mut line_number = 0u64;
        loop {
            raw.clear();
            if reader.read_until(b'\n', &mut raw)? == 0 {
                break;
            }
            line_number += 1;
            let brk = |message: String| ChainBreak {
                file: path.clone(),
                line: line_number,
                message,
            };
            if raw.last() != Some(&b'\n') {
                found.broken = Some(brk(
                    "the line is cut off (no newline at the end): the file was truncated or its writer crashed".into(),
                ));
                break 'files;
            }
            raw.pop();
            let Ok(text) = std::str::from_utf8(&raw) else {
                found.broken = Some(brk(
                    "the line is not UTF-8 text: the file was altered".into()
                ));
                break 'files;
            };
            let (record, hash) = match parse_line(text) {
                Ok(parsed) => parsed,
                Err(LineError::NoHash) => {
                    found.broken = Some(brk("the line has no record hash: it was not written by telestrip, or it was cut".into()));
                    break 'files;
                }
                Err(LineError::Altered) => {
                    found.broken = Some(brk(
                        "the line was altered: its content does not match its hash".into(),
                    ));
                    break 'files;
                }
                Err(LineError::Malformed(why)) => {
                    found.broken = Some(brk(format!("the line is not an audit record: {why}")));
                    break 'files;
                }
            };
            // A line at or below the head repeats an earlier record. It is identical to it
            // if that record is among the latest read, or if the run of repeated lines it
            // starts chains on to the head itself (each hash then fixes the one before).
            if let Some((head_seq, head_hash)) = &expected {
                if record.seq <= *head_seq {
                    let known = recent.holds(record.seq, &hash);
                    let chained = replay.as_ref().is_some_and(|run: &Replay| {
                        run.next_seq == record.seq && run.last_hash == record.prev
                    });
                    if !chained && replay.as_ref().is_some_and(|run| run.unproven > 0) {
                        found.broken = Some(brk(format!(
                            "record {} breaks off a run of repeated lines before it reached record {head_seq}: they may not be copies of the originals",
                            record.seq
                        )));
                        break 'files;
                    }
                    let run = replay.get_or_insert(Replay::default());
                    run.next_seq = record.seq + 1;
                    run.last_hash = hash.clone();
                    run.lines += 1;
                    if !known {
                        run.unproven += 1;
                    }
                    if record.seq == *head_seq && hash == *head_hash {
                        run.unproven = 0;
                    }
                    continue;
                }
            }
            if let Some(run) = replay.take() {
                if run.unproven > 0 {
                    found.broken = Some(brk(format!(
                        "{} repeated lines before this one neither match the latest records nor chain on to record {}: they may not be copies of the originals",
                        run.unproven,
                        expected.as_ref().map_or(0, |(seq, _)| *seq)
                    )));
                    break 'files;
                }
                found.repeated += run.lines;
            }
            match &expected {
                None if record.prev != GENESIS || record.seq != 1 => found.warnings.push(format!(
                    "{}:{line_number}: the chain starts at record {}: earlier records are in files not given (or were deleted)",
                    path.display(),
                    record.seq
                )),
                None => {}
                Some((seq, prev)) => {
                    if record.prev != *prev {
                        let message = if record.seq > seq + 1 {
                            format!(
                                "record {} follows record {seq}: {} records are missing here",
                                record.seq,
                                record.seq - seq - 1
                            )
                        } else {
                            format!(
                                "record {} does not follow record {seq}: a record was removed, inserted or moved here",
                                record.seq
                            )
                        };
                        found.broken = Some(brk(message));
                        break 'files;
                    }
                    if record.seq != seq + 1 {
                        found.broken = Some(brk(format!(
                            "record number {} after {seq}: the sequence was altered",
                            record.seq
                        )));
                        break 'files;
                    }
                }
            }
            if found.first.is_none() {
                found.first = Some((record.seq, hash.clone()));
            }
            last_kind_stop = matches!(record.event, AuditEvent::Stop { .. });
            each(&record);
            found.records += 1;
            recent.keep(record.seq, &hash);
            expected = Some((record.seq, hash));
        }
    }
    found.last = expected;
    if let Some(run) = replay.filter(|_| found.ok()) {
        if run.unproven > 0 {
            found.broken = Some(ChainBreak {
                file: paths.last().cloned().unwrap_or_default(),
                line: 0,
                message: format!(
                    "the log ends with {} repeated lines that neither match the latest records nor chain on to the last record: they may not be copies of the originals",
                    run.unproven
                ),
            });
        } else {
            found.repeated += run.lines;
        }
    }
    if found.ok() && found.records > 0 && !last_kind_stop {
        found.warnings.push(
            "the log does not end with a stop record: telestrip is still running, was killed, or the end of the log was removed (compare with the last head in the journal or a later file)".into(),
        );
    }
    Ok(found)
}

/// Sample records for tests of the audit log and of the reports over it (re-exported by
/// telestrip-testkit). Only in test builds: the `testkit` feature, which the testkit
/// crate turns on, is never on in a released binary.
#[cfg(any(test, feature = "testkit"))]
pub mod samples {
    use super::AuditEvent;

    /// An audit record of a matched TLS flow from 10.0.0.2:`client_port` to 192.0.2.1:443.
    pub fn audit_flow(vendor: &str, rule: &str, action: &str, client_port: u16) -> AuditEvent {
        AuditEvent::Flow {
            rule: rule.into(),
            vendor: vendor.into(),
            action: action.into(),
            rule_action: "drop".into(),
            name: Some("v10.events.data.microsoft.com".into()),
            via: "sni".into(),
            protocol: "tcp".into(),
            client: "10.0.0.2".into(),
            client_port,
            server: "192.0.2.1".into(),
            server_port: 443,
            group: "default".into(),
            profile: None,
            key_epoch: None,
        }
    }

    /// The start record of an enforcing, fail-open daemon with a 60 s heartbeat.
    pub fn audit_start(ruleset: &str, enforce: bool) -> AuditEvent {
        start(None, None, ruleset, enforce)
    }

    /// The same for gateway `gateway` at `site`, with ruleset `r1`.
    pub fn gateway_start(gateway: &str, site: &str, enforce: bool) -> AuditEvent {
        start(Some(gateway), Some(site), "r1", enforce)
    }

    /// A heartbeat of gateway `gateway` at `site`, ruleset `r1`, `packets` packets so far.
    pub fn gateway_heartbeat(gateway: &str, site: &str, packets: u64) -> AuditEvent {
        AuditEvent::Heartbeat {
            gateway: Some(gateway.into()),
            site: Some(site.into()),
            ruleset: "r1".into(),
            packets,
            events_dropped: 0,
            bypass: Default::default(),
        }
    }

    fn start(
        gateway: Option<&str>,
        site: Option<&str>,
        ruleset: &str,
        enforce: bool,
    ) -> AuditEvent {
        AuditEvent::Start {
            gateway: gateway.map(Into::into),
            site: site.map(Into::into),
            telestrip: "0.1.0".into(),
            ruleset: ruleset.into(),
            sha256: format!("sha-{ruleset}"),
            rules: 3,
            mode: "nfqueue".into(),
            enforce,
            fail: "open".into(),
            heartbeat_seconds: 60,
            discarded_bytes: 0,
            key_epoch: None,
            compromised_key_epochs: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
