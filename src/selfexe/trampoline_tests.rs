//! The trampoline run for real: a process started from the sealed memfd with
//! the argv that init gives it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output, Stdio};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use super::*;
use crate::spawn::protocol::{exec_failed_prefix, ToParent};

/// The parent's end of a channel and the child's, both close-on-exec (other
/// tests spawn processes at the same time): the child's reaches the
/// trampoline as its stdin, fd 0, which is not.
fn channel() -> (OwnedFd, OwnedFd) {
    socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// A command that runs the trampoline from the memfd, as init would, for
/// `exe` with `args` and `env`, reporting on `theirs` (its fd 0).
fn command(memfd: &OwnedFd, theirs: OwnedFd, exe: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let reports = Reports {
        channel: exec_failed_prefix(exe).unwrap(),
        stderr: format!("exprun: cannot execute {exe}: errno "),
    };
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let argv = arguments(0, Path::new(exe), &args, &reports).unwrap();
    let argv: Vec<String> = argv.into_iter().map(|a| a.into_string().unwrap()).collect();
    // The memfd is close-on-exec, but /proc/self/fd/N is opened by the
    // execve that closes it.
    let mut c = Command::new(format!("/proc/self/fd/{}", memfd.as_raw_fd()));
    c.arg0(&argv[0]).args(&argv[1..]).env_clear().envs(env.iter().copied());
    c.stdin(Stdio::from(theirs)).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// The next packet on the channel, or `None` at end-of-file.
fn report(ours: &OwnedFd) -> Option<ToParent> {
    let mut buf = [0u8; 4096];
    let n = socket::recv(ours.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
    (n > 0).then(|| serde_json::from_slice(&buf[..n]).unwrap())
}

fn run(exe: &str, args: &[&str], env: &[(&str, &str)], read_channel: bool) -> (Output, Option<ToParent>) {
    let memfd = sealed().unwrap();
    let (ours, theirs) = channel();
    let ours = read_channel.then_some(ours);
    let child = command(&memfd, theirs, exe, args, env).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let report = ours.as_ref().and_then(report);
    (out, report)
}

#[test]
fn the_command_gets_its_arguments_and_environment_and_not_the_channel() {
    // The channel is the trampoline's fd 0.
    let script = "echo \"$0|$1|$FOO|$#\"; [ -e /proc/self/fd/0 ] && echo leaked; exit 3";
    let memfd = sealed().unwrap();
    let (ours, theirs) = channel();
    let env = [("FOO", "b a r")];
    let child =
        command(&memfd, theirs, "/bin/sh", &["sh", "-c", script, "zero", "one"], &env).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "zero|one|b a r|1\n", "the channel reached the command, or the arguments changed");
    assert_eq!(report(&ours), None, "a started command reads as end-of-file");
}

#[test]
fn a_missing_command_is_reported_on_the_channel_and_exits_127() {
    let (out, report) = run("/nonexistent/cmd", &["cmd"], &[], true);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(report, Some(ToParent::ExecFailed { exe: "/nonexistent/cmd".into(), errno: libc::ENOENT }));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_command_that_cannot_be_executed_exits_126_with_its_errno() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    let plain = plain.to_str().unwrap();
    // Mode 644: execve refuses it (EACCES), root or not.
    let (out, report) = run(plain, &["plain"], &[], true);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(report, Some(ToParent::ExecFailed { exe: plain.into(), errno: libc::EACCES }));
}

#[test]
fn with_nobody_on_the_channel_the_failure_goes_to_stderr() {
    let (out, _) = run("/nonexistent/cmd", &["cmd"], &[], false);
    assert_eq!(out.status.code(), Some(127), "no SIGPIPE: {:?}", out.status.signal());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "exprun: cannot execute /nonexistent/cmd: errno 2\n");
}

#[test]
fn a_running_trampoline_cannot_have_its_executable_written() {
    // Hold the trampoline alive: its report blocks on a channel whose queue
    // is full. Then do what a container process would: open its exe.
    let memfd = sealed().unwrap();
    let (ours, theirs) = channel();
    let filler = [0u8; 1024];
    while socket::send(theirs.as_raw_fd(), &filler, MsgFlags::MSG_DONTWAIT).is_ok() {}
    let mut child = command(&memfd, theirs, "/nonexistent/cmd", &["cmd"], &[]).spawn().unwrap();
    let exe = format!("/proc/{}/exe", child.id());
    let t0 = std::time::Instant::now();
    while !std::fs::read_link(&exe).is_ok_and(|l| l.to_string_lossy().contains("memfd:exprun-exec")) {
        assert!(t0.elapsed().as_secs() < 10, "the trampoline never ran");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The attack holds the link while the trampoline runs and writes once
    // nothing runs it any more (before that the kernel says ETXTBSY).
    let held = std::fs::File::open(&exe).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    drop(ours);
    let again = format!("/proc/self/fd/{}", held.as_raw_fd());
    // A sealed memfd opens for writing; every change fails.
    let mut f = std::fs::OpenOptions::new().write(true).open(&again).unwrap();
    let write = std::io::Write::write_all(&mut f, b"\x7fELF");
    let truncate = f.set_len(0);
    let grow = f.set_len(1 << 20);
    for (what, r) in [("write", write), ("truncate", truncate), ("grow", grow)] {
        let e = r.expect_err("the trampoline's executable changed");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{what}: {e}");
    }
    assert_eq!(std::fs::read(&again).unwrap(), program().unwrap());
}

#[test]
fn run_without_inits_arguments_it_exits_126() {
    // As a container would run it again, through /proc/self/exe.
    let memfd = sealed().unwrap();
    let out = Command::new(format!("/proc/self/fd/{}", memfd.as_raw_fd()))
        .args(["/bin/true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{:?}", out.status.signal());
}

#[test]
fn the_program_is_a_small_position_independent_executable() {
    let p = program().expect("x86_64 has the trampoline");
    assert_eq!(&p[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([p[16], p[17]]), 3, "ET_DYN");
    assert_eq!(u64::from_le_bytes(p[24..32].try_into().unwrap()), HEADERS as u64, "entered at its code");
    assert!(p.len() < 1024, "{} bytes", p.len());
    let seals = nix::fcntl::fcntl(sealed().unwrap(), nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
    let want =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    assert!(SealFlag::from_bits_truncate(seals).contains(want));
}
