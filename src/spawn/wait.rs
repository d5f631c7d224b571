//! The foreground wait of `exprun run`: copy the container's output (hashing it
//! for the record), forward exprun's signals to the container, and collect the exit
//! status and resource usage. One poll loop over a signalfd, the init's pidfd, the
//! protocol channel and the output pipes: no threads, no SIGCHLD race.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use serde::{Deserialize, Serialize};

use super::protocol::ToParent;
use super::stdio::ParentIo;
use super::{CommandFailure, Created, Error};
use crate::digest::{Digest, Hasher};
use crate::sys;

/// The signals exprun blocks and handles while a container runs. All but SIGWINCH
/// and SIGCHLD are forwarded to the container.
pub const HANDLED_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Whether `sig`'s default action ends a process (for the signals exprun forwards).
pub fn is_terminating(sig: i32) -> bool {
    [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2].contains(&sig)
}

/// `SIGTERM` for 15.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {sig}"))
}

/// A signal exprun passed on to the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The signal exprun received.
    pub signal: String,
    /// What was delivered: the same signal, or SIGKILL when the container's pid 1
    /// neither handles nor ignores it (the kernel would drop it: pid 1 of a pid
    /// namespace gets no default actions).
    pub delivered_as: String,
    /// Seconds since the command started.
    pub at_seconds: f64,
}

/// A stream's digest and length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// sha256 of every byte the container wrote.
    pub digest: Digest,
    /// Number of bytes.
    pub bytes: u64,
    /// How many of them are kept in the run's record directory (`stdout`,
    /// `stderr`), from the start, up to [`CAPTURE_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<u64>,
}

/// The most bytes of each stream kept with the record.
pub const CAPTURE_LIMIT: u64 = 16 << 20;

/// Where the foreground wait sends the container's output.
#[derive(Debug, Clone, Default)]
pub struct Sink {
    /// Keep each stream's first [`CAPTURE_LIMIT`] bytes in this directory (files
    /// `stdout` and `stderr`, created on the first byte).
    pub keep_in: Option<PathBuf>,
    /// Do not copy the output to exprun's own stdout and stderr (`verify`).
    pub quiet: bool,
    /// A terminating signal to exprun stops the container (SIGKILL to its init)
    /// instead of being passed on (`exprun build`: an interrupt aborts).
    pub stop_on_signal: bool,
}

/// A file that receives a stream's first bytes; made when the first byte comes,
/// so a silent run creates nothing.
struct Capture {
    path: PathBuf,
    file: Option<std::fs::File>,
    kept: u64,
    failed: bool,
}

impl Capture {
    fn write(&mut self, data: &[u8]) {
        let room = CAPTURE_LIMIT.saturating_sub(self.kept) as usize;
        if self.failed || room == 0 {
            return;
        }
        if self.file.is_none() {
            let opened =
                self.path.parent().map_or(Ok(()), crate::fsutil::create_private_dir_all).and_then(|()| {
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&self.path)
                });
            match opened {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
        let part = &data[..data.len().min(room)];
        match self.file.as_mut().map(|f| f.write_all(part)) {
            Some(Ok(())) => self.kept += part.len() as u64,
            _ => self.failed = true,
        }
    }
}

/// How the container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

/// Everything the foreground wait learned.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How init ended.
    pub exit: Exit,
    /// Set when the command could not be executed.
    pub exec_failure: Option<CommandFailure>,
    /// Signals forwarded.
    pub forwarded: Vec<Forwarded>,
    /// The container's stdout (with a terminal: everything it wrote).
    pub stdout: StreamSummary,
    /// The container's stderr (empty with a terminal).
    pub stderr: StreamSummary,
    /// When the command was released.
    pub started: SystemTime,
    /// When init was reaped.
    pub ended: SystemTime,
    /// Wall-clock seconds from start to reap.
    pub wall_seconds: f64,
    /// Peak RSS of init itself, KiB (ru_maxrss).
    pub init_max_rss_kib: u64,
}

impl Outcome {
    /// exprun's exit status: the command's, 128+N for signal N (the forwarded
    /// signal when it had to be delivered as SIGKILL), 126/127 when it did not run.
    pub fn exit_code(&self) -> i32 {
        if let Some(f) = &self.exec_failure {
            return f.exit_code;
        }
        match self.exit {
            Exit::Code(c) => c,
            Exit::Signal(s) => {
                let escalated = self
                    .forwarded
                    .iter()
                    .rev()
                    .find(|f| f.delivered_as == "SIGKILL" && f.signal != "SIGKILL");
                match escalated.and_then(|f| f.signal.parse::<Signal>().ok()) {
                    Some(orig) if s == libc::SIGKILL => 128 + orig as i32,
                    _ => 128 + s,
                }
            }
        }
    }
}

/// An output pipe being copied to one of exprun's fds.
struct Stream {
    fd: Option<OwnedFd>,
    to: i32,
    hasher: Hasher,
    broken: bool,
    capture: Option<Capture>,
}

impl Stream {
    fn new(fd: Option<OwnedFd>, to: i32, sink: &Sink, name: &str) -> Self {
        let capture =
            sink.keep_in.as_ref().map(|d| Capture { path: d.join(name), file: None, kept: 0, failed: false });
        Self { fd, to, hasher: Hasher::new(), broken: sink.quiet, capture }
    }

    /// Copy what is readable now; close on EOF (or EIO from a pty master whose
    /// slave is gone).
    fn pump(&mut self, buf: &mut [u8]) {
        let Some(fd) = &self.fd else { return };
        match nix::unistd::read(fd, buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => self.fd = None,
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                if let Some(c) = &mut self.capture {
                    c.write(&buf[..n]);
                }
                if !self.broken && !write_to(self.to, &buf[..n]) {
                    // Our own stdout went away (e.g. `| head`): keep draining and
                    // hashing so the container is not blocked, stop writing.
                    self.broken = true;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => self.fd = None,
        }
    }

    fn summary(self) -> StreamSummary {
        let (digest, bytes) = self.hasher.finish();
        let kept = self.capture.filter(|c| c.kept > 0 && !c.failed).map(|c| c.kept);
        StreamSummary { digest, bytes, kept }
    }
}

/// Write all of `buf` to exprun's stdout (`to` 1) or stderr.
fn write_to(to: i32, buf: &[u8]) -> bool {
    if to == 1 {
        write_all(io::stdout().as_fd(), buf)
    } else {
        write_all(io::stderr().as_fd(), buf)
    }
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// How long to keep draining output after init has exited. All writers are gone
/// once init is reaped (its pid namespace died with it), so this only guards
/// against the unexpected.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// When the start half released the command ([`Created::start`]).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    at: SystemTime,
    clock: Instant,
}

impl Started {
    pub(super) fn now() -> Self {
        Self { at: SystemTime::now(), clock: Instant::now() }
    }
}

/// Wait in the foreground for a command the start half has released. `on_exec`
/// runs once the command has been exec'd (the OCI poststart hooks of `run
/// --bundle`).
pub fn foreground(
    c: &Created,
    started: Started,
    io: ParentIo,
    signals: &SignalFd,
    sink: &Sink,
    on_exec: Option<&dyn Fn()>,
) -> Result<Outcome, Error> {
    let mut out = Stream::new(Some(io.stdout), libc::STDOUT_FILENO, sink, "stdout");
    let mut err = Stream::new(io.stderr, libc::STDERR_FILENO, sink, "stderr");
    let pty = io.pty;
    let mut stdin_open = io.copy_stdin;
    let mut channel_open = true;
    let mut exec_failure = None;
    let mut forwarded = Vec::new();
    let mut reaped: Option<(libc::c_int, libc::rusage)> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];

    let Started { at: started, clock: t0 } = started;

    loop {
        let done_output = out.fd.is_none() && err.fd.is_none();
        if reaped.is_some() && (done_output || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let stdin = io::stdin();
        // Slot i of `wanted` is polled when present; `slots` maps it to its PollFd.
        let wanted: [Option<BorrowedFd<'_>>; 6] = [
            Some(signals.as_fd()),
            reaped.is_none().then(|| c.pidfd.as_fd()),
            channel_open.then(|| c.channel().as_fd()),
            out.fd.as_ref().map(|f| f.as_fd()),
            err.fd.as_ref().map(|f| f.as_fd()),
            stdin_open.then(|| stdin.as_fd()),
        ];
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(6);
        let mut slots = [None; 6];
        for (slot, fd) in wanted.iter().enumerate() {
            if let Some(fd) = fd {
                slots[slot] = Some(fds.len());
                fds.push(PollFd::new(*fd, PollFlags::POLLIN));
            }
        }
        let timeout = match drain_deadline {
            Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::ZERO),
            None => PollTimeout::NONE,
        };
        sys::poll(&mut fds, timeout)
            .map_err(|e| Error::Io { op: "waiting for the container", source: e.into() })?;
        let ready = |slot: usize| {
            slots[slot].is_some_and(|i| {
                fds[i].revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                })
            })
        };
        let (sig_ready, pid_ready, chan_ready, out_ready, err_ready, in_ready) =
            (ready(0), ready(1), ready(2), ready(3), ready(4), ready(5));
        drop(fds);

        if out_ready {
            out.pump(&mut buf);
        }
        if err_ready {
            err.pump(&mut buf);
        }
        if chan_ready {
            match c.channel().recv::<ToParent>() {
                Ok(Some(ToParent::ExecFailed { exe, errno })) => {
                    exec_failure = Some(CommandFailure::exec_failed(&exe, errno));
                    channel_open = false;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    channel_open = false;
                    if let Some(f) = on_exec {
                        f();
                    }
                }
                Err(_) => channel_open = false,
            }
        }
        if in_ready {
            stdin_open = copy_stdin(pty.as_ref(), &mut buf);
        }
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGWINCH {
                    if let (Some(p), Some(ws)) = (&pty, sys::window_size(io::stdin().as_fd())) {
                        let _ = sys::set_window_size(p.as_fd(), &ws);
                    }
                } else if sig != libc::SIGCHLD && reaped.is_none() {
                    forwarded.push(forward(c, sig, t0.elapsed().as_secs_f64(), sink.stop_on_signal));
                }
            }
        }
        if pid_ready {
            reaped =
                Some(sys::wait4(c.pid).map_err(|source| Error::Io { op: "reaping the container", source })?);
            // With its own pid namespace the kernel ends the container with
            // init; without, exprun does (as runc does).
            if c.shared_pid_ns {
                c.cgroup.kill_all();
            }
            drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
        }
    }
    let wall_seconds = t0.elapsed().as_secs_f64();
    let ended = SystemTime::now();
    let (status, usage) = reaped.unwrap_or((0, sys::zero_rusage()));
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Outcome {
        exit,
        exec_failure,
        forwarded,
        stdout: out.summary(),
        stderr: err.summary(),
        started,
        ended,
        wall_seconds,
        init_max_rss_kib: usage.ru_maxrss.max(0) as u64,
    })
}

/// Copy one read of exprun's stdin into the pty; false once stdin is at EOF.
fn copy_stdin(pty: Option<&OwnedFd>, buf: &mut [u8]) -> bool {
    let Some(pty) = pty else { return false };
    match nix::unistd::read(io::stdin().as_fd(), buf) {
        Ok(0) => false,
        Ok(n) => write_all(pty.as_fd(), &buf[..n]),
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Deliver `sig` to the container's init. pid 1 of a pid namespace gets no
/// default action for signals from outside (pid_namespaces(7)): a SIGTERM to a
/// `sleep` that is pid 1 would be dropped. When init neither handles nor ignores a
/// terminating signal, deliver SIGKILL instead, which is what the default action
/// would have done. With `stop`, a terminating signal is always SIGKILL.
fn forward(c: &Created, sig: i32, at_seconds: f64, stop: bool) -> Forwarded {
    let (caught, ignored) = signal_masks(c.pid.as_raw()).unwrap_or((u64::MAX, 0));
    let bit = 1u64 << (sig - 1);
    let unhandled = caught & bit == 0 && ignored & bit == 0;
    let deliver = if is_terminating(sig) && (stop || unhandled) { libc::SIGKILL } else { sig };
    let _ = sys::pidfd_send_signal(c.pidfd.as_fd(), deliver);
    Forwarded { signal: signal_name(sig), delivered_as: signal_name(deliver), at_seconds }
}

/// (SigCgt, SigIgn) of a process, from /proc/<pid>/status.
fn signal_masks(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("SigCgt:")?, field("SigIgn:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Exit, forwarded: Vec<Forwarded>) -> Outcome {
        let empty = StreamSummary { digest: Digest::of_bytes(b""), bytes: 0, kept: None };
        Outcome {
            exit,
            exec_failure: None,
            forwarded,
            stdout: empty.clone(),
            stderr: empty,
            started: SystemTime::UNIX_EPOCH,
            ended: SystemTime::UNIX_EPOCH,
            wall_seconds: 0.0,
            init_max_rss_kib: 0,
        }
    }

    #[test]
    fn exit_codes_follow_the_podman_contract() {
        assert_eq!(outcome(Exit::Code(3), vec![]).exit_code(), 3);
        assert_eq!(outcome(Exit::Signal(libc::SIGKILL), vec![]).exit_code(), 137);
        let escalated =
            Forwarded { signal: "SIGTERM".into(), delivered_as: "SIGKILL".into(), at_seconds: 1.0 };
        assert_eq!(outcome(Exit::Signal(libc::SIGKILL), vec![escalated]).exit_code(), 143);
        let plain = Forwarded { signal: "SIGINT".into(), delivered_as: "SIGINT".into(), at_seconds: 1.0 };
        assert_eq!(outcome(Exit::Signal(libc::SIGINT), vec![plain]).exit_code(), 130);
        let mut o = outcome(Exit::Code(127), vec![]);
        o.exec_failure = Some(CommandFailure { exit_code: 126, message: String::new() });
        assert_eq!(o.exit_code(), 126);
    }

    #[test]
    fn own_signal_masks_are_readable() {
        let (caught, ignored) = signal_masks(std::process::id() as i32).unwrap();
        // Rust ignores SIGPIPE at start-up.
        assert_ne!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{caught:x} {ignored:x}");
    }
}
