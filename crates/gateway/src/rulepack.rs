//! Signed rule packs. A maintainer publishes a directory of rule files with a manifest (the
//! ruleset version, validity, the SHA-256 of every file) signed in the minisign format
//! ([`manifest`]); `telestrip rules update` verifies it against the publisher's pinned key and
//! keeps what it accepts as numbered generations on disk ([`store`]); the daemon starts from
//! the newest generation that still verifies, never from nothing.

pub mod manifest;
pub mod store;

pub use manifest::{Manifest, PackError, PackFile, PublicKey};
pub use store::{Generation, GenerationRecord, Store, UpdateState};
