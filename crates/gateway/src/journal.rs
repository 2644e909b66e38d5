//! The daemon's log lines with their syslog priority. When stderr goes to the journal
//! (systemd sets `JOURNAL_STREAM` to its device and inode), each line starts with the
//! `<N>` prefix of sd-daemon(3), so `journalctl -u telestrip -p warning` shows the
//! warnings and errors alone; anywhere else the lines are plain.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

/// syslog priorities (the ones the daemon uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// The daemon is about to exit to be restarted.
    Critical = 2,
    Error = 3,
    Warning = 4,
    /// A normal but significant change (a lost link is back).
    Notice = 5,
    Info = 6,
}

/// `text` with the priority prefix on every line.
pub fn prefixed(priority: Priority, text: &str) -> String {
    let prefix = format!("<{}>", priority as u8);
    text.lines()
        .map(|line| format!("{prefix}{line}\n"))
        .collect()
}

/// Writes one message (any number of lines) to stderr in one write.
pub fn emit(priority: Priority, message: fmt::Arguments) {
    let text = message.to_string();
    let out = if to_journal() {
        prefixed(priority, &text)
    } else {
        format!("{text}\n")
    };
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Whether stderr is the journal's stream (its device and inode are `JOURNAL_STREAM`'s).
fn to_journal() -> bool {
    static TO_JOURNAL: OnceLock<bool> = OnceLock::new();
    *TO_JOURNAL.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
            return false;
        };
        stream == format!("{}:{}", stderr.dev(), stderr.ino())
    })
}

/// `log_line!(Warning, "telestrip: ...", args)`: one message at that priority.
#[macro_export]
macro_rules! log_line {
    ($priority:ident, $($arg:tt)*) => {
        $crate::journal::emit($crate::journal::Priority::$priority, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_message_carries_the_priority() {
        assert_eq!(
            prefixed(
                Priority::Error,
                "telestrip: reload failed:\nx.yaml:3:1: bad"
            ),
            "<3>telestrip: reload failed:\n<3>x.yaml:3:1: bad\n"
        );
        assert_eq!(prefixed(Priority::Info, "one"), "<6>one\n");
    }
}
