//! Seccomp: an OCI profile compiled to a BPF program with libseccomp, cached by
//! the profile's digest, and installed by init as late as it can be.
//!
//! Compiling the containerd/Docker default profile costs libseccomp about 20 ms
//! (research/performance-anchors.md §6), more than a whole container start; the
//! program only depends on the profile and the architecture, so it is compiled
//! once and kept in `<root>/cache/seccomp/<digest>-<arch>-tree.bpf`.

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub mod default;

/// How programs are compiled (part of the cache key): a binary tree.
const COMPILER: &str = "tree";

/// Seccomp errors: the profile cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("linux.seccomp: {0}")]
pub struct Error(String);

/// A compiled filter, ready for init to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// sha256 of the profile (its JSON), recorded with the run.
    pub digest: Digest,
    /// The BPF program: `struct sock_filter` entries, 8 bytes each.
    #[serde(with = "hex_bytes")]
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub flags: u32,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The filter for `profile`, from the cache in `cache_dir` or compiled (and
/// then cached).
pub fn prepare(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, Error> {
    let json = serde_json::to_vec(profile).map_err(|e| Error(e.to_string()))?;
    let digest = Digest::of_bytes(&json);
    let flags = flags(profile)?;
    let cached =
        cache_dir.join("seccomp").join(format!("{}-{}-{COMPILER}.bpf", digest.hex(), std::env::consts::ARCH));
    if let Ok(program) = std::fs::read(&cached) {
        if !program.is_empty() && program.len() % 8 == 0 {
            return Ok(Filter { digest, program, flags });
        }
    }
    let program = compile(profile)?;
    if let Some(dir) = cached.parent() {
        if crate::fsutil::create_private_dir_all(dir).is_ok() {
            let _ = crate::fsutil::write_atomic(&cached, &program, false);
        }
    }
    Ok(Filter { digest, program, flags })
}

fn flags(profile: &LinuxSeccomp) -> Result<u32, Error> {
    let mut f = 0;
    for flag in profile.flags().iter().flatten() {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // One thread: nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            other => return Err(Error(format!("flag {other} is not supported"))),
        } as u32;
    }
    Ok(f)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, Error> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error("SCMP_ACT_NOTIFY (a seccomp agent) is not supported".into()))
        }
    })
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compile `profile` with libseccomp. Syscall names this architecture does not
/// have are skipped (profiles list every architecture's), as runc does.
fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, Error> {
    let err = |what: &str, e: libseccomp::error::SeccompError| Error(format!("{what}: {e}"));
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("creating the filter", e))?;
    // exprun sets no_new_privs itself, as the process spec says.
    ctx.set_ctl_nnp(false).map_err(|e| err("configuring the filter", e))?;
    // A binary tree by syscall number instead of a list of comparisons: the
    // kernel runs the filter once per syscall number when it is attached (to
    // cache the constant answers), so a long list cost about 1 ms per start
    // with the default profile.
    ctx.set_ctl_optimize(2).map_err(|e| err("configuring the filter", e))?;
    for arch in profile.architectures().iter().flatten() {
        let name =
            serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let a: ScmpArch = name.parse().map_err(|_| Error(format!("unknown architecture {name}")))?;
        if a != ScmpArch::native() {
            match ctx.add_arch(a) {
                Ok(_) => {}
                Err(e) if e.errno() == Some(libseccomp::error::SeccompErrno::EEXIST) => {}
                Err(e) => return Err(err(&format!("adding architecture {name}"), e)),
            }
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue; // libseccomp refuses rules that repeat the default
        }
        let args = rule.args().clone().unwrap_or_default();
        let conds: Vec<ScmpArgCompare> = args
            .iter()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        // libseccomp takes one condition per argument in a rule; several on the
        // same argument mean "any of them" (runc does the same split).
        let mut indices: Vec<usize> = args.iter().map(|a| a.index()).collect();
        indices.sort_unstable();
        let repeated = indices.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else { continue };
            let groups: Vec<Vec<ScmpArgCompare>> =
                if repeated { conds.iter().map(|c| vec![*c]).collect() } else { vec![conds.clone()] };
            for g in groups {
                ctx.add_rule_conditional(act, sys, &g).map_err(|e| err(&format!("rule for {name}"), e))?;
            }
        }
    }
    // SAFETY: memfd_create with a static NUL-terminated name; the result is checked.
    let raw = unsafe { libc::memfd_create(c"exprun-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(Error(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: raw is a new fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    ctx.export_bpf(&fd).map_err(|e| err("exporting the program", e))?;
    let mut f = std::fs::File::from(fd);
    let mut program = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut program))
        .map_err(|e| Error(format!("reading the program: {e}")))?;
    Ok(program)
}

/// Install `filter` on the calling thread (init, just before execve).
pub fn install(filter: &Filter) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: (filter.program.len() / 8) as u16,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter.program`, which lives for the call and holds
    // `len` complete sock_filter entries; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            filter.flags,
            std::ptr::addr_of!(prog),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn compiles_and_caches_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_NE"}, {"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]}
            ]
        }));
        let f = prepare(&p, dir.path()).unwrap();
        assert!(!f.program.is_empty() && f.program.len().is_multiple_of(8));
        let again = prepare(&p, dir.path()).unwrap();
        assert_eq!(f, again);
        assert_eq!(std::fs::read_dir(dir.path().join("seccomp")).unwrap().count(), 1);
    }

    #[test]
    fn notify_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(prepare(&p, dir.path()).unwrap_err().to_string().contains("SCMP_ACT_NOTIFY"));
    }
}
