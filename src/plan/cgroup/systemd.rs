//! A cgroup that a systemd scope holds: planned from the host as gathered; the
//! scope is asked for when the run is applied ([`Scope::start`]).

use std::path::Path;

use super::Placement;
use crate::cgroups::systemd::{Manager, Scope};
use crate::cgroups::{needed_controllers, CgroupPlan, Error, Limits, Version};
use crate::plan::host::Host;
use crate::spec::bundle::SystemdCgroupsPath;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The cgroup of a bundle run with `--systemd-cgroup`: the system manager's
/// scope `path.unit` in `path.slice`, which is the container's cgroup.
pub fn system_scope(host: &Host, path: &SystemdCgroupsPath, limits: Limits) -> Result<CgroupPlan> {
    let refuse = |why: String| Error::Driver { why };
    if let Some(why) = &host.system_manager {
        return Err(refuse(format!("{why}; leave out --systemd-cgroup (containerd: SystemdCgroup = false)")));
    }
    let mount = match (host.cgroups.version(), &host.cgroups.v2) {
        (Version::V2, Some(mount)) => mount,
        _ => {
            return Err(refuse(
                "exprun's systemd cgroup driver needs the unified cgroup v2 hierarchy, and this host \
                 has cgroup v1 controllers; leave out --systemd-cgroup"
                    .into(),
            ))
        }
    };
    let mut plan = host.cgroups.plan(&Placement::Path(&path.path), limits, true)?;
    // systemd makes the slices and the scope.
    plan.make_parents = false;
    let dir = plan.dirs.values().next().cloned().unwrap_or_default();
    plan.scope = Some(Scope {
        manager: Manager::System,
        unit: path.unit.clone(),
        slice: path.slice.clone(),
        hierarchy: mount.point.clone(),
        dir,
        supervisor: None,
    });
    Ok(plan)
}

/// The cgroup `name` of a rootless run whose caller has no delegated cgroup:
/// in a scope `name.scope` the caller's systemd user manager makes in its
/// `app.slice`, as podman asks for one. [`Error::NotDelegated`] when there is
/// no such manager, [`Error::Unenforceable`] when a limit needs a controller
/// the manager was not given.
pub fn user_scope(host: &Host, name: &str, limits: Limits) -> Result<CgroupPlan> {
    let uid = host.process.euid;
    let not_delegated = |why: String| Error::NotDelegated { why };
    let mount =
        host.cgroups.v2.as_ref().ok_or_else(|| not_delegated("no cgroup2 hierarchy is mounted".into()))?;
    if let Some(why) = &host.user_manager {
        return Err(not_delegated(why.clone()));
    }
    // Where systemd runs user@UID.service, the user's manager.
    let service = user_service(&mount.point, uid);
    if !host.delegated(&service) {
        return Err(not_delegated(format!(
            "a systemd user manager runs, but its cgroup {} is not delegated to you",
            service.display()
        )));
    }
    let available = super::delegated::controllers(host, &service)?;
    for (ctrl, option) in needed_controllers(&limits, true)? {
        if !available.split_whitespace().any(|c| c == ctrl) {
            return Err(Error::Unenforceable {
                limit: option,
                why: format!(
                    "your systemd user manager was not given the {ctrl} controller: {} lists {:?} \
                     (an administrator can add it: Delegate= in a drop-in for user@.service)",
                    service.join("cgroup.controllers").display(),
                    available.trim()
                ),
            });
        }
    }
    let dir = service.join(format!("app.slice/{name}.scope"));
    Ok(CgroupPlan {
        version: Version::V2,
        dirs: [("unified".to_string(), dir.join(name))].into(),
        enable_in: vec![dir.clone()],
        make_parents: false,
        limits,
        scope: Some(Scope {
            manager: Manager::User { uid },
            unit: format!("{name}.scope"),
            slice: "app.slice".into(),
            hierarchy: mount.point.clone(),
            supervisor: Some(dir.join("supervisor")),
            dir,
        }),
    })
}

/// The cgroup of `uid`'s systemd user manager, `user@UID.service`, in the
/// cgroup2 hierarchy mounted at `point`.
pub(crate) fn user_service(point: &Path, uid: u32) -> std::path::PathBuf {
    point.join(format!("user.slice/user-{uid}.slice/user@{uid}.service"))
}
