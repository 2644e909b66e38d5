//! The `telestrip` command: parses the command line and hands over to `telestrip::cli`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
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
    /// Reads pcap and pcapng files (Ethernet, VLAN/QinQ, PPPoE, raw IP, Linux cooked v1/v2,
    /// PPP, NFLOG, BSD loopback) with the same engine that runs inline, and opens the
    /// tunnels they carry (IP in IP, GRE, VXLAN, GTP-U). Exit code: 0 when no blocking rule
    /// matched, 1 when one did (telemetry found), 2 when an input could not be read
    /// completely or more than --max-unjudged of its traffic could not be judged (then
    /// the capture is not proof of anything: the output says what was not judged, and why).
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
        /// Packet threads: flows are spread over N threads by the hash of their addresses
        /// and ports, while one more thread reads the files, reassembles IP fragments and
        /// judges DNS (whose answers every thread's flows need) in capture order. The
        /// matches and counts are those of one thread, listed in capture order. With any N,
        /// a capture larger than 8 MB also gets a helper thread that maps the file's pages
        /// in ahead of the reader and hands them back behind it (kernel time: a few
        /// percent of the run when the page cache holds the file in large folios, up to a
        /// quarter when it holds it page by page) and, with a core to spare, reads them
        /// so the reader finds them in the CPU's cache. More threads pay off where judging
        /// costs more than reading (many new flows, QUIC); on 2 cores the helper already
        /// keeps the second core busy, and N=2 was 0.76-1.18x one thread on the
        /// benches/compare.py capture: keep the default there.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Also write the run's Prometheus metrics to FILE (for node_exporter's textfile
        /// collector); `-` prints them on stdout instead of the flow list.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
        /// Largest share of the packets, and of the QUIC flows, that may go unjudged (link
        /// types, headers or tunnels that could not be read; QUIC whose name could not be
        /// read) before the capture is reported incomplete with exit code 2. 0: any.
        #[arg(long, default_value_t = 1.0, value_name = "PERCENT", value_parser = percent)]
        max_unjudged: f64,
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
    /// Write the shell completion script for bash, zsh or fish to stdout.
    ///
    /// Example: telestrip completions bash > /usr/share/bash-completion/completions/telestrip
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a man page for telestrip and for each of its commands into DIR
    /// (telestrip.1, telestrip-rules-check.1, ...).
    ///
    /// Example: telestrip man /usr/share/man/man1 && man telestrip-report
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Work with rule files: check, test, explain, diff, import; publish signed packs, update,
    /// roll back.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Check configuration files before the daemon uses them.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
    ///
    /// With --fleet, the logs of many gateways at once (files or directories, such as the
    /// central rsyslog's /var/log/telestrip-fleet): grouped by the gateway their records
    /// name, each chain verified on its own; per gateway its coverage, silences, rulesets
    /// and chain, per site the share of the period one of its gateways enforced, fleet
    /// totals per vendor and rule. Gateways needing attention come first.
    Report {
        /// Audit log files, oldest first (rotated files before the current one); with
        /// --fleet, files and directories in any order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The logs are those of many gateways: one report for the fleet. With --prometheus,
        /// each gateway's log is checked against the series labelled gateway="NAME".
        #[arg(long, conflicts_with = "prometheus_selector")]
        fleet: bool,
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
enum ConfigCommand {
    /// Check a configuration file: every error with file, line and column and what is
    /// expected; the rules it points to loaded, linted and tested as `rules check` does; the
    /// audit directory and key file it names. Exit code 0 when telestrip would start with
    /// it, 1 when not, 2 when the file cannot be read.
    ///
    /// Example: telestrip config check /etc/telestrip/telestrip.yaml
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Treat rule warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Hash a password for `basic_auth_users` in the control plane's web configuration file
    /// (bcrypt, as Prometheus exporters read it). Reads the password from the first line of
    /// standard input, so it stays out of the shell history and the process list.
    ///
    /// Example: read -rs PASSWORD; echo "$PASSWORD" | telestrip config hash-password
    HashPassword {
        /// bcrypt cost: each step doubles the time of a check (10 takes about 70 ms; the
        /// daemon checks a user's password once, then remembers it).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate, compile and lint rules, run every rule's tests, print counts and timing.
    ///
    /// Errors and warnings name file and line. Lint warnings: an entry listed twice or
    /// already covered by a `*.` suffix, allow/block conflicts (the allow rule wins), public
    /// suffixes such as `*.co.uk` and address blocks wider than /8 (IPv6 /16), regexes that
    /// never match, are slow or could be exact names, rules without references. A
    /// `must_keep_working` name the rules block fails, unless the blocking rule lists it
    /// under `overrides_must_keep_working` with the reason (shown as a note). Exit code 0
    /// when the rules are valid and every test passes, 1 otherwise (also on warnings with
    /// --strict).
    ///
    /// Example (CI of a rule repository): telestrip rules check rules/ --strict
    Check {
        /// Rule directory (or single file); default: the bundled rules.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Run every rule's `match`/`no_match` test cases, and optionally check captures
    /// against the matches they should give.
    ///
    /// The expectations file has one `NAME RULE` pair per line (`#` comments); RULE `-`
    /// means the name must not match. Every name matched in the captures must be listed.
    /// Exit code 0 when everything passes, 1 otherwise.
    ///
    /// Example: telestrip rules test rules/ --pcap office.pcapng --expect office.expect
    Test {
        /// Rule directory (or single file); default: the bundled rules.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Capture files to run through the rules (pcap or pcapng).
        #[arg(long = "pcap", value_name = "FILE", requires = "expect")]
        pcaps: Vec<PathBuf>,
        /// Expected matches for the captures.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
    },
    /// Show what changing the rules from OLD to NEW would newly block, unblock or decide
    /// by another rule: every entry and test case of both is judged by both.
    ///
    /// Exit code 0 when nothing changes, 1 when something does.
    ///
    /// Example: git worktree add /tmp/old HEAD~1 && telestrip rules diff /tmp/old/rules rules/
    Diff {
        /// The rules as they are (directory or file).
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// The rules as they would be.
        #[arg(value_name = "NEW")]
        new: PathBuf,
    },
    /// Turn blocklists into a rule file: hosts files, AdBlock-style lists, plain domain lists,
    /// dnsmasq `address=` lines, address/CIDR lists.
    ///
    /// Each list becomes one rule (AdBlock exceptions `@@` and `$denyallow` an extra allow
    /// rule) with a `source:` naming the list, the import date and the list's SHA-256. Lines
    /// that cannot be imported (cosmetic rules, browser-only modifiers such as $third-party,
    /// URL paths, redirects to real addresses, local names, bad names) are reported per
    /// reason with their line numbers, never dropped silently. The output is loaded back and
    /// compiled before it is written; with --output it replaces the file in one step, so a
    /// daemon watching the directory never sees half of it.
    ///
    /// Example: telestrip rules import spy.txt --format hosts --vendor microsoft
    ///          --source https://github.com/crazy-max/WindowsSpyBlocker --output rules/wsb.yaml
    Import {
        /// List files, each imported as one rule.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The lists' format; detected from the lines when not given.
        #[arg(long, value_enum)]
        format: Option<telestrip::rules::import::ListFormat>,
        /// Vendor of the written file (a-z, 0-9, '-', '_', '.').
        #[arg(long)]
        vendor: String,
        /// Rule id (one list only); default: VENDOR-FILESTEM.
        #[arg(long)]
        id: Option<String>,
        /// Action of the imported rule.
        #[arg(long, value_parser = parse_action, default_value = "reject")]
        action: telestrip::rules::Action,
        /// Category of the imported rule.
        #[arg(long, default_value = "telemetry")]
        category: String,
        /// Where the list comes from (its URL), recorded in the rule; default: the file path.
        #[arg(long, value_name = "URL")]
        source: Option<String>,
        /// Also block every name below each listed name (for `hosts` and `domains` lists,
        /// which list exact names; AdBlock `||` and dnsmasq entries always cover names below).
        #[arg(long)]
        subdomains: bool,
        /// Import date recorded in the rule (YYYY-MM-DD); default: today (UTC).
        #[arg(long)]
        date: Option<String>,
        /// Write the rule file here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write each list's names to RULE-ID.list beside the output file, which the rule
        /// names (domains_file): a list of a million names loads in well under a second,
        /// against several seconds as YAML. Needs --output.
        #[arg(long)]
        list_files: bool,
    },
    /// Sign a rule directory for the gateways: rule files and a signed manifest into OUT.
    ///
    /// The rules must pass `rules check --strict` first. OUT gets the rule files,
    /// `manifest.json` (the ruleset version, which only grows; issue and expiry times; the
    /// SHA-256 of every file; the oldest telestrip that reads them) and its minisign
    /// signature `manifest.json.minisig`. Serve OUT as static files over HTTP(S), commit it
    /// to git, or pack it as a tarball for air-gapped sites. The key is a minisign secret key
    /// (`minisign -G`); an encrypted one takes its password from --password-file, from
    /// TELESTRIP_KEY_PASSWORD, or from the terminal. Exit code 0 when published, 1 when the
    /// rules have problems, 2 on bad input.
    ///
    /// Example: telestrip rules publish rules/ --key ~/.minisign/telestrip.key --output /srv/www/telestrip-rules
    Publish {
        /// Rule directory (or single file) to publish.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The publisher's minisign secret key.
        #[arg(long, value_name = "SECRET_KEY")]
        key: PathBuf,
        /// File holding the secret key's password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Directory to write the pack into (created; rule files no longer published are
        /// removed from it).
        #[arg(long, short, value_name = "OUT")]
        output: PathBuf,
        /// Ruleset version; default: one above the version already in OUT (1 for a new OUT).
        #[arg(long, value_name = "N")]
        ruleset_version: Option<u64>,
        /// How long gateways accept the pack; publish again before it ends.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
        /// Oldest telestrip version that may load these rules; default: this one.
        #[arg(long, value_name = "VERSION")]
        min_telestrip: Option<String>,
        /// Publish even with lint warnings (failing rule tests always stop it).
        #[arg(long)]
        allow_lint_warnings: bool,
    },
    /// Fetch the publisher's signed rules and put them in force, or say why not.
    ///
    /// Reads `rules_update:` in the config: the source (an http(s) URL, a directory or a
    /// tarball), the publisher's pinned public key, the state directory. The manifest is
    /// fetched conditionally (ETag, If-Modified-Since); only files that changed are
    /// downloaded. Refused, with the rules in force left as they are: a bad signature or
    /// another key; a version not above the last accepted (kept on disk); an expired
    /// manifest; a file whose size or hash differs; an HTML page instead of a file; rules with
    /// errors, failing rule tests or lint warnings; rules that block a `must_keep_working`
    /// name; rules that remove more than `max_removed_percent` of the entries in force. An
    /// accepted pack becomes a new generation (the last `keep` are kept), switched in one
    /// step; the daemon sees the change and reloads. Exit code 0 when accepted or nothing
    /// new, 1 when refused, 2 on bad input, 3 when the source could not be reached.
    ///
    /// Example: telestrip rules update --config /etc/telestrip/telestrip.yaml
    ///          (deploy/telestrip-rules-update.timer runs it every 6 hours)
    Update {
        /// Configuration file with a `rules_update:` section.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/telestrip/telestrip.yaml"
        )]
        config: PathBuf,
        /// Update from here instead of the configured source (a directory or tarball
        /// carried to an air-gapped site, a mirror); the pinned key still decides.
        #[arg(long, value_name = "URL|DIR|TARBALL")]
        from: Option<String>,
    },
    /// Put an earlier generation of signed rules in force again (default: the one before).
    ///
    /// The generation is checked again (signature, hashes, rules) before the switch. The
    /// high-water mark stays: the next update replaces the rolled-back rules only with a
    /// newer version than the one rolled back from.
    ///
    /// Example: telestrip rules rollback --config /etc/telestrip/telestrip.yaml --to 41
    Rollback {
        /// Configuration file with a `rules_update:` section.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/telestrip/telestrip.yaml"
        )]
        config: PathBuf,
        /// Generation to put in force (see `rules status`).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
    },
    /// List the generations of signed rules kept, the one in force, and how updates fared.
    Status {
        /// Configuration file with a `rules_update:` section.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/telestrip/telestrip.yaml"
        )]
        config: PathBuf,
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
        /// Judge as for a client with this service profile on (repeatable); without it,
        /// profile rules are shown but do not apply, as for a client of no group.
        #[arg(long = "profile", value_name = "PROFILE")]
        profiles: Vec<String>,
    },
}

fn parse_action(text: &str) -> Result<telestrip::rules::Action, String> {
    match text {
        "drop" => Ok(telestrip::rules::Action::Drop),
        "reject" => Ok(telestrip::rules::Action::Reject),
        "log" => Ok(telestrip::rules::Action::Log),
        "allow" => Ok(telestrip::rules::Action::Allow),
        _ => Err(format!("{text:?} is not drop, reject, log or allow")),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!("{text:?} is not tcp or udp")),
    }
}

/// A percentage from 0 to 100 (`1`, `0.5`, `2%`).
fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 100"))
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
            threads,
            metrics,
            max_unjudged,
        } => cli::run_pcap(
            &PcapOptions {
                files,
                rules,
                format,
                dry_run,
                progress: !quiet,
                max_flows,
                threads: usize::from(threads),
                metrics,
                max_unjudged,
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
        Command::Completions { shell } => write_completions(shell, &mut out),
        Command::Man { dir } => write_man_pages(&dir),
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
            fleet,
            since,
            until,
            format,
            output,
            prometheus,
            prometheus_selector,
        } => {
            let period = telestrip::report::Period { since, until };
            let format = match format {
                ReportFormat::Text => cli::ReportFormat::Text,
                ReportFormat::Json => cli::ReportFormat::Json,
                ReportFormat::Html => cli::ReportFormat::Html,
            };
            if fleet {
                cli::fleet_report(
                    &files,
                    period,
                    prometheus.as_deref(),
                    format,
                    output.as_deref(),
                    &mut out,
                )
            } else {
                cli::report(
                    &files,
                    period,
                    prometheus
                        .as_deref()
                        .map(|url| (url, prometheus_selector.as_str())),
                    format,
                    output.as_deref(),
                    &mut out,
                )
            }
        }
        Command::Config {
            command: ConfigCommand::Check { file, strict },
        } => cli::config_check(&file, strict, &mut out),
        Command::Config {
            command: ConfigCommand::HashPassword { cost },
        } => cli::hash_password(cost, &mut std::io::stdin().lock(), &mut out),
        Command::Rules { command } => match command {
            RulesCommand::Check { dir, strict } => {
                cli::rules_check(dir.as_deref(), strict, &mut out)
            }
            RulesCommand::Test { dir, pcaps, expect } => cli::rules_test(
                &cli::RulesTestOptions {
                    rules: dir,
                    pcaps,
                    expect,
                },
                &mut out,
            ),
            RulesCommand::Diff { old, new } => cli::rules_diff(&old, &new, &mut out),
            RulesCommand::Publish {
                dir,
                key,
                password_file,
                output,
                ruleset_version,
                valid_for,
                min_telestrip,
                allow_lint_warnings,
            } => cli::rules_publish(
                &cli::PublishOptions {
                    dir,
                    key,
                    password_file,
                    output,
                    version: ruleset_version,
                    valid_for,
                    min_telestrip,
                    allow_lint_warnings,
                },
                &mut out,
            ),
            RulesCommand::Update { config, from } => {
                cli::rules_update(&cli::UpdateOptions { config, from }, &mut out)
            }
            RulesCommand::Rollback { config, to } => {
                cli::rules_rollback(&cli::RollbackOptions { config, to }, &mut out)
            }
            RulesCommand::Status { config } => cli::rules_status(&config, &mut out),
            RulesCommand::Import {
                files,
                format,
                vendor,
                id,
                action,
                category,
                source,
                subdomains,
                date,
                output,
                list_files,
            } => cli::rules_import(
                &cli::ImportArgs {
                    files,
                    format,
                    vendor,
                    id,
                    action,
                    category,
                    source,
                    subdomains,
                    date,
                    output,
                    list_files,
                },
                &mut out,
                &mut std::io::stderr(),
            ),
            RulesCommand::Explain {
                query,
                rules,
                port,
                protocol,
                profiles,
            } => cli::rules_explain(
                &ExplainOptions {
                    rules,
                    query,
                    port,
                    protocol,
                    profiles,
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

/// The completion script for `shell`.
fn write_completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> Result<u8, cli::CommandError> {
    use clap_complete::Generator;
    let mut command = Cli::command();
    command.set_bin_name("telestrip");
    command.build();
    // Into memory first: the generators panic when a write fails (a closed pipe).
    let mut script = Vec::new();
    shell.try_generate(&command, &mut script)?;
    out.write_all(&script)?;
    Ok(0)
}

/// Man pages for the command and every subcommand, named as man(1) finds them.
fn write_man_pages(dir: &std::path::Path) -> Result<u8, cli::CommandError> {
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    command.build();
    let mut pages = 0;
    let mut pending = vec![(String::from("telestrip"), command)];
    while let Some((name, command)) = pending.pop() {
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let page = command.clone().name(name.clone());
        let mut text = Vec::new();
        clap_mangen::Man::new(page).render(&mut text)?;
        std::fs::write(dir.join(format!("{name}.1")), text)?;
        pages += 1;
    }
    eprintln!("telestrip: {pages} man pages written to {}", dir.display());
    Ok(0)
}
