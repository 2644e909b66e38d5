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
        /// Also write the run's Prometheus metrics to FILE (for node_exporter's textfile
        /// collector); `-` prints them on stdout instead of the flow list.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
    /// Run the inline gateway: judge packets from NFQUEUE (needs CAP_NET_ADMIN).
    ///
    /// Install the firewall rules first (deploy/iptables.sh or deploy/nftables.conf), with
    /// the same queue numbers and mark field as the config. Matched flows are written to
    /// stdout as JSON lines and, with `audit:` in the config, to the hash-chained audit log.
    /// Metrics, health and a status page are served on `listen:` (127.0.0.1:9477 by
    /// default). SIGHUP reloads the rules (the old ones stay when the new ones have errors);
    /// SIGTERM or SIGINT stops after writing every matched flow handed over.
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
    /// Work with audit logs: verify their hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Summarise audit logs for a period: what was blocked per vendor and rule, whether the
    /// filter ran the whole time, which rulesets were in force; as text, JSON or HTML.
    ///
    /// The chain is verified on the way; a broken chain is reported and the count stops
    /// there. Exit code 0 when the chain is intact (and, with --prometheus, the gateway's
    /// counters agree with the log), 1 when not, 2 on bad input.
    ///
    /// Example: telestrip report /var/log/telestrip/audit.jsonl.1 /var/log/telestrip/audit.jsonl
    ///          --since 2026-11-01 --until 2026-12-01 --format html --output november.html
    Report {
        /// Audit log files, oldest first (rotated files before the current one).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Start of the period: a date (2026-11-01, midnight UTC) or an RFC 3339 time.
        #[arg(long, value_parser = parse_report_time)]
        since: Option<std::time::SystemTime>,
        /// End of the period (exclusive), same forms.
        #[arg(long, value_parser = parse_report_time)]
        until: Option<std::time::SystemTime>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Write the report to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also ask this Prometheus server (http://host:9090) what the gateway's counters say
        /// for the period, and show where they differ from the audit log.
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        /// PromQL label matchers choosing the gateway's series, e.g. 'gateway="gw-1"'.
        #[arg(
            long,
            value_name = "MATCHERS",
            default_value = "",
            requires = "prometheus"
        )]
        prometheus_selector: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that audit logs are complete and unaltered: every record's hash, and that each
    /// record follows the one before (also across rotated files, given oldest first).
    ///
    /// Names the first line that was removed, inserted, reordered, edited or cut. Exit code
    /// 0 when intact, 1 when not, 2 when a file cannot be read.
    ///
    /// Example: telestrip audit verify audit.jsonl.2 audit.jsonl.1 audit.jsonl
    Verify {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Html,
}

fn parse_report_time(text: &str) -> Result<std::time::SystemTime, String> {
    telestrip::report::parse_time(text)
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
            metrics,
        } => cli::run_pcap(
            &PcapOptions {
                files,
                rules,
                format,
                dry_run,
                progress: !quiet,
                max_flows,
                metrics,
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
        Command::Audit {
            command: AuditCommand::Verify { files },
        } => cli::audit_verify(&files, &mut out),
        Command::Report {
            files,
            since,
            until,
            format,
            output,
            prometheus,
            prometheus_selector,
        } => cli::report(
            &files,
            telestrip::report::Period { since, until },
            prometheus
                .as_deref()
                .map(|url| (url, prometheus_selector.as_str())),
            match format {
                ReportFormat::Text => cli::ReportFormat::Text,
                ReportFormat::Json => cli::ReportFormat::Json,
                ReportFormat::Html => cli::ReportFormat::Html,
            },
            output.as_deref(),
            &mut out,
        ),
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
    finish(result)
}

fn finish(result: Result<u8, CommandError>) -> ExitCode {
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
