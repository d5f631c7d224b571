//! `linux.devices`: device nodes made in the container's /dev (a GPU, /dev/fuse,
//! every host device for a privileged pod), checked here and made by init.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// One node to make with mknod in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Where, inside the container (under /dev).
    pub path: PathBuf,
    /// `c`, `b` or `p`.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits [default: 0666].
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Check the config's `linux.devices`.
pub fn plan(devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>> {
    devices.iter().enumerate().map(|(i, d)| node(i, d)).collect()
}

/// The default nodes and the config's, where they meet exprun's own /dev (a
/// privileged pod lists every host device, these included), settled as runc
/// settles them: when `/dev` is exprun's tmpfs, `/dev/ptmx` stays the link to
/// `pts/ptmx` (the container's own devpts instance) and, with a terminal,
/// `/dev/console` stays the container's pty; a config node at the path of a
/// default one replaces it (its mode and owner count), except in a user
/// namespace, where the defaults are the host's nodes bound and a config node
/// with the same numbers is kept as it is.
pub fn merge(
    defaults: Vec<DeviceNode>,
    nodes: Vec<DeviceNode>,
    dev_tmpfs: bool,
    terminal: bool,
    from_host: bool,
) -> (Vec<DeviceNode>, Vec<DeviceNode>) {
    if !dev_tmpfs {
        return (defaults, nodes);
    }
    let nodes: Vec<DeviceNode> = nodes
        .into_iter()
        .filter(|n| n.path != Path::new("/dev/ptmx") && !(terminal && n.path == Path::new("/dev/console")))
        .collect();
    let defaults =
        defaults.into_iter().filter(|d| from_host || !nodes.iter().any(|n| n.path == d.path)).collect();
    (defaults, nodes)
}

fn node(i: usize, d: &LinuxDevice) -> Result<DeviceNode> {
    let bad = |field: &str, why: String| Error::Config(format!("linux.devices[{i}].{field}: {why}"));
    let path = d.path();
    let clean = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.starts_with("/dev") || path == Path::new("/dev") || !clean {
        return Err(bad("path", format!("{} is not a path under /dev without '..'", path.display())));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::P => 'p',
        LinuxDeviceType::A => return Err(bad("type", "a node is c, b, u or p, not a".into())),
    };
    let number = |field: &str, n: i64| u64::try_from(n).map_err(|_| bad(field, format!("{n} is negative")));
    let mode = d.file_mode().unwrap_or(0o666);
    if mode & !0o7777 != 0 {
        return Err(bad("fileMode", format!("{mode:#o} holds more than permission bits")));
    }
    Ok(DeviceNode {
        path: path.clone(),
        kind,
        major: number("major", d.major())?,
        minor: number("minor", d.minor())?,
        mode,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// The device nodes every container gets: path, major, minor (Linux's fixed
/// numbers). The container owns them (made with mknod in its /dev, 0666 and
/// root's, as runc makes them), so nothing it does to them reaches the host's.
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

impl DeviceNode {
    /// A character device at `path`, mode 0666, owned by root.
    pub fn char(path: impl Into<PathBuf>, major: u64, minor: u64) -> Self {
        DeviceNode { path: path.into(), kind: 'c', major, minor, mode: 0o666, uid: 0, gid: 0 }
    }
}

/// [`DEFAULT_DEVICES`] as nodes.
pub(super) fn default_devices() -> Vec<DeviceNode> {
    DEFAULT_DEVICES.iter().map(|&(path, major, minor)| DeviceNode::char(path, major, minor)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(json: serde_json::Value) -> LinuxDevice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn config_nodes_meeting_exprun_s_own_dev_are_settled_as_runc_does() {
        let n = |p: &str, major, minor, mode| DeviceNode {
            path: p.into(),
            kind: 'c',
            major,
            minor,
            mode,
            uid: 0,
            gid: 0,
        };
        let defaults = || vec![n("/dev/null", 1, 3, 0o666), n("/dev/tty", 5, 0, 0o666)];
        let config = || {
            vec![
                n("/dev/ptmx", 5, 2, 0o666),
                n("/dev/null", 1, 3, 0o660),
                n("/dev/console", 5, 1, 0o600),
                n("/dev/fuse", 10, 229, 0o666),
            ]
        };
        let paths = |v: &[DeviceNode]| v.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>();
        let (d, c) = merge(defaults(), config(), true, true, false);
        assert_eq!(paths(&d), ["/dev/tty"]);
        assert_eq!(paths(&c), ["/dev/null", "/dev/fuse"]);
        assert_eq!(c[0].mode, 0o660);
        let (d, c) = merge(defaults(), config(), true, false, true);
        assert_eq!(paths(&d), ["/dev/null", "/dev/tty"]);
        assert_eq!(paths(&c), ["/dev/null", "/dev/console", "/dev/fuse"]);
        let (d, c) = merge(defaults(), config(), false, true, false);
        assert_eq!((d.len(), c.len()), (2, 4));
    }

    #[test]
    fn nodes_are_checked_and_named_by_index() {
        let ok = plan(&[dev(serde_json::json!(
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0}
        ))])
        .unwrap();
        assert_eq!((ok[0].kind, ok[0].major, ok[0].minor, ok[0].mode), ('c', 10, 229, 0o600));
        for (json, field) in [
            (serde_json::json!({"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}), "[0].path"),
            (serde_json::json!({"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}), "[0].path"),
            (serde_json::json!({"path": "/dev/x", "type": "a", "major": 1, "minor": 3}), "[0].type"),
            (serde_json::json!({"path": "/dev/x", "type": "c", "major": -2, "minor": 3}), "[0].major"),
        ] {
            let e = plan(&[dev(json)]).unwrap_err().to_string();
            assert!(e.contains(&format!("linux.devices{field}")), "{e}");
        }
    }
}
