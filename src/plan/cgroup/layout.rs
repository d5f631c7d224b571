//! Where a run's cgroup goes in the host's cgroup layout, and what it can
//! enforce there: decided from the layout alone ([`CgroupHost`] is a value).
//!
//! By default the run's cgroup is a child of the caller's own cgroup in every
//! hierarchy, so that whatever limits the caller lives under (a CI job, a Slurm
//! allocation) also bound the experiment. On cgroup v2 that is possible only at
//! the hierarchy's root: below it (a systemd service or login session) exprun's
//! own cgroup holds exprun, and a cgroup with processes hands no controller to
//! children, so the run goes under `/exprun` instead ([`V2_DEFAULT_PARENT`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::cgroups::{
    needed_controllers, CgroupHost, CgroupPlan, Error, Limits, Mount, Version, CPU, CPUACCT, FREEZER, MEMORY,
    PIDS, V2_DEFAULT_PARENT,
};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a run's cgroup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// `name` under `parent` (an absolute path in the hierarchy), or under the
    /// caller's own cgroup; the parent must exist (`exprun run`).
    Child {
        /// The cgroup's own name.
        name: &'a str,
        /// `--cgroup-parent`.
        parent: Option<&'a str>,
    },
    /// An OCI `linux.cgroupsPath`: absolute from the hierarchy's root, or relative
    /// to the caller's cgroup; missing parents are made (as runc does).
    Path(&'a str),
}

impl CgroupHost {
    /// The v1 hierarchies a run's cgroup lives in, as (directory name under
    /// /sys/fs/cgroup, mount options naming its controllers): what the container's
    /// own /sys/fs/cgroup shows, rooted at its cgroup by the cgroup namespace.
    pub fn v1_hierarchies(&self, plan: &CgroupPlan) -> Vec<(String, String)> {
        self.v1_hierarchy_dirs(plan).into_iter().map(|(name, options, _)| (name, options)).collect()
    }

    /// [`Self::v1_hierarchies`] with the run's cgroup directory in each.
    pub fn v1_hierarchy_dirs(&self, plan: &CgroupPlan) -> Vec<(String, String, PathBuf)> {
        let mut out: Vec<(String, String, PathBuf)> = Vec::new();
        for (ctrl, dir) in &plan.dirs {
            let Some(m) = self.v1.get(ctrl) else { continue };
            let name = m.point.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.is_empty() && !out.iter().any(|(n, _, _)| *n == name) {
                out.push((name, m.controllers.join(","), dir.clone()));
            }
        }
        out
    }

    /// Plan the run's cgroup at `placement`, refusing any limit this host cannot
    /// enforce.
    /// With `freezer` the cgroup can be paused (v1: it joins the freezer hierarchy
    /// too; v2 has cgroup.freeze everywhere).
    pub fn plan(&self, placement: &Placement<'_>, limits: Limits, freezer: bool) -> Result<CgroupPlan> {
        let given = match placement {
            Placement::Child { parent: Some(p), .. } => Some(*p),
            Placement::Path(p) => Some(*p),
            Placement::Child { parent: None, .. } => None,
        };
        if let Some(p) = given {
            check_path(p, matches!(placement, Placement::Child { .. }))?;
        }
        match self.version() {
            Version::V2 => self.plan_v2(placement, limits),
            Version::V1 | Version::None => self.plan_v1(placement, limits, freezer),
        }
    }

    /// The cgroup path (from the hierarchy's root) for `placement`, in the
    /// hierarchy of controller `ctrl` ("" for v2).
    fn cgroup_path(&self, placement: &Placement<'_>, ctrl: &str) -> String {
        let caller = || self.caller.get(ctrl).cloned().unwrap_or_else(|| "/".into());
        let path = match placement {
            // On cgroup v2 a cgroup with processes cannot hand controllers to
            // children ("no internal processes"), and exprun's own cgroup holds
            // exprun: below the root (a systemd service or login session), the
            // run goes under a parent of exprun's own instead, as docker's
            // cgroupfs driver uses /docker.
            Placement::Child { name, parent: None } if self.v2_default_parent(ctrl) => {
                format!("{V2_DEFAULT_PARENT}/{name}")
            }
            Placement::Child { name, parent } => {
                format!("{}/{name}", parent.map(str::to_string).unwrap_or_else(caller))
            }
            Placement::Path(p) if p.starts_with('/') => p.to_string(),
            Placement::Path(p) => format!("{}/{p}", caller()),
        };
        path.replace("//", "/")
    }

    /// Whether a run placed by default goes under [`V2_DEFAULT_PARENT`]: on
    /// cgroup v2 when exprun's own cgroup is not the hierarchy's root.
    fn v2_default_parent(&self, ctrl: &str) -> bool {
        ctrl.is_empty() && self.caller.get("").is_some_and(|c| c != "/")
    }

    fn plan_v1(&self, placement: &Placement<'_>, limits: Limits, freezer: bool) -> Result<CgroupPlan> {
        let needs = needed_controllers(&limits, false)?;
        for (ctrl, option) in &needs {
            if !self.v1.contains_key(ctrl.as_str()) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!("the {ctrl} cgroup controller is not mounted on this host"),
                });
            }
        }
        let mut dirs = BTreeMap::new();
        let mut wanted = vec![MEMORY, PIDS, CPU, CPUACCT];
        if freezer {
            wanted.push(FREEZER);
        }
        for (ctrl, _) in &needs {
            if !wanted.contains(&ctrl.as_str()) {
                wanted.push(ctrl);
            }
        }
        for ctrl in wanted {
            let Some(mount) = self.v1.get(ctrl) else { continue };
            let path = self.cgroup_path(placement, ctrl);
            let dir = join_under(mount, &path).ok_or_else(|| Error::Parent {
                parent: path.clone(),
                why: format!("not inside the {ctrl} hierarchy mounted at {}", mount.point.display()),
            })?;
            dirs.insert(ctrl.to_string(), dir);
        }
        let make_parents = matches!(placement, Placement::Path(_));
        Ok(CgroupPlan {
            version: Version::V1,
            dirs,
            enable_in: Vec::new(),
            make_parents,
            limits,
            scope: None,
        })
    }

    fn plan_v2(&self, placement: &Placement<'_>, limits: Limits) -> Result<CgroupPlan> {
        let mount = self.v2.as_ref().ok_or_else(|| Error::Unenforceable {
            limit: "resource limits",
            why: "no cgroup2 hierarchy is mounted".into(),
        })?;
        for (ctrl, option) in needed_controllers(&limits, true)? {
            if !self.v2_controllers.contains(&ctrl) {
                return Err(Error::Unenforceable {
                    limit: option,
                    why: format!(
                        "the {ctrl} controller is not enabled in {}",
                        mount.point.join("cgroup.controllers").display()
                    ),
                });
            }
        }
        let path = self.cgroup_path(placement, "");
        let dir = join_under(mount, &path).ok_or_else(|| Error::Parent {
            parent: path.clone(),
            why: format!("not inside the cgroup2 hierarchy mounted at {}", mount.point.display()),
        })?;
        let mut enable_in = Vec::new();
        let mut d = dir.parent();
        while let Some(p) = d {
            if !p.starts_with(&mount.point) {
                break;
            }
            enable_in.push(p.to_path_buf());
            d = p.parent();
        }
        enable_in.reverse();
        let dirs = BTreeMap::from([("unified".to_string(), dir)]);
        let by_default =
            matches!(placement, Placement::Child { parent: None, .. }) && self.v2_default_parent("");
        let make_parents = matches!(placement, Placement::Path(_)) || by_default;
        Ok(CgroupPlan { version: Version::V2, dirs, enable_in, make_parents, limits, scope: None })
    }
}

/// A cgroup path must be normal (no `..` or `.`); `--cgroup-parent` must also be
/// absolute.
pub(crate) fn check_path(p: &str, must_be_absolute: bool) -> Result<()> {
    let path = Path::new(p);
    let ok = (path.is_absolute() || !must_be_absolute)
        && !p.is_empty()
        && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::Parent {
            parent: p.into(),
            why: if must_be_absolute {
                "give an absolute path inside the cgroup hierarchy, without '..', e.g. /experiments".into()
            } else {
                "a cgroup path must not contain '.' or '..'".into()
            },
        })
    }
}

/// `mount.point` + (`cgroup` relative to the mount's root); `None` when `cgroup`
/// lies outside what the mount shows.
pub(crate) fn join_under(mount: &Mount, cgroup: &str) -> Option<PathBuf> {
    let rel = Path::new(cgroup).strip_prefix(&mount.root).ok()?;
    Some(mount.point.join(rel))
}
