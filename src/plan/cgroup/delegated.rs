//! The cgroup of a rootless run: in the cgroup2 subtree delegated to the caller.
//!
//! A cgroup is delegated to a user when its directory, `cgroup.procs` and
//! `cgroup.subtree_control` belong to that user: systemd does this for
//! `user@UID.service` and everything below it (`Delegate=yes`), and an
//! administrator can do it with `chown`. Within such a subtree the user may make
//! cgroups, enable the controllers the subtree was given, write limits, and move
//! their own processes between cgroups whose common ancestor is delegated too.
//!
//! exprun runs as a process in some cgroup C of its own, and cgroup v2 lets a
//! cgroup that holds processes pass no controller to its children (the
//! "no internal processes" rule). So the run's cgroup goes next to C, into C's
//! parent P, which must itself be delegated:
//!
//! ```text
//!   user@1000.service/            delegated: owned by uid 1000
//!   └── app.slice/                P: the run's cgroup goes here
//!       ├── run-r1234.scope/      C: exprun itself (systemd-run --user --scope)
//!       └── exprun-<id>/          the run: limits, usage figures, kill on exit
//! ```
//!
//! Limits on P (and above) bound the run; limits on C alone do not.
//!
//! Which directories are delegated is read when the host is gathered
//! ([`Host::gather`]); the decisions here use only that.

use std::path::{Path, PathBuf};

use super::layout::{check_path, join_under};
use crate::cgroups::{needed_controllers, CgroupHost, CgroupPlan, Error, Limits, Version, CPU, MEMORY, PIDS};
use crate::plan::host::{user_manager_socket, Host};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Plan the cgroup `name` of a rootless run in the cgroup2 subtree delegated to
/// the caller: under `parent` (`--cgroup-parent`, which must be delegated), or
/// next to the caller's own cgroup. [`Error::NotDelegated`] when the caller has
/// no such subtree; [`Error::Unenforceable`] when a limit needs a controller
/// the subtree was not given.
pub fn plan(host: &Host, name: &str, parent: Option<&str>, limits: Limits) -> Result<CgroupPlan> {
    let parent_dir = delegated_parent(host, parent)?;
    let mount =
        host.cgroups.v2.as_ref().ok_or_else(|| Error::NotDelegated { why: "no cgroup2 mount".into() })?;
    // The highest delegated ancestor: controllers are enabled from there
    // down, and its own cgroup.controllers says what was delegated.
    let mut top = parent_dir.clone();
    while let Some(p) = top.parent().filter(|p| p.starts_with(&mount.point) && *p != mount.point) {
        if !host.delegated(p) {
            break;
        }
        top = p.to_path_buf();
    }
    let available = controllers(host, &top)?;
    for (ctrl, option) in needed_controllers(&limits, true)? {
        if !available.split_whitespace().any(|c| c == ctrl) {
            return Err(Error::Unenforceable {
                limit: option,
                why: format!(
                    "the {ctrl} controller is not delegated to you: {} lists {:?}",
                    top.join("cgroup.controllers").display(),
                    available.trim()
                ),
            });
        }
    }
    let mut enable_in: Vec<PathBuf> =
        parent_dir.ancestors().take_while(|a| a.starts_with(&top)).map(Path::to_path_buf).collect();
    enable_in.reverse();
    Ok(CgroupPlan {
        version: Version::V2,
        dirs: [("unified".to_string(), parent_dir.join(name))].into(),
        enable_in,
        make_parents: false,
        limits,
        scope: None,
    })
}

/// The `cgroup.controllers` of `dir`, as gathered.
pub(super) fn controllers(host: &Host, dir: &Path) -> Result<String> {
    let listing = dir.join("cgroup.controllers");
    match host.cgroup_dirs.get(dir).map(|d| &d.controllers) {
        Some(Ok(s)) => Ok(s.clone()),
        Some(Err(why)) => Err(Error::Host { path: listing, source: std::io::Error::other(why.clone()) }),
        None => Err(Error::Host { path: listing, source: std::io::Error::from_raw_os_error(libc::ENOENT) }),
    }
}

/// Why a rootless caller can have no cgroup on this host, in one line naming
/// what was looked for: a cgroup2 subtree delegated to the caller
/// (`not_delegated` says why there is none), a systemd user manager to ask for
/// one, and controllers on cgroup v2 rather than v1.
pub fn no_cgroup_reason(host: &Host, not_delegated: &str) -> String {
    let uid = host.process.euid;
    let mut missing = vec![format!("no cgroup2 subtree is delegated to uid {uid} ({not_delegated})")];
    if !host.user_manager_runs {
        missing.push(format!("no systemd user manager ({} is absent)", user_manager_socket(uid).display()));
    }
    let on_v1: Vec<&str> =
        [MEMORY, CPU, PIDS].into_iter().filter(|c| host.cgroups.v1.contains_key(*c)).collect();
    if !on_v1.is_empty() {
        missing.push(format!(
            "the {} controllers are on cgroup v1 hierarchies, which are not delegated to users",
            on_v1.join(", ")
        ));
    }
    format!("no cgroup can be had: {}", missing.join("; "))
}

/// The delegated cgroup a rootless run's cgroup goes into: `parent`, or the
/// parent of exprun's own cgroup; [`Error::NotDelegated`] saying why not.
pub fn delegated_parent(host: &Host, parent: Option<&str>) -> Result<PathBuf> {
    let not_delegated = |why: String| Error::NotDelegated { why };
    let mount =
        host.cgroups.v2.as_ref().ok_or_else(|| not_delegated("no cgroup2 hierarchy is mounted".into()))?;
    let dir = match parent {
        Some(p) => {
            check_path(p, true)?;
            let dir = join_under(mount, p).ok_or_else(|| Error::Parent {
                parent: p.into(),
                why: format!("not inside the cgroup2 hierarchy mounted at {}", mount.point.display()),
            })?;
            if !host.delegated(&dir) {
                return Err(not_delegated(format!(
                    "the cgroup parent {} is not delegated to you",
                    dir.display()
                )));
            }
            dir
        }
        None => {
            let own = own_dir(&host.cgroups).ok_or_else(|| {
                not_delegated("this process is in no cgroup of the cgroup2 hierarchy".into())
            })?;
            let p = own.parent().filter(|p| p.starts_with(&mount.point) && *p != mount.point);
            match p {
                Some(p) if host.delegated(p) => p.to_path_buf(),
                _ if host.delegated(&own) => {
                    return Err(not_delegated(format!(
                        "exprun's own cgroup {own} is delegated to you, but it holds processes, and a \
                         cgroup with processes cannot pass controllers to its children (cgroup v2's \
                         \"no internal processes\" rule); start exprun in a child of it (mkdir {own}/cli \
                         && echo $$ > {own}/cli/cgroup.procs)",
                        own = own.display()
                    )))
                }
                _ => {
                    return Err(not_delegated(format!(
                        "exprun's cgroup {} is not delegated to you",
                        own.display()
                    )))
                }
            }
        }
    };
    Ok(dir)
}

/// exprun's own cgroup2 directory.
fn own_dir(cgroups: &CgroupHost) -> Option<PathBuf> {
    join_under(cgroups.v2.as_ref()?, cgroups.caller.get("")?)
}

/// The cgroup2 directories whose delegation to `uid` a rootless plan may ask
/// about: exprun's own cgroup and its ancestors, each of `parents` (cgroup
/// paths) and its ancestors, and `uid`'s systemd user manager's cgroup.
pub fn candidates<'a>(
    cgroups: &CgroupHost,
    uid: u32,
    parents: impl IntoIterator<Item = &'a PathBuf>,
) -> Vec<PathBuf> {
    let Some(mount) = &cgroups.v2 else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = Vec::new();
    let starts = own_dir(cgroups).into_iter().chain(
        parents
            .into_iter()
            .filter(|p| check_path(&p.to_string_lossy(), true).is_ok())
            .filter_map(|p| join_under(mount, &p.to_string_lossy())),
    );
    for start in starts {
        for a in start.ancestors().take_while(|a| a.starts_with(&mount.point)) {
            dirs.push(a.to_path_buf());
        }
    }
    dirs.push(super::systemd::user_service(&mount.point, uid));
    dirs.sort();
    dirs.dedup();
    dirs
}
