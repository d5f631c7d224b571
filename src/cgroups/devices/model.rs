//! The v1 devices controller's semantics, the ones cgroup v2 must reproduce: a
//! default (allow or deny) and a list of exceptions to it, built from the rules
//! in order as the kernel builds them from `devices.allow` and `devices.deny`
//! writes (security/device_cgroup.c), and the check the kernel makes on an
//! access.
//!
//! - An `a` rule sets the default and clears the exceptions (its numbers and
//!   access are ignored, as the kernel ignores them).
//! - Any other rule that goes against the default adds an exception (merged
//!   with one for the same type and numbers); one that agrees with the default
//!   takes its access out of the exception for the same type and numbers.
//! - Default deny: an access is allowed when an exception matches the device
//!   and covers every access asked. Default allow: it is denied when an
//!   exception matches the device and shares any access asked.

use super::DeviceRule;

/// `m`, `r`, `w` as bits (the kernel's `DEVCG_ACC_*` and `BPF_DEVCG_ACC_*`).
pub const MKNOD: u32 = 1;
/// Read.
pub const READ: u32 = 2;
/// Write.
pub const WRITE: u32 = 4;

/// Block and character devices (`BPF_DEVCG_DEV_*`).
pub const BLOCK: u32 = 1;
/// Character device.
pub const CHAR: u32 = 2;

/// One exception to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// [`BLOCK`] or [`CHAR`].
    pub kind: u32,
    /// `None`: any.
    pub major: Option<u32>,
    /// `None`: any.
    pub minor: Option<u32>,
    /// Some of [`MKNOD`], [`READ`], [`WRITE`].
    pub access: u32,
}

impl Exception {
    /// Whether the exception names the device (type and numbers).
    pub fn names(&self, kind: u32, major: u32, minor: u32) -> bool {
        self.kind == kind && self.major.is_none_or(|m| m == major) && self.minor.is_none_or(|m| m == minor)
    }
}

/// The default and the exceptions the rules leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// Allow unless an exception says otherwise.
    pub default_allow: bool,
    /// In the order made.
    pub exceptions: Vec<Exception>,
}

/// The access letters as bits.
pub fn access_bits(access: &str) -> u32 {
    access.chars().fold(0, |b, c| {
        b | match c {
            'm' => MKNOD,
            'r' => READ,
            'w' => WRITE,
            _ => 0,
        }
    })
}

/// A rule number as the kernel holds it: `None` (any) stays, a number beyond
/// 32 bits (which no device has) is `Err`.
fn number(n: Option<i64>) -> Result<Option<u32>, ()> {
    n.map(|n| u32::try_from(n).map_err(drop)).transpose()
}

impl Model {
    /// Apply `rules` in order to the kernel's starting state for a new cgroup
    /// under a root that allows everything.
    pub fn from_rules(rules: &[DeviceRule]) -> Self {
        let mut m = Model { default_allow: true, exceptions: Vec::new() };
        for r in rules {
            if r.kind == 'a' {
                m = Model { default_allow: r.allow, exceptions: Vec::new() };
                continue;
            }
            let (Ok(major), Ok(minor)) = (number(r.major), number(r.minor)) else { continue };
            let kind = if r.kind == 'b' { BLOCK } else { CHAR };
            let access = access_bits(&r.access);
            let same =
                m.exceptions.iter().position(|e| e.kind == kind && e.major == major && e.minor == minor);
            if r.allow != m.default_allow {
                match same {
                    Some(i) => m.exceptions[i].access |= access,
                    None => m.exceptions.push(Exception { kind, major, minor, access }),
                }
            } else if let Some(i) = same {
                m.exceptions[i].access &= !access;
                if m.exceptions[i].access == 0 {
                    m.exceptions.remove(i);
                }
            }
        }
        m
    }

    /// Whether `access` (bits) to the device is allowed.
    pub fn allows(&self, kind: u32, major: u32, minor: u32, access: u32) -> bool {
        let mut named = self.exceptions.iter().filter(|e| e.names(kind, major, minor));
        if self.default_allow {
            !named.any(|e| e.access & access != 0)
        } else {
            named.any(|e| access & !e.access == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, line: &str) -> DeviceRule {
        let mut parts = line.split(' ');
        let kind = parts.next().unwrap().chars().next().unwrap();
        let (major, minor) = parts.next().unwrap().split_once(':').unwrap();
        let n = |s: &str| s.parse().ok();
        DeviceRule { allow, kind, major: n(major), minor: n(minor), access: parts.next().unwrap().into() }
    }

    #[test]
    fn the_kernels_rules_for_defaults_and_exceptions() {
        // Deny all, allow null rw: null is readable, not mknod-able; zero is not.
        let m = Model::from_rules(&[rule(false, "a *:* rwm"), rule(true, "c 1:3 rw")]);
        assert!(m.allows(CHAR, 1, 3, READ | WRITE));
        assert!(!m.allows(CHAR, 1, 3, MKNOD));
        assert!(!m.allows(CHAR, 1, 5, READ));
        assert!(!m.allows(BLOCK, 1, 3, READ));
        // A later deny of the same device takes access out again.
        let m =
            Model::from_rules(&[rule(false, "a *:* rwm"), rule(true, "c 1:3 rw"), rule(false, "c 1:3 w")]);
        assert!(m.allows(CHAR, 1, 3, READ));
        assert!(!m.allows(CHAR, 1, 3, READ | WRITE));
        // Allow all, deny block 8:*: any read of a disk is refused, the rest pass.
        let m = Model::from_rules(&[rule(true, "a *:* rwm"), rule(false, "b 8:* r")]);
        assert!(!m.allows(BLOCK, 8, 1, READ | WRITE));
        assert!(m.allows(BLOCK, 8, 1, WRITE));
        assert!(m.allows(CHAR, 8, 1, READ));
        // An `a` rule clears what came before.
        let m =
            Model::from_rules(&[rule(false, "a *:* rwm"), rule(true, "c 1:3 rwm"), rule(false, "a *:* rwm")]);
        assert_eq!(m, Model { default_allow: false, exceptions: Vec::new() });
        // A wildcard exception does not cover access it lacks.
        let m = Model::from_rules(&[rule(false, "a *:* rwm"), rule(true, "c *:* m"), rule(true, "b 7:* rw")]);
        assert!(m.allows(CHAR, 4, 4, MKNOD));
        assert!(!m.allows(CHAR, 4, 4, READ));
        assert!(m.allows(BLOCK, 7, 0, READ | WRITE));
        assert!(!m.allows(BLOCK, 7, 0, READ | MKNOD));
    }
}
