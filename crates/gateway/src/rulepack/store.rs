//! The rule generations an update keeps on disk, in the config's `rules_update.state_dir`:
//!
//! ```text
//! generations/7/    manifest.json, manifest.json.minisig, generation.json, the rule files
//! generations/8/
//! current -> generations/8     switched in one step (a symlink replaced by rename)
//! state.json                   high-water mark per key, HTTP validators, last attempt/success
//! ```
//!
//! A generation is written whole under a temporary name and renamed into place, so a crash
//! leaves either the old set or the new one. The daemon loads `current`, re-checking the
//! signature and every file's hash; when that fails it takes the newest older generation that
//! passes, and the configured `rules:` (or the bundled rules) only when none does.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{self, Manifest, PackError, PublicKey, MAX_MANIFEST_BYTES};
use crate::rules::Source;

/// What an accepted update records about itself (`generation.json`), and what the daemon
/// writes to the audit log when it puts the generation in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub generation: u64,
    pub ruleset_version: u64,
    /// The version in force before (absent for the first update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<u64>,
    /// The publisher's key id, as minisign prints it.
    pub key_id: String,
    pub source: String,
    pub issued: String,
    pub expires: String,
    /// RFC 3339 time of acceptance.
    pub accepted: String,
    /// Names and address blocks in the new ruleset.
    pub entries: usize,
    pub added: usize,
    pub removed: usize,
    /// The first added and removed entries (sorted), up to [`SAMPLE`] each.
    #[serde(default)]
    pub added_sample: Vec<String>,
    #[serde(default)]
    pub removed_sample: Vec<String>,
}

/// Entries of each kind listed in a record; the counts are always whole.
pub const SAMPLE: usize = 100;

/// How `current` came to point where it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    pub generation: u64,
    /// `update` or `rollback`.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// What `rules update` remembers between runs (`state.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    /// The highest ruleset version accepted, per publisher key id: a manifest not above it
    /// is a replay and refused.
    #[serde(default)]
    pub high_water: BTreeMap<String, u64>,
    /// The source the validators below belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The manifest's HTTP validators, sent back as If-None-Match and If-Modified-Since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Unix seconds of the last run, and of the last run that reached the source and either
    /// accepted a pack or found nothing new.
    #[serde(default)]
    pub last_attempt: u64,
    #[serde(default)]
    pub last_success: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Switch>,
    /// The number the next generation gets.
    #[serde(default = "first_generation")]
    pub next_generation: u64,
}

fn first_generation() -> u64 {
    1
}

/// A generation as loaded for use: its verified manifest, record and rule file texts.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u64,
    pub manifest: Manifest,
    pub record: GenerationRecord,
    /// Named `STATE_DIR/current/FILE`, whichever generation they come from, so that the
    /// ruleset's version (a hash over names and texts) is the same on every gateway.
    pub sources: Vec<Source>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

const GENERATIONS: &str = "generations";
const CURRENT: &str = "current";
const STATE: &str = "state.json";
const RECORD: &str = "generation.json";

impl Store {
    /// Opens (and creates) a state directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir.join(GENERATIONS))?;
        Ok(Self::at(dir))
    }

    /// Holds the directory for one writer (`rules update`, `rules rollback`) until dropped;
    /// a second one waits (a timer's run and an admin's at the same time).
    pub fn lock(&self) -> io::Result<nix::fcntl::Flock<fs::File>> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))
    }

    /// A state directory that may not exist yet (the daemon only reads it).
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `STATE_DIR/current`: where the daemon reads and watches the rules in force.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    pub fn generation_dir(&self, number: u64) -> PathBuf {
        self.dir.join(GENERATIONS).join(number.to_string())
    }

    /// The update state; a missing file is a fresh start, an unreadable one an error (the
    /// high-water mark must never silently reset).
    pub fn state(&self) -> Result<UpdateState, String> {
        let path = self.dir.join(STATE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: cannot be read ({e}); it holds the high-water mark that refuses \
                     replayed rules, so telestrip will not guess it: restore it from a \
                     backup, or remove it to accept any validly signed version once",
                    path.display()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UpdateState {
                next_generation: first_generation(),
                ..UpdateState::default()
            }),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    pub fn save_state(&self, state: &UpdateState) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomically(&self.dir.join(STATE), &bytes)
    }

    /// Generation numbers on disk, oldest first (half-written ones left out).
    pub fn generations(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = fs::read_dir(self.dir.join(GENERATIONS))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// The generation `current` points at.
    pub fn current(&self) -> Option<u64> {
        let target = fs::read_link(self.current_path()).ok()?;
        target.file_name()?.to_str()?.parse().ok()
    }

    /// Writes a new generation whole, under a temporary name renamed into place.
    pub fn add_generation(
        &self,
        number: u64,
        files: &[(String, Vec<u8>)],
        manifest_bytes: &[u8],
        signature: &[u8],
        record: &GenerationRecord,
    ) -> io::Result<PathBuf> {
        let final_dir = self.generation_dir(number);
        let temporary = self.dir.join(GENERATIONS).join(format!(".new-{number}"));
        let _ = fs::remove_dir_all(&temporary);
        fs::create_dir_all(&temporary)?;
        let mut record_bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        record_bytes.push(b'\n');
        let extra = [
            (manifest::MANIFEST, manifest_bytes),
            (manifest::SIGNATURE, signature),
            (RECORD, record_bytes.as_slice()),
        ];
        for (name, bytes) in files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .chain(extra)
        {
            let mut file = fs::File::create(temporary.join(name))?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir)?;
        }
        fs::rename(&temporary, &final_dir)?;
        sync_dir(&self.dir.join(GENERATIONS))?;
        Ok(final_dir)
    }

    /// Points `current` at generation `number` in one step.
    pub fn switch(&self, number: u64) -> io::Result<()> {
        let link = self.dir.join(format!(".{CURRENT}.new"));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new(GENERATIONS).join(number.to_string()), &link)?;
        fs::rename(&link, self.current_path())?;
        sync_dir(&self.dir)
    }

    /// Removes the oldest generations beyond `keep`, never the one in force.
    pub fn prune(&self, keep: usize) -> Vec<u64> {
        let current = self.current();
        let all = self.generations();
        let excess = all.len().saturating_sub(keep.max(1));
        let mut removed = Vec::new();
        for number in all.into_iter().take(excess) {
            if Some(number) != current && fs::remove_dir_all(self.generation_dir(number)).is_ok() {
                removed.push(number);
            }
        }
        removed
    }

    /// Reads generation `number` and checks it again: the signature with `key` and every
    /// file against the manifest (disks and hands change files). Expiry is not checked here:
    /// rules in force stay in force when they expire (an alert says so), never nothing.
    pub fn load(&self, number: u64, key: &PublicKey) -> Result<Generation, String> {
        let dir = self.generation_dir(number);
        let read = |name: &str, limit: u64| -> Result<Vec<u8>, String> {
            let path = dir.join(name);
            let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() as u64 > limit {
                return Err(format!("{}: larger than {limit} bytes", path.display()));
            }
            Ok(bytes)
        };
        let manifest_bytes = read(manifest::MANIFEST, MAX_MANIFEST_BYTES)?;
        let signature = read(manifest::SIGNATURE, MAX_MANIFEST_BYTES)?;
        let manifest = manifest::verify(key, &manifest_bytes, &signature)
            .map_err(|e| format!("generation {number}: {e}"))?;
        let record: GenerationRecord =
            serde_json::from_slice(&read(RECORD, MAX_MANIFEST_BYTES)?)
                .map_err(|e| format!("generation {number}: {RECORD}: {e}"))?;
        let mut sources = Vec::new();
        for file in &manifest.files {
            if !manifest::valid_file_name(&file.name) {
                return Err(format!(
                    "generation {number}: {}",
                    PackError::BadFileName(file.name.clone())
                ));
            }
            let bytes = read(&file.name, manifest::MAX_FILE_BYTES)?;
            file.check(&bytes)
                .map_err(|e| format!("generation {number}: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("generation {number}: {}: not UTF-8", file.name))?;
            sources.push(Source {
                name: self.source_name(&file.name),
                text,
            });
        }
        Ok(Generation {
            number,
            manifest,
            record,
            sources,
        })
    }

    /// The name a pack file has in errors, events and the ruleset hash.
    pub fn source_name(&self, file: &str) -> String {
        self.current_path().join(file).display().to_string()
    }

    /// Generations in the order the daemon tries them: the one in force, then the older
    /// ones newest first (after a rollback, the generations rolled back from come last),
    /// then the newer ones.
    pub fn boot_order(&self) -> Vec<u64> {
        let current = self.current();
        let all = self.generations();
        let mut order: Vec<u64> = current.into_iter().collect();
        let (older, newer): (Vec<u64>, Vec<u64>) = all
            .into_iter()
            .filter(|n| Some(*n) != current)
            .partition(|n| current.is_none_or(|c| *n < c));
        order.extend(older.into_iter().rev());
        order.extend(newer);
        order
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (a hidden name,
/// which rule loaders skip), synced, renamed: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    // Readable by the daemon's unprivileged user; nothing here is secret.
    file.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rulepack::manifest::{PackFile, FORMAT};

    fn signed(pair: &minisign::KeyPair, files: &[(String, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
        let manifest = Manifest {
            format: FORMAT,
            ruleset_version: 3,
            issued: "2026-12-01T00:00:00Z".into(),
            expires: "2027-01-01T00:00:00Z".into(),
            min_telestrip: "0.1.0".into(),
            files: files.iter().map(|(n, b)| PackFile::of(n, b)).collect(),
        };
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let signature = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            std::io::Cursor::new(&bytes),
            None,
            None,
        )
        .unwrap()
        .into_string()
        .into_bytes();
        (bytes, signature)
    }

    #[test]
    fn generations_switch_load_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let key = PublicKey::parse(&pair.pk.to_base64()).unwrap();
        let files = vec![("a.yaml".to_string(), b"vendor: x\n".to_vec())];
        let (manifest, signature) = signed(&pair, &files);
        for number in 1..=4 {
            store
                .add_generation(
                    number,
                    &files,
                    &manifest,
                    &signature,
                    &GenerationRecord::default(),
                )
                .unwrap();
        }
        assert_eq!(store.current(), None);
        store.switch(2).unwrap();
        assert_eq!(store.current(), Some(2));
        assert_eq!(store.boot_order(), vec![2, 1, 3, 4]);
        let loaded = store.load(2, &key).unwrap();
        assert_eq!(loaded.sources[0].text, "vendor: x\n");
        assert!(loaded.sources[0].name.ends_with("current/a.yaml"));
        // A file changed on disk fails the load, naming it.
        fs::write(store.generation_dir(2).join("a.yaml"), "vendor: y\n").unwrap();
        let error = store.load(2, &key).unwrap_err();
        assert!(error.contains("a.yaml"), "{error}");
        // Pruning keeps the newest and the one in force.
        assert_eq!(store.prune(2), vec![1]);
        assert_eq!(store.generations(), vec![2, 3, 4]);
        // One writer at a time: a second lock waits until the first is dropped.
        let held = store.lock().unwrap();
        let waiter = {
            let store = store.clone();
            std::thread::spawn(move || {
                let _second = store.lock().unwrap();
                std::time::Instant::now()
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let released = std::time::Instant::now();
        drop(held);
        assert!(waiter.join().unwrap() >= released);
    }

    #[test]
    fn a_corrupt_state_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.state().unwrap().next_generation, 1);
        fs::write(dir.path().join(STATE), "{not json").unwrap();
        assert!(store.state().unwrap_err().contains("high-water mark"));
    }
}
