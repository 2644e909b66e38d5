//! Writes the audit logs of a fleet at realistic rates, for the fleet report's scale
//! benchmark (benches/fleet_report.sh):
//!
//! ```text
//! cargo run --release --example fleet_logs -- OUT_DIR [--gateways 50] [--days 30]
//!     [--flows-per-hour 60]
//! ```
//!
//! One directory per gateway under OUT_DIR (as the central rsyslog writes them), two
//! gateways per site; each log starts at 2026-11-01, has a heartbeat a minute and matched
//! flows spread over the hour, as the daemon writes them.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use telestrip::audit::AuditWriter;
use telestrip_testkit::{audit_flow, gateway_heartbeat, gateway_start};

#[derive(Parser)]
#[command(about = "Write a fleet's audit logs for the fleet report benchmark")]
struct Args {
    out: PathBuf,
    #[arg(long, default_value_t = 50)]
    gateways: u32,
    #[arg(long, default_value_t = 30)]
    days: u64,
    #[arg(long, default_value_t = 60)]
    flows_per_hour: u64,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200);
    let began = Instant::now();
    let mut lines = 0u64;
    for g in 0..args.gateways {
        let gateway = format!("gw-{g:03}");
        let site = format!("site-{:03}", g / 2);
        let dir = args.out.join(&gateway);
        std::fs::create_dir_all(&dir)?;
        let mut writer = AuditWriter::open(&dir.join("audit.jsonl"))?;
        writer.append(start, gateway_start(&gateway, &site, true));
        let flow_every = 3600 / args.flows_per_hour.max(1);
        let mut port = 0u16;
        for second in 1..=args.days * 86_400 {
            let at = start + Duration::from_secs(second);
            if second % flow_every == 0 {
                port = port.wrapping_add(1);
                writer.append(
                    at,
                    audit_flow("microsoft", "ms-windows-diagtrack", "drop", port),
                );
                lines += 1;
            }
            if second % 60 == 0 {
                writer.append(at, gateway_heartbeat(&gateway, &site, second));
                lines += 1;
                if second % 3600 == 0 {
                    writer.commit().map_err(|(_, e)| e)?;
                }
            }
        }
        writer.commit().map_err(|(_, e)| e)?;
    }
    eprintln!(
        "{lines} lines for {} gateways over {} days in {:.1} s",
        args.gateways,
        args.days,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
