//! What an unprivileged user running exprun already cannot do to the host:
//! write root's files through a volume, or get root from a layer's
//! setuid-root binary (the import gives every file to the user).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use tar::EntryType;

use crate::common::rootless::Home;
use crate::common::{fixture_dir, privileged};
use crate::host::{Marker, Snapshot};
use crate::image::{layer, layout, Entry, Lie};

/// A static program that prints its effective uid.
fn euid_program(dir: &std::path::Path) -> Vec<u8> {
    let src = dir.join("euid.c");
    std::fs::write(&src, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n")
        .unwrap();
    let bin = dir.join("euid");
    let cc = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src).status();
    assert!(cc.unwrap().success(), "gcc failed");
    std::fs::read(bin).unwrap()
}

#[test]
fn a_rootless_user_gains_nothing_on_the_host() {
    if !privileged("a_rootless_user_gains_nothing_on_the_host (needs root to make the user)") {
        return;
    }
    let h = Home::new();
    // Root's files, readable by all, as a user sees most of the host.
    let marker = Marker::new();
    for d in [marker.path(), &marker.path().join("sub")] {
        std::fs::set_permissions(d, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let suid = Entry {
        path: "suid-euid".into(),
        kind: EntryType::Regular,
        link: None,
        data: euid_program(work.path()),
        mode: 0o4755,
    };
    let src = layout(&work.path().join("suid-oci"), &layer(&[suid]), Lie::None);
    for (name, from) in [("busybox:latest", fixture_dir().join("busybox-oci")), ("suid:latest", src)] {
        let (code, _, err) = h.exprun(&["image", "import", "--name", name, from.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
    }
    let before = Snapshot::take(&marker, &[&h.root()]);

    // Container root is the user: root's files stay root's.
    let volume = format!("{}:/x", marker.path().display());
    let (code, out, err) = h.exprun(&[
        "run",
        "--no-limits",
        "-v",
        &volume,
        "busybox:latest",
        "sh",
        "-c",
        "echo pwned >> /x/secret; echo append=$?; touch /x/new; echo create=$?; \
         chmod 666 /x/secret; echo chmod=$?; chown 0:0 /x/sub/file; echo chown=$?; \
         rm /x/sub/file; echo rm=$?; ls -n /x/secret | awk '{print \"owner=\" $3}'",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["append=1", "create=1", "chmod=1", "chown=1", "rm=1", "owner=65534"],
        "{err}"
    );
    assert!(err.contains("Permission denied") || err.contains("Operation not permitted"), "{err}");

    // The layer's setuid-root binary belongs to the user in the store, and run
    // on the host by the user it is the user.
    let layers = h.root().join("store/layers");
    let found: Vec<_> = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("suid-euid"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let meta = std::fs::metadata(&found[0]).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (h.uid, h.gid), "a layer file owned by another than the user");
    let out = h.command(&found[0], &[]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", h.uid), "{out:?}");

    Snapshot::take(&marker, &[&h.root()]).assert_same_as(&before, "rootless writes and setuid");
    h.assert_no_leftovers();
}
