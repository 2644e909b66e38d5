//! Whether a capture's checksums can be believed, decided the way Suricata's checksum
//! validation "auto" mode does, per sending address: a capture taken on a host with
//! checksum offload (or edited, with addresses rewritten) carries wrong checksums on every
//! packet that host sent, while a decoy sent to fool a filter is one wrong checksum among
//! right ones. So a source whose checksums are mostly right has its wrong ones treated as
//! decoys (the receiver drops them); a source whose checksums are mostly wrong is taken to
//! be offloaded, and its checksums mean nothing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::wire::{self, LinkType};

/// Checksummed packets looked at per capture (Suricata's auto mode looks at 1,000).
pub const SURVEY_PACKETS: u32 = 1_000;

/// Counts right and wrong checksums per source over a capture's first packets.
#[derive(Debug, Default)]
pub struct ChecksumSurvey {
    /// Per source: checksummed packets seen, and how many of them were wrong.
    sources: HashMap<IpAddr, (u32, u32)>,
    checked: u32,
}

impl ChecksumSurvey {
    /// Looks at one frame; `false` once enough packets were seen (the caller may stop).
    pub fn observe(&mut self, link: LinkType, frame: &[u8]) -> bool {
        if self.checked >= SURVEY_PACKETS {
            return false;
        }
        let Ok(packet) = wire::parse(link, frame) else {
            return true;
        };
        let Some(valid) = packet.checksum_valid() else {
            return true;
        };
        self.checked += 1;
        let counts = self.sources.entry(packet.src).or_default();
        counts.0 += 1;
        counts.1 += u32::from(!valid);
        self.checked < SURVEY_PACKETS
    }

    /// Sources whose checksums were mostly wrong: offloaded, not to be judged by them.
    pub fn untrusted(&self) -> HashSet<IpAddr> {
        self.sources
            .iter()
            .filter(|(_, (checked, wrong))| wrong * 2 > *checked)
            .map(|(source, _)| *source)
            .collect()
    }

    /// Starts counting the next capture (each capture is surveyed on its own).
    pub fn next_capture(&mut self) {
        self.checked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_with_mostly_wrong_checksums_is_untrusted() {
        let mut survey = ChecksumSurvey::default();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let server: IpAddr = "10.0.0.2".parse().unwrap();
        survey.sources.insert(client, (10, 9));
        survey.sources.insert(server, (10, 1));
        assert_eq!(survey.untrusted(), HashSet::from([client]));
    }
}
