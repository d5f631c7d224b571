//! The syscall seam: the few kernel calls that neither the standard library nor nix
//! wrap the way exprun needs them. Raw `unsafe` lives here and in nowhere else but
//! the clone in `spawn`; every block says why it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::unistd::Pid;

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>` (libc's constant is an `int` that
/// overflows).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` from `<linux/sched.h>` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a [`clone_process`] we are on.
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid (in the caller's pid namespace) and a pidfd.
    Parent {
        /// The child's pid as the caller sees it.
        pid: Pid,
        /// A pidfd for the child: race-free signalling and exit notification.
        pidfd: OwnedFd,
    },
}

/// Create a child process the way `fork` does (copy-on-write address space, both
/// sides return), but with namespace `flags` and a pidfd, optionally straight into
/// the cgroup open as `cgroup_dir` (cgroup v2 only).
///
/// Uses `clone3`, and falls back to `clone` when `clone3` is not available (kernels
/// before 5.3, or a seccomp filter that answers ENOSYS, as Docker's default does).
///
/// # Safety
///
/// The calling process must be single-threaded: like `fork`, only the calling
/// thread is copied, and any lock another thread held would stay locked forever in
/// the child. The child must leave by `execve` or `_exit`, never by returning into
/// code that assumes it is the parent.
pub unsafe fn clone_process(flags: u64, cgroup_dir: Option<RawFd>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup_dir {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: `args` is a valid, fully initialised clone_args of the size passed;
    // `pidfd` outlives the call. With a zero stack the child continues on a
    // copy-on-write copy of this stack, exactly like fork; the caller guarantees the
    // process is single-threaded (see this function's contract).
    let mut ret = unsafe {
        libc::syscall(libc::SYS_clone3, std::ptr::addr_of_mut!(args), std::mem::size_of::<CloneArgs>())
    };
    if ret == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        if cgroup_dir.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "clone3 is not available, so CLONE_INTO_CGROUP cannot be used",
            ));
        }
        // SAFETY: the legacy clone with a null stack behaves like fork (same
        // reasoning as above); on x86_64 the argument order is flags, stack,
        // parent_tid, child_tid, tls, and CLONE_PIDFD stores the pidfd through
        // parent_tid, which points at the live `pidfd`.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64) as libc::c_ulong,
                0usize,
                std::ptr::addr_of_mut!(pidfd),
                0usize,
                0usize,
            )
        };
    }
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as libc::pid_t),
            // SAFETY: the kernel returned a fresh pidfd that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Run `work` in a short-lived child process and return its answer.
///
/// For work that starts threads (a D-Bus client's executor) in a process that
/// must stay single-threaded because it clones the container's init later: the
/// threads live and die with the child. The child starts with every signal
/// unblocked and is killed by SIGALRM after `timeout_s` seconds.
pub fn in_subprocess(
    timeout_s: u32,
    work: impl FnOnce() -> Result<Vec<u8>, String>,
) -> io::Result<Result<Vec<u8>, String>> {
    use std::io::{Read, Write};
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "exprun has {threads} threads; it must be single-threaded here"
        )));
    }
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the process is single-threaded (checked just above); the child
    // branch leaves through `_exit` below and never returns.
    match unsafe { clone_process(0, None) }? {
        Forked::Child => {
            drop(read_end);
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            nix::unistd::alarm::set(timeout_s.max(1));
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err("the helper process panicked".into()));
            let mut out = std::fs::File::from(write_end);
            let framed = match answer {
                Ok(bytes) => [&[0u8][..], &bytes].concat(),
                Err(why) => [&[1u8][..], why.as_bytes()].concat(),
            };
            let code = i32::from(out.write_all(&framed).is_err());
            // SAFETY: `_exit` ends the child at once, without running the
            // parent's atexit handlers or flushing its stdio buffers twice.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent { pid, .. } => {
            drop(write_end);
            let mut framed = Vec::new();
            let read = std::fs::File::from(read_end).read_to_end(&mut framed);
            let (status, _) = wait4(pid)?;
            read?;
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout_s} s"),
                ));
            }
            match framed.split_first() {
                Some((0, bytes)) => Ok(Ok(bytes.to_vec())),
                Some((_, why)) => Ok(Err(String::from_utf8_lossy(why).into_owned())),
                None => Err(io::Error::other(format!("the helper process ended with status {status:#x}"))),
            }
        }
    }
}

/// Number of threads of the calling process, from /proc/self/stat.
pub fn thread_count() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Field 20 (num_threads); the command name (field 2) may contain spaces, so
    // count from the closing parenthesis.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    after
        .split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("cannot parse num_threads in /proc/self/stat"))
}

/// A pidfd for `pid` (any process, not only a child).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Send `signal` through a pidfd (no pid-reuse race).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall with a borrowed, open pidfd, a signal number, and null
    // siginfo (the kernel then fills in a kill()-like siginfo).
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `wait4(pid, 0)`: the exit status and resource usage of a child.
pub fn wait4(pid: Pid) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both out-pointers point at live locals of the right types.
        let r = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) };
        if r == pid.as_raw() {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `openat2(dirfd, path, how)` with `RESOLVE_IN_ROOT`: resolve `path` as if `dirfd`
/// were the root directory, so neither `..` nor absolute symlinks can leave it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(root, path, flags, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
}

/// `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: `path` is opened
/// only if every component of it is a real entry beneath `dir`; a symlink
/// anywhere on the way (ELOOP) or a `..` that climbs out (EXDEV) fails.
pub fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(dir, path, flags, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS)
}

fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: open_how is plain old data; all-zero is valid (and required for any
    // field this libc version does not name).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a NUL-terminated path that outlives the call, `how` is a
        // valid open_how of the size passed, and `dir` is an open directory fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                std::ptr::addr_of!(how),
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // openat2 returns EAGAIN when a concurrent rename raced the lookup; retry.
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

/// Mark every fd from `first` upwards close-on-exec, so nothing the runtime opened
/// (or inherited) reaches the container's process (CVE-2024-21626 was a leaked fd).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags; no memory is passed.
    let r = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An execve(2) with its argument and environment arrays built in advance, so
/// that [`PreparedExec::exec`] allocates nothing and makes no other syscall: it
/// is the only call after the container's seccomp filter.
pub struct PreparedExec {
    path: CString,
    // Own the strings the pointer arrays point into (their heap buffers do not
    // move when the vectors do).
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl PreparedExec {
    /// The call, or `None` when a string holds a NUL byte.
    pub fn new(path: &Path, args: &[String], env: &[String]) -> Option<Self> {
        let strings =
            |v: &[String]| v.iter().map(|s| CString::new(s.as_str()).ok()).collect::<Option<Vec<_>>>();
        let (args, env) = (strings(args)?, strings(env)?);
        let pointers = |v: &[CString]| {
            v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        let (argv, envp) = (pointers(&args), pointers(&env));
        Some(Self { path: cstring(path).ok()?, _args: args, _env: env, argv, envp })
    }

    /// Replace this process; returns only the errno of a failed execve.
    pub fn exec(&self) -> nix::errno::Errno {
        // SAFETY: path, argv and envp are NUL-terminated strings and
        // NULL-terminated arrays of pointers into strings that self owns, all
        // live for the call.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        nix::errno::Errno::last()
    }
}

/// Whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the flags of a descriptor number; one that is
    // not open fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Clear close-on-exec on fds `first..first + count`, so that they reach the
/// command (`--preserve-fds`).
pub fn keep_on_exec(first: RawFd, count: u32) -> io::Result<()> {
    for fd in (first..).take(count as usize) {
        // SAFETY: F_SETFD only changes the flags of a descriptor number; one
        // that is not open fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Make the calling process its controlling terminal's session leader's terminal:
/// `ioctl(fd, TIOCSCTTY, 0)`.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value; fd is open.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of a terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is live.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// Set the window size of a terminal (the pty master forwards it to the slave).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which is live.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked and wrapped at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a new socket fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads name and flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(PR_SET_DUMPABLE, 0)`: /proc/<pid> of this process becomes root-owned and
/// it cannot be ptraced by the container's processes while it still holds the
/// runtime's memory (the CVE-2019-5736 family).
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `_exit(code)`: leave the child without running destructors or atexit handlers
/// that belong to the parent's copy of the program.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// A NUL-terminated copy of a path.
pub fn cstring(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Reset every signal to its default disposition and unblock all signals. Runtimes
/// ignore SIGPIPE (Rust does so at start-up) and block signals around the clone;
/// ignored and blocked signals survive execve, so the container would inherit them.
pub fn reset_signals() -> io::Result<()> {
    use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL cannot violate any Rust invariant; no handler
        // code runs.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    }
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_of_a_test_thread_is_positive() {
        assert!(thread_count().unwrap() >= 1);
    }

    #[test]
    fn open_in_root_cannot_escape_through_dotdot_or_absolute_symlink() {
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        for p in ["../../../etc/passwd", "/etc/passwd", "link/passwd"] {
            let fd = open_in_root(root.as_fd(), Path::new(p), libc::O_RDONLY).unwrap();
            let got = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
            assert_eq!(got, "inside", "{p} escaped the root");
        }
    }
}

/// `open_tree(2)` flag: make a detached copy of the mount (a bind mount).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `MOUNT_ATTR_RDONLY` from `<linux/mount.h>`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `struct mount_attr` from `<linux/mount.h>`.
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The file at `path` on a new, detached, read-only bind mount: an `O_PATH`
/// descriptor that no mount table lists, and that goes away with its last
/// user. A write through it fails with `EROFS` whoever tries (needs
/// CAP_SYS_ADMIN, and Linux 5.12 for `mount_setattr`).
pub fn readonly_bind(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    mount_setattr(tree.as_fd(), MOUNT_ATTR_RDONLY, 0, 0, false)?;
    Ok(tree)
}

/// mount_setattr(2) on the mount `fd` is the root of (`AT_EMPTY_PATH`): set
/// and clear `MOUNT_ATTR_*` bits, and change the propagation type when
/// `propagation` is not 0; on every mount below it too when `recursive`
/// (`AT_RECURSIVE`). Linux 5.12.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr { attr_set, attr_clr, propagation, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads `attr` (of the size passed) and the empty,
    // NUL-terminated path; `fd` is open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FS_IMMUTABLE_FL` from `<linux/fs.h>`.
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Whether the file is immutable (`chattr +i`): nobody without
/// CAP_LINUX_IMMUTABLE can write it, root included.
pub fn is_immutable(fd: BorrowedFd<'_>) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    r == 0 && flags & FS_IMMUTABLE_FL != 0
}

/// Remove the file capabilities (`security.capability`) of the open file `fd`:
/// `Ok(true)` when it had some, `Ok(false)` when it had none or the filesystem
/// has no extended attributes.
pub fn remove_file_caps(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: the name is a NUL-terminated literal; fremovexattr reads only it.
    let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), c"security.capability".as_ptr()) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

/// `fsetxattr(2)`: set the xattr `name` of the open file `fd` to `value`.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: `name` is a NUL-terminated string and `value` a live slice whose
    // pointer and length are passed together; the fd is borrowed for the call.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    nix::errno::Errno::result(r).map(drop)
}

fn no_xattrs(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP))
}

/// `lgetxattr(2)`: the value of `path`'s xattr `name`, the link itself when
/// `path` is one; `None` when unset or unsupported.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = cstring(path)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated; `buf` is valid for writes of
        // `buf.len()` bytes, and lgetxattr writes at most that many.
        let r = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        if no_xattrs(&e) {
            return Ok(None);
        }
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `llistxattr(2)`: the names of `path`'s xattrs (the link's own when `path`
/// is one).
pub fn llistxattr(path: &Path) -> io::Result<Vec<String>> {
    let path = cstring(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `path` is NUL-terminated; `buf` is valid for writes of
        // `buf.len()` bytes, and llistxattr writes at most that many.
        let r = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
        let e = io::Error::last_os_error();
        if no_xattrs(&e) {
            return Ok(Vec::new());
        }
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let len = buf.len() * 4;
        buf.resize(len, 0);
    }
}

/// `BPF_PROG_LOAD`, `BPF_PROG_ATTACH` and `BPF_PROG_QUERY` from `<linux/bpf.h>`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct BpfProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BpfProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr` (up to `prog_cnt`).
#[repr(C)]
#[derive(Default)]
struct BpfProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `bpf(cmd, attr, size)`.
///
/// # Safety
///
/// `attr` must be the part of `union bpf_attr` that `cmd` reads, and every
/// pointer inside it must be valid for what the kernel does with it during the
/// call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; its size is passed with it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Load a BPF program of `prog_type` (`BPF_PROG_TYPE_*`) made of `insns`
/// (`struct bpf_insn`, 8 bytes each), named `name` (at most 15 bytes). On a
/// refusal the verifier's log, when it gave one, is returned with the error.
pub fn bpf_prog_load(
    prog_type: u32,
    insns: &[[u8; 8]],
    license: &std::ffi::CStr,
    name: &str,
) -> Result<OwnedFd, (io::Error, String)> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let load = |log: &mut [u8]| {
        let mut attr = BpfProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
            prog_name,
            ..Default::default()
        };
        // SAFETY: `insns` holds `insn_cnt` instructions and `license` is
        // NUL-terminated, both alive for the call; `log_buf` is null or valid
        // for writes of `log_size` bytes.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    load(&mut []).or_else(|e: io::Error| {
        let mut log = vec![0u8; 1 << 16];
        match load(&mut log) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
            }
        }
    })
}

/// Attach the BPF program `prog` to `target` (a cgroup directory, for the
/// cgroup attach types) as `attach_type` (`BPF_CGROUP_*`) with `flags`
/// (`BPF_F_ALLOW_MULTI`, ...).
pub fn bpf_prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = BpfProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    // SAFETY: the attr holds two open, borrowed fds and integers only.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// The ids of the BPF programs attached to `target` (a cgroup directory) as
/// `attach_type`, itself only (not those inherited).
pub fn bpf_prog_query(target: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = BpfProgQueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: `prog_ids` is valid for writes of `prog_cnt` u32s during the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }?;
    ids.truncate((attr.prog_cnt as usize).min(ids.len()));
    Ok(ids)
}

/// `poll(2)`: the number of ready fds, 0 when a signal interrupted the wait
/// (nothing is ready then, so a caller's loop checks its fds and polls again).
pub fn poll(fds: &mut [nix::poll::PollFd<'_>], timeout: nix::poll::PollTimeout) -> nix::Result<usize> {
    match nix::poll::poll(fds, timeout) {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e),
    }
}
