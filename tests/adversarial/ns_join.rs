//! A hostile bundle that joins a namespace by a path that is not one: a
//! regular file, a directory, `/proc/self/ns/../..` (that is, /proc), or a
//! symlink swapped from a namespace file of the right type to one of another
//! type. Each is refused by name before anything is made; setns would only
//! fail after the clone, with a bare EINVAL.

use crate::common::bundle::{bundle, oci, shim};
use crate::host::{Marker, Snapshot};

#[test]
fn joining_a_namespace_by_a_path_that_is_not_one_is_refused_by_name() {
    let Some(t) = shim("joining_a_namespace_by_a_path_that_is_not_one_is_refused_by_name") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let regular = work.join("regular");
    std::fs::write(&regular, "not a namespace\n").unwrap();
    let dir = work.join("dir");
    std::fs::create_dir(&dir).unwrap();
    let link = work.join("ns-link");
    let cfg_path = b.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let log = work.join("log.json");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // (config type, /proc/self/ns name, a namespace of another type)
    for (kind, own, other) in [("mount", "mnt", "net"), ("pid", "pid", "mnt"), ("network", "net", "uts")] {
        let cases = [
            (regular.display().to_string(), "is not a namespace"),
            (dir.display().to_string(), "is not a namespace"),
            ("/proc/self/ns/../..".to_string(), "is not a namespace (/proc)"),
            (link.display().to_string(), "is a namespace of another type"),
        ];
        for (path, says) in cases {
            // The link first names a namespace of the right type (of a live
            // process), then is swapped to another type's before create.
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("/proc/self/ns/{own}"), &link).unwrap();
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(format!("/proc/self/ns/{other}"), &link).unwrap();
            let mut cfg = base.clone();
            let nss = cfg["linux"]["namespaces"].as_array_mut().unwrap();
            nss.retain(|n| n["type"] != kind);
            nss.push(serde_json::json!({"type": kind, "path": path}));
            std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
            let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "join"]);
            assert_eq!(code, 125, "{kind} {path} was not refused: {out}\n{err}");
            let named = format!("({kind}) path source {path}: {says}");
            assert!(
                err.contains(&named) && err.contains(&format!("/proc/<pid>/ns/{own}")),
                "{kind} {path}: {err}"
            );
        }
    }
    Snapshot::take(&marker, &[r.path()])
        .assert_same_as(&before, "joining a namespace by a path that is not one");
    r.assert_no_leftovers();
}
