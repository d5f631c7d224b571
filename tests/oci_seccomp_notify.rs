#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `SCMP_ACT_NOTIFY` with `linux.seccomp.listenerPath`: a seccomp agent in the
//! test receives the notify fd and the container's state over its unix socket
//! and answers the notified syscalls, for exprun and for runc on the same
//! bundle.

mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;

use common::bundle::{bundle, oci, remove_parent_cgroups, runc, runc_run, shim};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// What the agent saw: the state message and how many syscalls it answered.
struct Seen {
    message: serde_json::Value,
    answered: usize,
}

/// A seccomp agent: accept one connection, take the state and the notify fd,
/// then answer every notified syscall with success (without doing it) until
/// the container is gone.
fn agent(listener: UnixListener) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || serve(listener.accept().unwrap().0))
}

/// The agent's side of one connection.
fn serve(conn: UnixStream) -> Seen {
    {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
            let fd = msg.cmsgs().unwrap().find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            });
            (msg.bytes, fd.expect("no fd came with the state"))
        };
        // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
        let notify = unsafe { OwnedFd::from_raw_fd(fd) };
        let message = serde_json::from_slice(&buf[..len]).unwrap();
        let mut answered = 0;
        loop {
            let mut fds = [PollFd::new(notify.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(10_000u16)).unwrap() == 0 {
                break;
            }
            let revents = fds[0].revents().unwrap();
            if !revents.contains(PollFlags::POLLIN) {
                break; // POLLHUP: every task under the filter is gone
            }
            let Ok(req) = ScmpNotifReq::receive(notify.as_raw_fd()) else { break };
            let resp = ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::empty());
            if resp.respond(notify.as_raw_fd()).is_ok() {
                answered += 1;
            }
        }
        Seen { message, answered }
    }
}

fn edit(b: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    common::bundle::edit_for_runc(b, |cfg| {
        cfg["root"]["readonly"] = serde_json::json!(false);
        f(cfg)
    })
}

/// mkdir answered by the agent as done, though nothing was made.
const SCRIPT: &str = "mkdir /tmp/agent && echo made; ls -d /tmp/agent 2>/dev/null || echo absent";

fn check(who: &str, out: &str, seen: &Seen, status: &str, pid: Option<i32>) {
    assert_eq!(out.lines().collect::<Vec<_>>(), ["made", "absent"], "{who}: {out}");
    assert!(seen.answered >= 1, "{who}: the agent answered no syscall");
    let m = &seen.message;
    assert_eq!(m["fds"], serde_json::json!(["seccompFd"]), "{who}: {m}");
    assert_eq!(m["metadata"], "agent-metadata", "{who}: {m}");
    assert_eq!(m["state"]["status"], status, "{who}: {m}");
    assert!(m["state"]["bundle"].as_str().unwrap().ends_with("bundle"), "{who}: {m}");
    if let Some(pid) = pid {
        assert_eq!(
            (m["pid"].as_i64(), m["state"]["pid"].as_i64()),
            (Some(pid as i64), Some(pid as i64)),
            "{who}"
        );
    }
}

#[test]
fn a_seccomp_agent_gets_the_notify_fd_and_answers_syscalls() {
    let test = "a_seccomp_agent_gets_the_notify_fd_and_answers_syscalls";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", SCRIPT]);
    let log = work.join("log.json");
    let sock = work.join("agent.sock");
    let seccomp = |listener: bool| {
        let mut s = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        if listener {
            s["listenerPath"] = serde_json::json!(sock);
            s["listenerMetadata"] = serde_json::json!("agent-metadata");
        }
        s
    };
    // With no_new_privs the filter goes on after `start` (create has exited by
    // then); without, during create.
    for nnp in [true, false] {
        edit(&b, |cfg| {
            cfg["linux"]["seccomp"] = seccomp(true);
            cfg["process"]["noNewPrivileges"] = serde_json::json!(nnp);
        });
        let _ = std::fs::remove_file(&sock);
        let seen = agent(UnixListener::bind(&sock).unwrap());
        let id = format!("notify-{nnp}");
        let pid_file = b.join("init.pid");
        let mut create = r
            .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = create.stdout.take().unwrap();
        assert!(create.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
        assert_eq!(oci(r, &log, &["start", &id]).0, 0);
        let mut out = String::new();
        { stdout }.read_to_string(&mut out).unwrap();
        assert_eq!(waitpid(init, None).unwrap(), WaitStatus::Exited(init, 0), "{out}");
        check(&format!("exprun nnp={nnp}"), &out, &seen.join().unwrap(), "creating", Some(init.as_raw()));
        assert_eq!(oci(r, &log, &["delete", &id]).0, 0);
    }

    // An exec'd process gets the filter and connects to the agent too.
    edit(&b, |cfg| {
        cfg["linux"]["seccomp"] = seccomp(true);
        cfg["process"]["args"] = serde_json::json!(["sleep", "60"]);
    });
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let pid_file = b.join("init.pid");
    let st = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "ex"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init_conn = listener.accept().unwrap().0;
    let init_agent = std::thread::spawn(move || serve(init_conn));
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    assert_eq!(oci(r, &log, &["start", "ex"]).0, 0);
    let exec_agent = agent(listener);
    let (code, out, err) = oci(r, &log, &["exec", "ex", "sh", "-c", SCRIPT]);
    assert_eq!(code, 0, "{err}");
    check("exprun exec", &out, &exec_agent.join().unwrap(), "running", None);
    assert_eq!(oci(r, &log, &["kill", "ex", "KILL"]).0, 0);
    waitpid(init, None).unwrap();
    let seen = init_agent.join().unwrap();
    assert_eq!(seen.message["state"]["pid"].as_i64(), Some(init.as_raw() as i64));
    assert_eq!(oci(r, &log, &["delete", "ex"]).0, 0);
    edit(&b, |cfg| cfg["process"]["args"] = serde_json::json!(["sh", "-c", SCRIPT]));
    if let Some(runc) = runc(test) {
        let _ = std::fs::remove_file(&sock);
        let seen = agent(UnixListener::bind(&sock).unwrap());
        let (code, out, err) = runc_run(&runc, &work.join("runc-root"), &b, "notify");
        assert_eq!(code, 0, "runc: {err}");
        check("runc", &out, &seen.join().unwrap(), "creating", None);
    }

    // The spec requires listenerPath with SCMP_ACT_NOTIFY.
    edit(&b, |cfg| cfg["linux"]["seccomp"] = seccomp(false));
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "nolistener"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath"), "{err}");
    // A listener that is not there is named.
    edit(&b, |cfg| cfg["linux"]["seccomp"] = seccomp(true));
    let _ = std::fs::remove_file(&sock);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "noagent"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("listenerPath") && err.contains("agent.sock"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
