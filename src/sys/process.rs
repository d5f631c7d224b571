//! Processes: clone, wait, pidfds, signals, credentials' side flags, execve.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::unistd::Pid;

use super::cstring;

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
/// Refused unless the calling process is single-threaded (see
/// [`wait_single_threaded`]): like `fork`, only the
/// calling thread is copied, and any lock another thread held would stay locked
/// forever in the child. The child must leave by `execve` or `_exit`, never by
/// returning into code that assumes it is the parent.
pub fn clone_process(flags: u64, cgroup_dir: Option<RawFd>) -> io::Result<Forked> {
    wait_single_threaded()?;
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
    // copy-on-write copy of this stack, exactly like fork; the process is
    // single-threaded (checked above), so no lock is held by a thread the child lacks.
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
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // The child branch leaves through `_exit` below and never returns.
    match clone_process(0, None)? {
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

/// Return once the calling process has one thread, or fail if others stay.
///
/// A thread that has been joined is not yet gone: the join returns when the
/// kernel clears the thread's tid, early in its exit, and the thread leaves the
/// process's count a moment later (measured: after about one join in ten, up
/// to a few hundred yields on a loaded machine). Threads that exprun started
/// and joined (hashers, unpackers) are waited for here; any thread still
/// counted after a second is a real one, and cloning is refused.
pub fn wait_single_threaded() -> io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut tries = 0u32;
    loop {
        let threads = thread_count()?;
        if threads == 1 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "exprun has {threads} threads; it must be single-threaded here"
            )));
        }
        tries += 1;
        if tries < 1000 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_millis(1));
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

/// An execve(2) with its argument and environment arrays built in advance, so
/// that [`PreparedExec::exec`] allocates nothing and makes no other syscall: it
/// is the only call after the container's seccomp filter.
pub struct PreparedExec {
    target: ExecTarget,
    // Own the strings the pointer arrays point into (their heap buffers do not
    // move when the vectors do).
    _args: Vec<CString>,
    _env: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

/// What a [`PreparedExec`] executes.
enum ExecTarget {
    /// execve(path).
    Path(CString),
    /// execveat(fd, "", AT_EMPTY_PATH): the file open at `fd`.
    Fd(RawFd),
}

impl PreparedExec {
    /// execve of `path`, or `None` when a string holds a NUL byte.
    pub fn new(path: &Path, args: &[String], env: &[String]) -> Option<Self> {
        let args = args.iter().map(|s| CString::new(s.as_str()).ok()).collect::<Option<Vec<_>>>()?;
        Self::build(ExecTarget::Path(cstring(path).ok()?), args, env)
    }

    /// execveat of the executable open at `fd` (which must stay open until
    /// the call), or `None` when a string holds a NUL byte.
    pub fn of_fd(fd: BorrowedFd<'_>, args: Vec<CString>, env: &[String]) -> Option<Self> {
        Self::build(ExecTarget::Fd(fd.as_raw_fd()), args, env)
    }

    fn build(target: ExecTarget, args: Vec<CString>, env: &[String]) -> Option<Self> {
        let env = env.iter().map(|s| CString::new(s.as_str()).ok()).collect::<Option<Vec<_>>>()?;
        let pointers = |v: &[CString]| {
            v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        let (argv, envp) = (pointers(&args), pointers(&env));
        Some(Self { target, _args: args, _env: env, argv, envp })
    }

    /// Replace this process; returns only the errno of a failed execve.
    pub fn exec(&self) -> nix::errno::Errno {
        match &self.target {
            // SAFETY: path, argv and envp are NUL-terminated strings and
            // NULL-terminated arrays of pointers into strings that self owns,
            // all live for the call.
            ExecTarget::Path(path) => unsafe {
                libc::execve(path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            },
            // SAFETY: as above; the empty path is a NUL-terminated literal, and
            // with AT_EMPTY_PATH the kernel executes the file open at fd.
            ExecTarget::Fd(fd) => unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    *fd,
                    c"".as_ptr(),
                    self.argv.as_ptr(),
                    self.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            },
        }
        nix::errno::Errno::last()
    }
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

/// setrlimit(2) of `resource` (`RLIMIT_*`, as the plan keeps it).
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads one rlimit through the pointer, which is live.
    if unsafe { libc::setrlimit(resource as _, &lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// getrlimit(2) of `resource` (`RLIMIT_*`): (soft, hard).
pub fn getrlimit(resource: u32) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is live.
    if unsafe { libc::getrlimit(resource as _, &mut lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// A resource usage of all zeros, for a child whose usage is unknown.
pub fn zero_rusage() -> libc::rusage {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Install the seccomp filter `program` (`struct sock_filter` entries, 8
/// bytes each) on the calling thread with `flags` (`SECCOMP_FILTER_FLAG_*`);
/// the notify fd when the flags ask for a listener.
pub fn seccomp_set_filter(program: &[u8], flags: u32) -> io::Result<Option<OwnedFd>> {
    if program.is_empty() {
        return Err(io::Error::other("the filter was never compiled"));
    }
    if !program.len().is_multiple_of(8) || program.len() / 8 > usize::from(u16::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a whole BPF program of at most 65535 entries",
        ));
    }
    let prog = libc::sock_fprog {
        len: (program.len() / 8) as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, which lives for the call and holds
    // `len` complete sock_filter entries (checked above); the kernel copies it
    // and writes nothing through the pointer.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, std::ptr::addr_of!(prog))
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 == 0 {
        return Ok(None);
    }
    // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER, seccomp(2) returns a new
    // fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
}

/// Fill `buf` from the kernel's random source (getrandom(2)); false if it
/// failed other than by an interruption.
pub fn getrandom(buf: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buf.len() {
        let tail = &mut buf[filled..];
        // SAFETY: the pointer and length describe `tail`, which is valid for
        // writes of that many bytes; getrandom writes at most that many.
        let r = unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) };
        if r > 0 {
            filled += r as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
    true
}
