//! [`RecordingKernel`]: a [`Kernel`] that changes nothing and logs each call,
//! for unit tests of the order of init's and the root filesystem's steps.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use caps::CapsHashSet;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::SFlag;
use nix::sys::statvfs::FsFlags;
use nix::unistd::{Gid, Uid};

use super::{CapState, Kernel, PreparedExec};

/// One call made through a [`RecordingKernel`]. Paths given as
/// `/proc/self/fd/N`, and names relative to a directory descriptor, are
/// recorded as the paths the descriptors lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// mount(2).
    Mount {
        /// Source.
        source: Option<PathBuf>,
        /// Target.
        target: PathBuf,
        /// Filesystem type.
        fstype: Option<String>,
        /// Flags.
        flags: MsFlags,
        /// Options.
        data: Option<String>,
    },
    /// umount2(MNT_DETACH).
    UmountDetach(PathBuf),
    /// pivot_root(new_root, put_old).
    PivotRoot(PathBuf, PathBuf),
    /// mount_setattr(2).
    MountSetattr(PathBuf),
    /// chdir(2).
    Chdir(PathBuf),
    /// fchdir(2).
    Fchdir(PathBuf),
    /// mknodat(2).
    Mknod(PathBuf),
    /// fchmodat(2).
    Chmod(PathBuf, u32),
    /// fchownat(2).
    Chown(PathBuf, u32, u32),
    /// symlinkat(target, path).
    Symlink(String, PathBuf),
    /// A write to a kernel file.
    WriteFile(PathBuf, String),
    /// setns(2).
    Setns(CloneFlags),
    /// unshare(2).
    Unshare(CloneFlags),
    /// The cgroup join.
    JoinCgroup,
    /// setsid(2).
    Setsid,
    /// dup onto 0, 1 or 2.
    DupOnto(i32),
    /// TIOCSCTTY.
    ControllingTerminal,
    /// sethostname(2).
    Sethostname(String),
    /// Loopback up.
    LoopbackUp,
    /// PR_SET_PDEATHSIG.
    Pdeathsig,
    /// PR_SET_DUMPABLE 0.
    NotDumpable,
    /// setrlimit(2).
    Setrlimit(u32),
    /// setgroups(2).
    Setgroups(Vec<u32>),
    /// setresgid(2).
    Setresgid(u32),
    /// setresuid(2).
    Setresuid(u32),
    /// The bounding set narrowed.
    DropBounding,
    /// SECBIT_KEEP_CAPS.
    KeepCaps(bool),
    /// The capability sets.
    SetCaps,
    /// umask(2).
    Umask(u32),
    /// sched_setaffinity(2).
    CpuAffinity,
    /// personality(2).
    Personality(u64),
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// Signal dispositions and mask reset.
    ResetSignals,
    /// close_range(CLOSE_RANGE_CLOEXEC).
    CloexecFrom(u32),
    /// Close-on-exec cleared.
    KeepOnExec(i32, u32),
    /// seccomp(SECCOMP_SET_MODE_FILTER).
    Seccomp,
    /// execve(2).
    Execve,
}

/// A [`Kernel`] that records every call and succeeds (execve answers ENOSYS).
/// [`Kernel::statvfs`] answers no flags and [`Kernel::is_dir`] no (every
/// masked path is then covered as a file).
#[derive(Default)]
pub struct RecordingKernel {
    log: RefCell<Vec<Call>>,
}

impl RecordingKernel {
    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.log.borrow().clone()
    }

    fn push(&self, call: Call) -> io::Result<()> {
        self.log.borrow_mut().push(call);
        Ok(())
    }
}

/// `path`, with a `/proc/self/fd/N` replaced by where the descriptor leads.
fn resolved(path: &Path) -> PathBuf {
    if path.starts_with("/proc/self/fd") {
        if let Ok(real) = std::fs::read_link(path) {
            return real;
        }
    }
    path.to_path_buf()
}

fn at(dir: BorrowedFd<'_>, name: impl AsRef<Path>) -> PathBuf {
    resolved(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd()))).join(name)
}

impl Kernel for RecordingKernel {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.push(Call::Mount {
            source: source.map(resolved),
            target: resolved(target),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        self.push(Call::UmountDetach(target.to_path_buf()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.push(Call::PivotRoot(new_root.to_path_buf(), put_old.to_path_buf()))
    }

    fn mount_setattr(&self, fd: BorrowedFd<'_>, _set: u64, _clear: u64, _recursive: bool) -> io::Result<()> {
        self.push(Call::MountSetattr(at(fd, "")))
    }

    fn statvfs(&self, _path: &Path) -> io::Result<FsFlags> {
        Ok(FsFlags::empty())
    }

    fn is_dir(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }

    fn chdir(&self, dir: &Path) -> io::Result<()> {
        self.push(Call::Chdir(dir.to_path_buf()))
    }

    fn fchdir(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.push(Call::Fchdir(at(dir, "")))
    }

    fn mknodat(&self, dir: BorrowedFd<'_>, name: &OsStr, _: SFlag, _: u32, _: u64) -> io::Result<()> {
        self.push(Call::Mknod(at(dir, name)))
    }

    fn fchmodat(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        self.push(Call::Chmod(at(dir, name), mode))
    }

    fn fchownat(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        self.push(Call::Chown(at(dir, name), uid, gid))
    }

    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        self.push(Call::Symlink(target.to_string(), at(dir, name)))
    }

    fn write_file(&self, path: &Path, value: &str) -> io::Result<()> {
        self.push(Call::WriteFile(path.to_path_buf(), value.to_string()))
    }

    fn setns(&self, _fd: BorrowedFd<'_>, nstype: CloneFlags) -> io::Result<()> {
        self.push(Call::Setns(nstype))
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        self.push(Call::Unshare(flags))
    }

    fn join_cgroup(&self, _procs: BorrowedFd<'_>) -> io::Result<()> {
        self.push(Call::JoinCgroup)
    }

    fn setsid(&self) -> io::Result<()> {
        self.push(Call::Setsid)
    }

    fn dup_onto(&self, _fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
        self.push(Call::DupOnto(target))
    }

    fn set_controlling_terminal(&self, _fd: BorrowedFd<'_>) -> io::Result<()> {
        self.push(Call::ControllingTerminal)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.push(Call::Sethostname(name.to_string()))
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.push(Call::LoopbackUp)
    }

    fn set_pdeathsig(&self) -> io::Result<()> {
        self.push(Call::Pdeathsig)
    }

    fn set_not_dumpable(&self) -> io::Result<()> {
        self.push(Call::NotDumpable)
    }

    fn setrlimit(&self, resource: u32, _soft: u64, _hard: u64) -> io::Result<()> {
        self.push(Call::Setrlimit(resource))
    }

    fn setgroups(&self, groups: &[Gid]) -> io::Result<()> {
        self.push(Call::Setgroups(groups.iter().map(|g| g.as_raw()).collect()))
    }

    fn setresgid(&self, gid: Gid) -> io::Result<()> {
        self.push(Call::Setresgid(gid.as_raw()))
    }

    fn setresuid(&self, uid: Uid) -> io::Result<()> {
        self.push(Call::Setresuid(uid.as_raw()))
    }

    fn drop_bounding(&self, _keep: &CapsHashSet) -> io::Result<()> {
        self.push(Call::DropBounding)
    }

    fn set_keepcaps(&self, keep: bool) -> io::Result<()> {
        self.push(Call::KeepCaps(keep))
    }

    fn set_caps(&self, _caps: &CapState) -> io::Result<()> {
        self.push(Call::SetCaps)
    }

    fn umask(&self, mode: u32) {
        self.log.borrow_mut().push(Call::Umask(mode));
    }

    fn set_cpu_affinity(&self, _cpus: &[usize]) -> io::Result<()> {
        self.push(Call::CpuAffinity)
    }

    fn personality(&self, persona: u64) -> io::Result<()> {
        self.push(Call::Personality(persona))
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        self.push(Call::NoNewPrivs)
    }

    fn reset_signals(&self) -> io::Result<()> {
        self.push(Call::ResetSignals)
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        self.push(Call::CloexecFrom(first))
    }

    fn keep_on_exec(&self, first: i32, count: u32) -> io::Result<()> {
        self.push(Call::KeepOnExec(first, count))
    }

    fn install_seccomp(&self, _program: &[u8], _flags: u32) -> io::Result<Option<OwnedFd>> {
        self.push(Call::Seccomp).map(|()| None)
    }

    fn execve(&self, _call: &PreparedExec) -> nix::errno::Errno {
        self.log.borrow_mut().push(Call::Execve);
        nix::errno::Errno::ENOSYS
    }
}
