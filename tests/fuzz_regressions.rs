//! Inputs that once made a fuzz target fail (fuzz/regressions/TARGET/*), run through the same
//! entry points as the fuzz targets (`telestrip_testkit::fuzzing`), plus every seed kind built from the
//! fixtures, so a fixed crash stays fixed without cargo-fuzz.

use std::path::Path;

use telestrip_testkit::fuzzing::TARGETS;

#[test]
fn every_kept_crash_input_runs_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            target(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    eprintln!("{ran} regression inputs");
}

#[test]
fn targets_take_empty_tiny_and_junk_input() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (_, target) in TARGETS {
        target(&[]);
        target(&[0]);
        target(&[0xff; 3]);
        target(&junk);
    }
}
