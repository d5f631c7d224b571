//! Planning a cgroup that a systemd scope holds: reads of the host only; the
//! scope is asked for when the run is applied ([`super::Scope::start`]).

use std::fs;

use super::{Manager, Scope};
use crate::cgroups::delegated::delegated_to;
use crate::cgroups::{limits, CgroupHost, CgroupPlan, Error, Limits, Placement, Result, Version};
use crate::spec::bundle::SystemdCgroupsPath;

impl CgroupHost {
    /// The cgroup of a bundle run with `--systemd-cgroup`: the system
    /// manager's scope `path.unit` in `path.slice`, which is the container's
    /// cgroup.
    pub fn plan_system_scope(&self, path: &SystemdCgroupsPath, limits: Limits) -> Result<CgroupPlan> {
        let refuse = |why: String| Error::Driver { why };
        if let Some(why) = Manager::System.unavailable() {
            return Err(refuse(format!("{why}; leave out --systemd-cgroup (containerd: SystemdCgroup = false)")));
        }
        let mount = match (self.version(), &self.v2) {
            (Version::V2, Some(mount)) => mount,
            _ => {
                return Err(refuse(
                    "exprun's systemd cgroup driver needs the unified cgroup v2 hierarchy, and this host \
                     has cgroup v1 controllers; leave out --systemd-cgroup"
                        .into(),
                ))
            }
        };
        let mut plan = self.plan(&Placement::Path(&path.path), limits, true)?;
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

    /// The cgroup `name` of a rootless run whose caller has no delegated
    /// cgroup: in a scope `name.scope` the caller's systemd user manager makes
    /// in its `app.slice`, as podman asks for one. [`Error::NotDelegated`]
    /// when there is no such manager, [`Error::Unenforceable`] when a limit
    /// needs a controller the manager was not given.
    pub fn plan_user_scope(&self, name: &str, limits: Limits, uid: u32) -> Result<CgroupPlan> {
        let manager = Manager::User { uid };
        let not_delegated = |why: String| Error::NotDelegated { why };
        let mount = self.v2.as_ref().ok_or_else(|| not_delegated("no cgroup2 hierarchy is mounted".into()))?;
        if let Some(why) = manager.unavailable() {
            return Err(not_delegated(why));
        }
        // Where systemd runs user@UID.service, the user's manager.
        let service = mount.point.join(format!("user.slice/user-{uid}.slice/user@{uid}.service"));
        if !delegated_to(&service, uid) {
            return Err(not_delegated(format!(
                "a systemd user manager runs, but its cgroup {} is not delegated to you",
                service.display()
            )));
        }
        let listing = service.join("cgroup.controllers");
        let available =
            fs::read_to_string(&listing).map_err(|source| Error::Host { path: listing.clone(), source })?;
        for (ctrl, option) in limits::needed_controllers(&limits, true)? {
            if !available.split_whitespace().any(|c| c == ctrl) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!(
                        "your systemd user manager was not given the {ctrl} controller: {} lists {:?} \
                         (an administrator can add it: Delegate= in a drop-in for user@.service)",
                        listing.display(),
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
                manager,
                unit: format!("{name}.scope"),
                slice: "app.slice".into(),
                hierarchy: mount.point.clone(),
                supervisor: Some(dir.join("supervisor")),
                dir,
            }),
        })
    }
}
