//! The systemd cgroup driver: a run's cgroup as a transient scope unit that
//! systemd makes and owns, asked for over D-Bus (`StartTransientUnit`), the way
//! runc, crun and podman do on systemd hosts.
//!
//! On a host where systemd is pid 1 it owns the cgroup tree: a cgroup written
//! behind its back is not a unit, so `systemctl` does not show it, its limits are
//! reset when systemd re-applies a slice's properties, and nothing stops it at
//! shutdown. Two kinds of scope:
//!
//! - **The system manager's**, with `--systemd-cgroup` (containerd's
//!   `SystemdCgroup = true`): the bundle's `slice:prefix:name` names the scope
//!   `prefix-name.scope` in `slice`; the container's processes are the scope's
//!   own, and its limits are unit properties (`MemoryMax`, `CPUWeight`, ...) as
//!   well as the cgroup's files.
//! - **The caller's user manager's**, for a rootless run whose caller has no
//!   delegated cgroup of its own: `exprun-<id>.scope` in `app.slice`, with
//!   exprun in a `supervisor` cgroup inside it and the run's cgroup beside that
//!   (see `crate::plan::cgroup`), limited through the delegated files.
//!
//! A scope must hold a process when it is made, so exprun asks for it with its
//! own pid, and the container's init joins it before exprun leaves (system
//! scopes) or moves to `supervisor` (user scopes).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{shares_to_weight, Error, Limits, Result, CPU_PERIOD_US};

mod bus;

/// Which systemd instance owns a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "manager")]
pub enum Manager {
    /// The system manager, pid 1.
    System,
    /// The user manager of `uid` (`systemd --user`).
    User {
        /// Whose manager.
        uid: u32,
    },
}

impl Manager {
    /// The D-Bus socket the manager is reached on: the system bus, or the
    /// user's session bus (`dbus-user-session`), as runc and podman reach them.
    /// (zbus cannot read what systemd sends on its private socket, whose
    /// messages carry a well-known name as their sender.)
    pub fn socket(self) -> PathBuf {
        match self {
            Self::System => PathBuf::from("/run/dbus/system_bus_socket"),
            Self::User { uid } => PathBuf::from(format!("/run/user/{uid}/bus")),
        }
    }

    /// Why this manager cannot be asked for a scope, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        if self == Self::System && !Path::new("/run/systemd/system").is_dir() {
            return Some("systemd is not running on this host (/run/systemd/system is absent)".into());
        }
        let socket = self.socket();
        (!socket.exists()).then(|| match self {
            Self::System => format!("the D-Bus system bus is not running ({} is absent)", socket.display()),
            Self::User { .. } => format!(
                "your D-Bus session bus is not running ({} is absent; Debian and Ubuntu: install \
                 dbus-user-session)",
                socket.display()
            ),
        })
    }
}

/// A transient scope unit that holds a run's cgroup: part of the cgroup plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Whose scope.
    #[serde(flatten)]
    pub manager: Manager,
    /// The unit's name, `prefix-name.scope`.
    pub unit: String,
    /// The slice it goes into.
    pub slice: String,
    /// Where the cgroup2 hierarchy is mounted.
    pub hierarchy: PathBuf,
    /// The scope's cgroup directory, as systemd will make it.
    pub dir: PathBuf,
    /// Where exprun moves itself once the scope exists, for scopes that hold the
    /// run's cgroup below them rather than being it (user scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<PathBuf>,
}

/// How long systemd gets to answer one request.
const BUS_TIMEOUT_S: u32 = 30;

impl Scope {
    /// Ask the manager for the scope, with exprun's own process as its first,
    /// and wait until systemd has made it. Returns the `cgroup.procs` exprun
    /// must go back to once the container's init has joined (system scopes), or
    /// `None` once exprun is in its `supervisor` cgroup (user scopes).
    pub fn start(&self, limits: &Limits) -> Result<Option<PathBuf>> {
        let own = self.own_cgroup_procs()?;
        let mut props = vec![
            ("Description", Prop::Str(format!("exprun container {}", self.unit))),
            ("Slice", Prop::Str(self.slice.clone())),
            ("PIDs", Prop::Pids(vec![std::process::id()])),
            ("Delegate", Prop::Bool(true)),
            // Stopped scopes (an OOM kill leaves one "failed") are forgotten,
            // so nothing of a run stays listed in systemd.
            ("CollectMode", Prop::Str("inactive-or-failed".into())),
            // Not ordered against shutdown.target: stopping the host stops it.
            ("DefaultDependencies", Prop::Bool(false)),
        ];
        if self.supervisor.is_none() {
            // While exprun is inside, the pids limit would count it too: that
            // limit is set once exprun has left (see `release`).
            let without_pids = Limits { pids_max: None, ..limits.clone() };
            props.extend(properties(&without_pids));
        }
        self.ask("starting", |c| c.start_transient_scope(&self.unit, props))?;
        let here = self.own_cgroup_procs()?;
        if here.parent() != Some(self.dir.as_path()) {
            // Back out (as root; a user may not leave), so that nothing stops
            // the unexpected scope with exprun in it; empty, systemd ends it.
            let _ = move_self_to(&own);
            return Err(self.failed(
                "checking",
                format!(
                    "systemd made the scope, but exprun is in {}, not in {}",
                    here.parent().unwrap_or(&here).display(),
                    self.dir.display()
                ),
            ));
        }
        let Some(supervisor) = &self.supervisor else { return Ok(Some(own)) };
        match fs::create_dir(supervisor) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::Io { op: "creating cgroup", path: supervisor.clone(), source }),
        }
        move_self_to(&supervisor.join("cgroup.procs"))?;
        Ok(None)
    }

    /// exprun leaves a system scope (the container's init has joined it, so it
    /// is not left empty) for `back_to`; then the pids limit is set.
    pub fn release(&self, back_to: &Path, limits: &Limits) -> Result<()> {
        move_self_to(back_to)?;
        if let Some(max) = limits.pids_max {
            let only_pids = Limits { pids_max: Some(max), ..Limits::default() };
            self.set_properties(&only_pids)?;
        }
        Ok(())
    }

    /// Record `limits` as the unit's properties (`exprun update`), so systemd
    /// keeps them when it re-applies its units' settings.
    pub fn set_properties(&self, limits: &Limits) -> Result<()> {
        if self.supervisor.is_some() {
            return Ok(());
        }
        let props = properties(limits);
        if props.is_empty() {
            return Ok(());
        }
        self.ask("setting the properties of", |c| c.set_unit_properties(&self.unit, props))
    }

    /// Stop the unit (its processes are gone by now) and wait for it; a unit
    /// systemd has already collected is not an error.
    pub fn stop(&self) -> Result<()> {
        if self.supervisor.is_some() {
            // A user scope ends when exprun, its supervisor, exits.
            return Ok(());
        }
        self.ask("stopping", |c| c.stop_unit(&self.unit))
    }

    fn ask(&self, op: &'static str, talk: impl FnOnce(&mut bus::Client) -> Result<(), String>) -> Result<()> {
        let socket = self.manager.socket();
        let answer = crate::sys::in_subprocess(BUS_TIMEOUT_S, || {
            let mut client = bus::Client::connect(&socket)?;
            talk(&mut client).map(|()| Vec::new())
        });
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(why)) => Err(self.failed(op, why)),
            Err(e) => Err(self.failed(op, e.to_string())),
        }
    }

    fn failed(&self, op: &'static str, why: String) -> Error {
        Error::Systemd { op, unit: self.unit.clone(), socket: self.manager.socket(), why }
    }
}

impl Scope {
    /// The `cgroup.procs` of exprun's own cgroup v2 cgroup.
    fn own_cgroup_procs(&self) -> Result<PathBuf> {
        let path = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(path).map_err(|source| Error::Host { path: path.into(), source })?;
        let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
        Ok(self.hierarchy.join(rel.trim_start_matches('/')).join("cgroup.procs"))
    }
}

fn move_self_to(procs: &Path) -> Result<()> {
    fs::write(procs, std::process::id().to_string()).map_err(|source| Error::Io {
        op: "moving exprun into",
        path: procs.to_path_buf(),
        source,
    })
}

/// One unit property's value, in the D-Bus type systemd expects for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `ay`: a CPU or memory-node mask, bit N for number N.
    Mask(Vec<u8>),
    /// `au`
    Pids(Vec<u32>),
}

/// systemd's "no limit".
const INFINITY: u64 = u64::MAX;

/// The unit properties that say what `l` says, where systemd has one: the rest
/// (hugetlb, io.max, `unified` keys) is written to the cgroup's files only.
pub fn properties(l: &Limits) -> Vec<(&'static str, Prop)> {
    let limit = |v: i64| if v < 0 { INFINITY } else { v.unsigned_abs() };
    let mut out = Vec::new();
    if l.memory_bytes.is_some() || l.memory_reservation.is_some() {
        out.push(("MemoryAccounting", Prop::Bool(true)));
    }
    if let Some(bytes) = l.memory_bytes {
        out.push(("MemoryMax", Prop::U64(limit(bytes))));
        // As the cgroup's files: swap on top of the limit only where asked.
        let swap = match l.memory_swap {
            Some(s) if s < 0 => INFINITY,
            Some(s) => s.saturating_sub(bytes).max(0).unsigned_abs(),
            None => 0,
        };
        out.push(("MemorySwapMax", Prop::U64(swap)));
    }
    if let Some(bytes) = l.memory_reservation {
        out.push(("MemoryLow", Prop::U64(limit(bytes))));
    }
    if l.cpu_quota_us.is_some() || l.cpu_shares.is_some() {
        out.push(("CPUAccounting", Prop::Bool(true)));
    }
    if let Some(quota) = l.cpu_quota_us {
        let period = l.cpu_period_us.unwrap_or(CPU_PERIOD_US).max(1);
        let per_sec = if quota < 0 {
            INFINITY
        } else {
            // systemd keeps CPUQuotaPerSecUSec in whole 10 ms steps: round up,
            // so the unit never grants less than the cgroup's own cpu.max.
            let exact = quota.unsigned_abs().saturating_mul(1_000_000) / period;
            exact.div_ceil(10_000) * 10_000
        };
        out.push(("CPUQuotaPerSecUSec", Prop::U64(per_sec)));
        out.push(("CPUQuotaPeriodUSec", Prop::U64(period)));
    }
    if let Some(shares) = l.cpu_shares {
        out.push(("CPUWeight", Prop::U64(shares_to_weight(shares))));
    }
    if let Some(max) = l.pids_max {
        out.push(("TasksAccounting", Prop::Bool(true)));
        out.push(("TasksMax", Prop::U64(if max <= 0 { INFINITY } else { limit(max) })));
    }
    if let Some(mask) = l.cpuset_cpus.as_deref().and_then(mask_of) {
        out.push(("AllowedCPUs", Prop::Mask(mask)));
    }
    if let Some(mask) = l.cpuset_mems.as_deref().and_then(mask_of) {
        out.push(("AllowedMemoryNodes", Prop::Mask(mask)));
    }
    if let Some(w) = l.block_io.weight {
        out.push(("IOAccounting", Prop::Bool(true)));
        out.push(("IOWeight", Prop::U64(super::blkio_to_io_weight(w))));
    }
    out
}

/// A kernel list (`0-3,6`) as a little-endian bit mask; `None` if it is not
/// one (the plan has checked it already; the cgroup's file is written anyway).
fn mask_of(list: &str) -> Option<Vec<u8>> {
    let numbers = crate::spec::options::parse_cpuset(list).ok()?;
    let mut mask = vec![0u8; numbers.last()? / 8 + 1];
    for n in numbers {
        mask[n / 8] |= 1 << (n % 8);
    }
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(props: &'a [(&str, Prop)], name: &str) -> Option<&'a Prop> {
        props.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    #[test]
    fn limits_become_the_unit_properties_runc_sets() {
        let l = Limits {
            memory_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            cpu_shares: Some(1024),
            pids_max: Some(20),
            cpuset_cpus: Some("0-1,9".into()),
            cpuset_mems: Some("0".into()),
            ..Limits::default()
        };
        let p = properties(&l);
        assert_eq!(find(&p, "MemoryMax"), Some(&Prop::U64(64 << 20)));
        assert_eq!(find(&p, "MemorySwapMax"), Some(&Prop::U64(0)));
        assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Prop::U64(500_000)));
        assert_eq!(find(&p, "CPUQuotaPeriodUSec"), Some(&Prop::U64(100_000)));
        assert_eq!(find(&p, "CPUWeight"), Some(&Prop::U64(shares_to_weight(1024))));
        assert_eq!(find(&p, "TasksMax"), Some(&Prop::U64(20)));
        assert_eq!(find(&p, "AllowedCPUs"), Some(&Prop::Mask(vec![0b0000_0011, 0b0000_0010])));
        assert_eq!(find(&p, "AllowedMemoryNodes"), Some(&Prop::Mask(vec![1])));
        assert!(properties(&Limits::default()).is_empty());
    }

    #[test]
    fn reservation_is_memory_low_and_swap_is_what_goes_on_top_of_the_limit() {
        let l = Limits {
            memory_bytes: Some(64 << 20),
            memory_swap: Some(96 << 20),
            memory_reservation: Some(32 << 20),
            ..Limits::default()
        };
        let p = properties(&l);
        assert_eq!(find(&p, "MemoryLow"), Some(&Prop::U64(32 << 20)));
        assert_eq!(find(&p, "MemorySwapMax"), Some(&Prop::U64(32 << 20)));
        let l = Limits { memory_bytes: Some(64 << 20), memory_swap: Some(-1), ..Limits::default() };
        assert_eq!(find(&properties(&l), "MemorySwapMax"), Some(&Prop::U64(INFINITY)));
        let l = Limits { memory_reservation: Some(-1), ..Limits::default() };
        assert_eq!(find(&properties(&l), "MemoryLow"), Some(&Prop::U64(INFINITY)));
    }

    #[test]
    fn cpu_quota_rounds_up_to_systemds_10ms_steps_and_unlimited_is_infinity() {
        let l = Limits { cpu_quota_us: Some(12_345), cpu_period_us: Some(100_000), ..Limits::default() };
        assert_eq!(find(&properties(&l), "CPUQuotaPerSecUSec"), Some(&Prop::U64(130_000)));
        let l =
            Limits { cpu_quota_us: Some(-1), memory_bytes: Some(-1), pids_max: Some(0), ..Limits::default() };
        let p = properties(&l);
        assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Prop::U64(INFINITY)));
        assert_eq!(find(&p, "MemoryMax"), Some(&Prop::U64(INFINITY)));
        assert_eq!(find(&p, "TasksMax"), Some(&Prop::U64(INFINITY)));
    }

    #[test]
    fn each_manager_is_reached_on_its_bus() {
        assert_eq!(Manager::System.socket(), Path::new("/run/dbus/system_bus_socket"));
        assert_eq!(Manager::User { uid: 1000 }.socket(), Path::new("/run/user/1000/bus"));
        assert!(Manager::User { uid: 4_000_000 }.unavailable().unwrap().contains("/run/user/4000000/bus"));
    }
}
