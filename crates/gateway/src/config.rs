//! The daemon's configuration file (`telestrip run --config FILE`), YAML with every field
//! documented in `deploy/telestrip.yaml`. Unknown fields are errors; errors name file, line
//! and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::clients::{ClientGroup, ClientGroups};

/// What to do with traffic when telestrip cannot judge it (daemon down, queue full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Let traffic pass unfiltered: the network keeps working, telemetry may leak.
    Open,
    /// Drop traffic: nothing leaks, the network stops.
    Closed,
}

/// Packet marks that carry a verdict from telestrip to the firewall rules in `deploy/`: a
/// 4-bit code at bit `mark_shift` of the packet and connection mark, so other users of the
/// mark keep their bits. Codes: 1 accept, 2 drop, 3 reject (saved on the connection);
/// 6 drop and 7 reject this packet only (DNS messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    pub shift: u8,
}

impl Marks {
    pub const ACCEPT: u32 = 1;
    pub const DROP: u32 = 2;
    pub const REJECT: u32 = 3;
    pub const DROP_PACKET: u32 = 6;
    pub const REJECT_PACKET: u32 = 7;

    pub fn mask(self) -> u32 {
        0xf << self.shift
    }

    pub fn mark(self, code: u32) -> u32 {
        code << self.shift
    }
}

/// How packets reach telestrip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inline: the firewall queues packets to telestrip, which decides their fate.
    Nfqueue,
    /// A copy of the traffic from capture interfaces: log only, optionally TCP resets.
    Passive,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Passive mode: interfaces to capture on (mirror port, or the LAN side).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Passive mode: send a TCP RST to both ends of a flow whose rule blocks.
    #[serde(default)]
    pub passive_resets: bool,
    /// NFQUEUE queue numbers, one packet thread each.
    #[serde(default = "default_queues")]
    pub queues: Vec<u16>,
    /// Rule directory; absent: the rules bundled into the binary.
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// How often (milliseconds) to look for changed rule files and reload them; 0: only on
    /// SIGHUP.
    #[serde(default = "default_rules_poll_ms")]
    pub rules_poll_ms: u64,
    /// Signed rule packs from a publisher (`telestrip rules update`); the daemon then runs
    /// the newest accepted generation, and `rules:` only until the first is accepted.
    #[serde(default)]
    pub rules_update: Option<RulesUpdateConfig>,
    /// `false`: dry run, blocking rules only log.
    #[serde(default = "default_true")]
    pub enforce: bool,
    #[serde(default = "default_fail")]
    pub fail: FailMode,
    /// Bit offset of telestrip's 4-bit field in the packet and connection mark.
    #[serde(default = "default_mark_shift")]
    pub mark_shift: u8,
    /// Hard cap on tracked flows.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Packets the kernel may hold for one queue before the fail mode applies.
    #[serde(default = "default_queue_length")]
    pub queue_length: u32,
    /// Microseconds a packet thread keeps asking for the next packet before it sleeps
    /// (0: sleeps at once). Spares the wake-up (tens of microseconds) for packets that
    /// follow each other closely, at the cost of CPU time while it waits.
    #[serde(default)]
    pub busy_poll_us: u32,
    /// Address of the control-plane HTTP server (`/metrics`, `/healthz`, `/readyz`, status
    /// page at `/`); `null` turns it off.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    /// TLS, basic-auth users, headers and rate limit of the control plane, in the web
    /// configuration format of Prometheus exporters (`--web.config.file`); absent: plain
    /// HTTP without passwords, which is for loopback only.
    #[serde(default)]
    pub web_config_file: Option<PathBuf>,
    /// The tamper-evident audit log; absent: matched flows only go to stdout.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Flows with real ECH (hidden true name): allow, log or drop.
    #[serde(default)]
    pub ech: crate::engine::EchPolicy,
    /// Flows on UDP 443 whose QUIC telestrip cannot read (a version it does not know, an
    /// Initial that does not decrypt): allow, log or drop. `drop` makes browsers fall back
    /// to TCP, where the name is visible; each such flow is counted as a bypass attempt.
    #[serde(default)]
    pub quic_unreadable: crate::engine::Policy,
    /// Inline mode: take the `ech` parameter out of the HTTPS/SVCB records of DNS answers
    /// (over TCP: hide it), so clients connect without ECH and show their real server name.
    #[serde(default)]
    pub strip_ech: bool,
    /// The unprivileged user a daemon started as root becomes once its sockets are open
    /// (`root` keeps root). It must be able to read the rules and write the audit
    /// directory. Whatever the user, only CAP_NET_ADMIN (inline) or no capability
    /// (passive) is kept.
    #[serde(default = "default_user")]
    pub user: String,
    /// This gateway's name, in its audit records, status page and metrics (default: the host
    /// name).
    #[serde(default)]
    pub gateway: Option<String>,
    /// The site this gateway serves (a building, an office, a data centre): the fleet report
    /// counts a site covered while one of its gateways enforces.
    #[serde(default)]
    pub site: Option<String>,
    /// This gateway is one of a pair (keepalived and conntrackd); absent: it stands alone.
    #[serde(default)]
    pub pair: Option<PairConfig>,
    /// A gateway pair: share learned addresses and ECH configurations with the other
    /// gateways of the site through Redis; absent: not shared.
    #[serde(default)]
    pub shared_state: Option<SharedStateConfig>,
    /// Service profiles (allow sets the rules define, e.g. for Defender for Endpoint) on for
    /// every client. Each re-opens the endpoints its rules list; see `rules explain`.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Client groups by address prefix, each with its own profiles and enforcement; the
    /// longest prefix decides. Clients of no group are the group `default`.
    #[serde(default)]
    pub clients: Vec<ClientGroupConfig>,
}

/// One entry of `clients:`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientGroupConfig {
    /// The group's name: a label on the flow counters and in reports, so keep groups few.
    pub name: String,
    /// Client addresses of the group (`10.1.0.0/16`, `2001:db8:1::/48`, one address).
    pub prefixes: Vec<ipnet::IpNet>,
    /// Service profiles on for this group, besides those on for every client.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Overrides `enforce` for this group: `false` makes a pilot subnet a dry run.
    #[serde(default)]
    pub enforce: Option<bool>,
}

impl Config {
    /// The client groups for the engine; `enforce` is the gateway's own setting (passive
    /// mode without resets enforces nothing, whatever a group says).
    pub fn client_groups(&self, enforce_possible: bool) -> Result<ClientGroups, String> {
        let groups = self
            .clients
            .iter()
            .map(|group| ClientGroup {
                name: group.name.clone(),
                prefixes: group.prefixes.clone(),
                profiles: group.profiles.clone(),
                enforce: group.enforce.map(|on| on && enforce_possible),
            })
            .collect();
        ClientGroups::new(self.profiles.clone(), groups).map_err(|e| format!("clients: {e}"))
    }

    /// Profile names the config turns on that `rules` does not define.
    pub fn unknown_profiles(&self, rules: &crate::rules::RuleSet) -> Vec<String> {
        let mut unknown: Vec<String> = self
            .profiles
            .iter()
            .chain(self.clients.iter().flat_map(|g| &g.profiles))
            .filter(|name| rules.profile(name).is_none())
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }
}

/// The `pair:` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfig {
    /// The addresses keepalived moves to the active gateway; this gateway counts as active
    /// while it holds all of them (`telestrip_pair_active`, the status page).
    #[serde(default)]
    pub virtual_addresses: Vec<std::net::IpAddr>,
    /// Write every block verdict into the connection table through ctnetlink, so that
    /// conntrackd replicates it to the other gateway (a mark saved by the firewall rules
    /// alone is not announced for a flow whose packets are dropped).
    #[serde(default = "default_true")]
    pub announce_verdicts: bool,
}

impl Config {
    /// Whether block verdicts go to the connection table for conntrackd.
    pub fn announce_verdicts(&self) -> bool {
        self.pair
            .as_ref()
            .is_some_and(|pair| pair.announce_verdicts)
    }
}

/// The `shared_state:` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedStateConfig {
    /// The Redis server, `redis://HOST:PORT/DB` (`redis://:PASSWORD@HOST/` with a password).
    pub redis: String,
    /// Prefix of the keys and of the channel; gateways that share state use the same one,
    /// other sites on the same server another.
    #[serde(default = "default_shared_prefix")]
    pub prefix: String,
    /// Milliseconds to wait for Redis before counting it as down (never on packet threads).
    #[serde(default = "default_shared_timeout_ms")]
    pub timeout_ms: u64,
    /// Facts kept for Redis while it is unreachable, written when it is back; beyond this
    /// the oldest are dropped (counted).
    #[serde(default = "default_shared_backlog")]
    pub backlog: usize,
    /// Most facts read from Redis when connecting (the learned tables have caps of their own).
    #[serde(default = "default_shared_max_import")]
    pub max_import: usize,
}

/// The `rules_update:` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesUpdateConfig {
    /// Where the publisher's packs are: an `http://` or `https://` URL of the directory
    /// `rules publish` wrote, a local directory (a mounted medium, a git checkout), or a
    /// `.tar`/`.tar.gz` of one (air-gapped sites).
    pub source: String,
    /// The publisher's minisign public key: the key line (`RWQ...`) or the whole
    /// `minisign.pub` text. Exactly one of this and `public_key_file`.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Generations, the high-water mark and the HTTP validators live here.
    #[serde(default = "default_rules_state_dir")]
    pub state_dir: PathBuf,
    /// Generations kept for `rules rollback` (the one in force always stays).
    #[serde(default = "default_rules_keep")]
    pub keep: usize,
    /// Refuse a pack that removes more than this share (percent) of the names and address
    /// blocks in force: a truncated list must not open the gates.
    #[serde(default = "default_max_removed_percent")]
    pub max_removed_percent: u8,
    /// Names of this site that must keep working (sign-in, updates, the line-of-business
    /// services): a pack whose rules would block one of them is refused.
    #[serde(default)]
    pub must_keep_working: Vec<String>,
    /// Accept packs with lint warnings (errors and failing rule tests always refuse).
    #[serde(default)]
    pub allow_lint_warnings: bool,
    /// Tries per run when the source cannot be reached (waits 1 s, 2 s, 4 s, ..., or what
    /// the server's Retry-After says, up to 5 minutes).
    #[serde(default = "default_update_attempts")]
    pub attempts: u32,
    /// Seconds each download may take.
    #[serde(default = "default_update_timeout")]
    pub timeout_seconds: u64,
}

impl RulesUpdateConfig {
    /// The pinned key, from `public_key` or `public_key_file`.
    pub fn key(&self) -> Result<crate::rulepack::PublicKey, String> {
        let text = match (&self.public_key, &self.public_key_file) {
            (Some(text), None) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("public_key_file: {}: {e}", path.display()))?,
            _ => {
                return Err(
                    "give the publisher's key as exactly one of public_key and public_key_file"
                        .into(),
                )
            }
        };
        crate::rulepack::PublicKey::parse(&text).map_err(|e| e.to_string())
    }

    pub fn store(&self) -> crate::rulepack::Store {
        crate::rulepack::Store::at(&self.state_dir)
    }
}

/// The `audit:` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The log file (JSON lines, hash-chained). Rotate it by moving it away (logrotate's
    /// default `create` mode), never with `copytruncate`.
    pub path: PathBuf,
    /// File holding a secret (16 bytes or more): client addresses are then written as a
    /// keyed hash, the same for the same client, so the log can be kept under data
    /// protection rules.
    #[serde(default)]
    pub pseudonymize_key_file: Option<PathBuf>,
    /// Epochs of pseudonymisation keys known to others (a copied key file, a departed
    /// admin): the start record and the report say that pseudonyms made with them identify
    /// clients. A key's epoch is in the start record and in `config check`; rotate with a
    /// new key file and SIGHUP.
    #[serde(default)]
    pub compromised_key_epochs: Vec<String>,
    /// Seconds between heartbeat records, which show the filter ran without a gap.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_seconds: u64,
}

fn default_mode() -> Mode {
    Mode::Nfqueue
}
fn default_mark_shift() -> u8 {
    4
}
fn default_queues() -> Vec<u16> {
    vec![0]
}
fn default_true() -> bool {
    true
}
fn default_fail() -> FailMode {
    FailMode::Open
}
fn default_max_flows() -> usize {
    1_000_000
}
fn default_queue_length() -> u32 {
    4096
}
fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
}
fn default_user() -> String {
    "nobody".into()
}
fn default_rules_poll_ms() -> u64 {
    1000
}
fn default_rules_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/telestrip/rules")
}
fn default_rules_keep() -> usize {
    5
}
fn default_max_removed_percent() -> u8 {
    10
}
fn default_update_attempts() -> u32 {
    4
}
fn default_update_timeout() -> u64 {
    60
}
fn default_heartbeat() -> u64 {
    60
}
fn default_shared_prefix() -> String {
    "telestrip".into()
}
fn default_shared_timeout_ms() -> u64 {
    250
}
fn default_shared_backlog() -> usize {
    10_000
}
fn default_shared_max_import() -> usize {
    262_144
}

/// A gateway or site name: short, and safe in file names, label values and log lines.
fn valid_label(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Longest busy-poll time accepted.
const MAX_BUSY_POLL_US: u32 = 10_000;

/// Default port of the control-plane HTTP server.
pub const DEFAULT_PORT: u16 = 9477;

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        Self::from_text(&path.display().to_string(), &text)
    }

    /// Parses and checks configuration text; `name` is the file shown in errors.
    pub fn from_text(name: &str, text: &str) -> anyhow::Result<Self> {
        let config: Config = serde_yaml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", crate::rules::yaml_error(name, &e)))?;
        config.check().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.mode == Mode::Nfqueue && self.queues.is_empty() {
            return Err("queues: at least one queue is needed".into());
        }
        if self.mode == Mode::Passive && self.interfaces.is_empty() {
            return Err("interfaces: passive mode needs at least one capture interface".into());
        }
        if self.mode == Mode::Passive && self.strip_ech {
            return Err(
                "strip_ech: passive mode sees a copy of the traffic and cannot change \
                 DNS answers; use mode: nfqueue, or leave strip_ech off"
                    .into(),
            );
        }
        if let Some(audit) = &self.audit {
            if let Some(bad) = audit
                .compromised_key_epochs
                .iter()
                .find(|e| !crate::audit::is_key_epoch(e))
            {
                return Err(format!(
                    "audit.compromised_key_epochs: {bad:?} is not a key epoch (16 hex digits, \
                     as the start record's key_epoch and `config check` show it)"
                ));
            }
            if !(1..=3600).contains(&audit.heartbeat_seconds) {
                return Err(format!(
                    "audit.heartbeat_seconds: {} is not between 1 and 3600",
                    audit.heartbeat_seconds
                ));
            }
        }
        if self.busy_poll_us > MAX_BUSY_POLL_US {
            return Err(format!(
                "busy_poll_us: {} is more than {MAX_BUSY_POLL_US} (10 ms); a packet thread \
                 that polls longer only burns CPU time",
                self.busy_poll_us
            ));
        }
        for (field, value) in [("gateway", &self.gateway), ("site", &self.site)] {
            if let Some(value) = value {
                if !valid_label(value) {
                    return Err(format!(
                        "{field}: {value:?} must be 1 to 64 letters, digits, '.', '-' or '_'"
                    ));
                }
            }
        }
        if self.pair.is_some() && self.mode == Mode::Passive {
            return Err(
                "pair: a passive gateway gives the kernel no verdicts to replicate; \
                 use mode: nfqueue, or leave the section out"
                    .into(),
            );
        }
        if let Some(shared) = &self.shared_state {
            if !shared.redis.starts_with("redis://") && !shared.redis.starts_with("rediss://") {
                return Err(format!(
                    "shared_state.redis: {:?} is not a Redis URL (redis://HOST:PORT/DB)",
                    shared.redis
                ));
            }
            if let Err(error) = redis::Client::open(shared.redis.as_str()) {
                return Err(format!("shared_state.redis: {error}"));
            }
            if !(10..=10_000).contains(&shared.timeout_ms) {
                return Err(format!(
                    "shared_state.timeout_ms: {} is not between 10 and 10000",
                    shared.timeout_ms
                ));
            }
            if shared.prefix.is_empty() || shared.prefix.contains(char::is_whitespace) {
                return Err(format!(
                    "shared_state.prefix: {:?} must be a non-empty word",
                    shared.prefix
                ));
            }
        }
        if let Some(update) = &self.rules_update {
            update.key().map_err(|e| format!("rules_update: {e}"))?;
            if update.keep == 0 {
                return Err("rules_update.keep: at least 1 generation must be kept".into());
            }
            if update.max_removed_percent > 100 {
                return Err(format!(
                    "rules_update.max_removed_percent: {} is more than 100",
                    update.max_removed_percent
                ));
            }
            if !(1..=20).contains(&update.attempts) {
                return Err(format!(
                    "rules_update.attempts: {} is not between 1 and 20",
                    update.attempts
                ));
            }
            for name in &update.must_keep_working {
                if crate::inspect::Name::from_bytes(name.as_bytes()).is_none() {
                    return Err(format!(
                        "rules_update.must_keep_working: {name:?} is not a host name"
                    ));
                }
            }
        }
        for group in &self.clients {
            if !valid_label(&group.name) {
                return Err(format!(
                    "clients: group name {:?} must be 1 to 64 letters, digits, '.', '-' or '_'",
                    group.name
                ));
            }
            for prefix in &group.prefixes {
                if prefix.trunc() != *prefix {
                    return Err(format!(
                        "clients: group {:?}: {prefix} has host bits set; did you mean {}?",
                        group.name,
                        prefix.trunc()
                    ));
                }
            }
        }
        self.client_groups(true)?;
        if self.mark_shift > 28 {
            return Err(format!(
                "mark_shift: {} leaves no room for 4 bits in a 32-bit mark",
                self.mark_shift
            ));
        }
        Ok(())
    }

    /// What is unsafe about serving the control plane as configured (`web` is the web
    /// configuration as loaded), if anything: beyond loopback it needs TLS and passwords.
    pub fn control_plane_warning(
        &self,
        web: Option<&crate::server::web::WebConfig>,
    ) -> Option<String> {
        let listen = self.listen?;
        if listen.ip().is_loopback() {
            return None;
        }
        let missing = match web {
            None => "without TLS or passwords (no web_config_file)",
            Some(web) if web.tls.is_none() && !web.authenticates() => {
                "without TLS or passwords (the web configuration has neither)"
            }
            Some(web) if web.tls.is_none() => {
                "without TLS: passwords and metrics cross the network in clear"
            }
            Some(web) if !web.authenticates() && !web.verifies_clients() => {
                "without passwords or client certificates: anyone who reaches it reads it"
            }
            Some(_) => return None,
        };
        Some(format!(
            "the control plane listens on {listen}, beyond loopback, {missing}; see \
             web_config_file in deploy/telestrip.yaml"
        ))
    }

    /// This gateway's name: `gateway:`, else the host name.
    pub fn gateway_name(&self) -> String {
        self.gateway.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_else(|| "telestrip".into())
        })
    }

    pub fn marks(&self) -> Marks {
        Marks {
            shift: self.mark_shift,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_an_empty_mapping() {
        let config = parse("{}").unwrap();
        assert_eq!(config.queues, [0]);
        assert!(config.enforce);
        assert_eq!(config.fail, FailMode::Open);
        assert_eq!(config.marks().mask(), 0xf0);
        assert_eq!(config.marks().mark(Marks::DROP), 0x20);
        assert_eq!(
            config.user, "nobody",
            "a daemon started as root drops to nobody"
        );
    }

    #[test]
    fn the_control_plane_listens_on_loopback_unless_told_otherwise() {
        let config = parse("{}").unwrap();
        assert_eq!(
            config.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9477)))
        );
        assert_eq!(config.audit, None);
        assert_eq!(parse("listen: null\n").unwrap().listen, None);
        let config = parse("listen: \"[::1]:9100\"\naudit:\n  path: /tmp/a.jsonl\n").unwrap();
        assert_eq!(config.listen, Some("[::1]:9100".parse().unwrap()));
        let audit = config.audit.unwrap();
        assert_eq!(audit.heartbeat_seconds, 60);
        assert_eq!(audit.pseudonymize_key_file, None);
    }

    #[test]
    fn client_groups_are_read_and_checked() {
        let config = parse(
            "profiles: [edr]\nclients:\n  - name: servers\n    prefixes: [10.1.0.0/16]\n    profiles: [updates]\n  - name: pilot\n    prefixes: [10.2.0.0/16, \"2001:db8::/32\"]\n    enforce: false\n",
        )
        .unwrap();
        assert_eq!(config.clients.len(), 2);
        let groups = config.client_groups(true).unwrap();
        assert_eq!(groups.group_of("10.2.0.1".parse().unwrap()), 2);
        let rules = crate::rules::RuleSet::empty();
        assert_eq!(config.unknown_profiles(&rules), ["edr", "updates"]);
        let bad = parse("clients:\n  - name: a b\n    prefixes: [10.0.0.0/8]\n").unwrap_err();
        assert!(bad.contains("group name"), "{bad}");
        let host_bits = parse("clients:\n  - name: a\n    prefixes: [10.0.0.1/8]\n").unwrap_err();
        assert!(host_bits.contains("did you mean 10.0.0.0/8"), "{host_bits}");
        let twice = parse(
            "clients:\n  - name: a\n    prefixes: [10.0.0.0/8]\n  - name: b\n    prefixes: [10.0.0.0/8]\n",
        )
        .unwrap_err();
        assert!(twice.contains("in client groups"), "{twice}");
        let typo = parse("clients:\n  - name: a\n    prefix: [10.0.0.0/8]\n").unwrap_err();
        assert!(typo.contains(":3:"), "{typo}");
    }

    #[test]
    fn bad_control_plane_settings_name_the_line() {
        let error = parse("queues: [0]\nlisten: localhost\n").unwrap_err();
        assert!(error.contains("c.yaml:2:9"), "{error}");
        let error = parse("audit:\n  path: /tmp/a\n  pseudonymise: yes\n").unwrap_err();
        assert!(
            error.contains(":3:3") && error.contains("unknown field"),
            "{error}"
        );
        let error = parse("ech: block\n").unwrap_err();
        assert!(
            error.contains("c.yaml:1:6") && error.contains("allow"),
            "{error}"
        );
        assert_eq!(
            parse("ech: drop\n").unwrap().ech,
            crate::engine::EchPolicy::Drop
        );
        let error = parse("audit:\n  path: /tmp/a\n  heartbeat_seconds: 0\n").unwrap_err();
        assert!(error.contains("heartbeat_seconds"), "{error}");
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/telestrip.yaml");
        let config = Config::load(&example).unwrap();
        assert_eq!(config.queues, [0, 1]);
    }

    #[test]
    fn compromised_key_epochs_must_be_epochs() {
        let config =
            parse("audit:\n  path: /tmp/a\n  compromised_key_epochs: [0123456789abcdef]\n")
                .unwrap();
        assert_eq!(
            config.audit.unwrap().compromised_key_epochs,
            ["0123456789abcdef"]
        );
        let error = parse("audit:\n  path: /tmp/a\n  compromised_key_epochs: [my-old-key]\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"my-old-key\" is not a key epoch"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let error = parse("queues: [0]\nfail: sometimes\n").unwrap_err();
        assert!(error.contains("c.yaml:2:7"), "{error}");
        let error = parse("queues: [0]\ncolour: red\n").unwrap_err();
        assert!(
            error.contains(":2:1") && error.contains("unknown field"),
            "{error}"
        );
        let error = parse("mode: passive\n").unwrap_err();
        assert!(
            error.contains("needs at least one capture interface"),
            "{error}"
        );
        let error = parse("mark_shift: 30\n").unwrap_err();
        assert!(error.contains("no room"), "{error}");
        let error = parse("mode: passive\ninterfaces: [eth1]\nstrip_ech: true\n").unwrap_err();
        assert!(error.contains("strip_ech: passive mode"), "{error}");
        assert!(parse("strip_ech: true\n").unwrap().strip_ech);
        let error = parse("busy_poll_us: 20000\n").unwrap_err();
        assert!(error.contains("busy_poll_us: 20000"), "{error}");
        assert_eq!(parse("busy_poll_us: 100\n").unwrap().busy_poll_us, 100);
    }

    #[test]
    fn pair_settings_are_checked() {
        let pair = parse(
            "gateway: gw-a\npair:\n  virtual_addresses: [10.0.0.1, 'fd00::1']\nshared_state:\n  redis: redis://10.0.0.1:6379/0\n  prefix: telestrip:site-a\n",
        )
        .unwrap();
        assert!(pair.announce_verdicts());
        assert_eq!(pair.pair.as_ref().unwrap().virtual_addresses.len(), 2);
        assert!(!parse("").unwrap().announce_verdicts());
        assert_eq!(pair.gateway_name(), "gw-a");
        assert_eq!(
            parse("site: berlin-1\n").unwrap().site.as_deref(),
            Some("berlin-1")
        );
        let error = parse("site: \"Berlin Mitte\"\n").unwrap_err();
        assert!(error.contains("site: \"Berlin Mitte\" must be"), "{error}");
        let shared = pair.shared_state.unwrap();
        assert_eq!((shared.timeout_ms, shared.backlog), (250, 10_000));
        assert!(
            !parse("").unwrap().gateway_name().is_empty(),
            "the host name"
        );
        let error = parse("mode: passive\ninterfaces: [eth1]\npair: {}\n").unwrap_err();
        assert!(error.contains("pair: a passive gateway"), "{error}");
        let error = parse("pair:\n  virtual_addresses: [10.0.0.300]\n").unwrap_err();
        assert!(error.contains(":2:"), "{error}");
        let error = parse("shared_state:\n  redis: 10.0.0.1:6379\n").unwrap_err();
        assert!(error.contains("not a Redis URL"), "{error}");
        let error =
            parse("shared_state:\n  redis: redis://10.0.0.1/\n  timeout_ms: 0\n").unwrap_err();
        assert!(error.contains("shared_state.timeout_ms: 0"), "{error}");
        let error =
            parse("shared_state:\n  redis: redis://10.0.0.1/\n  colour: red\n").unwrap_err();
        assert!(
            error.contains(":3:3") && error.contains("unknown field"),
            "{error}"
        );
    }
}
