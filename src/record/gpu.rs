//! The accelerators attached to a run: for each GPU node of the run's
//! `linux.devices`, what the host's driver says about it. NVIDIA nodes (char
//! major 195, minor below 254) are looked up in /proc/driver/nvidia (driver
//! version, model, UUID, PCI bus id by the node's minor) and with `nvidia-smi`
//! from the caller's PATH, when there is one (the CUDA driver version, and
//! what /proc lacks), under a short deadline; DRI nodes (major 226) in
//! /sys/dev/char. Nothing is read and nothing is run unless a node qualifies.
//! What cannot be learnt is a note in the record, never a failed run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::DeviceNode;

/// The char major of NVIDIA's GPU nodes (`/dev/nvidia0`, ..., `/dev/nvidiactl`).
pub const NVIDIA_MAJOR: u64 = 195;
/// Minors from here up are NVIDIA's control nodes (254 modeset, 255 nvidiactl), not GPUs.
pub const NVIDIA_CONTROL_MINORS: u64 = 254;
/// The char major of DRI nodes (`/dev/dri/card0`, `/dev/dri/renderD128`).
pub const DRI_MAJOR: u64 = 226;
/// How long `nvidia-smi` may take, both of its calls together.
pub const SMI_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes read from one driver file or one `nvidia-smi` answer.
const READ_LIMIT: u64 = 1 << 20;

/// One GPU node attached to a run, and what the host said about its GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRecord {
    /// The node inside the container.
    pub path: PathBuf,
    /// `nvidia` or `dri`.
    pub vendor: String,
    /// Major number.
    pub major: u64,
    /// Minor number (for NVIDIA, the GPU's number).
    pub minor: u64,
    /// The product name (`NVIDIA H100 80GB HBM3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The GPU's UUID (`GPU-...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// PCI bus id, `domain:bus:device.function`, lower case, 4-digit domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// PCI `vendor:device` ids (DRI nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
    /// The kernel driver bound to the device (DRI nodes: `amdgpu`, `i915`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_driver: Option<String>,
    /// The driver's version (NVIDIA: the kernel module's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports, as `nvidia-smi` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_version: Option<String>,
    /// What could not be learnt, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Where the facts are read from: the host's files and `nvidia-smi`.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `/proc/driver/nvidia`.
    pub proc_nvidia: PathBuf,
    /// `/sys/dev/char`.
    pub sys_dev_char: PathBuf,
    /// The `nvidia-smi` to run, if one was found.
    pub smi: Option<PathBuf>,
    /// How long it may take.
    pub smi_timeout: Duration,
}

impl Sources {
    /// This host's, with `nvidia-smi` looked up on exprun's PATH.
    pub fn host() -> Self {
        Self {
            proc_nvidia: PathBuf::from("/proc/driver/nvidia"),
            sys_dev_char: PathBuf::from("/sys/dev/char"),
            smi: find_on_path("nvidia-smi"),
            smi_timeout: SMI_TIMEOUT,
        }
    }
}

/// Whether a node is a GPU, and whose.
fn vendor_of(kind: char, major: u64, minor: u64) -> Option<&'static str> {
    match (kind, major) {
        ('c', NVIDIA_MAJOR) if minor < NVIDIA_CONTROL_MINORS => Some("nvidia"),
        ('c', DRI_MAJOR) => Some("dri"),
        _ => None,
    }
}

/// The GPUs behind the run's device nodes, from this host. Empty, having read
/// nothing, when no node is a GPU.
pub fn facts(nodes: &[DeviceNode]) -> Vec<GpuRecord> {
    let attached: Vec<(&Path, u64, u64)> = nodes
        .iter()
        .filter(|n| vendor_of(n.kind, n.major, n.minor).is_some())
        .map(|n| (n.path.as_path(), n.major, n.minor))
        .collect();
    if attached.is_empty() {
        return Vec::new();
    }
    facts_from(&attached, &Sources::host())
}

/// The same GPUs as `recorded`, as this host has them now (for a replay's drift).
pub fn facts_again(recorded: &[GpuRecord]) -> Vec<GpuRecord> {
    let nodes: Vec<(&Path, u64, u64)> =
        recorded.iter().map(|g| (g.path.as_path(), g.major, g.minor)).collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    facts_from(&nodes, &Sources::host())
}

/// The GPUs behind `nodes` (path, major, minor), read from `src`.
pub fn facts_from(nodes: &[(&Path, u64, u64)], src: &Sources) -> Vec<GpuRecord> {
    let mut out: Vec<GpuRecord> = nodes
        .iter()
        .filter_map(|&(path, major, minor)| {
            let vendor = vendor_of('c', major, minor)?;
            Some(GpuRecord {
                path: path.to_path_buf(),
                vendor: vendor.into(),
                major,
                minor,
                ..GpuRecord::default()
            })
        })
        .collect();
    if out.iter().any(|g| g.vendor == "nvidia") {
        nvidia(&mut out, src);
    }
    for g in out.iter_mut().filter(|g| g.vendor == "dri") {
        dri(g, &src.sys_dev_char);
    }
    out
}

fn nvidia(gpus: &mut [GpuRecord], src: &Sources) {
    let version = read_limited(&src.proc_nvidia.join("version"));
    let driver = version.as_ref().ok().and_then(|t| parse_driver_version(t));
    let infos = proc_gpus(&src.proc_nvidia.join("gpus"));
    let smi = src.smi.as_ref().map(|p| smi(p, src.smi_timeout));
    for g in gpus.iter_mut().filter(|g| g.vendor == "nvidia") {
        match &version {
            Ok(_) if driver.is_none() => {
                g.notes.push(format!("{}/version names no driver version", src.proc_nvidia.display()))
            }
            Ok(_) => g.driver_version.clone_from(&driver),
            Err(e) => g.notes.push(format!("{}/version: {e}", src.proc_nvidia.display())),
        }
        match infos.iter().find(|i| i.minor == Some(g.minor)) {
            Some(i) => {
                g.model.clone_from(&i.model);
                g.uuid.clone_from(&i.uuid);
                g.pci_bus_id = i.bus.as_deref().and_then(normalise_bus_id);
            }
            None => g.notes.push(format!(
                "no {}/gpus/*/information with Device Minor {}",
                src.proc_nvidia.display(),
                g.minor
            )),
        }
        match &smi {
            None => g.notes.push("nvidia-smi is not on PATH: no CUDA version".into()),
            Some(Err(e)) => g.notes.push(e.clone()),
            Some(Ok(s)) => {
                g.cuda_version.clone_from(&s.cuda_version);
                if s.cuda_version.is_none() {
                    g.notes.push("nvidia-smi -q names no CUDA Version".into());
                }
                let row = s.rows.iter().find(|r| {
                    g.uuid.as_ref().is_some_and(|u| Some(u) == r.uuid.as_ref())
                        || g.pci_bus_id.as_ref().is_some_and(|b| Some(b) == r.bus_id.as_ref())
                });
                if let Some(r) = row {
                    g.model = g.model.take().or_else(|| r.name.clone());
                    g.uuid = g.uuid.take().or_else(|| r.uuid.clone());
                    g.driver_version = g.driver_version.take().or_else(|| r.driver_version.clone());
                }
            }
        }
    }
}

/// What one /proc/driver/nvidia/gpus/*/information says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Information {
    /// `Model`.
    pub model: Option<String>,
    /// `GPU UUID`.
    pub uuid: Option<String>,
    /// `Bus Location`.
    pub bus: Option<String>,
    /// `Device Minor` (`?` on some drivers: none).
    pub minor: Option<u64>,
}

/// Parse an information file: `Key: \t value` lines.
pub fn parse_information(text: &str) -> Information {
    let mut i = Information::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        let value = (!v.is_empty()).then(|| v.to_string());
        match k.trim() {
            "Model" => i.model = value,
            "GPU UUID" => i.uuid = value,
            "Bus Location" => i.bus = value,
            "Device Minor" => i.minor = v.parse().ok(),
            _ => {}
        }
    }
    i
}

/// The driver version of /proc/driver/nvidia/version's `NVRM version:` line:
/// its first word of digits and dots (`535.104.05`), for both the proprietary
/// ("... x86_64 Kernel Module  535.104.05  ...") and the open module ("... Open
/// Kernel Module for x86_64  570.86.15  Release Build ...").
pub fn parse_driver_version(text: &str) -> Option<String> {
    let line = text.lines().find_map(|l| l.strip_prefix("NVRM version:"))?;
    line.split_whitespace().find(|w| is_version(w)).map(str::to_string)
}

fn is_version(w: &str) -> bool {
    w.contains('.')
        && w.starts_with(|c: char| c.is_ascii_digit())
        && w.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The CUDA version in `nvidia-smi -q` (`CUDA Version : 12.2`) or in its
/// table header (`CUDA Version: 12.2`).
pub fn parse_cuda_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = &l[l.find("CUDA Version")? + "CUDA Version".len()..];
        let w = rest.trim_start().strip_prefix(':')?.split_whitespace().next()?;
        is_version(w).then(|| w.to_string())
    })
}

/// One line of `nvidia-smi --query-gpu=pci.bus_id,uuid,name,driver_version
/// --format=csv,noheader`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmiRow {
    /// `pci.bus_id`, normalised as [`GpuRecord::pci_bus_id`].
    pub bus_id: Option<String>,
    /// `uuid`.
    pub uuid: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `driver_version`.
    pub driver_version: Option<String>,
}

/// The fields asked of `nvidia-smi --query-gpu`, in the order [`parse_smi_csv`] reads them.
pub const SMI_QUERY: &str = "pci.bus_id,uuid,name,driver_version";

/// Parse `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader`: one GPU a
/// line, fields separated by `, ` (a name holds no comma).
pub fn parse_smi_csv(text: &str) -> Vec<SmiRow> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let field = |i: usize| {
                f.get(i)
                    .filter(|v| !v.is_empty() && !v.starts_with('[') && **v != "N/A")
                    .map(|v| v.to_string())
            };
            SmiRow {
                bus_id: field(0).as_deref().and_then(normalise_bus_id),
                uuid: field(1),
                name: field(2),
                driver_version: field(3),
            }
        })
        .collect()
}

/// A PCI bus id as `0000:3b:00.0`: /proc writes `0000:3b:00.0`, nvidia-smi
/// `00000000:3B:00.0`.
pub fn normalise_bus_id(id: &str) -> Option<String> {
    let (domain, rest) = id.trim().split_once(':')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let hex = |s: &str| u8::from_str_radix(s, 16).ok();
    Some(format!("{domain:04x}:{:02x}:{:02x}.{}", hex(bus)?, hex(dev)?, func.parse::<u8>().ok()?))
}

/// Every GPU the driver lists under `dir` (/proc/driver/nvidia/gpus).
fn proc_gpus(dir: &Path) -> Vec<Information> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| read_limited(&e.path().join("information")).ok())
        .map(|t| parse_information(&t))
        .collect()
}

fn dri(g: &mut GpuRecord, sys_dev_char: &Path) {
    let dev = sys_dev_char.join(format!("{}:{}", g.major, g.minor)).join("device");
    let read =
        |f: &str| read_limited(&dev.join(f)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let uevent = read("uevent").unwrap_or_default();
    let field =
        |k: &str| uevent.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(str::to_string);
    g.pci_bus_id = field("PCI_SLOT_NAME").as_deref().and_then(normalise_bus_id);
    let id = |s: Option<String>| s.map(|v| v.trim_start_matches("0x").to_string());
    g.pci_id = match (id(read("vendor")), id(read("device"))) {
        (Some(v), Some(d)) => Some(format!("{v}:{d}")),
        _ => field("PCI_ID").map(|s| s.to_ascii_lowercase()),
    };
    g.kernel_driver = field("DRIVER").or_else(|| {
        std::fs::read_link(dev.join("driver")).ok()?.file_name().map(|n| n.to_string_lossy().into_owned())
    });
    if g.pci_bus_id.is_none() && g.pci_id.is_none() {
        g.notes.push(format!("{} tells nothing of the device", dev.display()));
    }
}

/// What `nvidia-smi` said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Smi {
    rows: Vec<SmiRow>,
    cuda_version: Option<String>,
}

/// Ask `nvidia-smi` for the GPUs and the CUDA version, both within `timeout`.
fn smi(program: &Path, timeout: Duration) -> Result<Smi, String> {
    let deadline = Instant::now() + timeout;
    let query = format!("--query-gpu={SMI_QUERY}");
    let csv = run_until(program, &[&query, "--format=csv,noheader"], deadline, timeout)?;
    let q = run_until(program, &["-q", "-d", "COMPUTE"], deadline, timeout)?;
    Ok(Smi { rows: parse_smi_csv(&csv), cuda_version: parse_cuda_version(&q) })
}

/// Run `program args` in its own process group, its output into a memfd (no
/// thread: the run clones its init later, which needs exprun single-threaded);
/// past `deadline` the group is killed.
fn run_until(program: &Path, args: &[&str], deadline: Instant, timeout: Duration) -> Result<String, String> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::process::CommandExt;
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = nix::sys::memfd::memfd_create(c"exprun-nvidia-smi", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|e| format!("{shown}: making its output file: {e}"))?;
    let stdout = out.try_clone().map_err(|e| format!("{shown}: making its output file: {e}"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{shown}: cannot run it: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("{shown}: no answer within {} s, killed", timeout.as_secs()));
            }
            Err(e) => return Err(format!("{shown}: waiting for it: {e}")),
        }
    };
    if !status.success() {
        return Err(format!("{shown}: {status}"));
    }
    let mut text = String::new();
    let mut out = out;
    out.seek(SeekFrom::Start(0))
        .and_then(|_| out.take(READ_LIMIT).read_to_string(&mut text))
        .map_err(|e| format!("{shown}: reading its output: {e}"))?;
    Ok(text)
}

fn read_limited(path: &Path) -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::fs::File::open(path)?.take(READ_LIMIT).read_to_string(&mut text)?;
    Ok(text)
}

/// The first executable file `name` in the directories of PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The facts compared between runs: model, driver version, CUDA version.
fn compared(g: &GpuRecord) -> [(&'static str, Option<&str>); 3] {
    [
        ("model", g.model.as_deref()),
        ("driver", g.driver_version.as_deref()),
        ("cuda", g.cuda_version.as_deref()),
    ]
}

/// A GPU fact that differs between two runs: (what, in `a`, in `b`), `-` for
/// unknown, `not attached` for a node only one side has.
pub fn differences(a: &[GpuRecord], b: &[GpuRecord]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for x in a {
        let item = |what: &str| format!("gpu {} {what}", x.path.display());
        match b.iter().find(|y| y.path == x.path) {
            None => out.push((format!("gpu {}", x.path.display()), summary(x), "not attached".into())),
            Some(y) => {
                for ((what, va), (_, vb)) in compared(x).into_iter().zip(compared(y)) {
                    if va != vb {
                        out.push((item(what), va.unwrap_or("-").into(), vb.unwrap_or("-").into()));
                    }
                }
            }
        }
    }
    for y in b.iter().filter(|y| !a.iter().any(|x| x.path == y.path)) {
        out.push((format!("gpu {}", y.path.display()), "not attached".into(), summary(y)));
    }
    out
}

/// One line for a GPU: model, UUID, bus id, driver and CUDA versions.
pub fn summary(g: &GpuRecord) -> String {
    let mut s = g.model.clone().unwrap_or_else(|| format!("{} {}:{}", g.vendor, g.major, g.minor));
    let ids: Vec<&str> =
        [&g.uuid, &g.pci_bus_id, &g.pci_id].into_iter().filter_map(|v| v.as_deref()).collect();
    if !ids.is_empty() {
        s.push_str(&format!(" ({})", ids.join(", ")));
    }
    if let Some(d) = &g.driver_version {
        s.push_str(&format!(", driver {d}"));
    }
    if let Some(d) = &g.kernel_driver {
        s.push_str(&format!(", kernel driver {d}"));
    }
    if let Some(c) = &g.cuda_version {
        s.push_str(&format!(", CUDA {c}"));
    }
    s
}

#[cfg(test)]
#[path = "gpu_tests.rs"]
mod tests;
