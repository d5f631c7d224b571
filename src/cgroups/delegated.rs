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

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{
    check_path, join_under, CgroupHost, CgroupPlan, Error, Limits, Result, Version, CPU, MEMORY, PIDS,
};

/// Where a user's systemd manager listens (`systemd --user` makes this socket
/// in the user's runtime directory); without it no scope can be asked for.
fn user_manager_socket(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}/systemd/private"))
}

impl CgroupHost {
    /// Plan the cgroup `name` of a rootless run in the cgroup2 subtree delegated
    /// to the caller, `uid`: under `parent` (`--cgroup-parent`, which must be delegated),
    /// or next to the caller's own cgroup. [`Error::NotDelegated`] when the caller
    /// has no such subtree; [`Error::Unenforceable`] when a limit needs a
    /// controller the subtree was not given.
    pub fn plan_delegated(
        &self,
        name: &str,
        parent: Option<&str>,
        limits: Limits,
        uid: u32,
    ) -> Result<CgroupPlan> {
        let parent_dir = self.delegated_parent(parent, uid)?;
        let delegated = |dir: &Path| delegated_to(dir, uid);
        let mount = self.v2.as_ref().ok_or_else(|| Error::NotDelegated { why: "no cgroup2 mount".into() })?;
        // The highest delegated ancestor: controllers are enabled from there
        // down, and its own cgroup.controllers says what was delegated.
        let mut top = parent_dir.clone();
        while let Some(p) = top.parent().filter(|p| p.starts_with(&mount.point) && *p != mount.point) {
            if !delegated(p) {
                break;
            }
            top = p.to_path_buf();
        }
        let listing = top.join("cgroup.controllers");
        let available =
            fs::read_to_string(&listing).map_err(|source| Error::Host { path: listing.clone(), source })?;
        for (ctrl, option) in super::limits::needed_controllers(&limits, true)? {
            if !available.split_whitespace().any(|c| c == ctrl) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!(
                        "the {ctrl} controller is not delegated to you: {} lists {:?}",
                        listing.display(),
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

    /// Whether `uid` has a systemd user manager running.
    pub fn has_user_manager(&self, uid: u32) -> bool {
        user_manager_socket(uid).exists()
    }

    /// Why a rootless caller, `uid`, can have no cgroup on this host, in one
    /// line naming what was looked for: a cgroup2 subtree delegated to the
    /// caller (`not_delegated` says why there is none), a systemd user manager
    /// to ask for one, and controllers on cgroup v2 rather than v1.
    pub fn no_cgroup_reason(&self, not_delegated: &str, uid: u32) -> String {
        let mut missing = vec![format!("no cgroup2 subtree is delegated to uid {uid} ({not_delegated})")];
        let manager = user_manager_socket(uid);
        if !manager.exists() {
            missing.push(format!("no systemd user manager ({} is absent)", manager.display()));
        }
        let on_v1: Vec<&str> = [MEMORY, CPU, PIDS].into_iter().filter(|c| self.v1.contains_key(*c)).collect();
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
    pub fn delegated_parent(&self, parent: Option<&str>, uid: u32) -> Result<PathBuf> {
        let delegated = |dir: &Path| delegated_to(dir, uid);
        let not_delegated = |why: String| Error::NotDelegated { why };
        let mount =
            self.v2.as_ref().ok_or_else(|| not_delegated("no cgroup2 hierarchy is mounted".into()))?;
        let dir = match parent {
            Some(p) => {
                check_path(p, true)?;
                let dir = join_under(mount, p).ok_or_else(|| Error::Parent {
                    parent: p.into(),
                    why: format!("not inside the cgroup2 hierarchy mounted at {}", mount.point.display()),
                })?;
                if !delegated(&dir) {
                    return Err(not_delegated(format!(
                        "the cgroup parent {} is not delegated to you",
                        dir.display()
                    )));
                }
                dir
            }
            None => {
                let own = self.caller.get("").and_then(|c| join_under(mount, c)).ok_or_else(|| {
                    not_delegated("this process is in no cgroup of the cgroup2 hierarchy".into())
                })?;
                let p = own.parent().filter(|p| p.starts_with(&mount.point) && *p != mount.point);
                match p {
                    Some(p) if delegated(p) => p.to_path_buf(),
                    _ if delegated(&own) => {
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
}

/// Whether `dir` is delegated to `uid`: the user may make cgroups in it, move
/// processes through it and enable controllers for its children.
pub(super) fn delegated_to(dir: &Path, uid: u32) -> bool {
    [dir.to_path_buf(), dir.join("cgroup.procs"), dir.join("cgroup.subtree_control")]
        .iter()
        .all(|p| fs::metadata(p).is_ok_and(|m| m.uid() == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_for_no_cgroup_names_what_was_looked_for() {
        let mi = "\
25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
26 24 0:23 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
27 24 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let host = CgroupHost::parse(mi, "4:memory:/\n3:pids:/\n0::/\n");
        let why = host.delegated_parent(None, 4_000_000).unwrap_err().to_string();
        let reason = host.no_cgroup_reason(&why, 4_000_000);
        assert!(
            reason.starts_with("no cgroup can be had: no cgroup2 subtree is delegated to uid 4000000 ("),
            "{reason}"
        );
        assert!(
            reason.contains("no systemd user manager (/run/user/4000000/systemd/private is absent)"),
            "{reason}"
        );
        assert!(reason.contains("the memory, pids controllers are on cgroup v1"), "{reason}");
        // A pure cgroup2 host: nothing said about v1.
        let host = CgroupHost::parse(&mi[mi.find("27 ").unwrap()..], "0::/user.slice\n");
        let reason = host.no_cgroup_reason("x", 4_000_000);
        assert!(!reason.contains("v1"), "{reason}");
    }
}
