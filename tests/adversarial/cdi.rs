//! CDI specs as an attacker would write them: container paths that climb out
//! of the root or go through the container's /proc to the host's, and a spec
//! directory someone else can write (whose hooks would run on the host as
//! root). Each must be refused, or land inside the container, with the host
//! unchanged.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

fn spec_dir(spec: &serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("evil.json"), serde_json::to_vec(spec).unwrap()).unwrap();
    dir
}

fn run(r: &TestRoot, dir: &Path, script: &str) -> (i32, String, String) {
    let d = dir.display().to_string();
    let out = r.exprun(
        &[
            "--cdi-spec-dir",
            &d,
            "run",
            "--device",
            "evil.com/x=0",
            "busybox:latest",
            "--",
            "sh",
            "-c",
            script,
        ],
        None,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spec(edits: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"cdiVersion": "0.6.0", "kind": "evil.com/x", "devices": [{"name": "0", "containerEdits": edits}]})
}

#[test]
fn cdi_container_paths_stay_inside_the_root() {
    if !privileged("cdi_container_paths_stay_inside_the_root") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("secret"), "attacker\n").unwrap();
    let before = Snapshot::take(&marker, &[r.path()]);
    let m = marker.path().display().to_string();
    let s = src.path().display().to_string();
    // Refused when the spec is read, naming the file and field.
    for (edits, field) in [
        (
            serde_json::json!({"deviceNodes": [{"path": format!("/dev/../..{m}/node"), "hostPath": "/dev/null"}]}),
            "devices[0].containerEdits.deviceNodes[0].path",
        ),
        (
            serde_json::json!({"mounts": [{"hostPath": s, "containerPath": format!("/../..{m}")}]}),
            "devices[0].containerEdits.mounts[0].containerPath",
        ),
        (
            serde_json::json!({"deviceNodes": [{"path": "/etc/shadow", "hostPath": "/dev/null"}]}),
            "not a path under /dev",
        ),
    ] {
        let dir = spec_dir(&spec(edits));
        let (code, out, err) = run(&r, dir.path(), "true");
        assert_eq!(code, 125, "{out}{err}");
        assert!(err.contains("evil.json") && err.contains(field), "{field}: {err}");
    }
    // Through the container's /proc (a magic link to the host's root before
    // pivot_root) and through /dev/fd: refused by the plan or kept inside.
    for target in [format!("/proc/self/root{m}"), format!("/proc/1/root{m}"), format!("/dev/fd/..{m}")] {
        let edits = serde_json::json!({"mounts": [{"hostPath": s, "containerPath": target, "options": ["rbind", "rw"]}]});
        let dir = spec_dir(&spec(edits));
        let (code, out, err) =
            run(&r, dir.path(), &format!("cat {target}/secret 2>&1; echo pwned > {target}/secret"));
        assert!(code == 125 || !out.contains("host marker"), "{target}: {code} {out}{err}");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "CDI container paths out of the root");
    r.assert_no_leftovers();
}

#[test]
fn a_cdi_spec_someone_else_can_write_runs_no_hook() {
    if !privileged("a_cdi_spec_someone_else_can_write_runs_no_hook") {
        return;
    }
    let r = TestRoot::with_busybox();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let hook = serde_json::json!({"hooks": [{"hookName": "createRuntime", "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo pwned > {}/secret", marker.path().display())]}]});
    let dir = spec_dir(&spec(hook));
    let file = dir.path().join("evil.json");
    // A file of another user's; a directory of another user's; a world-writable file.
    for (path, owner, mode, want) in [
        (file.clone(), Some(65534), 0o644, "owned by uid 65534"),
        (dir.path().to_path_buf(), Some(65534), 0o755, "owned by uid 65534"),
        (file.clone(), Some(0), 0o646, "anyone can write it"),
    ] {
        std::os::unix::fs::chown(&path, owner, None).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, out, err) = run(&r, dir.path(), "true");
        assert_eq!(code, 125, "{out}{err}");
        assert!(err.contains(&path.display().to_string()) && err.contains(want), "{want}: {err}");
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        let reset = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(reset)).unwrap();
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a CDI spec others can write");
    r.assert_no_leftovers();
}
