//! The cgroup of a rootless run, decided in the plan: in the cgroup2 subtree
//! delegated to the caller, or none at all where no cgroup can be had.
//!
//! Without a delegated subtree (a cgroup v1 or hybrid host, no systemd user
//! manager) a run that asks for no limit still runs, without a cgroup: it has
//! no usage figures, and says so on stderr when it starts (unless `--no-limits`
//! asked for exactly that) and in its record. A run that asks for a limit is
//! refused, naming each limit, since nothing could enforce it.

use serde::{Deserialize, Serialize};

use super::{delegated, systemd, Placement};
use crate::cgroups::{CgroupPlan, Limits};
use crate::plan::host::Host;
use crate::plan::{Error, PlanContext, Result};

/// Why a run has no cgroup, and whether to say so when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCgroup {
    /// What was looked for and not found, in one line.
    pub why: String,
    /// Print a note on stderr when the run starts (`--no-limits` silences it).
    pub note: bool,
}

impl NoCgroup {
    /// The one line printed on stderr when such a run starts.
    pub fn note(&self) -> String {
        format!(
            "{}; running without a cgroup, so without limits or usage figures (pass --no-limits to say \
             that is meant and silence this note)",
            self.why
        )
    }
}

/// A rootless run's cgroup: in the cgroup2 subtree delegated to the caller, or,
/// where none can be had and no limit is asked for, none ([`NoCgroup`] says why).
pub(super) fn cgroup(
    ctx: &PlanContext<'_>,
    host: &Host,
    placement: &Placement<'_>,
    limits: Limits,
) -> Result<(CgroupPlan, Option<NoCgroup>)> {
    let uid = host.process.euid;
    let (parent, name) = match *placement {
        Placement::Child { name, parent } => (parent, name),
        Placement::Path(p) => match p.rsplit_once('/') {
            Some((parent, name)) if p.starts_with('/') && !name.is_empty() => {
                (Some(if parent.is_empty() { "/" } else { parent }), name)
            }
            _ => {
                return Err(Error::Process {
                    field: "linux.cgroupsPath",
                    why: format!(
                        "{p:?}: a rootless container's cgroup must be an absolute path in the cgroup2 \
                         hierarchy, inside the subtree delegated to the caller (or leave it out)"
                    ),
                })
            }
        },
    };
    let bundle = ctx.request.is_none();
    let asked = asked(&limits, bundle);
    let why = match delegated::plan(host, name, parent, limits.clone()) {
        Ok(plan) => return Ok((plan, None)),
        Err(crate::cgroups::Error::NotDelegated { why }) => why,
        Err(e) => return Err(e.into()),
    };
    // No delegated cgroup to go next to: ask the caller's systemd user manager
    // for a scope of the run's own, unless a cgroup parent was named.
    let why = match (parent, &host.user_manager) {
        (None, None) => match systemd::user_scope(host, name, limits) {
            Ok(plan) => return Ok((plan, None)),
            Err(crate::cgroups::Error::NotDelegated { why: no_scope }) => format!("{why}; {no_scope}"),
            Err(e) => return Err(e.into()),
        },
        // A user manager that cannot be reached.
        (None, Some(no_bus)) if host.user_manager_runs => format!("{why}; {no_bus}"),
        _ => why,
    };
    let why = delegated::no_cgroup_reason(host, &why);
    if asked.is_empty() {
        let quiet = ctx.request.as_ref().is_some_and(|r| r.options.no_limits);
        return Ok((CgroupPlan::none(), Some(NoCgroup { why, note: !quiet })));
    }
    let (who, asks, instead) = if bundle {
        ("rootless container", "config.json sets", "remove them from config.json")
    } else {
        ("rootless run", "asks for", "run without them")
    };
    Err(Error::Unsupported(format!(
        "{who} (uid {uid}) {asks} {}, but {why}, so nothing could enforce {}. Run as root, on a host \
         whose systemd user manager delegates cgroup v2 controllers to you (systemd-run --user --scope \
         exprun ...), or {instead}",
        asked.join(", "),
        if asked.len() == 1 { "it" } else { "them" }
    )))
}

/// The limits in `limits` by the names the caller gave them: `exprun run`'s
/// options, or a bundle's `linux.resources` fields.
fn asked(limits: &Limits, bundle: bool) -> Vec<&'static str> {
    let cpu = limits.cpu_quota_us.is_some() || limits.cpu_period_us.is_some();
    let named = if bundle {
        [
            (limits.memory_bytes.is_some(), "linux.resources.memory.limit"),
            (cpu, "linux.resources.cpu.quota"),
            (limits.cpu_shares.is_some(), "linux.resources.cpu.shares"),
            (limits.pids_max.is_some(), "linux.resources.pids.limit"),
            (!limits.devices.is_empty(), "linux.resources.devices"),
        ]
    } else {
        [
            (limits.memory_bytes.is_some(), "--memory"),
            (cpu, "--cpus"),
            (limits.cpu_shares.is_some(), "cpu shares"),
            (limits.pids_max.is_some(), "--pids-limit"),
            (!limits.devices.is_empty(), "device rules"),
        ]
    };
    let mut asked: Vec<&'static str> = named.iter().filter(|(set, _)| *set).map(|(_, n)| *n).collect();
    if asked.is_empty() && *limits != Limits::default() {
        asked.push(if bundle { "linux.resources" } else { "limits" });
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_asked_for_is_named_as_the_caller_gave_it() {
        let l = Limits { memory_bytes: Some(1 << 28), pids_max: Some(50), ..Limits::default() };
        assert_eq!(asked(&l, false), ["--memory", "--pids-limit"]);
        assert_eq!(asked(&l, true), ["linux.resources.memory.limit", "linux.resources.pids.limit"]);
        let cpu = Limits { cpu_quota_us: Some(100_000), cpu_period_us: Some(100_000), ..Limits::default() };
        assert_eq!(asked(&cpu, false), ["--cpus"]);
        assert!(asked(&Limits::default(), true).is_empty());
    }
}
