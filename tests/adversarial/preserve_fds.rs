//! `--preserve-fds` asking for descriptors exprun was not given: a huge
//! count, a negative one, and a count past the fds that are open. Each is
//! refused with a message naming the flag and the first missing fd, before
//! the process runs: a missing fd could otherwise be filled by one of exprun's
//! own (its state directory, the container's cgroup, a pidfd).

use std::process::Stdio;

use nix::sys::wait::waitpid;

use crate::common::bundle::{bundle, oci, outcome, run_detached, shim};
use crate::host::{Marker, Snapshot};

#[test]
fn preserve_fds_beyond_the_open_ones_or_negative_is_refused() {
    let Some(t) = shim("preserve_fds_beyond_the_open_ones_or_negative_is_refused") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    let log = work.join("log.json");
    let pid_file = work.join("init.pid");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // run and create first: nothing may be made.
    for verb in ["run", "create"] {
        let (code, out, err) =
            oci(r, &log, &[verb, "--preserve-fds", "1000000", "-b", b.to_str().unwrap(), "p"]);
        assert_eq!(code, 125, "{verb}: {out}\n{err}");
        assert!(
            err.contains("--preserve-fds 1000000: fd 3 is not open; pass fds 3 to 1000002"),
            "{verb}: {err}"
        );
    }
    let init = run_detached(r, &b, &pid_file, "c");
    let exec = |n: &str, with_fd3: bool| {
        let mut cmd = r.command(&["exec", n, "c", "sh", "-c", "echo ran; readlink /proc/$$/fd/3"]);
        let args: Vec<_> = std::iter::once(cmd.get_program().to_owned())
            .chain(cmd.get_args().map(|a| a.to_owned()))
            .collect();
        // fd 3 open (or not) in the caller, from a shell.
        let redirect = if with_fd3 { "exec 3</dev/null; " } else { "" };
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(format!("{redirect}exec \"$@\"")).arg("sh").args(args);
        sh.env_clear().envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
        cmd = sh;
        outcome(cmd.stdin(Stdio::null()).output().unwrap())
    };
    let cases = [
        ("--preserve-fds=1000000", false, "--preserve-fds 1000000: fd 3 is not open; pass fds 3 to 1000002"),
        ("--preserve-fds=4294967295", true, "--preserve-fds 4294967295: fd 4 is not open"),
        ("--preserve-fds=2", true, "--preserve-fds 2: fd 4 is not open; pass fds 3 to 4"),
        ("--preserve-fds=-1", true, "invalid value '-1' for '--preserve-fds <N>'"),
        (
            "--preserve-fds=18446744073709551616",
            true,
            "invalid value '18446744073709551616' for '--preserve-fds <N>'",
        ),
    ];
    for (arg, with_fd3, says) in cases {
        let (code, out, err) = exec(arg, with_fd3);
        assert_eq!(code, 125, "{arg} was not refused: {out}\n{err}");
        assert!(!out.contains("ran"), "{arg}: the process ran: {out}");
        assert!(err.contains(says), "{arg}: {err}");
    }
    // The control: one open fd passed is taken.
    let (code, out, err) = exec("--preserve-fds=1", true);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ran\n") && out.lines().any(|l| l == "/dev/null"), "{out}");
    assert_eq!(oci(r, &log, &["kill", "c", "KILL"]).0, 0);
    waitpid(init, None).unwrap();
    let (code, _, err) = oci(r, &log, &["delete", "c"]);
    assert_eq!(code, 0, "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "--preserve-fds beyond the open fds");
    r.assert_no_leftovers();
}
