//! The read limits `telestrip pcap` is measured against (benches/compare.py runs them beside
//! it): how long it takes only to bring a capture's pages into the process, and only to walk
//! its records with telestrip's own reader, judging nothing.
//!
//! ```text
//! cargo run --release --example read_limit -- FILE mmap|records
//! ```
//!
//! `mmap` maps the file and reads one byte of every page (a plain mmap pass); `records`
//! walks every record with `CaptureReader` and reads each frame's first byte. Prints what
//! it read so the work cannot be optimised away.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use telestrip::source::pcap::CaptureReader;

#[derive(Clone, Copy, ValueEnum)]
enum Pass {
    /// Map the file and touch every page.
    Mmap,
    /// Walk every record with telestrip's capture reader.
    Records,
}

#[derive(Parser)]
#[command(about = "Time only reading a capture: a plain mmap pass, or its records")]
struct Args {
    file: PathBuf,
    pass: Pass,
}

const PAGE: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match args.pass {
        Pass::Mmap => {
            let file = std::fs::File::open(&args.file)?;
            // SAFETY: the benchmark's own capture, not changed while it is read.
            #[allow(unsafe_code)]
            let map = unsafe { memmap2::Mmap::map(&file)? };
            map.advise(memmap2::Advice::Sequential)?;
            let sum: u64 = map.iter().step_by(PAGE).map(|&byte| u64::from(byte)).sum();
            println!(
                "{} bytes, {} pages, byte sum {sum}",
                map.len(),
                map.len().div_ceil(PAGE)
            );
        }
        Pass::Records => {
            let mut reader = CaptureReader::open(&args.file)?;
            let (mut frames, mut bytes, mut sum) = (0u64, 0u64, 0u64);
            while let Some(frame) = reader.next_frame() {
                let frame = frame?;
                frames += 1;
                bytes += frame.data.len() as u64;
                sum += u64::from(frame.data.first().copied().unwrap_or(0));
            }
            println!("{frames} frames, {bytes} bytes, first-byte sum {sum}");
        }
    }
    Ok(())
}
