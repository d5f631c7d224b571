#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Mounts as the runtime spec (1.2) has them, checked in the kernel's
//! mountinfo and, where runc 1.1.5 is installed, against runc on the same
//! bundle: options exprun does not know, recursive attributes,
//! `linux.rootfsPropagation`, mount points made several levels deep, a
//! read-only root in a user namespace, and the `linux.devices` of a
//! privileged pod.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::bundle::{bundle, edit_for_runc as edit, oci, remove_parent_cgroups, shim};
use common::rootless::{rootless_bundle, Home};

/// A tmpfs the test mounts (with `opts`) and unmounts, with what is below it,
/// when it is dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: &Path, opts: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", opts, "exprun-test"]).arg(dir).status();
        assert!(st.unwrap().success());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

/// runc, when installed: `runc --root R run -b B ID` (status, stdout, stderr).
fn runc(root: &Path, b: &Path, id: &str) -> Option<(i32, String, String)> {
    let runc = common::bundle::runc("oci_mounts")?;
    Some(common::bundle::runc_run(&runc, root, b, id))
}

/// `mount point -> per-mount options` of mountinfo lines, in order.
fn mount_options(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f.get(4)?.to_string(), f.get(5)?.to_string()))
        })
        .collect()
}

/// The host's mountinfo lines that name `path` or a path below it.
fn host_mounts_under(path: &Path) -> Vec<String> {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m == p || m.starts_with(&format!("{p}/"))))
        .map(str::to_string)
        .collect()
}

#[test]
fn unknown_options_are_data_and_recursive_attributes_apply_below_as_with_runc() {
    let Some(t) = shim("unknown_options_are_data_and_recursive_attributes_apply_below_as_with_runc") else {
        return;
    };
    let (r, work) = (&t.r, t.work.path());
    let vol = work.join("vol");
    std::fs::create_dir(&vol).unwrap();
    let _sub = Tmpfs::new(&vol.join("sub"), "mode=755");
    let b = bundle(work, &["sh", "-c", "grep ' /vol' /proc/self/mountinfo"]);
    let log = b.join("log.json");
    edit(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/vol", "type": "bind", "source": vol,
            "options": ["rbind", "mode=755", "uid=0", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime"]
        }))
    });
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "m1"]);
    assert_eq!(code, 0, "{err}");
    let got = mount_options(&out);
    let points: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(points, ["/vol", "/vol/sub"], "{out}");
    for (point, opts) in &got {
        let opts: Vec<&str> = opts.split(',').collect();
        for want in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
            assert!(opts.contains(&want), "{point} lacks {want}: {opts:?}");
        }
    }
    if let Some((code, runc_out, err)) = runc(&work.join("runc"), &b, "m1-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(got, mount_options(&runc_out), "exprun and runc disagree");
    }

    // Neither a flag nor data that mount(2) can take: refused, naming the mount.
    for (opt, says) in [("mode 755", "white space"), ("idmap", "id-mapped")] {
        edit(&b, |c| {
            c["mounts"].as_array_mut().unwrap().last_mut().unwrap()["options"] =
                serde_json::json!(["rbind", opt])
        });
        let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "bad"]);
        assert_eq!(code, 125, "{opt}: {err}");
        assert!(err.contains("mount /vol") && err.contains(says), "{err}");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn mount_points_several_levels_deep_are_made_inside_the_root_as_with_runc() {
    let Some(t) = shim("mount_points_several_levels_deep_are_made_inside_the_root_as_with_runc") else {
        return;
    };
    let (r, work) = (&t.r, t.work.path());
    let host_file = work.join("host-file");
    std::fs::write(&host_file, "from the host\n").unwrap();
    let script =
        "awk '$5 ~ /^\\/(deep|file)/ { print $5 }' /proc/self/mountinfo; stat -f -c %T /deep/a/b/c; \
                  stat -c '%n %F' /deep /deep/a /deep/a/b /deep/a/b/c /file/x /file/x/y; cat /file/x/y";
    let b = bundle(work, &["sh", "-c", script]);
    let log = b.join("log.json");
    edit(&b, |c| {
        c["mounts"].as_array_mut().unwrap().extend([
            serde_json::json!({"destination": "/deep/a/b/c", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "size=64k"]}),
            serde_json::json!({"destination": "/file/x/y", "type": "bind", "source": host_file,
                               "options": ["bind", "ro"]}),
        ])
    });
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "deep"]);
    assert_eq!(code, 0, "{err}");
    let want = "/deep/a/b/c\n/file/x/y\ntmpfs\n/deep directory\n/deep/a directory\n/deep/a/b directory\n\
                /deep/a/b/c directory\n/file/x directory\n/file/x/y regular file\nfrom the host\n";
    assert_eq!(out, want, "{err}");
    // Made in the bundle's root, and nothing of them mounted on the host.
    assert!(b.join("rootfs/deep/a/b/c").is_dir() && b.join("rootfs/file/x/y").is_file());
    assert_eq!(host_mounts_under(work), Vec::<String>::new());
    if let Some((code, runc_out, err)) = runc(&work.join("runc"), &b, "deep-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, runc_out, "exprun and runc disagree");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn rnorelatime_leaves_the_kernels_relatime_as_with_runc() {
    let Some(t) = shim("rnorelatime_leaves_the_kernels_relatime_as_with_runc") else { return };
    let (r, work) = (&t.r, t.work.path());
    let _vol = Tmpfs::new(&work.join("vol"), "mode=755");
    let b = bundle(work, &["sh", "-c", "grep ' /vol ' /proc/self/mountinfo"]);
    let log = b.join("log.json");
    edit(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/vol", "type": "bind", "source": work.join("vol"),
            "options": ["rbind", "rnorelatime"]
        }))
    });
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "rel"]);
    assert_eq!(code, 0, "{err}");
    let got = mount_options(&out);
    assert_eq!(got.len(), 1, "{out}");
    assert!(got[0].1.split(',').any(|o| o == "relatime"), "exprun: {out}");
    if let Some((code, runc_out, err)) = runc(&work.join("runc"), &b, "rel-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(got, mount_options(&runc_out), "exprun and runc disagree");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn rshared_root_propagation_sends_a_container_mount_to_the_host_and_nothing_of_exprun_s() {
    let Some(t) =
        shim("rshared_root_propagation_sends_a_container_mount_to_the_host_and_nothing_of_exprun_s")
    else {
        return;
    };
    let r = &t.r;
    // The bundle and the Bidirectional volume each on a shared mount, as on a
    // systemd host where every mount is shared.
    let shared_tmpfs = |name: &str| {
        let fs = Tmpfs::new(&t.work.path().join(name), "mode=755");
        assert!(Command::new("mount").arg("--make-shared").arg(&fs.0).status().unwrap().success());
        fs
    };
    let (bundles, volume) = (shared_tmpfs("bundles"), shared_tmpfs("vol"));
    let (shared, vol) = (bundles.0.clone(), volume.0.clone());
    std::fs::create_dir(vol.join("in")).unwrap();
    let b = bundle(
        &shared,
        &["sh", "-c", "mount -t tmpfs from-container /mnt/in && awk '$5==\"/\"' /proc/self/mountinfo"],
    );
    let log = t.work.path().join("log.json");
    let set = |propagation: Option<&str>| {
        edit(&b, |c| {
            match propagation {
                Some(p) => c["linux"]["rootfsPropagation"] = p.into(),
                None => drop(c["linux"].as_object_mut().unwrap().remove("rootfsPropagation")),
            }
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
            }
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["destination"] != "/mnt");
            mounts.push(serde_json::json!(
                {"destination": "/mnt", "type": "bind", "source": vol, "options": ["rbind", "rshared"]}
            ));
        })
    };
    let inner = vol.join("in");
    let rootfs = b.join("rootfs");
    let umount_inner = || {
        while !host_mounts_under(&inner).is_empty() {
            assert!(Command::new("umount").arg(&inner).status().unwrap().success());
        }
    };

    set(Some("rshared"));
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "p1"]);
    assert_eq!(code, 0, "{err}");
    let seen = host_mounts_under(&inner);
    assert!(seen.len() == 1 && seen[0].contains("from-container"), "the host does not see it: {seen:?}");
    assert!(out.contains("shared:"), "the container's root is not shared: {out}");
    assert_eq!(host_mounts_under(&rootfs), Vec::<String>::new(), "exprun's own mounts reached the host");
    umount_inner();
    if let Some((code, _, err)) = runc(&t.work.path().join("runc"), &b, "p1-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(host_mounts_under(&inner).len(), 1, "runc sends it to the host too");
        umount_inner();
    }

    // The default, rslave: the container sees the host's mounts, sends none.
    set(None);
    let (code, _, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "p2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(host_mounts_under(&inner), Vec::<String>::new(), "a slave root sent a mount to the host");

    set(Some("unbindable"));
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "p3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unbindable"), "{out}");
    umount_inner();

    set(Some("both-ways"));
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "bad"]);
    assert_eq!(code, 125);
    assert!(err.contains("linux.rootfsPropagation") && err.contains("both-ways"), "{err}");
    assert_eq!(host_mounts_under(&rootfs), Vec::<String>::new());
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// The container's root line in mountinfo: its per-mount options, and whether
/// `/` could be written.
const ROOT_PROBE: &str = "awk '$5==\"/\" {print $6}' /proc/self/mountinfo; touch /probe 2>/dev/null && echo writable || echo read-only";

#[test]
fn a_read_only_root_in_a_user_namespace_keeps_the_locked_flags_as_with_runc() {
    let Some(t) = shim("a_read_only_root_in_a_user_namespace_keeps_the_locked_flags_as_with_runc") else {
        return;
    };
    let r = &t.r;
    // The bundle on a nosuid,nodev,noatime mount of the host's: in the
    // container's user namespace the kernel locks those flags.
    let locked = t.work.path().join("locked");
    let _fs = Tmpfs::new(&locked, "nosuid,nodev,noatime,mode=755");
    let b = bundle(&locked, &["sh", "-c", ROOT_PROBE]);
    let log = t.work.path().join("log.json");
    edit(&b, |c| {
        c["root"]["readonly"] = true.into();
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        // gid 5 is not mapped, and the cgroup mount needs the cgroup namespace's owner.
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/pts") {
            m["options"].as_array_mut().unwrap().retain(|o| o != "gid=5");
        }
    });
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "u1"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let opts: Vec<&str> = lines.next().unwrap().split(',').collect();
    for want in ["ro", "nosuid", "nodev", "noatime"] {
        assert!(opts.contains(&want), "{want} missing: {opts:?}");
    }
    assert_eq!(lines.next(), Some("read-only"));
    if let Some((code, runc_out, err)) = runc(&t.work.path().join("runc"), &b, "u1-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, runc_out, "exprun and runc disagree");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_rootless_read_only_root_on_a_nosuid_nodev_noatime_mount_starts() {
    if !common::privileged(
        "a_rootless_read_only_root_on_a_nosuid_nodev_noatime_mount_starts (needs root to make the user)",
    ) {
        return;
    }
    let h = Home::new();
    // In the user's home, which the user can reach.
    let locked = h.path().join("locked");
    let fs = Tmpfs::new(&locked, "nosuid,nodev,noatime,mode=755");
    let b = rootless_bundle(&h, &locked, &["sh", "-c", ROOT_PROBE]);
    edit(&b, |c| c["root"]["readonly"] = true.into());
    let root = h.path().join("oci");
    let (code, out, err) =
        h.exprun(&["--root", root.to_str().unwrap(), "run", "-b", b.to_str().unwrap(), "ro"]);
    drop(fs);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let opts: Vec<&str> = lines.next().unwrap().split(',').collect();
    for want in ["ro", "nosuid", "nodev", "noatime"] {
        assert!(opts.contains(&want), "{want} missing: {opts:?}");
    }
    assert_eq!(lines.next(), Some("read-only"));
    let live: Vec<_> = std::fs::read_dir(root.join("containers")).into_iter().flatten().flatten().collect();
    assert!(live.is_empty(), "run directories left behind: {live:?}");
    assert_eq!(host_mounts_under(h.path()), Vec::<String>::new());
}

#[test]
fn a_privileged_pod_s_dev_entries_meet_exprun_s_own_dev_as_with_runc() {
    let Some(t) = shim("a_privileged_pod_s_dev_entries_meet_exprun_s_own_dev_as_with_runc") else { return };
    let (r, work) = (&t.r, t.work.path());
    let probe = "echo x > /dev/null && echo null-writable; \
                 stat -c '%n %F %t:%T %a %u:%g' /dev/null /dev/tty /dev/ptmx /dev/pts/ptmx; readlink /dev/ptmx";
    let b = bundle(work, &["sh", "-c", probe]);
    let log = b.join("log.json");
    // As containerd writes them for a privileged container: every host device,
    // its own mode and owner, and a rule that allows them all.
    edit(&b, |c| {
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2, "fileMode": 0o666, "uid": 0, "gid": 0},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o660, "uid": 0, "gid": 0},
            {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 0o666, "uid": 0, "gid": 5}
        ]);
        c["linux"]["resources"]["devices"] = serde_json::json!([{"allow": true, "access": "rwm"}]);
    });
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "d1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "null-writable\n\
         /dev/null character special file 1:3 660 0:0\n\
         /dev/tty character special file 5:0 666 0:5\n\
         /dev/ptmx symbolic link 0:0 777 0:0\n\
         /dev/pts/ptmx character special file 5:2 666 0:0\n\
         pts/ptmx\n"
    );
    if let Some((code, runc_out, err)) = runc(&work.join("runc"), &b, "d1-runc") {
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, runc_out, "exprun and runc disagree");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
