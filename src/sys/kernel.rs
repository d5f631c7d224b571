//! [`Kernel`]: the calls with which the container's init and the root
//! filesystem change the process and the mount table, in one trait, so that
//! the order of their steps can be checked without root against a recording
//! fake ([`super::RecordingKernel`]). Lookups that only read (openat2 inside
//! the new root, /proc/self/mountinfo, the executable's search) stay direct
//! calls; a lookup whose answer depends on the root having changed
//! ([`Kernel::statvfs`], [`Kernel::is_dir`], after pivot_root) goes through
//! the trait, because the fake does not pivot.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use caps::{CapSet, CapsHashSet};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use nix::unistd::{Gid, Uid};

use super::PreparedExec;

/// The capability sets a process ends with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapState {
    /// Effective.
    pub effective: CapsHashSet,
    /// Permitted.
    pub permitted: CapsHashSet,
    /// Inheritable.
    pub inheritable: CapsHashSet,
    /// Ambient (raised one by one after the set is cleared).
    pub ambient: CapsHashSet,
}

/// The system calls of init and of the root filesystem's assembly.
pub trait Kernel {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// umount2(target, MNT_DETACH).
    fn umount_detach(&self, target: &Path) -> io::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// mount_setattr(2) on the mount `fd` is the root of.
    fn mount_setattr(&self, fd: BorrowedFd<'_>, set: u64, clear: u64, recursive: bool) -> io::Result<()>;
    /// The mount flags of the filesystem at `path`.
    fn statvfs(&self, path: &Path) -> io::Result<FsFlags>;
    /// Whether `path` (not followed when a symlink) is a directory.
    fn is_dir(&self, path: &Path) -> io::Result<bool>;
    /// chdir(2).
    fn chdir(&self, dir: &Path) -> io::Result<()>;
    /// fchdir(2).
    fn fchdir(&self, dir: BorrowedFd<'_>) -> io::Result<()>;
    /// mknodat(2).
    fn mknodat(&self, dir: BorrowedFd<'_>, name: &OsStr, kind: SFlag, mode: u32, dev: u64) -> io::Result<()>;
    /// fchmodat(2), following nothing the caller did not make.
    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()>;
    /// fchownat(2) with AT_SYMLINK_NOFOLLOW.
    fn fchownat(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// symlinkat(2).
    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()>;
    /// Write `value` to a file of the kernel's (/proc/sys, /proc/self).
    fn write_file(&self, path: &Path, value: &str) -> io::Result<()>;

    /// setns(2).
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
    /// Move this process into the cgroup whose `cgroup.procs` (or `tasks`) is open as `procs`.
    fn join_cgroup(&self, procs: BorrowedFd<'_>) -> io::Result<()>;
    /// setsid(2).
    fn setsid(&self) -> io::Result<()>;
    /// Put `fd` at descriptor `target` (0, 1, 2), kept open across execve.
    fn dup_onto(&self, fd: BorrowedFd<'_>, target: i32) -> io::Result<()>;
    /// Make `fd` (a terminal) the controlling terminal.
    fn set_controlling_terminal(&self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Bring up the loopback interface.
    fn loopback_up(&self) -> io::Result<()>;
    /// PR_SET_PDEATHSIG with SIGKILL.
    fn set_pdeathsig(&self) -> io::Result<()>;
    /// PR_SET_DUMPABLE 0.
    fn set_not_dumpable(&self) -> io::Result<()>;
    /// setrlimit(2) of `resource` (`RLIMIT_*`).
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> io::Result<()>;
    /// setgroups(2).
    fn setgroups(&self, groups: &[Gid]) -> io::Result<()>;
    /// setresgid(gid, gid, gid).
    fn setresgid(&self, gid: Gid) -> io::Result<()>;
    /// setresuid(uid, uid, uid).
    fn setresuid(&self, uid: Uid) -> io::Result<()>;
    /// Drop from the bounding set every capability not in `keep`.
    fn drop_bounding(&self, keep: &CapsHashSet) -> io::Result<()>;
    /// SECBIT_KEEP_CAPS.
    fn set_keepcaps(&self, keep: bool) -> io::Result<()>;
    /// Set the effective, permitted, inheritable and ambient sets, in an order
    /// the kernel accepts.
    fn set_caps(&self, caps: &CapState) -> io::Result<()>;
    /// umask(2).
    fn umask(&self, mode: u32);
    /// sched_setaffinity(0, cpus).
    fn set_cpu_affinity(&self, cpus: &[usize]) -> io::Result<()>;
    /// personality(2).
    fn personality(&self, persona: u64) -> io::Result<()>;
    /// PR_SET_NO_NEW_PRIVS.
    fn set_no_new_privs(&self) -> io::Result<()>;

    /// Every signal to its default disposition, none blocked.
    fn reset_signals(&self) -> io::Result<()>;
    /// Close-on-exec from `first` up.
    fn cloexec_from(&self, first: u32) -> io::Result<()>;
    /// Clear close-on-exec on `first..first + count`.
    fn keep_on_exec(&self, first: i32, count: u32) -> io::Result<()>;
    /// seccomp(SECCOMP_SET_MODE_FILTER) with `program` (`struct sock_filter`
    /// entries); the notify fd when `flags` ask for a listener.
    fn install_seccomp(&self, program: &[u8], flags: u32) -> io::Result<Option<OwnedFd>>;
    /// execve(2); returns only its error.
    fn execve(&self, call: &PreparedExec) -> nix::errno::Errno;
}

/// The kernel itself.
pub struct RealKernel;

impl Kernel for RealKernel {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        Ok(nix::mount::mount(source, target, fstype, flags, data)?)
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        Ok(nix::mount::umount2(target, MntFlags::MNT_DETACH)?)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        Ok(nix::unistd::pivot_root(new_root, put_old)?)
    }

    fn mount_setattr(&self, fd: BorrowedFd<'_>, set: u64, clear: u64, recursive: bool) -> io::Result<()> {
        super::mount_setattr(fd, set, clear, 0, recursive)
    }

    fn statvfs(&self, path: &Path) -> io::Result<FsFlags> {
        Ok(nix::sys::statvfs::statvfs(path)?.flags())
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(std::fs::symlink_metadata(path)?.is_dir())
    }

    fn chdir(&self, dir: &Path) -> io::Result<()> {
        Ok(nix::unistd::chdir(dir)?)
    }

    fn fchdir(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        Ok(nix::unistd::fchdir(dir)?)
    }

    fn mknodat(&self, dir: BorrowedFd<'_>, name: &OsStr, kind: SFlag, mode: u32, dev: u64) -> io::Result<()> {
        Ok(nix::sys::stat::mknodat(dir, name, kind, Mode::from_bits_truncate(mode), dev)?)
    }

    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        use nix::sys::stat::FchmodatFlags;
        Ok(nix::sys::stat::fchmodat(dir, name, Mode::from_bits_truncate(mode), FchmodatFlags::FollowSymlink)?)
    }

    fn fchownat(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        Ok(nix::unistd::fchownat(dir, name, Some(uid.into()), Some(gid.into()), flags)?)
    }

    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        Ok(nix::unistd::symlinkat(target, dir, name)?)
    }

    fn write_file(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()> {
        Ok(nix::sched::setns(fd, nstype)?)
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        Ok(nix::sched::unshare(flags)?)
    }

    fn join_cgroup(&self, procs: BorrowedFd<'_>) -> io::Result<()> {
        nix::unistd::write(procs, b"0")?;
        Ok(())
    }

    fn setsid(&self) -> io::Result<()> {
        nix::unistd::setsid()?;
        Ok(())
    }

    fn dup_onto(&self, fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        if fd.as_raw_fd() == target {
            // Already in place; just make sure it survives exec.
            return Ok(fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)?);
        }
        let dup = match target {
            0 => nix::unistd::dup2_stdin,
            1 => nix::unistd::dup2_stdout,
            2 => nix::unistd::dup2_stderr,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a standard descriptor")),
        };
        Ok(dup(fd)?)
    }

    fn set_controlling_terminal(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        super::set_controlling_terminal(fd)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        Ok(nix::unistd::sethostname(name)?)
    }

    fn loopback_up(&self) -> io::Result<()> {
        super::loopback_up()
    }

    fn set_pdeathsig(&self) -> io::Result<()> {
        Ok(nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?)
    }

    fn set_not_dumpable(&self) -> io::Result<()> {
        super::set_not_dumpable()
    }

    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
        super::setrlimit(resource, soft, hard)
    }

    fn setgroups(&self, groups: &[Gid]) -> io::Result<()> {
        Ok(nix::unistd::setgroups(groups)?)
    }

    fn setresgid(&self, gid: Gid) -> io::Result<()> {
        Ok(nix::unistd::setresgid(gid, gid, gid)?)
    }

    fn setresuid(&self, uid: Uid) -> io::Result<()> {
        Ok(nix::unistd::setresuid(uid, uid, uid)?)
    }

    fn drop_bounding(&self, keep: &CapsHashSet) -> io::Result<()> {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(io::Error::other)?;
            }
        }
        Ok(())
    }

    fn set_keepcaps(&self, keep: bool) -> io::Result<()> {
        caps::securebits::set_keepcaps(keep).map_err(io::Error::other)
    }

    fn set_caps(&self, c: &CapState) -> io::Result<()> {
        // Effective must stay a subset of permitted at every step, so narrow it first.
        let set = |which, caps: &CapsHashSet| caps::set(None, which, caps).map_err(io::Error::other);
        set(CapSet::Effective, &c.effective)?;
        set(CapSet::Permitted, &c.permitted)?;
        set(CapSet::Inheritable, &c.inheritable)?;
        caps::clear(None, CapSet::Ambient).map_err(io::Error::other)?;
        for cap in &c.ambient {
            caps::raise(None, CapSet::Ambient, *cap).map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn umask(&self, mode: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mode as libc::mode_t));
    }

    fn set_cpu_affinity(&self, cpus: &[usize]) -> io::Result<()> {
        let mut set = nix::sched::CpuSet::new();
        for c in cpus {
            set.set(*c)?;
        }
        Ok(nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?)
    }

    fn personality(&self, persona: u64) -> io::Result<()> {
        let persona = nix::sys::personality::Persona::from_bits_retain(persona as libc::c_int);
        nix::sys::personality::set(persona)?;
        Ok(())
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        Ok(nix::sys::prctl::set_no_new_privs()?)
    }

    fn reset_signals(&self) -> io::Result<()> {
        super::reset_signals()
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        super::cloexec_from(first)
    }

    fn keep_on_exec(&self, first: i32, count: u32) -> io::Result<()> {
        super::keep_on_exec(first, count)
    }

    fn install_seccomp(&self, program: &[u8], flags: u32) -> io::Result<Option<OwnedFd>> {
        super::seccomp_set_filter(program, flags)
    }

    fn execve(&self, call: &PreparedExec) -> nix::errno::Errno {
        call.exec()
    }
}
