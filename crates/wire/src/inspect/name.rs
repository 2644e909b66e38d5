//! [`Name`]: a host name normalised the way rules compare them (RFC 4343 case-insensitive
//! ASCII, no trailing dot), held in a fixed buffer so the packet path never allocates.

/// Longest name in text form: 255 octets on the wire (RFC 1035 §2.3.4) less the length bytes.
pub const MAX_NAME_LEN: usize = 253;

/// A lowercased host name without trailing dot, at most [`MAX_NAME_LEN`] bytes.
#[derive(Clone, Copy)]
pub struct Name {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl Name {
    pub const fn empty() -> Self {
        Self {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
        }
    }

    /// Normalises `raw` (lowercase, trailing dot removed). `None` when it is empty, too long
    /// or contains bytes that cannot be part of a host name (controls, space, `/`, `:`...).
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        if raw.is_empty() || raw.len() > MAX_NAME_LEN {
            return None;
        }
        let mut name = Self::empty();
        for &byte in raw {
            if !is_name_byte(byte) {
                return None;
            }
            name.push_byte(byte);
        }
        if name.as_bytes().split(|&b| b == b'.').any(<[u8]>::is_empty) {
            return None;
        }
        Some(name)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The name as text; names only ever hold ASCII, so this cannot fail in practice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An IPv4 address literal (`192.0.2.1`), which clients put in Host headers and some
    /// even in SNI: an address, not a name, so address rules and learned names apply.
    pub fn is_address_literal(&self) -> bool {
        self.as_str().parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// Appends one label (adding the dot). `false` when the name would grow past the cap or
    /// the label holds bytes that cannot be part of a host name.
    pub(crate) fn push_label(&mut self, label: &[u8]) -> bool {
        let needed = label.len() + usize::from(!self.is_empty());
        if label.is_empty() || usize::from(self.len) + needed > MAX_NAME_LEN {
            return false;
        }
        if !label.iter().all(|&b| is_name_byte(b) && b != b'.') {
            return false;
        }
        if !self.is_empty() {
            self.push_byte(b'.');
        }
        for &byte in label {
            self.push_byte(byte);
        }
        true
    }

    fn push_byte(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(usize::from(self.len)) {
            *slot = byte.to_ascii_lowercase();
            self.len += 1;
        }
    }
}

/// Bytes found in real host names: letters, digits, `-`, `_` (SRV and many CDNs), `.`, and
/// `*` (wildcard certificates sent as SNI by broken clients). Anything else is refused so a
/// name cannot smuggle separators past the matcher.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'*')
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_drops_trailing_dot() {
        let name = Name::from_bytes(b"V10.Events.DATA.microsoft.com.").unwrap();
        assert_eq!(name.as_str(), "v10.events.data.microsoft.com");
    }

    #[test]
    fn rejects_empty_labels_and_separators() {
        assert!(Name::from_bytes(b"").is_none());
        assert!(Name::from_bytes(b".").is_none());
        assert!(Name::from_bytes(b"a..b").is_none());
        assert!(Name::from_bytes(b"a b").is_none());
        assert!(Name::from_bytes(b"a/b").is_none());
        assert!(Name::from_bytes(b"host:443").is_none());
    }

    #[test]
    fn rejects_names_over_253_bytes() {
        let long = "a.".repeat(127); // 254 bytes
        assert!(Name::from_bytes(long.trim_end_matches('.').as_bytes()).is_some());
        let too_long = format!("{}ab", "a.".repeat(127));
        assert!(Name::from_bytes(too_long.as_bytes()).is_none());
    }

    #[test]
    fn push_label_refuses_dots_inside_a_label() {
        let mut name = Name::empty();
        assert!(name.push_label(b"www"));
        assert!(!name.push_label(b"evil.com"));
        assert!(name.push_label(b"Example"));
        assert_eq!(name.as_str(), "www.example");
    }
}
