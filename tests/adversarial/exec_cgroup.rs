//! `exec --cgroup` naming a cgroup outside the container's: `..` steps, an
//! absolute path, the hierarchy's root, a controller-qualified `..`. Each is
//! refused, the process never runs, and no cgroup is made anywhere: exec
//! joins an existing sub-cgroup of the container's, it makes none.

use std::path::{Path, PathBuf};

use nix::sys::wait::waitpid;

use crate::common::bundle::{bundle, oci, parent_cgroup, run_detached, shim};
use crate::host::{Marker, Snapshot};

/// Every directory below `dir`, `dir` included.
fn tree(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            tree(&e.path(), out);
        }
    }
}

/// The cgroups an escape could make: the test's parent cgroup tree in every
/// hierarchy, and the names the attacks use at each hierarchy's top.
fn cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        tree(&h.path().join(parent_cgroup()), &mut out);
        for name in ["x", "abs", "escaped"] {
            let p = h.path().join(name);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out.retain(|p| p.exists());
    out.sort();
    out
}

#[test]
fn exec_cgroup_outside_the_containers_is_refused_and_makes_none() {
    let Some(t) = shim("exec_cgroup_outside_the_containers_is_refused_and_makes_none") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sleep", "60"]);
    let log = work.join("log.json");
    let pid_file = work.join("init.pid");
    let init = run_detached(r, &b, &pid_file, "c");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let cgroups_before = cgroups();
    let up = "the path must stay inside the container's cgroup (no ..)";
    // A controller named on cgroup v2 (one hierarchy) is refused as such.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let one = "cgroup v2 has one hierarchy";
    let cases = [
        ("../../x", up),
        ("../..", up),
        ("x/../../..", up),
        ("memory:../..", up),
        ("memory,cpu:..", up),
        ("memory:../escaped", up),
        ("/", "give a sub-cgroup of the container's"),
        ("memory:/", "give a sub-cgroup of the container's"),
        (".", "give a sub-cgroup of the container's"),
        // Absolute is taken inside the container's cgroup, where it must exist.
        ("/abs", "abs does not exist (exec joins a cgroup, it makes none)"),
        ("memory:/abs", if v2 { one } else { "abs does not exist (exec joins a cgroup, it makes none)" }),
        ("devices:x", if v2 { one } else { "the container has no \"devices\" cgroup" }),
    ];
    for (arg, says) in cases {
        let (code, out, err) = oci(r, &log, &["exec", "--cgroup", arg, "c", "sh", "-c", "echo ran"]);
        assert_eq!(code, 125, "--cgroup {arg} was not refused: {out}\n{err}");
        assert!(!out.contains("ran"), "--cgroup {arg}: the process ran: {out}");
        assert!(err.contains(&format!("--cgroup \"{arg}\"")) && err.contains(says), "--cgroup {arg}: {err}");
        assert_eq!(cgroups(), cgroups_before, "--cgroup {arg} changed the cgroups");
    }
    assert_eq!(oci(r, &log, &["kill", "c", "KILL"]).0, 0);
    waitpid(init, None).unwrap();
    let (code, _, err) = oci(r, &log, &["delete", "c"]);
    assert_eq!(code, 0, "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "exec --cgroup outside the container's");
    r.assert_no_leftovers();
}
