//! Devices of `exprun run`: host device nodes given with `--device
//! HOST[:CONTAINER][:PERMS]` (podman's spelling) and CDI devices (`--device
//! vendor.com/class=name`, `--gpus`), read from the host when the run is
//! asked for and recorded with their numbers; and how they enter the spec:
//! `linux.devices` entries and allow rules of `linux.resources.devices`, so
//! that the plan makes each node and the devices cgroup lets it through, or,
//! rootless (no mknod, no devices cgroup), binds of the host's nodes.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::options::container_path;
use super::Error;

/// One device node the container gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// The host's node (symlinks resolved).
    pub host: PathBuf,
    /// The path inside the container, under /dev.
    pub container: PathBuf,
    /// What the devices cgroup allows: some of `rwm`.
    pub perms: String,
    /// `c` or `b`.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits of the node.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl DeviceRequest {
    /// `c 195:0`.
    pub fn numbers(&self) -> String {
        format!("{} {}:{}", self.kind, self.major, self.minor)
    }
}

/// The devices of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    /// `--device HOST[:CONTAINER][:PERMS]`, each node with the numbers and owner
    /// it had when the run was asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<DeviceRequest>,
    /// CDI devices (`--device vendor.com/class=name`, `--gpus`), each with its
    /// spec file and that file's sha256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdi: Vec<crate::cdi::Device>,
    /// What the CDI devices do to the container, as resolved.
    #[serde(default, skip_serializing_if = "crate::cdi::Edits::is_empty")]
    pub cdi_edits: crate::cdi::Edits,
    /// The CDI spec directories they were resolved from, lowest priority first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdi_spec_dirs: Vec<PathBuf>,
}

impl Devices {
    /// No device asked for.
    pub fn is_empty(&self) -> bool {
        *self == Devices::default()
    }

    /// Every node: `--device`'s, then the CDI devices'.
    pub fn all_nodes(&self) -> impl Iterator<Item = &DeviceRequest> {
        self.nodes.iter().chain(&self.cdi_edits.device_nodes)
    }

    /// Whether a GPU is attached: an NVIDIA GPU node (character major 195,
    /// below the control nodes' minors 254 and 255) or a DRM render node
    /// (major 226, minor 128 and up).
    pub fn gpu(&self) -> bool {
        self.all_nodes().any(|d| {
            use crate::record::gpu::{DRI_MAJOR, NVIDIA_CONTROL_MINORS, NVIDIA_MAJOR};
            d.kind == 'c'
                && ((d.major == NVIDIA_MAJOR && d.minor < NVIDIA_CONTROL_MINORS)
                    || (d.major == DRI_MAJOR && d.minor >= 128))
        })
    }
}

/// A host device node as stat(2) shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNode {
    /// `c` or `b`.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The device node at `path` (symlinks followed), or why it is none.
pub fn host_node(path: &Path) -> Result<HostNode, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let kind = match meta.file_type() {
        t if t.is_char_device() => 'c',
        t if t.is_block_device() => 'b',
        _ => return Err(format!("{} is not a character or block device", path.display())),
    };
    Ok(HostNode {
        kind,
        major: nix::sys::stat::major(meta.rdev()),
        minor: nix::sys::stat::minor(meta.rdev()),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// `--device HOST[:CONTAINER][:PERMS]`: a device node (a symlink to one is
/// resolved, as podman does), or a directory, which gives every device node
/// under it. CONTAINER defaults to HOST as given, PERMS to `rwm`.
pub fn parse_device(s: &str, cwd: &Path) -> Result<Vec<DeviceRequest>, Error> {
    let bad = |why: String| Error::Option { option: "--device", value: s.into(), why };
    let parts: Vec<&str> = s.split(':').collect();
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, None, None),
        [h, p] if is_perms(p) => (*h, None, Some(*p)),
        [h, c] => (*h, Some(*c), None),
        [h, c, p] => (*h, Some(*c), Some(*p)),
        _ => {
            return Err(bad(
                "expected HOST[:CONTAINER][:PERMS], e.g. /dev/nvidia0 or /dev/sdc:/dev/xvdc:r".into()
            ))
        }
    };
    if host.is_empty() {
        return Err(bad("the host path is empty".into()));
    }
    let perms = perms.unwrap_or("rwm");
    if !is_perms(perms) {
        return Err(bad(format!("permissions {perms:?} are not some of r, w, m (read, write, mknod)")));
    }
    let given = cwd.join(host);
    let resolved = std::fs::canonicalize(&given)
        .map_err(|e| bad(format!("the host device {}: {e}", given.display())))?;
    let node = if resolved.is_dir() {
        None
    } else {
        Some(
            host_node(&resolved)
                .map_err(|w| bad(format!("{w}; give a device node or a directory of them")))?,
        )
    };
    let container = container_path("--device", container.unwrap_or(&given.to_string_lossy()))?;
    if !container.starts_with("/dev") || container == Path::new("/dev") && node.is_some() {
        return Err(bad(format!("{} is not a path under /dev", container.display())));
    }
    let one = |host: PathBuf, container: PathBuf, node: HostNode| DeviceRequest {
        host,
        container,
        perms: perms.into(),
        kind: node.kind,
        major: node.major,
        minor: node.minor,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
    };
    if let Some(node) = node {
        return Ok(vec![one(resolved, container, node)]);
    }
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = resolved.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| bad(format!("listing {}: {e}", dir.display())))?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let Ok(t) = e.file_type() else { continue };
            let rel = rel.join(e.file_name());
            if t.is_dir() {
                stack.push(rel);
            } else if t.is_char_device() || t.is_block_device() {
                let path = resolved.join(&rel);
                let node = host_node(&path).map_err(bad)?;
                out.push(one(path, container.join(&rel), node));
            }
        }
    }
    if out.is_empty() {
        return Err(bad(format!("the directory {} holds no device node", resolved.display())));
    }
    Ok(out)
}

/// One difference between recorded devices and this host's, for a replay's
/// drift table: (item, recorded, now, blocking).
pub type DeviceDrift = (String, String, String, bool);

/// Read the recorded devices again on this host, for a replay: each node's
/// numbers and owner as they are now, each CDI device resolved again from
/// `cdi_dirs`; what differs is returned, and `devices` becomes what runs. A
/// node that is gone is blocking drift, left as recorded (the run then fails
/// on it); CDI devices that no longer resolve are blocking drift too, and
/// their recorded edits are dropped, never applied.
pub fn refresh(devices: &mut Devices, cdi_dirs: &[PathBuf], caller: u32) -> Vec<DeviceDrift> {
    let mut out = Vec::new();
    for d in &mut devices.nodes {
        let item = format!("device {}", d.host.display());
        match host_node(&d.host) {
            Ok(n) => {
                let now = format!("{} {}:{}", n.kind, n.major, n.minor);
                if now != d.numbers() {
                    out.push((item, d.numbers(), now, false));
                }
                (d.kind, d.major, d.minor, d.mode, d.uid, d.gid) =
                    (n.kind, n.major, n.minor, n.mode, n.uid, n.gid);
            }
            Err(why) => out.push((item, d.numbers(), why, true)),
        }
    }
    if devices.cdi.is_empty() {
        return out;
    }
    let names: Vec<String> = devices.cdi.iter().map(|d| d.name.clone()).collect();
    // `kind=all` was recorded device by device: resolving each name again gives the same set.
    match crate::cdi::resolve(cdi_dirs, &names, caller) {
        Ok(now) => {
            for (old, new) in devices.cdi.iter().zip(&now.devices) {
                if old.sha256 != new.sha256 || old.spec != new.spec {
                    out.push((
                        format!("cdi {}", old.name),
                        format!("{} sha256:{}", old.spec.display(), short(&old.sha256)),
                        format!("{} sha256:{}", new.spec.display(), short(&new.sha256)),
                        false,
                    ));
                }
            }
            for (old, new) in devices.cdi_edits.device_nodes.iter().zip(&now.edits.device_nodes) {
                if old.numbers() != new.numbers() {
                    out.push((format!("device {}", old.host.display()), old.numbers(), new.numbers(), false));
                }
            }
            devices.cdi = now.devices;
            devices.cdi_edits = now.edits;
            devices.cdi_spec_dirs = cdi_dirs.to_vec();
        }
        Err(e) => {
            // Never the recorded edits: their hooks would run on this host.
            devices.cdi_edits = Default::default();
            out.push((format!("cdi {}", names.join(",")), "resolved".into(), e.to_string(), true));
        }
    }
    out
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// The `linux.devices` entries.
pub fn linux_devices(devices: &Devices) -> Vec<Value> {
    devices
        .all_nodes()
        .map(|d| {
            json!({"path": d.container, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
                   "fileMode": d.mode, "uid": d.uid, "gid": d.gid})
        })
        .collect()
}

/// The `linux.resources.devices` rules letting each node through, with its PERMS.
pub fn allow_rules(devices: &Devices) -> Vec<Value> {
    devices
        .all_nodes()
        .map(|d| json!({"allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "access": d.perms}))
        .collect()
}

/// Rootless: binds of the host's nodes (no mknod in a user namespace, and no
/// devices cgroup). A bind cannot take away read or write access to a device,
/// so PERMS without both is refused.
pub fn rootless_binds(devices: &Devices) -> Result<Vec<(PathBuf, Value)>, Error> {
    devices
        .all_nodes()
        .map(|d| {
            if !(d.perms.contains('r') && d.perms.contains('w')) {
                return Err(Error::Option {
                    option: "--device",
                    value: format!("{}:{}:{}", d.host.display(), d.container.display(), d.perms),
                    why: "a rootless run has no devices cgroup, and a bound host node cannot be made \
                          read-only or write-only; give rw, or run exprun as root"
                        .into(),
                });
            }
            let m = json!({"destination": d.container, "type": "bind", "source": d.host,
                           "options": ["bind", "nosuid", "noexec", "rw"]});
            Ok((d.container.clone(), m))
        })
        .collect()
}

/// The CDI mounts, as spec mounts: a bind unless the spec says otherwise.
pub fn cdi_mounts(edits: &crate::cdi::Edits) -> Vec<(PathBuf, Value)> {
    edits
        .mounts
        .iter()
        .map(|m| {
            let fstype = m.fstype.clone().unwrap_or_else(|| "bind".into());
            let mut options = m.options.clone();
            if fstype == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.insert(0, "rbind".into());
            }
            (
                m.container_path.clone(),
                json!({"destination": m.container_path, "type": fstype, "source": m.host_path, "options": options}),
            )
        })
        .collect()
}

/// The CDI hooks, as the spec's `hooks` object.
pub fn cdi_hooks(edits: &crate::cdi::Edits) -> Option<Value> {
    if edits.hooks.is_empty() {
        return None;
    }
    let mut hooks = serde_json::Map::new();
    for h in &edits.hooks {
        let list = hooks.entry(h.kind.clone()).or_insert_with(|| json!([]));
        if let Value::Array(a) = list {
            let mut args = h.args.clone();
            if args.is_empty() {
                args.push(h.path.display().to_string());
            }
            a.push(json!({"path": h.path, "args": args, "env": h.env, "timeout": h.timeout}));
        }
    }
    Some(Value::Object(hooks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_parse_as_podman_spells_them() {
        let cwd = Path::new("/");
        let d = parse_device("/dev/null", cwd).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].numbers(), d[0].perms.as_str()), ("c 1:3".to_string(), "rwm"));
        assert_eq!(d[0].container, Path::new("/dev/null"));
        let d = parse_device("/dev/zero:/dev/fakegpu0:r", cwd).unwrap();
        assert_eq!(
            (d[0].container.to_str(), d[0].perms.as_str(), d[0].minor),
            (Some("/dev/fakegpu0"), "r", 5)
        );
        assert_eq!(parse_device("/dev/null:rw", cwd).unwrap()[0].perms, "rw");
        for (bad, want) in [
            ("/etc/passwd", "not a character or block device"),
            ("/dev/null:/dev/x:rx", "not some of r, w, m"),
            ("/dev/null:/etc/x", "not a path under /dev"),
            ("/nonexistent", "/nonexistent"),
            ("/etc/ssl:/dev/ssl", "holds no device node"),
        ] {
            let e = parse_device(bad, cwd).unwrap_err().to_string();
            assert!(e.contains("--device") && e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn a_gpu_is_an_nvidia_or_render_node() {
        let node = |major, minor| DeviceRequest {
            host: "/dev/x".into(),
            container: "/dev/x".into(),
            perms: "rwm".into(),
            kind: 'c',
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let with = |n| Devices { nodes: vec![n], ..Default::default() };
        assert!(with(node(195, 0)).gpu());
        assert!(with(node(226, 128)).gpu());
        assert!(!with(node(226, 0)).gpu(), "a card node alone is display, not compute");
        assert!(!with(node(1, 3)).gpu());
        assert!(!with(node(195, 255)).gpu(), "nvidiactl alone is no GPU");
    }
}
