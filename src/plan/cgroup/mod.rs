//! The run's cgroup, planned from the host as gathered ([`Host`]): where it goes
//! in the layout and what it enforces there ([`layout`]), in a subtree
//! delegated to a rootless caller ([`delegated`]), in a scope systemd makes
//! ([`systemd`]), or none for a rootless run that can have none ([`rootless`]).
//! `crate::cgroups` applies the plan and reads usage; it decides nothing.

pub mod delegated;
mod layout;
mod rootless;
pub mod systemd;
#[cfg(test)]
mod tests;

use oci_spec::runtime::Linux;

pub use layout::Placement;
pub use rootless::NoCgroup;

use super::host::Host;
use super::{Error, PlanContext, Result, Source};
use crate::cgroups::{CgroupPlan, Limits};

/// The run's cgroup: a scope of the system manager (`--systemd-cgroup`), a
/// rootless run's (`rootless`: in a user namespace, exprun not root), or a
/// cgroup at the config's `linux.cgroupsPath` or named after the run.
pub(super) fn plan(
    ctx: &PlanContext<'_>,
    host: &Host,
    linux: &Linux,
    limits: Limits,
    rootless: bool,
) -> Result<(CgroupPlan, Option<NoCgroup>)> {
    let name = format!("exprun-{}", ctx.id);
    let placement = match linux.cgroups_path() {
        Some(path) => Placement::Path(path.to_str().unwrap_or_default()),
        None => Placement::Child { name: &name, parent: ctx.cgroup_parent },
    };
    if ctx.systemd_cgroup {
        if rootless {
            return Err(Error::Unsupported(
                "--systemd-cgroup is for exprun as root; leave it out as a rootless user (exprun then asks \
                 your systemd user manager for a scope itself where it has to)"
                    .into(),
            ));
        }
        // runc's default name for a bundle that names no cgroup.
        let given = match linux.cgroups_path() {
            Some(p) => p.to_string_lossy().into_owned(),
            None => format!("system.slice:exprun:{}", ctx.id),
        };
        let path =
            crate::spec::bundle::systemd_cgroup_path(&given).map_err(|e| Error::Config(e.to_string()))?;
        Ok((systemd::system_scope(host, &path, limits)?, None))
    } else if rootless {
        rootless::cgroup(ctx, host, &placement, limits)
    } else {
        let freezer = matches!(ctx.source, Source::Bundle { .. });
        Ok((host.cgroups.plan(&placement, limits, freezer)?, None))
    }
}
