//! Device access rules (OCI `linux.resources.devices`): which device nodes the
//! container may read, write or create, whatever nodes its /dev holds.
//!
//! On cgroup v1 they are the devices controller's `devices.deny` and
//! `devices.allow` lists, written in the order given: the kernel keeps a default
//! (allow or deny, set by an `a` rule) and a list of exceptions, so the usual
//! "deny everything, then allow these" comes out as the config says. On cgroup v2
//! there is no such file: the rules become a cgroup device BPF program ([`bpf`])
//! attached to the container's cgroup, deciding as the v1 controller would
//! ([`model`]). A host that refuses the program refuses the run.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use super::Error;

pub mod bpf;
pub mod model;

/// `BPF_PROG_TYPE_CGROUP_DEVICE` and `BPF_CGROUP_DEVICE` (`<linux/bpf.h>`).
const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// The attach type for device programs.
pub const ATTACH_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: the program adds to those of the cgroup's ancestors
/// (systemd's, a parent runtime's) instead of replacing them; every one must
/// allow an access.
const F_ALLOW_MULTI: u32 = 2;

/// One rule: `allow` or deny `access` (some of `rwm`) to devices of `kind`
/// (`a` all, `c` character, `b` block) with these numbers (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `a`, `c` or `b`.
    pub kind: char,
    /// Major number; `None` matches any.
    pub major: Option<i64>,
    /// Minor number; `None` matches any.
    pub minor: Option<i64>,
    /// Some of `r` (read), `w` (write), `m` (mknod).
    pub access: String,
}

impl DeviceRule {
    /// The rule for the OCI entry number `index`, checked.
    pub fn from_oci(index: usize, r: &LinuxDeviceCgroup) -> Result<Self, String> {
        let field = |name: &str| format!("linux.resources.devices[{index}].{name}");
        let kind = match r.typ().unwrap_or_default() {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => {
                return Err(format!(
                    "{}: a FIFO is not a device the cgroup controls; use c or b",
                    field("type")
                ))
            }
        };
        let access = r.access().clone().filter(|a| !a.is_empty()).unwrap_or_else(|| "rwm".into());
        if access.chars().any(|c| !"rwm".contains(c)) {
            return Err(format!("{}: {access:?} is not some of r, w, m", field("access")));
        }
        for (name, n) in [("major", r.major()), ("minor", r.minor())] {
            if n.is_some_and(|n| n < -1) {
                return Err(format!("{}: {} is negative", field(name), n.unwrap_or_default()));
            }
            if n.is_some_and(|n| n > i64::from(u32::MAX)) {
                return Err(format!(
                    "{}: {} is beyond 32 bits, which no device number is",
                    field(name),
                    n.unwrap_or_default()
                ));
            }
        }
        // -1 is how some configs write "any".
        let any = |n: Option<i64>| n.filter(|n| *n >= 0);
        Ok(Self { allow: r.allow(), kind, major: any(r.major()), minor: any(r.minor()), access })
    }

    /// The rule as the v1 controller reads it: `c 1:3 rwm`, `*` for any number.
    pub fn line(&self) -> String {
        let n = |v: Option<i64>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!("{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }

    /// The rule as an OCI `linux.resources.devices` entry.
    pub fn oci_json(&self) -> serde_json::Value {
        serde_json::json!({
            "allow": self.allow,
            "type": self.kind.to_string(),
            "major": self.major,
            "minor": self.minor,
            "access": self.access,
        })
    }
}

/// The devices every container may use whatever its config says, as with runc
/// (containerd's CRI plugin only writes "deny all" and relies on it): the nodes
/// bound into /dev, and pseudo-terminals. (major, minor) of character devices,
/// allowed `rwm`; `None`: any minor.
const ALWAYS_ALLOWED: [(i64, Option<i64>); 9] = [
    (1, Some(3)), // null
    (1, Some(5)), // zero
    (1, Some(7)), // full
    (1, Some(8)), // random
    (1, Some(9)), // urandom
    (5, Some(0)), // tty
    (5, Some(1)), // console
    (5, Some(2)), // ptmx
    (136, None),  // pts/*
];

/// "Deny everything": the rule `exprun run` starts from.
pub fn deny_all() -> DeviceRule {
    DeviceRule { allow: false, kind: 'a', major: None, minor: None, access: "rwm".into() }
}

/// The rules appended after a config's own (see [`ALWAYS_ALLOWED`]).
pub fn always_allowed() -> impl Iterator<Item = DeviceRule> {
    ALWAYS_ALLOWED.iter().map(|&(major, minor)| DeviceRule {
        allow: true,
        kind: 'c',
        major: Some(major),
        minor,
        access: "rwm".into(),
    })
}

/// Write `rules` into the v1 devices cgroup `dir`, in order.
pub fn apply_v1(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    for r in rules {
        let file = dir.join(if r.allow { "devices.allow" } else { "devices.deny" });
        fs::write(&file, r.line()).map_err(|source| Error::Write { line: r.line(), path: file, source })?;
    }
    Ok(())
}

/// Load the program for `rules` and attach it to the cgroup v2 directory `dir`.
/// The attachment lives as long as the cgroup; nothing needs to be kept open.
pub fn apply_v2(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let refused = |what: &str, why: String| Error::Unenforceable {
        limit: "linux.resources.devices",
        why: format!("{what} the cgroup device BPF program for {}: {why}", dir.display()),
    };
    let insns: Vec<[u8; 8]> = bpf::program(rules).iter().map(bpf::Insn::encode).collect();
    // No GPL-only helper is called: the license is the project's own.
    let prog = crate::sys::bpf_prog_load(PROG_TYPE_CGROUP_DEVICE, &insns, c"Apache-2.0", "exprun_devices")
        .map_err(|(e, log)| {
            let log = if log.is_empty() { String::new() } else { format!(" (verifier: {log})") };
            refused("the kernel refused to load", format!("{e}{log}"))
        })?;
    let cgroup =
        fs::File::open(dir).map_err(|source| Error::Io { op: "opening cgroup", path: dir.into(), source })?;
    crate::sys::bpf_prog_attach(cgroup.as_fd(), prog.as_fd(), ATTACH_CGROUP_DEVICE, F_ALLOW_MULTI)
        .map_err(|e| refused("the kernel refused to attach", e.to_string()))
}

/// What enforces device rules for a run on `host`, or why nothing does (then
/// a config with rules is refused). On cgroup v2 this loads a deny-all program
/// and drops it at once: whether the kernel takes such programs from us.
pub fn enforcement(host: &super::CgroupHost) -> Result<&'static str, String> {
    match host.version() {
        super::Version::V1 if host.v1.contains_key(super::DEVICES) => Ok("cgroup v1 devices controller"),
        super::Version::V1 | super::Version::None => {
            Err("the devices cgroup controller is not mounted on this host".into())
        }
        super::Version::V2 => {
            let insns: Vec<[u8; 8]> = bpf::program(&[deny_all()]).iter().map(bpf::Insn::encode).collect();
            crate::sys::bpf_prog_load(PROG_TYPE_CGROUP_DEVICE, &insns, c"Apache-2.0", "exprun_probe")
                .map(drop)
                .map(|()| "cgroup v2 device BPF program")
                .map_err(|(e, _)| format!("the kernel refuses cgroup device BPF programs: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(json: serde_json::Value) -> LinuxDeviceCgroup {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn oci_rules_become_v1_lines() {
        let deny =
            DeviceRule::from_oci(0, &oci(serde_json::json!({"allow": false, "access": "rwm"}))).unwrap();
        assert_eq!(deny.line(), "a *:* rwm");
        let null =
            oci(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
        assert_eq!(DeviceRule::from_oci(1, &null).unwrap().line(), "c 1:3 rw");
        let any = oci(serde_json::json!({"allow": true, "type": "b", "major": 8, "minor": -1}));
        assert_eq!(DeviceRule::from_oci(2, &any).unwrap().line(), "b 8:* rwm");
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e =
            DeviceRule::from_oci(3, &oci(serde_json::json!({"allow": true, "access": "rx"}))).unwrap_err();
        assert!(e.contains("linux.resources.devices[3].access"), "{e}");
        let e = DeviceRule::from_oci(0, &oci(serde_json::json!({"allow": true, "type": "p"}))).unwrap_err();
        assert!(e.contains("devices[0].type"), "{e}");
        let e = DeviceRule::from_oci(
            1,
            &oci(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 5_000_000_000_i64})),
        )
        .unwrap_err();
        assert!(e.contains("devices[1].minor") && e.contains("32 bits"), "{e}");
    }

    #[test]
    fn deny_all_and_the_always_allowed_round_trip_through_oci() {
        assert_eq!(deny_all().line(), "a *:* rwm");
        let allowed: Vec<DeviceRule> = always_allowed().collect();
        assert!(allowed.iter().all(|r| r.allow));
        assert!(allowed.iter().any(|r| r.line() == "c 136:* rwm"));
        for (i, rule) in allowed.iter().chain([&deny_all()]).enumerate() {
            let back = DeviceRule::from_oci(i, &serde_json::from_value(rule.oci_json()).unwrap()).unwrap();
            assert_eq!(&back, rule);
        }
    }

    #[test]
    fn enforcement_names_what_enforces_or_why_nothing_does() {
        use crate::cgroups::CgroupHost;
        let v1 = |ctrls: &str| {
            let mi = format!("30 25 0:26 / /sys/fs/cgroup/x rw - cgroup cgroup rw,{ctrls}\n");
            CgroupHost::parse(&mi, "1:memory:/\n")
        };
        assert_eq!(enforcement(&v1("memory,devices")), Ok("cgroup v1 devices controller"));
        let e = enforcement(&v1("memory")).unwrap_err();
        assert!(e.contains("devices cgroup controller is not mounted"), "{e}");
        let mut v2 = CgroupHost::parse("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n");
        v2.v2_controllers = vec!["memory".into()];
        let got = enforcement(&v2);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(got, Ok("cgroup v2 device BPF program"));
        } else {
            assert!(got.unwrap_err().contains("refuses cgroup device BPF programs"));
        }
    }

    #[test]
    fn a_refused_program_refuses_the_rules_naming_them_and_the_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let e = apply_v2(dir.path(), &[deny_all()]).unwrap_err().to_string();
        assert!(e.starts_with("cannot enforce linux.resources.devices: the kernel refused to "), "{e}");
        assert!(e.contains(&format!("BPF program for {}", dir.path().display())), "{e}");
    }
}
