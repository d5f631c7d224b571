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
//! So the verbs that start container processes first re-exec exprun from a
//! copy nobody can write:
//!
//! - as root, the same file on a private read-only bind mount (`open_tree` +
//!   `mount_setattr`): no copy, the digest cache still hits, a write fails with
//!   `EROFS`; the mount is detached, in no mount table, and goes with the process;
//! - otherwise, and only when the binary is writable by the caller (a rootless
//!   container's root is the caller), a sealed memfd copy;
//! - nothing when the binary cannot be written anyway: on a read-only mount,
//!   immutable (`chattr +i`, which no container without CAP_LINUX_IMMUTABLE can
//!   undo), or a sealed memfd. An install that makes the binary immutable saves
//!   the re-exec (about 1 ms, docs/benchmarks.md).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use nix::fcntl::{AtFlags, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::statvfs::{fstatvfs, FsFlags};

const SELF: &str = "/proc/self/exe";

/// Re-exec from a protected copy when needed; returns only when no re-exec was
/// needed or none was possible (then exprun goes on as it is, and says so with
/// `--debug`).
pub fn protect() {
    match needed() {
        Ok(false) => {}
        Ok(true) => {
            let err = reexec();
            crate::log::debug(|| format!("running from the writable binary: no protected copy: {err}"));
        }
        Err(e) => crate::log::debug(|| format!("cannot check exprun's own binary: {e}")),
    }
}

/// Whether the running binary is writable by anyone who could reach it.
fn needed() -> io::Result<bool> {
    let exe = File::open(SELF)?;
    if fstatvfs(&exe)?.flags().contains(FsFlags::ST_RDONLY) || crate::sys::is_immutable(exe.as_fd()) {
        return Ok(false);
    }
    if let Ok(seals) = nix::fcntl::fcntl(&exe, FcntlArg::F_GET_SEALS) {
        if SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_WRITE) {
            return Ok(false);
        }
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(true);
    }
    Ok(nix::unistd::access(Path::new(SELF), nix::unistd::AccessFlags::W_OK).is_ok())
}

/// execveat the protected copy with the same arguments and environment.
fn reexec() -> io::Error {
    let args: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_vec()).ok()).collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv: OsString = k;
            kv.push("=");
            kv.push(v);
            CString::new(kv.into_vec()).ok()
        })
        .collect();
    let copy = if nix::unistd::geteuid().is_root() {
        crate::sys::readonly_bind(Path::new(SELF)).or_else(|_| sealed_copy())
    } else {
        sealed_copy()
    };
    match copy {
        Ok(fd) => match nix::unistd::execveat(fd.as_fd(), c"", &args, &env, AtFlags::AT_EMPTY_PATH) {
            Ok(never) => match never {},
            Err(e) => e.into(),
        },
        Err(e) => e,
    }
}

/// The binary copied into a memfd, sealed against any change.
fn sealed_copy() -> io::Result<std::os::fd::OwnedFd> {
    let fd = memfd_create(c"exprun", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut memfd = File::from(fd);
    let mut bytes = Vec::new();
    File::open(SELF)?.read_to_end(&mut bytes)?;
    memfd.write_all(&bytes)?;
    let seals =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(memfd.into())
}
