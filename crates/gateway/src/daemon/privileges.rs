//! Least privilege for `telestrip run`: once everything that needs root is open (NFQUEUE
//! sockets, raw sockets, AF_PACKET captures, the control-plane port, the audit log), the
//! daemon becomes an unprivileged user and keeps only the capabilities its packet threads
//! still use: CAP_NET_ADMIN to send NFQUEUE verdicts (the kernel checks it on every netlink
//! message), nothing in passive mode.
//!
//! [`limit_for_life`] runs before any thread starts; [`drop_privileges`] on the main thread
//! before the packet threads start, which inherit its credentials.
//! Threads started earlier (control plane, audit writer) follow the user change (glibc
//! applies set*id to every thread) and lose every capability, since only the main thread
//! asked to keep them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

/// What the daemon runs as after [`drop_privileges`].
#[derive(Debug)]
pub struct Dropped {
    pub user: String,
    pub uid: u32,
    pub capabilities: Vec<String>,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "running as {} (uid {}) with {}",
            self.user,
            self.uid,
            if self.capabilities.is_empty() {
                "no capabilities".to_string()
            } else {
                self.capabilities.join(", ")
            }
        )
    }
}

/// Files the daemon writes after the drop; the user must own them, and their directories
/// must let it create files (rotation, the head file).
pub struct Writable {
    pub files: Vec<PathBuf>,
}

/// Limits what any thread of the process could ever gain: the bounding set shrinks to
/// `keep` (when allowed to change it) and no execve may add privileges. Both are per thread
/// and inherited, so this runs first, before the daemon starts any thread. What the process
/// holds now is untouched.
pub fn limit_for_life(keep: &[Capability]) -> anyhow::Result<()> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    let may_change = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .context("cannot read capabilities")?;
    if may_change {
        for cap in caps::all().difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .with_context(|| format!("cannot drop {cap} from the bounding set"))?;
        }
    }
    nix::sys::prctl::set_no_new_privs().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
    Ok(())
}

/// Becomes `user` (when running as root) and keeps only `keep` of the capabilities.
/// `readable` must stay readable (the rules directory, for reloads).
pub fn drop_privileges(
    user: &str,
    keep: &[Capability],
    writable: &Writable,
    readable: Option<&Path>,
) -> anyhow::Result<Dropped> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    if Uid::current().is_root() && user != "root" {
        let account = User::from_name(user)
            .with_context(|| format!("cannot look up the user {user}"))?
            .with_context(|| {
                format!("the user {user} (config `user:`) does not exist; create it (useradd --system --no-create-home {user}) or name another unprivileged user")
            })?;
        if account.uid.is_root() {
            bail!("the user {user} has uid 0: name an unprivileged user in `user:`");
        }
        for file in &writable.files {
            if file.exists() {
                nix::unistd::chown(file, Some(account.uid), Some(account.gid)).with_context(
                    || format!("cannot give {} to the user {user}", file.display()),
                )?;
            }
        }
        nix::sys::prctl::set_keepcaps(true).context("prctl(PR_SET_KEEPCAPS)")?;
        nix::unistd::setgroups(&[account.gid]).context("setgroups")?;
        nix::unistd::setgid(account.gid).context("setgid")?;
        nix::unistd::setuid(account.uid).context("setuid")?;
        nix::sys::prctl::set_keepcaps(false).context("prctl(PR_SET_KEEPCAPS)")?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
            || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
        {
            bail!("could become root again after dropping privileges");
        }
    }
    caps::clear(None, CapSet::Ambient).context("cannot clear the ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("cannot clear the inheritable capabilities")?;
    let permitted = caps::read(None, CapSet::Permitted).context("cannot read capabilities")?;
    let kept: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Effective, &kept).context("cannot set the effective capabilities")?;
    caps::set(None, CapSet::Permitted, &kept).context("cannot set the permitted capabilities")?;
    check_access(writable, readable)?;
    let uid = Uid::current();
    let user = User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    let mut capabilities: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    Ok(Dropped {
        user,
        uid: uid.as_raw(),
        capabilities,
    })
}

/// Fails at start, with the fix in the message, when the new user could not do its work
/// later (a reload or a rotation would fail in the middle of the night instead).
fn check_access(writable: &Writable, readable: Option<&Path>) -> anyhow::Result<()> {
    use nix::unistd::{access, AccessFlags};
    let user = Uid::effective();
    for file in &writable.files {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
                bail!(
                    "uid {user} cannot create files in {} (audit log rotation and its head file need that): give the directory to that user, or set `user:`",
                    dir.display()
                );
            }
        }
        if file.exists() && access(file.as_path(), AccessFlags::W_OK).is_err() {
            bail!("uid {user} cannot write {}", file.display());
        }
    }
    if let Some(path) = readable {
        if std::fs::read_dir(path).is_err() && std::fs::read(path).is_err() {
            bail!(
                "uid {user} cannot read the rules at {} (reloads need that): make them readable to that user, or set `user:`",
                path.display()
            );
        }
    }
    Ok(())
}
