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

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(json: serde_json::Value) -> LinuxDevice {
        serde_json::from_value(json).unwrap()
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
