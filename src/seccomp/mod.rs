//! Seccomp: an OCI profile checked when the run is planned ([`check`]),
//! compiled to a BPF program with libseccomp (or taken from the cache) when it
//! is applied, before the container's init is cloned ([`Filter::compile`]), and
//! installed by init as late as it can be.
//!
//! Compiling the containerd/Docker default profile costs libseccomp about 20 ms
//! (research/performance-anchors.md §6), more than a whole container start; the
//! program only depends on the profile, the architecture and the compiler, so
//! it is compiled once and kept in
//! `<root>/cache/seccomp/<digest>-<arch>-<compiler>.bpf`: the sha256 of the
//! program (64 hex digits), then the program.
//!
//! A cached program is the container's whole syscall policy, so it is loaded
//! only from a file and directory that nobody but this user can have written,
//! and only when its content matches the digest stored with it: a file cut
//! short or changed in place is compiled again, never loaded.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub mod default;

/// How profiles are translated for libseccomp, part of the cache key with
/// exprun's and libseccomp's versions. Change it whenever the same profile
/// would compile to a different program, so that no program from the older
/// translation is loaded again: "tree" programs (before it) took valueTwo as
/// SCMP_CMP_MASKED_EQ's mask, so their masked rules matched every argument.
const COMPILER: &str = "tree-2";

/// The most a cached program may hold: the kernel takes at most BPF_MAXINSNS
/// (4096) instructions of 8 bytes.
const MAX_PROGRAM: u64 = 4096 * 8;

/// The bytes of the program's sha256, in hex, at the start of a cache file.
const DIGEST_LEN: u64 = 64;

/// Seccomp errors: the profile (`linux.seccomp`) is refused or cannot be
/// compiled; each says which field or step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile cannot be serialised to take its digest.
    #[error("linux.seccomp: {0}")]
    Serialize(#[from] serde_json::Error),
    /// `defaultAction` SCMP_ACT_NOTIFY.
    #[error(
        "linux.seccomp: defaultAction SCMP_ACT_NOTIFY is not supported: every syscall would wait for the \
         seccomp agent, the ones that hand it the notify fd included; notify named syscalls instead"
    )]
    NotifyByDefault,
    /// SCMP_ACT_NOTIFY rules without `listenerPath`.
    #[error(
        "linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath, the unix socket of the seccomp agent that \
         answers the notified syscalls (runtime spec)"
    )]
    NoListener,
    /// A relative `listenerPath`.
    #[error("linux.seccomp: listenerPath {}: must be an absolute path", .0.display())]
    RelativeListener(std::path::PathBuf),
    /// A flag of `flags` exprun does not apply.
    #[error("linux.seccomp: flag {0} is not supported")]
    Flag(String),
    /// An architecture libseccomp does not know.
    #[error("linux.seccomp: unknown architecture {0}")]
    Architecture(String),
    /// libseccomp refused a step of the compilation.
    #[error("linux.seccomp: {op}: {source}")]
    Compile {
        /// The step: `creating the filter`, `rule for mkdir`, ...
        op: String,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// The compiled program could not be read back.
    #[error("linux.seccomp: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The profile to compile is not the one the plan checked.
    #[error("linux.seccomp: the profile is not the one planned ({0})")]
    NotPlanned(Digest),
    /// The plan has a filter and the config no profile, or the other way round.
    #[error("linux.seccomp: the plan's filter and the config's profile disagree")]
    PlanDisagrees,
    /// The program is longer than the kernel takes.
    #[error(
        "linux.seccomp: the profile compiles to {instructions} BPF instructions, more than the kernel's \
         limit of {limit}: merge rules (one rule may list many syscall names) or drop argument conditions"
    )]
    TooLong {
        /// The program's instructions.
        instructions: usize,
        /// BPF_MAXINSNS.
        limit: u64,
    },
}

/// A filter: checked by the plan ([`check`]), compiled when the run is applied
/// ([`Filter::compile`]), then ready for init to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// sha256 of the profile (its JSON), recorded with the run.
    pub digest: Digest,
    /// The BPF program: `struct sock_filter` entries, 8 bytes each; empty
    /// until [`Filter::compile`] (an empty program is never installed).
    #[serde(with = "hex_bytes")]
    pub program: Vec<u8>,
    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub flags: u32,
    /// The seccomp agent that gets the notify fd, when a rule is SCMP_ACT_NOTIFY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<Listener>,
    /// Whether the profile allows, whatever their arguments, the calls of the
    /// exec trampoline after the filter (selfexe/trampoline.rs): `execveat`
    /// and `fcntl`. (A plan written before this was known reads as false.)
    #[serde(default)]
    pub allows_exec_trampoline: bool,
}

/// `linux.seccomp.listenerPath` and `listenerMetadata`: where the notify fd of
/// a filter with SCMP_ACT_NOTIFY rules goes, with the container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The agent's unix socket.
    pub path: std::path::PathBuf,
    /// Opaque data for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    /// Into one buffer: `hex::encode` collects the digits char by char, which
    /// for a default filter's 20 KB of hex was a tenth of a ms of every run.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut digits = vec![0u8; b.len() * 2];
        hex::encode_to_slice(b, &mut digits).map_err(S::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&digits).map_err(S::Error::custom)?)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Check `profile` for the plan: its digest, flags and seccomp agent, without
/// compiling it (that reads and writes the cache: [`Filter::compile`]).
pub fn check(profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let listener = listener(profile)?;
    let flags =
        flags(profile)? | if listener.is_some() { libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 } else { 0 };
    Ok(Filter {
        digest: profile_digest(profile)?,
        program: Vec::new(),
        flags,
        listener,
        allows_exec_trampoline: TRAMPOLINE_CALLS.iter().all(|name| allows_unconditionally(profile, name)),
    })
}

/// What the exec trampoline calls once the filter is on, besides the execve
/// that the command needs anyway (and, when that fails, the report and exit).
const TRAMPOLINE_CALLS: [&str; 2] = ["execveat", "fcntl"];

/// Whether `profile` lets syscall `name` through whatever its arguments: every
/// rule that names it allows it (or only logs it) without conditions, and
/// either one does or the default action allows. Decided from the profile,
/// conservatively: a rule with conditions counts as a refusal.
fn allows_unconditionally(profile: &LinuxSeccomp, name: &str) -> bool {
    let allows = |a: LinuxSeccompAction| {
        matches!(a, LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog)
    };
    let mut named = false;
    for rule in profile.syscalls().iter().flatten().filter(|r| r.names().iter().any(|n| n == name)) {
        if !allows(rule.action()) || rule.args().as_ref().is_some_and(|a| !a.is_empty()) {
            return false;
        }
        named = true;
    }
    named || allows(profile.default_action())
}

fn profile_digest(profile: &LinuxSeccomp) -> Result<Digest, Error> {
    let json = serde_json::to_vec(profile)?;
    Ok(Digest::of_bytes(&json))
}

impl Filter {
    /// Fill in the program of this filter, checked from `profile`: from the
    /// cache in `cache_dir`, or compiled (and then cached). Runs when the run
    /// is applied, in exprun, before the container's init is cloned.
    pub fn compile(&mut self, profile: &LinuxSeccomp, cache_dir: &Path) -> Result<(), Error> {
        if profile_digest(profile)? != self.digest {
            return Err(Error::NotPlanned(self.digest.clone()));
        }
        let dir = cache_dir.join("seccomp");
        let name = format!("{}-{}-{}.bpf", self.digest.hex(), std::env::consts::ARCH, compiler_id());
        if let Some(program) = read_cached(&dir, &name) {
            self.program = program;
            return Ok(());
        }
        let program = compile(profile)?;
        // A cache that cannot be written (or trusted) costs a compilation per
        // run, not the run.
        if crate::fsutil::create_private_dir_all(&dir).is_ok() && private_dir(&dir).is_some() {
            let mut entry = Digest::of_bytes(&program).hex().as_bytes().to_vec();
            entry.extend_from_slice(&program);
            let _ = crate::fsutil::write_atomic(&dir.join(&name), &entry, false);
        }
        self.program = program;
        Ok(())
    }
}

/// Compile the filter a plan checked from `spec`'s `linux.seccomp`, if any.
pub fn compile_planned(
    filter: Option<&mut Filter>,
    spec: &oci_spec::runtime::Spec,
    cache_dir: &Path,
) -> Result<(), Error> {
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    match (filter, profile) {
        (Some(f), Some(p)) => f.compile(p, cache_dir),
        (None, None) => Ok(()),
        _ => Err(Error::PlanDisagrees),
    }
}

/// The agent of a profile with SCMP_ACT_NOTIFY rules. The spec requires
/// `listenerPath` with them; a default action of SCMP_ACT_NOTIFY is refused,
/// since every syscall of the container, and of init after the filter is on
/// (among them the one handing the agent its fd), would wait for the agent.
fn listener(profile: &LinuxSeccomp) -> Result<Option<Listener>, Error> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::NotifyByDefault);
    }
    let notify = profile.syscalls().iter().flatten().any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    let path = profile.listener_path().clone();
    match (notify, path) {
        (false, _) => Ok(None),
        (true, None) => Err(Error::NoListener),
        (true, Some(path)) if !path.is_absolute() => Err(Error::RelativeListener(path)),
        (true, Some(path)) => Ok(Some(Listener { path, metadata: profile.listener_metadata().clone() })),
    }
}

/// What compiled a cached program: [`COMPILER`], exprun's version and the
/// libseccomp library's (a new libseccomp may compile a rule differently).
fn compiler_id() -> String {
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let id = format!("{COMPILER} exprun {} libseccomp {lib}", env!("CARGO_PKG_VERSION"));
    format!("{COMPILER}.{}", &Digest::of_bytes(id.as_bytes()).hex()[..12])
}

/// `dir`, opened without following a symlink, if this user owns it and nobody
/// else may write in it (else another user could have put a program there).
fn private_dir(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .ok()?;
    trusted(&f.metadata().ok()?).then_some(f)
}

fn trusted(m: &std::fs::Metadata) -> bool {
    m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
}

/// The cached program `name` in `dir`, if it can be trusted, has the shape of
/// one and is what was written: a regular file (not a symlink, FIFO or device
/// that would block or never end), this user's and writable by nobody else,
/// holding the program's sha256 and at most [`MAX_PROGRAM`] bytes of whole
/// instructions that have that digest.
fn read_cached(dir: &Path, name: &str) -> Option<Vec<u8>> {
    use nix::fcntl::OFlag;
    let d = private_dir(dir)?;
    let fd = nix::fcntl::openat(
        &d,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let f = File::from(fd);
    let m = f.metadata().ok()?;
    let len = m.len().checked_sub(DIGEST_LEN)?;
    if !m.is_file() || !trusted(&m) || len == 0 || len > MAX_PROGRAM || len % 8 != 0 {
        return None;
    }
    let mut entry = Vec::new();
    f.take(DIGEST_LEN + MAX_PROGRAM + 1).read_to_end(&mut entry).ok()?;
    if entry.len() as u64 != m.len() {
        return None;
    }
    let program = entry.split_off(DIGEST_LEN as usize);
    (Digest::of_bytes(&program).hex().as_bytes() == entry.as_slice()).then_some(program)
}

fn flags(profile: &LinuxSeccomp) -> Result<u32, Error> {
    let mut f = 0;
    for flag in profile.flags().iter().flatten() {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // One thread: nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            other => return Err(Error::Flag(other.to_string())),
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
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// OCI's `value` and `valueTwo` as libseccomp's operator and datum. For
/// SCMP_CMP_MASKED_EQ `value` is the mask and `valueTwo` what the masked
/// argument must equal (runc and crun read it so, as libseccomp's
/// `SCMP_A0(SCMP_CMP_MASKED_EQ, mask, datum)` does); the other operators
/// compare with `value` and ignore `valueTwo`.
fn compare(a: &oci_spec::runtime::LinuxSeccompArg) -> ScmpArgCompare {
    let (op, datum) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0))
        }
    };
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

/// Compile `profile` with libseccomp. Syscall names this architecture does not
/// have are skipped (profiles list every architecture's), as runc does.
fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, Error> {
    let err = |op: &str, source| Error::Compile { op: op.to_string(), source };
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
        let a: ScmpArch = name.parse().map_err(|_| Error::Architecture(name.clone()))?;
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
        let conds: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
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
    let fd = nix::sys::memfd::memfd_create(c"exprun-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::Io { op: "memfd_create", source: e.into() })?;
    ctx.export_bpf(&fd).map_err(|e| err("exporting the program", e))?;
    let mut f = std::fs::File::from(fd);
    let mut program = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut program))
        .map_err(|source| Error::Io { op: "reading the program", source })?;
    // The kernel would refuse it only in init, as "invalid argument".
    if program.len() as u64 > MAX_PROGRAM {
        return Err(Error::TooLong { instructions: program.len() / 8, limit: MAX_PROGRAM / 8 });
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    /// What planning and applying a run do: check, then compile.
    fn prepare(p: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, Error> {
        let mut f = check(p)?;
        f.compile(p, cache_dir)?;
        Ok(f)
    }

    #[test]
    fn the_exec_trampoline_is_allowed_only_where_every_rule_for_its_calls_allows_them() {
        let allowed = |json: serde_json::Value| check(&profile(json)).unwrap().allows_exec_trampoline;
        // Docker's and containerd's default profile: both allowed by name.
        assert!(check(&default::profile(&[])).unwrap().allows_exec_trampoline);
        assert!(allowed(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        assert!(allowed(serde_json::json!({"defaultAction": "SCMP_ACT_LOG"})));
        assert!(allowed(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["execveat", "fcntl"], "action": "SCMP_ACT_ALLOW"}]})));
        assert!(allowed(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["execveat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["fcntl"], "action": "SCMP_ACT_LOG"}]})));
        for refused in [
            // Not named, and the default refuses.
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW"}]}),
            // Named and refused, whatever the default.
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]}),
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["fcntl"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
            // Allowed and refused by two rules.
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["execveat", "fcntl"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["execveat"], "action": "SCMP_ACT_TRAP"}]}),
            // Allowed only for some arguments.
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["execveat"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            // Sent to an agent.
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_NOTIFY"}]}),
        ] {
            assert!(!allowed(refused.clone()), "{refused}");
        }
    }

    /// A cache file holding `program`, with its digest.
    fn entry(program: &[u8]) -> Vec<u8> {
        let mut e = Digest::of_bytes(program).hex().as_bytes().to_vec();
        e.extend_from_slice(program);
        e
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
    fn the_program_goes_into_json_as_lowercase_hex_and_back() {
        let f = Filter {
            digest: Digest::of_bytes(b"p"),
            program: (0..=255u8).chain([0x0f, 0xa0]).collect(),
            flags: 1,
            listener: None,
            allows_exec_trampoline: false,
        };
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["program"].as_str(), Some(hex::encode(&f.program).as_str()));
        assert_eq!(serde_json::from_value::<Filter>(json).unwrap(), f);
    }

    fn arg(json: serde_json::Value) -> oci_spec::runtime::LinuxSeccompArg {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn masked_eq_takes_value_as_the_mask_and_value_two_as_the_datum() {
        let a = arg(
            serde_json::json!({"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}),
        );
        assert_eq!(compare(&a), ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x7E02_0000), 0));
        let a =
            arg(serde_json::json!({"index": 2, "value": 0xF0, "valueTwo": 0x50, "op": "SCMP_CMP_MASKED_EQ"}));
        assert_eq!(compare(&a), ScmpArgCompare::new(2, ScmpCompareOp::MaskedEqual(0xF0), 0x50));
        let a = arg(serde_json::json!({"index": 1, "value": 7, "valueTwo": 9, "op": "SCMP_CMP_GT"}));
        assert_eq!(
            compare(&a),
            ScmpArgCompare::new(1, ScmpCompareOp::Greater, 7),
            "valueTwo is MASKED_EQ's only"
        );
    }

    /// The profile's cache file, after one `prepare`.
    fn cached_file(dir: &Path, p: &LinuxSeccomp) -> std::path::PathBuf {
        prepare(p, dir).unwrap();
        let mut files: Vec<_> =
            std::fs::read_dir(dir.join("seccomp")).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(files.len(), 1);
        files.pop().unwrap()
    }

    #[test]
    fn programs_of_the_old_compiler_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        let good = prepare(&p, dir.path()).unwrap();
        std::fs::remove_file(cached_file(dir.path(), &p)).unwrap();
        // Where the compiler before "tree-2" kept the program (with the masks
        // of its MASKED_EQ rules wrong).
        let old = format!("{}-{}-tree.bpf", good.digest.hex(), std::env::consts::ARCH);
        std::fs::write(dir.path().join("seccomp").join(old), [0u8; 8]).unwrap();
        assert_eq!(prepare(&p, dir.path()).unwrap().program, good.program);
    }

    #[test]
    fn a_cached_program_is_loaded_only_when_nobody_else_can_have_written_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        let file = cached_file(dir.path(), &p);
        let good = std::fs::read(&file).unwrap();
        assert_eq!(
            good[..DIGEST_LEN as usize],
            *Digest::of_bytes(&good[DIGEST_LEN as usize..]).hex().as_bytes()
        );
        let good = good[DIGEST_LEN as usize..].to_vec();
        let forged = vec![0u8; 8];
        let loads_forged = |setup: &dyn Fn()| {
            let _ = std::fs::remove_file(&file);
            setup();
            let program = prepare(&p, dir.path()).unwrap().program;
            let _ =
                std::fs::set_permissions(dir.path().join("seccomp"), std::fs::Permissions::from_mode(0o700));
            program == forged
        };
        assert!(
            loads_forged(&|| std::fs::write(&file, entry(&forged)).unwrap()),
            "this user's own file is trusted"
        );
        assert!(
            !loads_forged(&|| {
                std::fs::write(&file, entry(&forged)).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
            }),
            "a world-writable file"
        );
        assert!(
            !loads_forged(&|| {
                std::fs::write(&file, entry(&forged)).unwrap();
                std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            }) || !nix::unistd::geteuid().is_root(),
            "another user's file"
        );
        assert!(
            !loads_forged(&|| {
                std::fs::write(&file, entry(&forged)).unwrap();
                std::fs::set_permissions(dir.path().join("seccomp"), std::fs::Permissions::from_mode(0o777))
                    .unwrap();
            }),
            "a directory others may write in"
        );
        let elsewhere = dir.path().join("forged.bpf");
        std::fs::write(&elsewhere, entry(&forged)).unwrap();
        assert!(!loads_forged(&|| std::os::unix::fs::symlink(&elsewhere, &file).unwrap()), "a symlink");
        // A FIFO would block the read and /dev/zero never end: neither is read.
        assert!(!loads_forged(&|| nix::unistd::mkfifo(
            &file,
            nix::sys::stat::Mode::from_bits_truncate(0o600)
        )
        .unwrap()));
        assert!(
            !loads_forged(&|| std::fs::write(&file, entry(&[0u8; 8 * 4097])).unwrap()),
            "over BPF_MAXINSNS"
        );
        assert!(
            !loads_forged(&|| std::fs::write(&file, entry(&[0u8; 12])).unwrap()),
            "not whole instructions"
        );
        let _ = std::fs::remove_file(&file);
        assert_eq!(prepare(&p, dir.path()).unwrap().program, good);
    }

    #[test]
    fn a_cached_program_changed_in_place_is_compiled_again_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        let file = cached_file(dir.path(), &p);
        let written = std::fs::read(&file).unwrap();
        let good = written[DIGEST_LEN as usize..].to_vec();
        // One instruction's jump offsets and constant changed, same length:
        // whole instructions, the same owner and mode, only the content differs.
        let mut corrupt = written.clone();
        let at = DIGEST_LEN as usize + 8;
        corrupt[at + 2] ^= 0xff;
        corrupt[at + 4] ^= 0x01;
        std::fs::write(&file, &corrupt).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), written.len() as u64);
        assert_eq!(prepare(&p, dir.path()).unwrap().program, good, "the changed program was loaded");
        // A cache file from before digests were stored (the program alone) is
        // no program either.
        std::fs::write(&file, &good).unwrap();
        assert_eq!(prepare(&p, dir.path()).unwrap().program, good);
    }

    #[test]
    fn planning_compiles_nothing_and_an_uncompiled_filter_is_never_installed() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        let planned = check(&p).unwrap();
        assert!(planned.program.is_empty());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "check wrote the cache");
        let refused = crate::sys::seccomp_set_filter(&planned.program, planned.flags).unwrap_err();
        assert!(refused.to_string().contains("never compiled"));
        let other = profile(serde_json::json!({"defaultAction": "SCMP_ACT_LOG"}));
        let e = planned.clone().compile(&other, dir.path()).unwrap_err().to_string();
        assert!(e.contains("not the one planned"), "{e}");
    }

    #[test]
    fn a_profile_over_the_kernels_limit_is_refused_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let rules: Vec<_> = (0..1500u64)
            .map(|i| {
                serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": i << 33 | i, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        let e = prepare(&p, dir.path()).unwrap_err().to_string();
        assert!(e.contains("limit of 4096"), "{e}");
    }

    #[test]
    fn notify_needs_a_listener_path_and_asks_for_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(prepare(&p, dir.path()).unwrap_err().to_string().contains("defaultAction SCMP_ACT_NOTIFY"));
        let mut json = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        });
        let e = prepare(&profile(json.clone()), dir.path()).unwrap_err().to_string();
        assert!(e.contains("SCMP_ACT_NOTIFY needs listenerPath"), "{e}");
        json["listenerPath"] = serde_json::json!("/run/agent.sock");
        json["listenerMetadata"] = serde_json::json!("m");
        let f = prepare(&profile(json), dir.path()).unwrap();
        assert_ne!(f.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32, 0);
        assert_eq!(f.listener.unwrap().metadata.as_deref(), Some("m"));
    }
}
