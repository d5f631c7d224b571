//! `exprun update`: new cgroup limits for a created or running container.

use super::{io_at, load, Error, Status};
use crate::cgroups::Cgroup;
use crate::error::Result;
use crate::fsutil;
use crate::spawn;
use crate::state::Root;

/// `exprun update`: change the limits of a created or running container. Only
/// the fields that are set change; plan.json keeps the new limits for the record.
pub fn update(root: &Root, id: &str, changes: &crate::cgroups::Limits) -> Result<()> {
    let mut c = load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning(id.into()).into());
    }
    let l = &mut c.plan.cgroup.limits;
    let keep = |new: Option<i64>, old: Option<i64>| new.or(old);
    l.memory_bytes = keep(changes.memory_bytes, l.memory_bytes);
    l.memory_swap = keep(changes.memory_swap, l.memory_swap);
    l.memory_reservation = keep(changes.memory_reservation, l.memory_reservation);
    l.memory_swappiness = changes.memory_swappiness.or(l.memory_swappiness);
    l.oom_kill_disable |= changes.oom_kill_disable;
    l.net_class_id = changes.net_class_id.or(l.net_class_id);
    if !changes.net_priorities.is_empty() {
        l.net_priorities = changes.net_priorities.clone();
    }
    l.rdma.extend(changes.rdma.clone());
    l.cpu_quota_us = keep(changes.cpu_quota_us, l.cpu_quota_us);
    l.pids_max = keep(changes.pids_max, l.pids_max);
    l.cpu_period_us = changes.cpu_period_us.or(l.cpu_period_us);
    l.cpu_shares = changes.cpu_shares.or(l.cpu_shares);
    l.cpuset_cpus = changes.cpuset_cpus.clone().or(l.cpuset_cpus.take());
    l.cpuset_mems = changes.cpuset_mems.clone().or(l.cpuset_mems.take());
    l.hugepages.extend(changes.hugepages.clone());
    if !changes.block_io.is_empty() {
        l.block_io = changes.block_io.clone();
    }
    l.unified.extend(changes.unified.clone());
    // The memory limit and swap are written together, as they now stand.
    let mut changes = changes.clone();
    if changes.memory_bytes.is_some() || changes.memory_swap.is_some() {
        crate::cgroups::check_swap(l.memory_bytes, l.memory_swap).map_err(|why| {
            spawn::Error::from(crate::cgroups::Error::Unenforceable { limit: "--memory-swap", why })
        })?;
        changes.memory_bytes = l.memory_bytes;
        changes.memory_swap = l.memory_swap;
    }
    let changes = &changes;
    if c.plan.cgroup.version == crate::cgroups::Version::V1 {
        for (ctrl, wanted, what) in [
            ("memory", changes.memory_bytes.is_some() || changes.memory_swap.is_some(), "a memory limit"),
            ("pids", changes.pids_max.is_some(), "a pids limit"),
            ("cpu", changes.cpu_quota_us.is_some() || changes.cpu_shares.is_some(), "a CPU limit"),
        ] {
            if wanted && !c.plan.cgroup.dirs.contains_key(ctrl) {
                return Err(spawn::Error::from(crate::cgroups::Error::Unenforceable {
                    limit: what,
                    why: format!("the container's cgroup has no {ctrl} hierarchy on this host"),
                })
                .into());
            }
        }
    }
    Cgroup::adopt(&c.plan.cgroup).update(changes).map_err(spawn::Error::from)?;
    let p = c.dir.join("plan.json");
    fsutil::write_json_compact_atomic(&p, &c.plan, false).map_err(io_at("writing", &p))?;
    Ok(())
}
