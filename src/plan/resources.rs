//! OCI `linux.resources` as the limits exprun applies. Every field is either
//! taken into [`Limits`] or refused by name: none is dropped. Whether the host
//! has the controllers is checked later, when the cgroup is planned.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{Error, Result};
use crate::cgroups::{BlockIo, Limits, RdmaLimit, Throttle, ThrottleKind, WeightDevice};

/// The limits exprun applies from OCI resources (`exprun update` uses it too);
/// `page_sizes`: the host's huge page sizes ([`super::host::hugepage_sizes`]).
pub fn resources_limits(r: &LinuxResources, page_sizes: &[String]) -> Result<Limits> {
    let cpu = r.cpu().as_ref();
    let devices = r
        .devices()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| crate::cgroups::DeviceRule::from_oci(i, d))
        .collect::<std::result::Result<Vec<_>, String>>()
        .map_err(Error::Config)?;
    if let Some(m) = r.memory() {
        check_memory(m)?;
    }
    if let Some(c) = cpu {
        check_cpu(c)?;
    }
    let network = r.network().as_ref();
    let net_priorities = network
        .and_then(|n| n.priorities().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            let name = p.name();
            let plain = !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '/');
            match plain {
                true => Ok((name.clone(), p.priority())),
                false => Err(Error::Config(format!(
                    "linux.resources.network.priorities[{i}].name {name:?}: not a network interface name"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let list = |field: &str, v: &Option<String>| -> Result<Option<String>> {
        let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
        let ids = crate::spec::options::parse_cpuset(v)
            .map_err(|why| Error::Config(format!("{field} {v:?}: {why}; give a list such as 0-3,6")))?;
        Ok(Some(crate::spec::options::format_cpuset(&ids)))
    };
    Ok(Limits {
        memory_bytes: r.memory().as_ref().and_then(|m| m.limit()).filter(|l| *l > 0),
        memory_swap: r.memory().as_ref().and_then(|m| m.swap()).filter(|s| *s != 0),
        memory_reservation: r.memory().as_ref().and_then(|m| m.reservation()).filter(|v| *v != 0),
        memory_swappiness: r.memory().as_ref().and_then(|m| m.swappiness()),
        oom_kill_disable: r.memory().as_ref().and_then(|m| m.disable_oom_killer()) == Some(true),
        net_class_id: network.and_then(|n| n.class_id()),
        net_priorities,
        rdma: rdma(r)?,
        cpu_quota_us: cpu.and_then(|c| c.quota()).filter(|q| *q > 0),
        cpu_period_us: cpu.and_then(|c| c.period()).filter(|p| *p > 0),
        cpu_shares: cpu.and_then(|c| c.shares()).filter(|s| *s > 0),
        pids_max: r.pids().as_ref().map(|p| p.limit()).filter(|p| *p > 0),
        devices,
        cpuset_cpus: list("linux.resources.cpu.cpus", &cpu.and_then(|c| c.cpus().clone()))?,
        cpuset_mems: list("linux.resources.cpu.mems", &cpu.and_then(|c| c.mems().clone()))?,
        hugepages: hugepages(r, page_sizes)?,
        block_io: r.block_io().as_ref().map(block_io).transpose()?.unwrap_or_default(),
        unified: r.unified().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}

fn refused(field: &str, why: &str) -> Error {
    Error::Unsupported(format!("{field} cannot be applied: {why}; remove it from the config"))
}

/// The memory fields are checked as runc checks them; those exprun does not
/// apply (as runc 1.1, which ignores them) are refused when they ask for
/// anything.
fn check_memory(m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|l| *l > 0);
    crate::cgroups::check_swap(limit, m.swap().filter(|s| *s != 0))
        .map_err(|why| Error::Config(format!("linux.resources.memory.swap: {why}")))?;
    if let Some(r) = m.reservation().filter(|r| *r < -1) {
        return Err(Error::Config(format!(
            "linux.resources.memory.reservation {r}: give a size in bytes, or -1 for no limit"
        )));
    }
    if let Some(s) = m.swappiness().filter(|s| *s > 100) {
        return Err(Error::Config(format!("linux.resources.memory.swappiness {s}: give 0 to 100")));
    }
    let asked = [
        ("linux.resources.memory.kernel", m.kernel().is_some_and(|v| v != 0)),
        ("linux.resources.memory.kernelTCP", m.kernel_tcp().is_some_and(|v| v != 0)),
        ("linux.resources.memory.useHierarchy", m.use_hierarchy() == Some(false)),
        ("linux.resources.memory.checkBeforeUpdate", m.check_before_update() == Some(true)),
    ];
    match asked.iter().find(|(_, asked)| *asked) {
        Some((field, _)) => Err(refused(field, "exprun does not apply this setting")),
        None => Ok(()),
    }
}

/// RDMA limits by device; a device name must be one word.
fn rdma(r: &LinuxResources) -> Result<BTreeMap<String, RdmaLimit>> {
    let mut out = BTreeMap::new();
    for (device, l) in r.rdma().iter().flatten() {
        if device.is_empty() || device.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(Error::Config(format!("linux.resources.rdma {device:?}: not an RDMA device name")));
        }
        out.insert(device.clone(), RdmaLimit { hca_handles: l.hca_handles(), hca_objects: l.hca_objects() });
    }
    Ok(out)
}

fn check_cpu(c: &LinuxCpu) -> Result<()> {
    let asked = [
        ("linux.resources.cpu.realtimeRuntime", c.realtime_runtime().is_some_and(|v| v != 0)),
        ("linux.resources.cpu.realtimePeriod", c.realtime_period().is_some_and(|v| v != 0)),
        ("linux.resources.cpu.burst", c.burst().is_some_and(|v| v != 0)),
        ("linux.resources.cpu.idle", c.idle().is_some_and(|v| v != 0)),
    ];
    match asked.iter().find(|(_, asked)| *asked) {
        Some((field, _)) => Err(refused(field, "exprun does not apply this setting")),
        None => Ok(()),
    }
}

/// Page sizes as the kernel names them in hugetlb files: a number and KB, MB or
/// GB, one of the host's (`host`).
fn hugepages(r: &LinuxResources, host: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &size[digits.len()..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !["KB", "MB", "GB"].contains(&unit)
        {
            return Err(Error::Config(format!(
                "{field}.pageSize {size:?}: give a size such as 2MB or 1GB (a number and KB, MB or GB)"
            )));
        }
        if !host.contains(size) {
            return Err(Error::Config(format!(
                "{field}.pageSize {size:?}: not a huge page size of this host ({}: {})",
                super::host::HUGEPAGES_DIR,
                if host.is_empty() { "none".to_string() } else { host.join(", ") }
            )));
        }
        let limit = u64::try_from(h.limit())
            .map_err(|_| Error::Config(format!("{field}.limit {}: must not be negative", h.limit())))?;
        if out.insert(size.clone(), limit).is_some() {
            return Err(Error::Config(format!("{field}: page size {size} is given twice")));
        }
    }
    Ok(out)
}

fn block_io(b: &LinuxBlockIo) -> Result<BlockIo> {
    let weight = |field: &str, w: Option<u16>| -> Result<Option<u16>> {
        match w {
            None | Some(0) => Ok(None),
            Some(w @ 10..=1000) => Ok(Some(w)),
            Some(w) => Err(Error::Config(format!("{field} {w}: a block I/O weight is 10 to 1000"))),
        }
    };
    let device = |field: &str, major: i64, minor: i64| -> Result<()> {
        if major < 0 || minor < 0 {
            return Err(Error::Config(format!("{field}: device {major}:{minor} has a negative number")));
        }
        Ok(())
    };
    let mut weight_devices = Vec::new();
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        device(&field, d.major(), d.minor())?;
        weight_devices.push(WeightDevice {
            major: d.major(),
            minor: d.minor(),
            weight: weight(&format!("{field}.weight"), d.weight())?,
            leaf_weight: weight(&format!("{field}.leafWeight"), d.leaf_weight())?,
        });
    }
    let mut throttles = Vec::new();
    let kinds = [
        (ThrottleKind::ReadBps, b.throttle_read_bps_device()),
        (ThrottleKind::WriteBps, b.throttle_write_bps_device()),
        (ThrottleKind::ReadIops, b.throttle_read_iops_device()),
        (ThrottleKind::WriteIops, b.throttle_write_iops_device()),
    ];
    for (kind, list) in kinds {
        for (i, t) in list.iter().flatten().enumerate() {
            device(&format!("{}[{i}]", kind.field()), t.major(), t.minor())?;
            throttles.push(Throttle { kind, major: t.major(), minor: t.minor(), rate: t.rate() });
        }
    }
    Ok(BlockIo {
        weight: weight("linux.resources.blockIO.weight", b.weight())?,
        leaf_weight: weight("linux.resources.blockIO.leafWeight", b.leaf_weight())?,
        weight_devices,
        throttles,
    })
}
/// The config's `linux.resources` as cgroup limits (none without it).
pub(super) fn limits(linux: &oci_spec::runtime::Linux, page_sizes: &[String]) -> Result<Limits> {
    let Some(r) = linux.resources() else { return Ok(Limits::default()) };
    resources_limits(r, page_sizes)
}
