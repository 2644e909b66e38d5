//! The `telestrip` command: parses the command line and hands over to `telestrip::cli`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use telestrip::cli::{self, exit, CommandError, ExplainOptions, PcapOptions};
use telestrip::output::Format;
use telestrip::wire::Protocol;

/// Strip vendor telemetry at the network boundary, and prove what was stopped.
///
/// telestrip recognises flows to telemetry endpoints by TLS SNI, HTTP Host, DNS name,
/// addresses learned from DNS answers and CIDR lists, using YAML rule files (one per
/// vendor). Without --rules it uses the rules bundled into the binary.
#[derive(Parser)]
#[command(
    name = "telestrip",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit capture files offline: list every flow that matched a rule, then a summary.
    ///
    /// Reads pcap and pcapng files (Ethernet, VLAN/QinQ, raw IP, Linux cooked v1/v2) with
    /// the same engine that runs inline. Exit code: 0 when no blocking rule matched, 1 when
    /// one did (telemetry found), 2 when an input could not be read completely.
    ///
    /// Example: telestrip pcap capture.pcapng --rules rules/ --format json
    Pcap {
        /// Capture files (pcap or pcapng), read in order as one stream of packets.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Rule directory (or single file); default: the bundled rules.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Report blocking rules as log (what a dry-run rollout would record).
        #[arg(long)]
        dry_run: bool,
        /// No progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Hard cap on tracked flows.
        #[arg(long, default_value_t = 1_000_000, value_name = "N")]
        max_flows: usize,
    },
    /// Run the inline gateway: judge packets from NFQUEUE (needs CAP_NET_ADMIN).
    ///
    /// Install the firewall rules first (deploy/iptables.sh or deploy/nftables.conf), with
    /// the same queue numbers and mark field as the config. Matched flows are written to
    /// stdout as JSON lines. SIGHUP reloads the rules (the old ones stay when the new ones
    /// have errors); SIGTERM or SIGINT stops.
    ///
    /// Example: telestrip run --config /etc/telestrip/telestrip.yaml
    Run {
        /// Configuration file (see deploy/telestrip.yaml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show telestrip working: a client, a gateway running telestrip and a server in network
    /// namespaces, real curl and dig traffic to telemetry and ordinary names (needs root).
    ///
    /// Nothing leaves the machine: all addresses live in namespaces the demo creates and
    /// removes. Needs iproute2, iptables, curl, dnsutils, dnsmasq-base, openssl and python3.
    Demo,
    /// Work with rule files: check them, explain a match.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate and compile rules, run every rule's tests, print counts and timing.
    ///
    /// Errors name file, line and column. Exit code 0 when everything is valid and every
    /// test passes, 1 otherwise.
    Check {
        /// Rule directory (or single file); default: the bundled rules.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Say which rule matches a name or address and why, or why none does.
    ///
    /// Example: telestrip rules explain v10.events.data.microsoft.com
    Explain {
        /// A host name or an IP address.
        #[arg(value_name = "NAME-OR-ADDRESS")]
        query: String,
        /// Rule directory (or single file); default: the bundled rules.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Only consider rules that apply to this server port.
        #[arg(long)]
        port: Option<u16>,
        /// Only consider rules that apply to this protocol (tcp or udp).
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
    },
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!("{text:?} is not tcp or udp")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Pcap {
            files,
            rules,
            format,
            dry_run,
            quiet,
            max_flows,
        } => cli::run_pcap(
            &PcapOptions {
                files,
                rules,
                format,
                dry_run,
                progress: !quiet,
                max_flows,
            },
            &mut out,
        ),
        Command::Run { config } => {
            drop(out);
            return match telestrip::daemon::run(&config) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(error) => {
                    eprintln!("telestrip: {error:#}");
                    ExitCode::from(exit::ERROR)
                }
            };
        }
        Command::Demo => match telestrip::demo::run(&mut out) {
            Ok(true) => Ok(exit::OK),
            Ok(false) => Ok(exit::FOUND),
            Err(error) => Err(CommandError::Usage(error)),
        },
        Command::Rules { command } => match command {
            RulesCommand::Check { dir } => cli::rules_check(dir.as_deref(), &mut out),
            RulesCommand::Explain {
                query,
                rules,
                port,
                protocol,
            } => cli::rules_explain(
                &ExplainOptions {
                    rules,
                    query,
                    port,
                    protocol,
                },
                &mut out,
            ),
        },
    };
    let _ = out.flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CommandError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::OK)
        }
        Err(error) => {
            eprintln!("telestrip: {error}");
            ExitCode::from(exit::ERROR)
        }
    }
}
