use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::samples::audit_flow;
use super::*;

fn flow(n: u16) -> AuditEvent {
    audit_flow("microsoft", "ms-diagtrack", "drop", 40_000 + n)
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + seconds)
}

/// A log with `n` flow records, committed one by one.
fn write_log(path: &Path, n: u16) {
    let mut writer = AuditWriter::open(path).unwrap();
    for i in 0..n {
        writer.append(at(u64::from(i)), flow(i));
        writer.commit().unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn check(paths: &[PathBuf]) -> Verification {
    verify(paths, |_| {}).unwrap()
}

#[test]
fn an_untouched_log_verifies_and_every_record_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut ports = Vec::new();
    let found = verify(std::slice::from_ref(&path), |r| {
        if let AuditEvent::Flow { client_port, .. } = r.event {
            ports.push(client_port);
        }
    })
    .unwrap();
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.records, 5);
    assert_eq!(ports, [40_000, 40_001, 40_002, 40_003, 40_004]);
    assert_eq!(found.first.as_ref().map(|f| f.0), Some(1));
    assert_eq!(found.last.as_ref().map(|l| l.0), Some(5));
    // No stop record: said, but not a break.
    assert!(found.warnings.iter().any(|w| w.contains("stop record")));
}

#[test]
fn a_line_is_json_with_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 1);
    let line = &lines(&path)[0];
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["seq"], 1);
    assert_eq!(value["kind"], "flow");
    assert_eq!(value["rule"], "ms-diagtrack");
    assert_eq!(value["name"], "v10.events.data.microsoft.com");
    assert_eq!(value["prev"], GENESIS);
    assert_eq!(value["hash"].as_str().map(str::len), Some(64));
    assert!(value["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_removed_line_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut text = lines(&path);
    text.remove(2);
    write_lines(&path, &text);
    let broken = check(std::slice::from_ref(&path)).broken.unwrap();
    assert_eq!((broken.file, broken.line), (path, 3));
    assert!(
        broken.message.contains("1 records are missing"),
        "{}",
        broken.message
    );
}

#[test]
fn an_edited_line_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut text = lines(&path);
    text[3] = text[3].replace("\"drop\"", "\"log\"");
    write_lines(&path, &text);
    let broken = check(&[path]).broken.unwrap();
    assert_eq!(broken.line, 4);
    assert!(broken.message.contains("altered"), "{}", broken.message);
}

#[test]
fn lines_a_shipper_delivered_twice_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let text = lines(&path);
    // RELP resends what it had not seen acknowledged after a reconnect: earlier lines
    // come again, in order or not.
    let mut shipped = text.clone();
    shipped.insert(4, text[2].clone());
    shipped.insert(5, text[3].clone());
    shipped.push(text[1].clone());
    write_lines(&path, &shipped);
    let found = check(std::slice::from_ref(&path));
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!((found.records, found.repeated), (text.len() as u64, 3));
    // A whole earlier stretch sent again (a shipper that reads the log from its start
    // again) chains on to the head: its lines are copies, whatever the window.
    let mut resent = text.clone();
    resent.splice(4..4, text[..4].iter().cloned());
    write_lines(&path, &resent);
    let found = check(std::slice::from_ref(&path));
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.repeated, 4);
    // A forged stretch with valid own hashes, posing as a repeat, neither matches the
    // latest records nor reaches the head.
    let other = dir.path().join("other.jsonl");
    let mut writer = AuditWriter::open(&other).unwrap();
    for i in 0..3 {
        writer.append(at(i), audit_flow("acme", "acme-rule", "log", 1));
        writer.commit().unwrap();
    }
    let mut posing = text.clone();
    posing.splice(4..4, lines(&other));
    write_lines(&path, &posing);
    let broken = check(std::slice::from_ref(&path)).broken.unwrap();
    assert!(
        broken.message.contains("may not be copies"),
        "{}",
        broken.message
    );
    // A line that claims an earlier record's number with other content is no repeat.
    let mut forged = text.clone();
    forged.push(text[2].replace("\"drop\"", "\"log\""));
    write_lines(&path, &forged);
    assert!(check(&[path]).broken.is_some());
}

#[test]
fn swapped_lines_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5);
    let mut text = lines(&path);
    text.swap(1, 2);
    write_lines(&path, &text);
    let broken = check(&[path]).broken.unwrap();
    assert_eq!(broken.line, 2);
    assert!(
        broken.message.contains("follows record 1"),
        "{}",
        broken.message
    );
}

#[test]
fn an_inserted_forged_line_is_found_even_with_a_valid_own_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3);
    let mut text = lines(&path);
    // A well-formed record made by someone who knows the format but not the chain.
    let forged = Record {
        seq: 2,
        time: "2026-01-01T00:00:00.000000Z".into(),
        event: flow(9),
        prev: GENESIS.into(),
    };
    let (line, _) = seal(&forged);
    text.insert(1, line.trim_end().to_string());
    write_lines(&path, &text);
    let broken = check(&[path]).broken.unwrap();
    assert_eq!(broken.line, 2);
}

#[test]
fn a_truncated_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 4);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 30).unwrap();
    let found = check(&[path]);
    let broken = found.broken.unwrap();
    assert_eq!(broken.line, 4);
    assert!(broken.message.contains("cut off"), "{}", broken.message);
    assert_eq!(found.records, 3);
}

#[test]
fn a_foreign_line_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2);
    let mut text = lines(&path);
    text.push("{\"note\":\"nothing happened\"}".into());
    write_lines(&path, &text);
    let broken = check(&[path]).broken.unwrap();
    assert_eq!(broken.line, 3);
    assert!(
        broken.message.contains("no record hash"),
        "{}",
        broken.message
    );
}

#[test]
fn the_chain_continues_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2);
    write_log(&path, 2);
    let found = check(std::slice::from_ref(&path));
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.records, 4);
    assert_eq!(found.last.unwrap().0, 4);
}

#[test]
fn the_chain_continues_across_rotation_while_running_and_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut writer = AuditWriter::open(&path).unwrap();
    writer.append(at(0), flow(0));
    writer.commit().unwrap();
    // logrotate's default: move the file away, the writer keeps going in a new one.
    std::fs::rename(&path, dir.path().join("audit.jsonl.2")).unwrap();
    writer.append(at(1), flow(1));
    writer.commit().unwrap();
    writer.sync().unwrap();
    drop(writer);
    // Rotated while stopped: the new file starts from the head kept beside the log.
    std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
    write_log(&path, 1);
    let files: Vec<PathBuf> = ["audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    let found = check(&files);
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.records, 3);
    // Given out of order, the files do not chain.
    let swapped = [files[1].clone(), files[0].clone(), files[2].clone()];
    assert!(!check(&swapped).ok());
    // Earlier files missing: a warning, not a break.
    let found = check(&files[1..]);
    assert!(found.ok());
    assert!(found
        .warnings
        .iter()
        .any(|w| w.contains("starts at record 2")));
}

#[test]
fn a_cut_off_last_line_is_removed_on_restart_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 2);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"{\"seq\":3,\"ti").unwrap();
    drop(file);
    let mut writer = AuditWriter::open(&path).unwrap();
    assert_eq!(writer.discarded_bytes(), 12);
    writer.append(at(5), flow(5));
    writer.commit().unwrap();
    let found = check(&[path]);
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.records, 3);
}

#[test]
fn a_failed_write_leaves_the_chain_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut writer = AuditWriter::open(&path).unwrap();
    writer.append(at(0), flow(0));
    writer.commit().unwrap();
    // The directory becomes unusable: the rotation check cannot reopen the log.
    std::fs::remove_file(&path).unwrap();
    let blocker = dir.path().join("audit.jsonl");
    std::fs::create_dir(&blocker).unwrap();
    writer.append(at(1), flow(1));
    let (lost, _) = writer.commit().unwrap_err();
    assert_eq!(lost, 1);
    assert_eq!(writer.head().0, 1);
    std::fs::remove_dir(&blocker).unwrap();
    writer.append(at(2), flow(2));
    writer.commit().unwrap();
    // The new file goes on from record 1: the lost record left no gap in the chain.
    let found = check(&[path]);
    assert!(found.ok(), "{:?}", found.broken);
    assert_eq!(found.first.unwrap().0, 2);
}

#[test]
fn pseudonyms_are_stable_keyed_and_hide_the_address() {
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let a = Pseudonymizer::new(b"0123456789abcdef");
    let b = Pseudonymizer::new(b"another secret key");
    assert_eq!(a.pseudonym(client), a.pseudonym(client));
    assert_ne!(a.pseudonym(client), b.pseudonym(client));
    assert_ne!(
        a.pseudonym(client),
        a.pseudonym(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))
    );
    let pseudonym = a.pseudonym(client);
    assert!(
        pseudonym.starts_with("p:") && pseudonym.len() == 34,
        "{pseudonym}"
    );
    assert!(!pseudonym.contains("10.0.0.2"));
}

#[test]
fn a_short_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "short\n").unwrap();
    let error = Pseudonymizer::from_file(&path).err().unwrap().to_string();
    assert!(error.contains("at least 16"), "{error}");
}

#[test]
fn a_key_epoch_names_the_key_without_revealing_it() {
    let key = b"a lab secret of more than 16 bytes";
    let epoch = key_epoch(key);
    assert!(is_key_epoch(&epoch), "{epoch}");
    assert_eq!(epoch, key_epoch(key), "the same key, the same epoch");
    assert_ne!(epoch, key_epoch(b"a lab secret of more than 16 bytez"));
    let pseudonymizer = Pseudonymizer::new(key);
    assert_eq!(pseudonymizer.epoch(), epoch);
    // Neither the pseudonym nor the epoch is a plain hash of the key or the address.
    assert!(!pseudonymizer
        .pseudonym("10.0.0.1".parse().unwrap())
        .contains(&epoch));
    assert!(!is_key_epoch("0123456789ABCDEF"));
    assert!(!is_key_epoch("0123456789abcde"));
}

#[test]
fn flow_records_say_which_key_made_the_pseudonym_and_old_records_still_read() {
    let pseudonymizer = Pseudonymizer::new(b"a lab secret of more than 16 bytes");
    let mut event = samples::audit_flow("microsoft", "ms", "drop", 1);
    if let AuditEvent::Flow { key_epoch: k, .. } = &mut event {
        *k = Some(pseudonymizer.epoch().to_string());
    }
    let line = serde_json::to_string(&event).unwrap();
    assert!(
        line.contains(&format!("\"key_epoch\":\"{}\"", pseudonymizer.epoch())),
        "{line}"
    );
    // Addresses in clear: no key_epoch field at all, as in logs of older versions.
    let clear = serde_json::to_string(&samples::audit_flow("microsoft", "ms", "drop", 1)).unwrap();
    assert!(!clear.contains("key_epoch"), "{clear}");
    let parsed: AuditEvent = serde_json::from_str(&clear).unwrap();
    assert!(matches!(
        parsed,
        AuditEvent::Flow {
            key_epoch: None,
            ..
        }
    ));
}
