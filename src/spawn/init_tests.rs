use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;

use super::*;
use crate::rootfs::tests::{first, last, plan_fixture};
use crate::sys::{Call, RecordingKernel};

fn null() -> OwnedFd {
    File::open("/dev/null").unwrap().into()
}

/// Init's calls, from the first to execve, for the fixture plan with a
/// seccomp filter, a joined UTS namespace, a cgroup to join and a new cgroup
/// namespace.
fn init_calls(dir: &Path) -> Vec<Call> {
    init_calls_with(dir, None)
}

/// The same, exec'ing through the exec trampoline when given the channel's
/// fd to leave open for it.
fn init_calls_with(dir: &Path, channel_to_trampoline: Option<std::os::fd::RawFd>) -> Vec<Call> {
    let mut plan = plan_fixture(dir);
    plan.cgroup_ns = true;
    let (_parent, channel) = super::super::protocol::channel().unwrap();
    let fds = ChildFds {
        channel,
        cgroup_join: vec![null()],
        ns_join: vec![(File::open("/proc/self/ns/uts").unwrap().into(), libc::CLONE_NEWUTS as u64)],
        stdio: [null(), null(), null()],
        preserved: 0,
        console: None,
        die_with_parent: true,
        gate: StartGate::Channel,
        hook_state: std::cell::OnceCell::new(),
        agent: None,
        agent_message: std::cell::OnceCell::new(),
    };
    let filter = crate::seccomp::Filter {
        digest: crate::digest::Digest::of_bytes(b""),
        program: vec![0; 8],
        flags: 0,
        listener: None,
        allows_exec_trampoline: false,
    };
    let k = RecordingKernel::default();
    let exe = setup(&k, Role::Init(&plan), &plan.process, Some(&filter), &fds)
        .unwrap_or_else(|e| panic!("{}: {}", e.step, e.error));
    let call = sys::PreparedExec::new(&exe, &plan.process.args, &plan.process.env).unwrap();
    let failed = exec_steps(&k, &call, Some(&filter), &fds, channel_to_trampoline);
    assert!(matches!(failed, ExecFailure::Errno(libc::ENOSYS)));
    k.calls()
}

#[test]
fn no_new_privs_comes_before_seccomp_and_only_execve_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let calls = init_calls(dir.path());
    let nnp = first(&calls, "no_new_privs", |c| matches!(c, Call::NoNewPrivs));
    let seccomp = first(&calls, "seccomp", |c| matches!(c, Call::Seccomp));
    assert!(nnp < seccomp, "no_new_privs at {nnp} after seccomp at {seccomp}: {calls:#?}");
    assert_eq!(&calls[seccomp..], [Call::Seccomp, Call::Execve], "after the filter: {calls:#?}");
    for (what, i) in [
        ("the signal reset", first(&calls, "signal reset", |c| matches!(c, Call::ResetSignals))),
        ("close-on-exec", first(&calls, "close-on-exec", |c| matches!(c, Call::CloexecFrom(3)))),
    ] {
        assert!(i < seccomp, "{what} at {i} after the filter at {seccomp}: {calls:#?}");
    }
}

#[test]
fn the_channel_is_left_open_for_the_trampoline_before_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let calls = init_calls_with(dir.path(), Some(42));
    let cloexec = first(&calls, "close-on-exec", |c| matches!(c, Call::CloexecFrom(3)));
    let kept = first(&calls, "the channel kept", |c| matches!(c, Call::KeepOnExec(42, 1)));
    let seccomp = first(&calls, "seccomp", |c| matches!(c, Call::Seccomp));
    assert!(cloexec < kept && kept < seccomp, "{calls:#?}");
    assert_eq!(&calls[seccomp..], [Call::Seccomp, Call::Execve], "after the filter: {calls:#?}");
}

#[test]
fn the_hostname_is_set_in_the_joined_uts_namespace_and_the_cgroup_joined_before_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let calls = init_calls(dir.path());
    let uts =
        first(&calls, "setns(UTS)", |c| matches!(c, Call::Setns(f) if f.contains(CloneFlags::CLONE_NEWUTS)));
    let hostname = first(&calls, "sethostname", |c| matches!(c, Call::Sethostname(h) if h == "box"));
    assert!(uts < hostname, "hostname at {hostname} before the UTS namespace at {uts}: {calls:#?}");
    let join = first(&calls, "cgroup join", |c| matches!(c, Call::JoinCgroup));
    let cgroupns = first(
        &calls,
        "unshare(CGROUP)",
        |c| matches!(c, Call::Unshare(f) if f.contains(CloneFlags::CLONE_NEWCGROUP)),
    );
    assert!(join < cgroupns, "cgroup namespace at {cgroupns} before the cgroup join at {join}: {calls:#?}");
}

#[test]
fn credentials_change_groups_then_gid_then_uid_then_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let calls = init_calls(dir.path());
    let order = [
        ("rlimits", first(&calls, "setrlimit", |c| matches!(c, Call::Setrlimit(_)))),
        ("setgroups", first(&calls, "setgroups", |c| matches!(c, Call::Setgroups(_)))),
        ("setresgid", first(&calls, "setresgid", |c| matches!(c, Call::Setresgid(_)))),
        ("the bounding set", first(&calls, "bounding set", |c| matches!(c, Call::DropBounding))),
        ("setresuid", first(&calls, "setresuid", |c| matches!(c, Call::Setresuid(_)))),
        ("capabilities", first(&calls, "capabilities", |c| matches!(c, Call::SetCaps))),
        ("non-dumpable again", last(&calls, "non-dumpable", |c| matches!(c, Call::NotDumpable))),
        ("no_new_privs", first(&calls, "no_new_privs", |c| matches!(c, Call::NoNewPrivs))),
    ];
    for pair in order.windows(2) {
        let ((a, i), (b, j)) = (pair[0], pair[1]);
        assert!(i < j, "{a} at {i} is not before {b} at {j}: {calls:#?}");
    }
    let pivot = first(&calls, "pivot_root", |c| matches!(c, Call::PivotRoot(..)));
    assert!(pivot < order[0].1, "privileges dropped at {} before pivot_root at {pivot}", order[0].1);
    let cwd = last(&calls, "fchdir into the working directory", |c| matches!(c, Call::Fchdir(_)));
    assert!(order[7].1 < cwd, "the working directory at {cwd} entered before no_new_privs: {calls:#?}");
}
