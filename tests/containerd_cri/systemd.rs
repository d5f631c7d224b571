//! The systemd cgroup driver under containerd (`SystemdCgroup = true`): what
//! systemd and the kernel show of each handler's containers, checked as the pod
//! lifecycle runs, and what each runtime must pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One check of the systemd driver: what was checked and whether it held;
/// `unit` when it needs the runtime to make the container's systemd unit
/// (rather than being about the kernel's files alone).
#[derive(Debug)]
struct Check {
    unit: bool,
    what: String,
    failure: Option<String>,
}

/// The systemd-driver checks of one handler's pod lifecycle.
#[derive(Debug)]
pub struct SystemdChecks {
    handler: String,
    /// The pods' slice as a cgroup path: `/<top>.slice/<top>-<handler>.slice`.
    slice_path: String,
    checks: Vec<Check>,
    /// The cgroup each running container's init was in, by container id.
    seen: BTreeMap<String, String>,
}

impl SystemdChecks {
    /// `top` is the slice of every pod (`<top>.slice`), `slice` the one of
    /// `handler`'s pods inside it (`<top>-<handler>.slice`).
    pub fn new(handler: &str, top: &str, slice: &str) -> Self {
        Self {
            handler: handler.into(),
            slice_path: format!("/{top}/{slice}"),
            checks: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    fn expect(&mut self, unit: bool, what: String, got: &str, want: &str) {
        let failure = (got != want).then(|| format!("got '{got}', want '{want}'"));
        self.checks.push(Check { unit, what, failure });
    }

    /// The running container `id` (`name`, init `pid`): the kernel puts its
    /// init in `<slice>/cri-containerd-<id>.scope`, and that scope is an
    /// active, delegated systemd unit whose ControlGroup is that cgroup.
    pub fn running(&mut self, name: &str, id: &str, pid: u32) {
        let scope = format!("cri-containerd-{id}.scope");
        let cgroup = cgroup_of(pid);
        self.seen.insert(id.to_string(), cgroup.clone());
        let want = format!("{}/{scope}", self.slice_path);
        self.expect(false, format!("{name}: /proc/<init>/cgroup"), &cgroup, &want);
        let props = unit_props(&scope, &["ActiveState", "ControlGroup", "Delegate"]);
        let prop = |k: &str| props.get(k).cloned().unwrap_or_default();
        self.expect(true, format!("{name}: {scope} ActiveState"), &prop("ActiveState"), "active");
        self.expect(true, format!("{name}: {scope} ControlGroup"), &prop("ControlGroup"), &cgroup);
        self.expect(true, format!("{name}: {scope} Delegate"), &prop("Delegate"), "yes");
    }

    /// The limits of the running container `id`: memory (bytes) and a CPU
    /// quota (microseconds per 100 ms period), in the kernel's files of its
    /// cgroup and as the properties of its unit.
    pub fn limits(&mut self, name: &str, id: &str, memory: u64, cpu_quota: Option<u64>) {
        let scope = format!("cri-containerd-{id}.scope");
        let dir = Path::new("/sys/fs/cgroup").join(format!("{}/{scope}", &self.slice_path[1..]));
        let file =
            |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string()).unwrap_or_default();
        let props = unit_props(&scope, &["MemoryMax", "CPUQuotaPerSecUSec"]);
        let prop = |k: &str| props.get(k).cloned().unwrap_or_default();
        self.expect(false, format!("{name}: memory.max"), &file("memory.max"), &memory.to_string());
        self.expect(true, format!("{name}: {scope} MemoryMax"), &prop("MemoryMax"), &memory.to_string());
        if let Some(q) = cpu_quota {
            self.expect(false, format!("{name}: cpu.max"), &file("cpu.max"), &format!("{q} 100000"));
            let per_sec = format!("{}ms", q * 10 / 1000);
            self.expect(
                true,
                format!("{name}: {scope} CPUQuotaPerSecUSec"),
                &prop("CPUQuotaPerSecUSec"),
                &per_sec,
            );
        }
    }

    /// Once the pod is removed: no unit and no cgroup of the container `id`
    /// (neither where it should have been nor where its init was seen).
    pub fn gone(&mut self, name: &str, id: &str) {
        let scope = format!("cri-containerd-{id}.scope");
        let props = unit_props(&scope, &["LoadState", "ActiveState"]);
        let state = format!("{}/{}", props["LoadState"], props["ActiveState"]);
        self.expect(true, format!("{name}: {scope} after RemovePodSandbox"), &state, "not-found/inactive");
        let mut dirs = vec![format!("{}/{scope}", self.slice_path)];
        dirs.extend(self.seen.get(id).cloned());
        let left: Vec<String> = dirs
            .into_iter()
            .filter(|d| d.len() > 1 && Path::new("/sys/fs/cgroup").join(&d[1..]).exists())
            .collect();
        self.expect(false, format!("{name}: its cgroup after RemovePodSandbox"), &left.join(" "), "");
    }

    fn failed(&self, unit: bool) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.unit == unit)
            .filter_map(|c| c.failure.as_ref().map(|f| format!("{}: {f}", c.what)))
            .collect()
    }

    fn print(&self) {
        println!(
            "systemd-driver checks with {} (kernel: the kernel's files; unit: systemd's units):",
            self.handler
        );
        for c in &self.checks {
            let kind = if c.unit { "unit" } else { "kernel" };
            match &c.failure {
                None => println!("  ok     [{kind}] {}", c.what),
                Some(f) => println!("  FAILED [{kind}] {}: {f}", c.what),
            }
        }
    }
}

/// `systemctl show UNIT -p PROPS...`, as a map.
pub fn unit_props(unit: &str, props: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = Command::new("systemctl");
    cmd.args(["show", unit]);
    for p in props {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "systemctl show {unit}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The cgroup v2 path of a process, as the kernel shows it.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default().to_string()
}

/// Whether `exprun features` says it makes systemd units (`linux.cgroup.systemd`).
fn exprun_claims_systemd(exprun: &Path) -> bool {
    let out = Command::new(exprun).arg("features").output().unwrap();
    assert!(out.status.success(), "exprun features: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["linux"]["cgroup"]["systemd"].as_bool().unwrap_or_else(|| panic!("no linux.cgroup.systemd in {v}"))
}

/// What the systemd driver must show. runc passes every check. exprun must pass
/// the kernel's; systemd's units only where `exprun features` says it makes
/// them (`linux.cgroup.systemd`), and then every one of them. Where it says it
/// does not, its containers must indeed not be in units (or `features` is
/// wrong), and the checks it fails are printed as expected.
pub fn check_systemd_driver(runc: &SystemdChecks, exprun: &SystemdChecks) {
    runc.print();
    exprun.print();
    let runc_failed: Vec<String> = runc.failed(false).into_iter().chain(runc.failed(true)).collect();
    assert!(runc_failed.is_empty(), "runc fails the systemd-driver checks: {runc_failed:#?}");
    let kernel = exprun.failed(false);
    assert!(kernel.is_empty(), "exprun fails the kernel checks of the systemd driver: {kernel:#?}");
    let units = exprun.failed(true);
    if exprun_claims_systemd(&crate::common::exprun_bin()) {
        assert!(units.is_empty(), "exprun features says cgroup.systemd, but: {units:#?}");
    } else {
        assert!(
            !units.is_empty(),
            "exprun features says it makes no systemd units (cgroup.systemd false), yet its \
             containers were in active systemd units: features must say cgroup.systemd true"
        );
        println!(
            "EXPECTED (exprun features: cgroup.systemd false): exprun makes the cgroups itself, \
             not through systemd units; {} unit checks fail",
            units.len()
        );
    }
}
