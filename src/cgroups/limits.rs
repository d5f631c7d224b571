//! What a run's limits are, and the cgroup files they become.
//!
//! [`Limits`] holds the limits as the kernel's numbers, independent of the cgroup
//! version. [`settings`] turns the cpuset, hugepage, block I/O and `unified`
//! limits into the (controller, file, value) lines to write on v1 or v2, without
//! touching the host: a limit with no such file on that version is refused there,
//! naming its OCI field. Planning checks that the host has each line's controller;
//! [`super::Cgroup::apply`] writes them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DeviceRule, Error, Result, CPU, DEVICES, MEMORY, PIDS};

/// The cpuset controller: CPUs and memory nodes.
pub(super) const CPUSET: &str = "cpuset";
/// The hugetlb controller: huge page limits.
pub(super) const HUGETLB: &str = "hugetlb";
/// cgroup v1's block I/O controller.
pub(super) const BLKIO: &str = "blkio";
/// cgroup v2's block I/O controller.
pub(super) const IO: &str = "io";
/// cgroup v1's network class controller.
pub(super) const NET_CLS: &str = "net_cls";
/// cgroup v1's network priority controller.
pub(super) const NET_PRIO: &str = "net_prio";
/// The RDMA controller (v1 and v2).
pub(super) const RDMA: &str = "rdma";

/// The limits of a run, as numbers the kernel takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// Memory plus swap in bytes (OCI `memory.swap`), -1 for no limit; none:
    /// the same as `memory_bytes`, i.e. no swap on top of the memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// Memory the cgroup keeps under pressure, in bytes (OCI `memory.reservation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// cgroup v1 swappiness (0..100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swappiness: Option<u64>,
    /// cgroup v1: tasks over the memory limit wait instead of being OOM-killed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    /// CFS quota per period, in microseconds.
    pub cpu_quota_us: Option<i64>,
    /// CFS period, in microseconds [default: [`super::CPU_PERIOD_US`]].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period_us: Option<u64>,
    /// Relative CPU weight, in cgroup v1 `cpu.shares` units (2..262144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks.
    pub pids_max: Option<i64>,
    /// Device access rules, in order (see [`super::devices`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRule>,
    /// CPUs the cgroup may use, as a kernel CPU list (`0-3,6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the cgroup may use, as a kernel list (`0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Huge page limits: page size as the kernel names it (`2MB`) → bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hugepages: BTreeMap<String, u64>,
    /// Block I/O weights and throttles.
    #[serde(default, skip_serializing_if = "BlockIo::is_empty")]
    pub block_io: BlockIo,
    /// cgroup v1 net_cls class id of the container's packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_class_id: Option<u32>,
    /// cgroup v1 net_prio priorities: (interface, priority), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_priorities: Vec<(String, u32)>,
    /// RDMA limits per device.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rdma: BTreeMap<String, RdmaLimit>,
    /// cgroup v2 files to write as given (OCI `linux.resources.unified`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unified: BTreeMap<String, String>,
}

/// The RDMA limits of one device (OCI `linux.resources.rdma.<device>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaLimit {
    /// Maximum number of HCA handles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hca_handles: Option<u32>,
    /// Maximum number of HCA objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hca_objects: Option<u32>,
}

/// OCI `linux.resources.blockIO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIo {
    /// Default weight of the cgroup (10..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// v1 weight for the cgroup's own tasks against its children (10..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
    /// Per-device weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_devices: Vec<WeightDevice>,
    /// Per-device rate limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttles: Vec<Throttle>,
}

impl BlockIo {
    /// Whether nothing is asked.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A weight for one block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightDevice {
    /// The device's major number.
    pub major: i64,
    /// The device's minor number.
    pub minor: i64,
    /// Its weight (10..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// Its v1 leaf weight (10..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_weight: Option<u16>,
}

/// What a throttle limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleKind {
    /// Bytes read per second.
    ReadBps,
    /// Bytes written per second.
    WriteBps,
    /// Reads per second.
    ReadIops,
    /// Writes per second.
    WriteIops,
}

impl ThrottleKind {
    /// The OCI field.
    pub fn field(self) -> &'static str {
        match self {
            Self::ReadBps => "linux.resources.blockIO.throttleReadBpsDevice",
            Self::WriteBps => "linux.resources.blockIO.throttleWriteBpsDevice",
            Self::ReadIops => "linux.resources.blockIO.throttleReadIOPSDevice",
            Self::WriteIops => "linux.resources.blockIO.throttleWriteIOPSDevice",
        }
    }

    fn v1_file(self) -> &'static str {
        match self {
            Self::ReadBps => "blkio.throttle.read_bps_device",
            Self::WriteBps => "blkio.throttle.write_bps_device",
            Self::ReadIops => "blkio.throttle.read_iops_device",
            Self::WriteIops => "blkio.throttle.write_iops_device",
        }
    }

    fn v2_key(self) -> &'static str {
        match self {
            Self::ReadBps => "rbps",
            Self::WriteBps => "wbps",
            Self::ReadIops => "riops",
            Self::WriteIops => "wiops",
        }
    }
}

/// A rate limit for one block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    /// What it limits.
    pub kind: ThrottleKind,
    /// The device's major number.
    pub major: i64,
    /// The device's minor number.
    pub minor: i64,
    /// Bytes or operations per second.
    pub rate: u64,
}

/// One line to write into the run's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The OCI field that asked for it.
    pub field: &'static str,
    /// The controller whose directory holds the file.
    pub controller: String,
    /// The file, relative to the cgroup directory.
    pub file: String,
    /// What to write.
    pub value: String,
    /// Where the kernel has no `file`: the file and value to write instead.
    pub fallback: Option<(String, String)>,
}

/// The lines that `l`'s cpuset, hugepage, block I/O and `unified` limits become
/// on cgroup v1 (`v2 == false`) or v2, in the order to write them; a limit that
/// version has no file for is refused, naming its field.
pub fn settings(l: &Limits, v2: bool) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    let refuse = |field: &'static str, why: &str| Err(Error::Unenforceable { limit: field, why: why.into() });
    if let Some(cpus) = &l.cpuset_cpus {
        add(&mut out, "linux.resources.cpu.cpus", CPUSET, "cpuset.cpus".into(), cpus.clone());
    }
    if let Some(mems) = &l.cpuset_mems {
        add(&mut out, "linux.resources.cpu.mems", CPUSET, "cpuset.mems".into(), mems.clone());
    }
    for (size, bytes) in &l.hugepages {
        let file = if v2 { format!("hugetlb.{size}.max") } else { format!("hugetlb.{size}.limit_in_bytes") };
        add(&mut out, "linux.resources.hugepageLimits", HUGETLB, file, bytes.to_string());
    }
    let b = &l.block_io;
    if b.leaf_weight.is_some() || b.weight_devices.iter().any(|d| d.leaf_weight.is_some()) {
        if v2 {
            return refuse(
                "linux.resources.blockIO.leafWeight",
                "cgroup v2 has no leaf weights (the io controller weighs only sibling cgroups); leave it out",
            );
        }
        if let Some(w) = b.leaf_weight {
            add(
                &mut out,
                "linux.resources.blockIO.leafWeight",
                BLKIO,
                "blkio.leaf_weight".into(),
                w.to_string(),
            );
        }
    }
    if let Some(w) = b.weight {
        if v2 {
            add(&mut out, "linux.resources.blockIO.weight", IO, "io.bfq.weight".into(), w.to_string());
            fallback(&mut out, "io.weight", blkio_to_io_weight(w).to_string());
        } else {
            add(&mut out, "linux.resources.blockIO.weight", BLKIO, "blkio.weight".into(), w.to_string());
        }
    }
    for d in &b.weight_devices {
        let dev = format!("{}:{}", d.major, d.minor);
        if let Some(w) = d.weight {
            if v2 {
                let field = "linux.resources.blockIO.weightDevice";
                add(&mut out, field, IO, "io.bfq.weight".into(), format!("{dev} {w}"));
                fallback(&mut out, "io.weight", format!("{dev} {}", blkio_to_io_weight(w)));
            } else {
                add(
                    &mut out,
                    "linux.resources.blockIO.weightDevice",
                    BLKIO,
                    "blkio.weight_device".into(),
                    format!("{dev} {w}"),
                );
            }
        }
        if let (Some(w), false) = (d.leaf_weight, v2) {
            add(
                &mut out,
                "linux.resources.blockIO.weightDevice",
                BLKIO,
                "blkio.leaf_weight_device".into(),
                format!("{dev} {w}"),
            );
        }
    }
    for t in &b.throttles {
        let dev = format!("{}:{}", t.major, t.minor);
        if v2 {
            add(
                &mut out,
                t.kind.field(),
                IO,
                "io.max".into(),
                format!("{dev} {}={}", t.kind.v2_key(), t.rate),
            );
        } else {
            add(&mut out, t.kind.field(), BLKIO, t.kind.v1_file().into(), format!("{dev} {}", t.rate));
        }
    }
    memory_settings(&mut out, l, v2)?;
    if v2 && l.net_class_id.is_some() {
        return refuse(
            "linux.resources.network.classID",
            "cgroup v2 has no net_cls controller (classify packets with an eBPF or nftables cgroup match \
             instead); leave it out",
        );
    }
    if v2 && !l.net_priorities.is_empty() {
        return refuse(
            "linux.resources.network.priorities",
            "cgroup v2 has no net_prio controller; leave it out",
        );
    }
    if let Some(id) = l.net_class_id {
        add(&mut out, "linux.resources.network.classID", NET_CLS, "net_cls.classid".into(), id.to_string());
    }
    for (iface, prio) in &l.net_priorities {
        let field = "linux.resources.network.priorities";
        add(&mut out, field, NET_PRIO, "net_prio.ifpriomap".into(), format!("{iface} {prio}"));
    }
    for (device, r) in &l.rdma {
        let mut line = device.clone();
        if let Some(n) = r.hca_handles {
            line.push_str(&format!(" hca_handle={n}"));
        }
        if let Some(n) = r.hca_objects {
            line.push_str(&format!(" hca_object={n}"));
        }
        if line.len() > device.len() {
            add(&mut out, "linux.resources.rdma", RDMA, "rdma.max".into(), line);
        }
    }
    if !l.unified.is_empty() && !v2 {
        return refuse(
            "linux.resources.unified",
            "this host's controllers are on cgroup v1, and unified takes cgroup v2 files; \
             use the v1 fields (memory, cpu, blockIO, ...) instead",
        );
    }
    for (key, value) in &l.unified {
        add(&mut out, "linux.resources.unified", unified_controller(key)?, key.clone(), value.clone());
    }
    Ok(out)
}

/// Reservation, swappiness and the OOM killer (the limit and swap are
/// [`memory_lines`]).
fn memory_settings(out: &mut Vec<Setting>, l: &Limits, v2: bool) -> Result<()> {
    let refuse = |limit: &'static str, why: &str| Err(Error::Unenforceable { limit, why: why.into() });
    if let Some(bytes) = l.memory_reservation {
        let file = if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" };
        let value = if v2 && bytes < 0 { "max".to_string() } else { bytes.to_string() };
        add(out, "linux.resources.memory.reservation", MEMORY, file.into(), value);
    }
    if let Some(s) = l.memory_swappiness {
        if v2 {
            return refuse(
                "linux.resources.memory.swappiness",
                "cgroup v2 has no per-cgroup swappiness (only the host's vm.swappiness); leave it out",
            );
        }
        add(out, "linux.resources.memory.swappiness", MEMORY, "memory.swappiness".into(), s.to_string());
    }
    if l.oom_kill_disable {
        if v2 {
            return refuse(
                "linux.resources.memory.disableOOMKiller",
                "cgroup v2 cannot turn the OOM killer off for a cgroup; leave it out \
                 (or set memory.oom.group through linux.resources.unified)",
            );
        }
        add(out, "linux.resources.memory.disableOOMKiller", MEMORY, "memory.oom_control".into(), "1".into());
    }
    Ok(())
}

/// Why `swap` (OCI `memory.swap`, memory plus swap) cannot go with the memory
/// limit `memory`, if it cannot: a swap limit needs a memory limit no larger.
pub fn check_swap(memory: Option<i64>, swap: Option<i64>) -> std::result::Result<(), String> {
    match (memory, swap) {
        (_, None | Some(-1)) => Ok(()),
        (_, Some(s)) if s <= 0 => Err(format!("{s} is neither a size in bytes nor -1 (no limit)")),
        (None, Some(_)) => Err("a swap limit needs a memory limit (linux.resources.memory.limit)".into()),
        (Some(m), Some(s)) if s < m => Err(format!(
            "{s} is less than the memory limit {m}; it counts memory plus swap, so give at least the limit"
        )),
        _ => Ok(()),
    }
}

/// A memory or swap limit line: (field, file, value).
pub(super) type MemoryLine = (&'static str, &'static str, String);

/// The memory limit and swap lines for `l`, for the memory cgroup `dir`, in an
/// order the kernel accepts from its current limits. Without swap accounting
/// (no swap file) only "no swap on top" may go unwritten; a swap allowance
/// is refused then.
pub(super) fn memory_lines(l: &Limits, v2: bool, dir: &Path) -> Result<Vec<MemoryLine>> {
    const SWAP: &str = "linux.resources.memory.swap";
    const LIMIT: &str = "linux.resources.memory.limit";
    check_swap(l.memory_bytes, l.memory_swap).map_err(|why| Error::Unenforceable { limit: SWAP, why })?;
    let (limit_file, swap_file) = if v2 {
        ("memory.max", "memory.swap.max")
    } else {
        ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    };
    let mut out = Vec::new();
    if let Some(m) = l.memory_bytes {
        out.push((LIMIT, limit_file, if v2 && m < 0 { "max".into() } else { m.to_string() }));
    }
    let swap_on_top = l.memory_swap.is_some_and(|s| Some(s) != l.memory_bytes);
    let swap = match (l.memory_swap, l.memory_bytes) {
        (Some(-1), _) => Some(if v2 { "max".to_string() } else { "-1".to_string() }),
        (Some(s), Some(m)) => Some(if v2 { (s - m).to_string() } else { s.to_string() }),
        (None, Some(m)) => Some(if v2 { "0".to_string() } else { m.to_string() }),
        (_, None) => None,
    };
    let Some(swap) = swap else { return Ok(out) };
    if !dir.join(swap_file).exists() {
        if swap_on_top {
            return Err(Error::Unenforceable {
                limit: SWAP,
                why: format!(
                    "the kernel offers no {swap_file} in {} (swap accounting is off: boot with \
                     swapaccount=1); leave swap out or equal to the limit",
                    dir.display()
                ),
            });
        }
        return Ok(out);
    }
    // v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every
    // write: raise the swap limit first when it grows past the current limit.
    let current = fs::read_to_string(dir.join(limit_file)).unwrap_or_default();
    let current: u64 = current.trim().parse().unwrap_or(u64::MAX);
    let new: u64 = swap.parse::<i64>().ok().and_then(|s| u64::try_from(s).ok()).unwrap_or(u64::MAX);
    let line = (SWAP, swap_file, swap);
    if !v2 && new >= current {
        out.insert(0, line);
    } else {
        out.push(line);
    }
    Ok(out)
}

fn add(out: &mut Vec<Setting>, field: &'static str, controller: &str, file: String, value: String) {
    out.push(Setting { field, controller: controller.into(), file, value, fallback: None });
}

/// Give the last line a file and value to write where the kernel lacks its own.
fn fallback(out: &mut [Setting], file: &str, value: String) {
    if let Some(last) = out.last_mut() {
        last.fallback = Some((file.into(), value));
    }
}

/// The controller a `unified` key belongs to: its prefix before the first dot.
/// Keys of the cgroup core (`cgroup.*`) and anything that is not a plain file
/// name are refused: they would move processes or change the hierarchy.
pub fn unified_controller(key: &str) -> Result<&str> {
    let bad = |why: String| Error::Unenforceable { limit: "linux.resources.unified", why };
    let prefix = key.split_once('.').map(|(p, _)| p).filter(|p| !p.is_empty());
    let plain = !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    match prefix {
        _ if !plain => Err(bad(format!("{key:?} is not the name of a cgroup interface file"))),
        None => Err(bad(format!("{key:?} names no controller (give e.g. memory.high)"))),
        Some("cgroup") => Err(bad(format!(
            "{key:?} is a file of the cgroup core, which exprun manages itself; leave it out"
        ))),
        Some(p) => Ok(p),
    }
}

/// A cgroup v1 blkio weight (10..1000) as a cgroup v2 `io.weight` (1..10000),
/// the conversion runc and crun use.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

/// The controllers `l` needs, each with the option or field that needs it first.
pub fn needed_controllers(l: &Limits, v2: bool) -> Result<Vec<(String, &'static str)>> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let fixed = [
        (MEMORY, l.memory_bytes.is_some(), "--memory"),
        (MEMORY, l.memory_swap.is_some(), "linux.resources.memory.swap"),
        (PIDS, l.pids_max.is_some(), "--pids-limit"),
        (CPU, l.cpu_quota_us.is_some() || l.cpu_shares.is_some(), "--cpus"),
        (DEVICES, !v2 && !l.devices.is_empty(), "linux.resources.devices"),
    ];
    for (ctrl, needed, what) in fixed {
        if needed && !out.iter().any(|(c, _)| c == ctrl) {
            out.push((ctrl.into(), what));
        }
    }
    for s in settings(l, v2)? {
        if !out.iter().any(|(c, _)| *c == s.controller) {
            out.push((s.controller, s.field));
        }
    }
    Ok(out)
}

/// cgroup v2 controllers to enable for `l`: those its limits need, and memory for
/// the usage figures wherever the hierarchy (the top of `enable_in`) has it.
pub(super) fn v2_wanted(l: &Limits, enable_in: &[PathBuf]) -> Result<Vec<String>> {
    let top_has_memory = enable_in.first().is_some_and(|top| {
        fs::read_to_string(top.join("cgroup.controllers"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == MEMORY))
    });
    let mut wanted: Vec<String> = needed_controllers(l, true)?.into_iter().map(|(c, _)| c).collect();
    if top_has_memory && !wanted.iter().any(|c| c == MEMORY) {
        wanted.insert(0, MEMORY.into());
    }
    Ok(wanted)
}

/// A setting resolved to the file that takes it: (field, path, value).
pub(super) type Line<'a> = (&'static str, PathBuf, &'a String);

/// The files `settings` go to, `dir_of` giving each controller's directory
/// (`None`: the cgroup is not in that controller's hierarchy); a file the
/// kernel does not offer is refused by field. Nothing is written.
pub(super) fn resolve(
    settings: &[Setting],
    dir_of: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<Line<'_>>> {
    let mut lines = Vec::new();
    for s in settings {
        let dir = dir_of(&s.controller).ok_or_else(|| Error::Unenforceable {
            limit: s.field,
            why: format!("the container's cgroup is not in a {} hierarchy", s.controller),
        })?;
        let (file, value) = match &s.fallback {
            Some((file, value)) if !dir.join(&s.file).exists() => (file, value),
            _ => (&s.file, &s.value),
        };
        let path = dir.join(file);
        if !path.exists() {
            return Err(Error::Unenforceable {
                limit: s.field,
                why: format!(
                    "the kernel offers no {file} in {}{}",
                    dir.display(),
                    missing_file_hint(&s.controller, file)
                ),
            });
        }
        lines.push((s.field, path, value));
    }
    Ok(lines)
}

/// Write resolved settings in order.
pub(super) fn write(lines: Vec<Line<'_>>) -> Result<()> {
    for (field, path, value) in lines {
        fs::write(&path, value).map_err(|source| Error::Setting {
            field,
            line: value.clone(),
            path,
            source,
        })?;
    }
    Ok(())
}

fn missing_file_hint(controller: &str, file: &str) -> &'static str {
    match controller {
        BLKIO | IO if file.contains("weight") => {
            " (block I/O weights need the BFQ I/O scheduler on the device); leave the weight out"
        }
        HUGETLB => " (no such huge page size on this host: see /sys/kernel/mm/hugepages)",
        _ => "",
    }
}

/// A new cgroup v1 cpuset starts with no CPUs and no memory nodes, and no task
/// can join it then: give `dir` (and any ancestors made empty with it) those of
/// its parent, top down.
pub(super) fn fill_v1_cpuset(dir: &Path) -> Result<()> {
    let empty = |d: &Path, f: &str| fs::read_to_string(d.join(f)).is_ok_and(|s| s.trim().is_empty());
    let mut chain: Vec<&Path> = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| empty(p, "cpuset.cpus") || empty(p, "cpuset.mems")) {
        chain.push(p);
        d = p.parent();
    }
    for d in chain.into_iter().rev() {
        let Some(parent) = d.parent() else { continue };
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if !empty(d, f) {
                continue;
            }
            let from = parent.join(f);
            let value = fs::read_to_string(&from).map_err(|source| Error::Io {
                op: "reading",
                path: from.clone(),
                source,
            })?;
            let path = d.join(f);
            fs::write(&path, value.trim()).map_err(|source| Error::Write {
                line: value.trim().into(),
                path,
                source,
            })?;
        }
    }
    Ok(())
}
