//! Keep exprun's own binary out of a container's reach (CVE-2019-5736).
//!
//! Every process exprun starts in a container is a clone of exprun, so until it
//! execs, `/proc/<pid>/exe` is exprun's binary on the host. Those clones are
//! non-dumpable (spawn/init.rs), so no container process can open that link.
//! But execve resets dumpability: a container whose program is
//! `#!/proc/self/exe` makes the kernel run exprun's binary, dumpable, inside the
//! container, where a container process can open its `/proc/<pid>/exe` and, once
//! it has exited, write the host's binary through that descriptor. (Some
//! kernels, 6.18 for one, refuse to execve a `/proc/self/exe` outside the
//! caller's root; this does not rely on that.)
//!
//! Only a process the container can reach matters. exprun's own processes
//! outside the container are out of its reach (they are in no pid namespace
//! it sees, and opening their link needs CAP_SYS_PTRACE over a user namespace
//! it has no capability in). So, when the binary could be written:
//!
//! - a container's init (`run`, `replay`, `create`) execs its command
//!   through the exec trampoline ([`trampoline`]): a program of a few
//!   hundred bytes in a sealed memfd, which is then all that
//!   `#!/proc/self/exe` can run, and which cannot be written. Until that exec
//!   the init runs exprun's binary, non-dumpable, alone in its new pid
//!   namespace. No re-exec, so exprun starts once, not twice (about 1 ms on a
//!   VM whose `cpuid` traps, docs/benchmarks.md). [`settle`] falls back to
//!   the re-exec below for a container the trampoline cannot serve: an init
//!   in a pid namespace it joins, startContainer hooks, an AppArmor profile,
//!   a seccomp profile that does not allow the trampoline's calls, an
//!   architecture it is not written for (only x86_64 is), a kernel that will
//!   not make an executable memfd;
//! - otherwise, and always for `exec` (whose process joins a pid namespace
//!   where the container's processes are, any of which may hold
//!   CAP_SYS_PTRACE) and for `verify` and `build` (which start several
//!   containers, where one that the trampoline cannot serve could not re-exec
//!   after another), exprun first re-execs itself from a copy nobody can
//!   write:
//!
//!   - as root, the same file on a private read-only bind mount (`open_tree` +
//!     `mount_setattr`): no copy, the digest cache still hits, a write fails
//!     with `EROFS`; the mount is detached, in no mount table, and goes with
//!     the process;
//!   - otherwise, and only when a rootless container's root could write the
//!     binary (it is the caller's, or its owner or group is one of the ids the
//!     container maps, whatever its mode: that root holds CAP_DAC_OVERRIDE
//!     over them), the same file on a read-only bind mount whose read-only
//!     flag the kernel has locked, made by a helper clone in new user and
//!     mount namespaces ([`crate::sys::locked_readonly_bind`], about 0.4 ms);
//!   - where that cannot be had (no unprivileged user namespaces: a seccomp
//!     filter, a sysctl, a kernel before 5.12), a sealed memfd copy, made in
//!     the kernel (about 10 ms of system time for 16 MB); the copy is told
//!     which installed file it came from ([`copied_from`]), so the digest
//!     cache hits for it too. `--debug` says which of the two a rootless
//!     re-exec runs from;
//! - nothing when the binary cannot be written anyway: on a read-only mount,
//!   immutable (`chattr +i`, which no container without CAP_LINUX_IMMUTABLE can
//!   undo), or a sealed memfd.
//!
//! Why a rootless container cannot make the locked bind writable. Take the
//! strongest rootless container: its root holds every capability, CAP_SYS_ADMIN
//! included, but only in the container's user namespace (a child of the
//! initial one, owned by the caller) and over the mount namespace that one
//! owns, and it sees the host's /proc.
//!
//! - Reaching the mount: its only handle is a `/proc/<pid>/exe` of a process
//!   running the binary. exprun's own processes outside the container's user
//!   namespace are out of reach: opening their link needs CAP_SYS_PTRACE over
//!   their user namespace, which the container lacks (`EACCES`, measured);
//!   its clones inside are non-dumpable until they exec. Assume anyway that it
//!   holds a descriptor, as `#!/proc/self/exe` gives one on kernels that run it.
//! - Writing through it: `EROFS`, the mount is read-only.
//! - Making it writable: `mount_setattr` asks only for CAP_SYS_ADMIN over the
//!   caller's own mount namespace, and skips the "is it in your namespace"
//!   check for a detached mount, so a container's root can clear the
//!   read-only flag of a plain detached read-only bind whose `open_tree`
//!   descriptor it holds (measured on 6.18: it succeeds, and the write then
//!   goes through). Two things close that. First, no container ever sees that
//!   descriptor: it is close-on-exec, the `execveat` closes it before any
//!   container exists, and the kernel then unmounts the detached tree; the
//!   running binary's mount is in no namespace, so `mount_setattr`, a remount
//!   and `open_tree(OPEN_TREE_CLONE)` of it all fail with `EINVAL`
//!   (tests/adversarial/selfexe.rs). Second, whatever a kernel allows on such
//!   a mount, its read-only flag is locked: the helper binds the binary in one
//!   new user namespace, mounts the bind over the binary there, and takes the
//!   detached copy from a second user namespace nested in the first; the
//!   kernel locks the flags of every mount it copies into a namespace owned by
//!   a less privileged user namespace, every later copy keeps the lock, and
//!   nobody, the initial namespace's root included, can clear it (`EPERM`,
//!   tests/locked_bind.rs). The lock costs about 0.15 ms per re-exec.
//! - The helper's namespaces: owned by the caller's uid, children of the
//!   initial user namespace, siblings of any container's, so the container's
//!   root holds no capability in them; the helper has exited before any
//!   container starts, and nothing but the mount keeps them.
//! - A process of the caller's uid outside any container can ptrace exprun or
//!   write the installed binary directly (it owns it); this protects the
//!   binary from the container, not from its owner. A bundle that binds the
//!   binary's directory into the container gives the container the installed
//!   file itself (for the next run), with the locked bind as with a memfd.

pub mod trampoline;

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{AtFlags, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::statvfs::{fstatvfs, FsFlags};

const SELF: &str = "/proc/self/exe";

/// In the environment of a re-exec from a sealed memfd copy: the
/// [`identity`] of the file it was copied from.
const COPY_OF: &str = "EXPRUN_COPY_OF";

static COPIED_FROM: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// In the environment of a rootless re-exec: what it runs from, for `--debug`.
const HOW: &str = "EXPRUN_REEXEC_FROM";

static REEXEC_FROM: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Whether exprun's binary needs protecting and the verb can have that from
/// the exec trampoline ([`protect`]).
static TRAMPOLINE_WANTED: AtomicBool = AtomicBool::new(false);

/// The sealed exec trampoline, made by [`settle`].
static TRAMPOLINE: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// (device, inode, size, mtime) of a file: what the digest of exprun's binary
/// is cached by.
pub fn identity(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}:{}:{}:{}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

/// When this process runs from a sealed memfd copy that exprun made, the
/// [`identity`] of the installed file it was copied from.
pub fn copied_from() -> Option<&'static str> {
    COPIED_FROM.get().and_then(|c| c.as_deref())
}

/// Protect exprun's binary when it needs it: for the verbs that start a
/// container (`trampoline_ok`), with the exec trampoline, which [`settle`] makes
/// once the plan is known; otherwise, and for `exec`, by re-executing from a
/// protected copy. Returns only when no re-exec was needed or none was
/// possible (then exprun goes on as it is, and says so with `--debug`).
pub fn protect(trampoline_ok: bool) {
    let copy_of = std::env::var(COPY_OF).ok();
    let _ = REEXEC_FROM.set(std::env::var(HOW).ok());
    // Read once and removed: exprun is still single-threaded here, and no
    // process it starts should see them.
    std::env::remove_var(COPY_OF);
    std::env::remove_var(HOW);
    let sealed = File::open(SELF).is_ok_and(|f| sealed(&f));
    let _ = COPIED_FROM.set(copy_of.filter(|_| sealed));
    match needed() {
        Ok(false) => {}
        Ok(true) if trampoline_ok && crate::sys::trampoline_code().is_some() => {
            TRAMPOLINE_WANTED.store(true, Ordering::Relaxed);
        }
        Ok(true) => {
            let err = reexec();
            crate::log::debug(|| format!("running from the writable binary: no protected copy: {err}"));
        }
        Err(e) => crate::log::debug(|| format!("cannot check exprun's own binary: {e}")),
    }
}

/// Once a run or container is planned, before anything of it exists: make
/// the exec trampoline its init will exec the command through, or, where the
/// trampoline cannot serve it, re-exec from a protected copy now, as without
/// one. Returns when the trampoline is made, none is needed, or no re-exec
/// was possible; an error only for a second container of one process that
/// the trampoline cannot serve (which the verbs that use it do not start). (Made here, not at start: `--preserve-fds` has by now
/// checked that fds 3 and up are the caller's, and the memfd's fd is not
/// among them.)
///
/// The trampoline protects the command's execve; until then the container's
/// init runs exprun's own binary. That is safe only while no process but the
/// init itself can open its `/proc/<pid>/exe`: so it needs a new pid
/// namespace (in a joined one, a process holding CAP_SYS_PTRACE could open
/// the link of the non-dumpable init) and no startContainer hooks (programs
/// of the container run by init in it); and the trampoline must run: no
/// AppArmor profile (which would confine it from its own exec on) and a
/// seccomp filter that allows its calls.
pub fn settle(plan: &crate::plan::RunPlan) -> Result<(), String> {
    if !TRAMPOLINE_WANTED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let why = if plan.clone_flags & libc::CLONE_NEWPID as u64 == 0 {
        "the container's init does not get a pid namespace of its own".to_string()
    } else if !plan.hooks.start_container.is_empty() {
        "startContainer hooks run in the container before the command".to_string()
    } else if plan.process.apparmor_profile.is_some() {
        // It applies from the next execve, the trampoline's, whose mapping of
        // a memfd (a path in no mount) the profile may not allow.
        "an AppArmor profile would confine the trampoline itself".to_string()
    } else if plan.seccomp.as_ref().is_some_and(|f| !f.allows_exec_trampoline) {
        "the seccomp profile does not allow execveat and fcntl whatever their arguments".to_string()
    } else if TRAMPOLINE.get().is_some() {
        return Ok(());
    } else {
        match trampoline::sealed() {
            Ok(fd) => {
                let _ = TRAMPOLINE.set(fd);
                crate::log::debug(|| "container processes exec through a sealed exec trampoline".into());
                return Ok(());
            }
            Err(e) => format!("making it: {e}"),
        }
    };
    // The verbs that get here start one container per process; a second one
    // after the trampoline served the first could no longer re-exec cleanly.
    if TRAMPOLINE.get().is_some() {
        return Err(format!(
            "exprun cannot keep its binary out of this container's reach ({why}) after running one \
             through the exec trampoline; install exprun immutable (chattr +i) or on a read-only mount"
        ));
    }
    crate::log::debug(|| format!("no exec trampoline for this container ({why}): re-executing"));
    let err = reexec();
    crate::log::debug(|| format!("running from the writable binary: no protected copy: {err}"));
    Ok(())
}

/// The sealed exec trampoline through which container processes exec their
/// command, when exprun's binary needs protecting and this is how.
pub fn exec_trampoline() -> Option<BorrowedFd<'static>> {
    TRAMPOLINE.get().map(AsFd::as_fd)
}

/// With `--debug`, say what a rootless re-exec runs from (debug output is
/// turned on only after [`protect`]).
pub fn report() {
    if let Some(how) = REEXEC_FROM.get().and_then(Option::as_deref) {
        crate::log::debug(|| format!("running from {how} of exprun's binary"));
    }
}

/// Whether the running binary is writable by anyone who could reach it.
fn needed() -> io::Result<bool> {
    let exe = File::open(SELF)?;
    if fstatvfs(&exe)?.flags().contains(FsFlags::ST_RDONLY) || crate::sys::is_immutable(exe.as_fd()) {
        return Ok(false);
    }
    if sealed(&exe) {
        return Ok(false);
    }
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if uid == 0 {
        return Ok(true);
    }
    // A rootless container's root holds CAP_DAC_OVERRIDE over every file whose
    // owner or group its user namespace maps (the caller's ids and subordinate
    // ids): it can write such a binary whatever its mode says.
    let m = exe.metadata()?;
    let sub = crate::spec::Rootless::of_caller(uid, gid).subordinate;
    let within = |id: u32, range: Option<(u32, u32)>| range.is_some_and(|(s, n)| id >= s && id - s < n);
    let mapped = m.uid() == uid
        || m.gid() == gid
        || within(m.uid(), sub.map(|s| s.0))
        || within(m.gid(), sub.map(|s| s.1));
    Ok(mapped || nix::unistd::access(Path::new(SELF), nix::unistd::AccessFlags::W_OK).is_ok())
}

/// A memfd sealed against writes.
fn sealed(f: &File) -> bool {
    nix::fcntl::fcntl(f, FcntlArg::F_GET_SEALS)
        .is_ok_and(|seals| SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_WRITE))
}

/// execveat the protected copy with the same arguments and environment.
fn reexec() -> io::Error {
    let args: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_vec()).ok()).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    let copy = if nix::unistd::geteuid().is_root() {
        crate::sys::readonly_bind(Path::new(SELF)).or_else(|_| sealed_copy(&mut env))
    } else {
        match locked_bind() {
            Ok(fd) => {
                env.extend(CString::new(format!("{HOW}=a locked read-only bind mount")).ok());
                Ok(fd)
            }
            Err(e) => {
                let how = format!("{HOW}=a sealed memfd copy (no locked read-only bind mount: {e})");
                env.extend(CString::new(how).ok());
                sealed_copy(&mut env)
            }
        }
    };
    match copy {
        Ok(fd) => match nix::unistd::execveat(fd.as_fd(), c"", &args, &env, AtFlags::AT_EMPTY_PATH) {
            Ok(never) => match never {},
            Err(e) => e.into(),
        },
        Err(e) => e,
    }
}

/// The running binary on a detached bind mount whose read-only flag is
/// locked (see the module doc), checked to be the same file.
fn locked_bind() -> io::Result<std::os::fd::OwnedFd> {
    let installed = File::open(SELF)?.metadata()?;
    let path = std::fs::read_link(SELF)?;
    let fd = crate::sys::locked_readonly_bind(&path)?;
    let got = nix::sys::stat::fstat(&fd)?;
    if (got.st_dev, got.st_ino) != (installed.dev(), installed.ino()) {
        return Err(io::Error::other(format!("{} is no longer the running binary", path.display())));
    }
    if !fstatvfs(&fd)?.flags().contains(FsFlags::ST_RDONLY) {
        return Err(io::Error::other("the bind mount is not read-only"));
    }
    Ok(fd)
}

/// The binary copied into a memfd, sealed against any change; `env` gets the
/// installed file's [`identity`] for the copy.
fn sealed_copy(env: &mut Vec<CString>) -> io::Result<std::os::fd::OwnedFd> {
    let fd = memfd_create(c"exprun", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut memfd = File::from(fd);
    let mut installed = File::open(SELF)?;
    let before = identity(&installed.metadata()?);
    // io::copy between two files copies in the kernel (copy_file_range or
    // sendfile): no buffer the size of the binary in exprun's memory.
    io::copy(&mut installed, &mut memfd)?;
    let seals =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals))?;
    // A binary changed while it was copied keeps no identity: its copy is
    // digested as it is.
    if identity(&installed.metadata()?) == before {
        env.extend(CString::new(format!("{COPY_OF}={before}")).ok());
    }
    Ok(memfd.into())
}
