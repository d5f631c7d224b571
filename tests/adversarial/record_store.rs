//! The objects a record names (`runs/.objects/sha256/<hex>`) replaced by
//! someone who can write the state root: a symlink to a host file, a fifo, a
//! file whose content is not its name's, a huge file. Every reader refuses
//! the record by name, waits on nothing, follows no link, reads no more than
//! the record size limit, and the host is left as it was.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A root with one run of `true` named `victim`: the root, the run id and
/// its spec object's path.
fn victim() -> (TestRoot, String, PathBuf) {
    let r = TestRoot::with_busybox();
    let (code, _, err) = r.run(&["--name", "victim", "busybox:latest", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let id = r.last_record()["run_id"].as_str().unwrap().to_string();
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("runs").join(&id).join("record.json")).unwrap())
            .unwrap();
    let hex = raw["spec"]["$object"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let path = r.path().join("runs/.objects/sha256").join(hex);
    assert!(path.is_file());
    (r, id, path)
}

/// Every reader of the record refuses it with `want` in its message, each
/// within a few seconds (nothing waits on a fifo).
fn refused_by_every_reader(r: &TestRoot, want: &str) {
    for args in [
        &["runs", "show", "victim"][..],
        &["runs", "show", "victim", "--json"],
        &["runs", "export", "victim", "--format", "ro-crate"],
        &["runs", "diff", "victim", "victim"],
        &["replay", "victim", "--dry-run"],
    ] {
        let t = Instant::now();
        let o = r.exprun(args, None);
        assert!(t.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t.elapsed());
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn an_object_swapped_for_a_symlink_or_a_fifo_is_not_followed_or_waited_on() {
    if !privileged("an_object_swapped_for_a_symlink_or_a_fifo_is_not_followed_or_waited_on") {
        return;
    }
    let (r, id, object) = victim();
    let marker = Marker::new();
    // A host file holding exactly what the object held: only the link is wrong.
    let copy = marker.path().join("spec-copy");
    std::fs::copy(&object, &copy).unwrap();
    let before = Snapshot::take(&marker, &[r.path()]);
    std::fs::remove_file(&object).unwrap();
    std::os::unix::fs::symlink(&copy, &object).unwrap();
    refused_by_every_reader(&r, &format!("run {id}: object {} is a symbolic link", object.display()));
    std::fs::remove_file(&object).unwrap();
    nix::unistd::mkfifo(&object, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    refused_by_every_reader(&r, &format!("run {id}: object {} is not a regular file", object.display()));
    // runs ls still lists the run (from the index) and rm removes it and the fifo.
    let ls = r.exprun(&["runs", "ls"], None);
    assert_eq!(ls.status.code(), Some(0), "{}", stderr(&ls));
    let rm = r.exprun(&["runs", "rm", "victim"], None);
    assert_eq!(rm.status.code(), Some(0), "{}", stderr(&rm));
    assert!(std::fs::symlink_metadata(&object).is_err(), "the fifo named by no record went");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "an object swapped for a symlink or fifo");
    r.assert_no_leftovers();
}

#[test]
fn an_object_whose_content_is_not_its_name_is_refused() {
    if !privileged("an_object_whose_content_is_not_its_name_is_refused") {
        return;
    }
    let (r, id, object) = victim();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let ls = |r: &TestRoot| {
        let o = r.exprun(&["runs", "ls"], None);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o))
    };
    assert!(ls(&r).0.contains("victim"), "the index is made");
    // Valid JSON of a spec that would run something else, under the old name.
    let text = std::fs::read_to_string(&object).unwrap();
    std::fs::write(&object, text.replace(r#""args":["true"]"#, r#""args":["sh","-c","echo pwned"]"#))
        .unwrap();
    let want = format!("run {id}: object {} does not match its name", object.display());
    refused_by_every_reader(&r, &want);
    // The index line was written with the record: ls lists what ran.
    let (out, _) = ls(&r);
    assert!(out.contains("victim") && out.contains(" true") && !out.contains("pwned"), "{out}");
    // Rebuilt from the records, the index leaves it out, and ls says why.
    std::fs::remove_file(r.path().join("runs/.index")).unwrap();
    let (out, err) = ls(&r);
    assert!(!out.contains("victim"), "{out}");
    assert!(err.contains(&want), "{err}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "an object with other content");
    r.assert_no_leftovers();
}

#[test]
fn a_huge_object_is_refused_before_it_is_read() {
    if !privileged("a_huge_object_is_refused_before_it_is_read") {
        return;
    }
    let (r, _, object) = victim();
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    // 300 MiB that cost no disk, over the 256 MiB record limit.
    std::fs::OpenOptions::new().write(true).open(&object).unwrap().set_len(300 << 20).unwrap();
    refused_by_every_reader(&r, &format!("record {} is ", object.display()));
    refused_by_every_reader(&r, "over the 256.0 MiB limit on run records");
    // Under a lower limit, a record that fits no longer does with its objects.
    std::fs::OpenOptions::new().write(true).open(&object).unwrap().set_len(0).unwrap();
    std::fs::write(&object, vec![b' '; 40 << 10]).unwrap();
    let o = r.command(&["runs", "show", "victim"]).env("EXPRUN_MAX_RECORD_SIZE", "32k").output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("record {} is ", object.display())) && err.contains("limit on run records"),
        "{err}"
    );
    let rm = r.exprun(&["runs", "rm", "victim"], None);
    assert_eq!(rm.status.code(), Some(0), "{}", stderr(&rm));
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a huge object");
    r.assert_no_leftovers();
}
