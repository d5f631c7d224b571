//! `--output` attacks: another local user redirects root's output with a
//! symlink or owns the directory; a container leaves setuid files and device
//! nodes on the host, or a sparse file that would take hours to hash.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// The uid and gid of the other local user: no account is needed to own files,
/// and a fixed number cannot collide with the accounts other tests make.
const ATTACKER: u32 = 47_113;

/// A directory like /tmp (root's, mode 1777) where the attacker may plant things.
fn shared_tmp() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("exprun-adv-tmp-").tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// Run a shell command as the attacker.
fn as_attacker(script: &str) {
    let ok =
        Command::new("/bin/sh").args(["-c", script]).uid(ATTACKER).gid(ATTACKER).status().unwrap().success();
    assert!(ok, "the attacker's setup failed: {script}");
}

/// root's `exprun run --output <out>:/out`, whose command writes into /out.
fn run_into(root: &TestRoot, out: &Path) -> (i32, String) {
    let spec = format!("{}:/out", out.display());
    let (code, _, stderr) = root.run(&[
        "--output",
        &spec,
        "busybox:latest",
        "--",
        "sh",
        "-c",
        "echo pwned > /out/secret; mkdir -p /out/sub; echo pwned > /out/sub/file; echo new > /out/new",
    ]);
    (code, stderr)
}

#[test]
fn another_users_symlink_at_the_output_path_is_refused() {
    if !privileged("another_users_symlink_at_the_output_path_is_refused") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let tmp = shared_tmp();
    let t = tmp.path().display();
    as_attacker(&format!("mkdir {t}/xxx && ln -s {} {t}/xxx/out", marker.path().display()));
    let before = Snapshot::take(&marker, &[root.path()]);

    let (code, stderr) = run_into(&root, &tmp.path().join("xxx/out"));
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains(&format!("xxx/out is a symlink owned by uid {ATTACKER}"))
            && stderr.contains("give the output's real path, without the symlink"),
        "{stderr}"
    );
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "symlink at the output path");
    root.assert_no_leftovers();
}

#[test]
fn another_users_symlinked_parent_of_the_output_is_refused() {
    if !privileged("another_users_symlinked_parent_of_the_output_is_refused") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let tmp = shared_tmp();
    as_attacker(&format!("ln -s {} {}/xxx", marker.path().display(), tmp.path().display()));
    let before = Snapshot::take(&marker, &[root.path()]);

    // The output itself is missing: it would be made in the marker tree.
    let (code, stderr) = run_into(&root, &tmp.path().join("xxx/out"));
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains(&format!("xxx is a symlink owned by uid {ATTACKER}")), "{stderr}");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "symlinked parent of the output");
    root.assert_no_leftovers();
}

#[test]
fn an_output_directory_of_another_user_is_refused() {
    if !privileged("an_output_directory_of_another_user_is_refused") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let tmp = shared_tmp();
    // The attacker's own directory: they could swap it between exprun's check
    // and the mount, or read and change what root's run writes.
    as_attacker(&format!("mkdir {}/theirs", tmp.path().display()));
    let before = Snapshot::take(&marker, &[root.path()]);

    let (code, stderr) = run_into(&root, &tmp.path().join("theirs"));
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains(&format!("theirs is owned by uid {ATTACKER}"))
            && stderr.contains("use a directory you own"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("theirs")).unwrap().collect();
    assert!(left.is_empty(), "the run wrote into another user's directory: {left:?}");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "output directory of another user");
    root.assert_no_leftovers();
}

/// Leaves a setuid and a setgid file, a file with a capability, a device node
/// (the host's /dev/null's numbers) and a fifo in /out.
const LEAVE_SPECIALS: &str = "echo s > /out/suid && chmod 4755 /out/suid && \
     echo g > /out/sgid && chmod 2755 /out/sgid && \
     mkdir /out/sub && cp /out/suid /out/sub/deep && chmod 6711 /out/sub/deep && \
     echo c > /out/capped && chmod 755 /out/capped && /tools/fcap /out/capped && \
     mknod /out/null c 1 3 && chmod 666 /out/null && mkfifo /out/fifo && echo done";

/// A static program that gives a file CAP_DAC_OVERRIDE (what `setcap
/// cap_dac_override+ep` does; busybox has no setcap), in a directory for
/// `--input`.
fn fcap_tool() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("exprun-adv-tools-").tempdir().unwrap();
    let src = d.path().join("fcap.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <stdint.h>\n#include <sys/xattr.h>\n\
         int main(int c, char **v) {\n\
           /* VFS_CAP_REVISION_2 | effective; permitted = 1 << CAP_DAC_OVERRIDE */\n\
           uint32_t cap[5] = {0x02000001, 1u << 1, 0, 0, 0};\n\
           if (c != 2 || setxattr(v[1], \"security.capability\", cap, sizeof cap, 0)) {\n\
             perror(\"setxattr\"); return 1; }\n\
           return 0; }\n",
    )
    .unwrap();
    let ok = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(d.path().join("fcap"))
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc -static failed");
    std::fs::remove_file(src).unwrap();
    d
}

fn getcap(p: &Path) -> String {
    let out = Command::new("getcap").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn cleaned(rec: &serde_json::Value) -> Vec<(String, String)> {
    rec["outputs"][0]["tree"]["cleaned"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| (c["path"].as_str().unwrap().to_string(), c["change"].as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn setuid_files_and_device_nodes_left_in_an_output_are_removed_and_reported() {
    if !privileged("setuid_files_and_device_nodes_left_in_an_output_are_removed_and_reported") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let out = tempfile::Builder::new().prefix("exprun-adv-out-").tempdir().unwrap();
    let before = Snapshot::take(&marker, &[root.path()]);
    let spec = format!("{}:/out", out.path().display());
    let tools = fcap_tool();
    let input = format!("{}:/tools", tools.path().display());
    let (code, stdout, stderr) =
        root.run(&["--input", &input, "--output", &spec, "busybox:latest", "--", "sh", "-c", LEAVE_SPECIALS]);
    assert_eq!((code, stdout.trim()), (0, "done"), "{stderr}");

    let o = out.path();
    assert_eq!((mode(&o.join("suid")), mode(&o.join("sgid"))), (0o755, 0o755));
    assert_eq!(mode(&o.join("sub/deep")), 0o711);
    assert_eq!(getcap(&o.join("capped")), "", "the file capability is still on the host");
    for gone in ["null", "fifo"] {
        assert!(std::fs::symlink_metadata(o.join(gone)).is_err(), "{gone} is still on the host");
    }
    for want in [
        "exprun: output /out: suid: setuid bit removed (mode 4755 -> 0755",
        "exprun: output /out: sgid: setgid bit removed (mode 2755 -> 0755",
        "exprun: output /out: sub/deep: setuid and setgid bits removed (mode 6711 -> 0711",
        "exprun: output /out: null: character device 1:3 (mode 0666, owner uid 0) removed",
        "exprun: output /out: fifo: fifo",
        "exprun: output /out: capped: file capabilities (security.capability) removed",
    ] {
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }
    let rec = root.last_record();
    let paths: Vec<String> = cleaned(&rec).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["capped", "fifo", "null", "sgid", "sub/deep", "suid"]);
    // The record is of what is on disk after the clean-up.
    let entries = rec["outputs"][0]["tree"]["entries"].as_array().unwrap();
    let listed: Vec<&str> = entries.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(listed, ["capped", "sgid", "sub", "sub/deep", "suid"]);
    for e in entries.iter().filter(|e| e["kind"] == "file") {
        let p = o.join(e["path"].as_str().unwrap());
        assert_eq!(e["mode"].as_u64().unwrap() as u32, mode(&p), "{e}");
    }
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "setuid files left in an output");
    root.assert_no_leftovers();
}

#[test]
fn an_output_with_suid_and_dev_keeps_them() {
    if !privileged("an_output_with_suid_and_dev_keeps_them") {
        return;
    }
    let root = TestRoot::with_busybox();
    let out = tempfile::Builder::new().prefix("exprun-adv-out-").tempdir().unwrap();
    let spec = format!("{}:/out:suid,dev", out.path().display());
    let tools = fcap_tool();
    let input = format!("{}:/tools", tools.path().display());
    let (code, _, stderr) =
        root.run(&["--input", &input, "--output", &spec, "busybox:latest", "--", "sh", "-c", LEAVE_SPECIALS]);
    assert_eq!(code, 0, "{stderr}");
    let o = out.path();
    assert_eq!((mode(&o.join("suid")), mode(&o.join("sgid"))), (0o4755, 0o2755));
    assert_eq!(std::fs::symlink_metadata(o.join("null")).unwrap().rdev(), nix::sys::stat::makedev(1, 3));
    assert!(getcap(&o.join("capped")).contains("cap_dac_override"), "{}", getcap(&o.join("capped")));
    assert!(cleaned(&root.last_record()).is_empty());
    assert!(!stderr.contains("removed"), "{stderr}");
    root.assert_no_leftovers();
}

#[test]
fn a_terabyte_sparse_output_is_not_hashed_and_verify_cannot_compare_it() {
    if !privileged("a_terabyte_sparse_output_is_not_hashed_and_verify_cannot_compare_it") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let out = tempfile::Builder::new().prefix("exprun-adv-out-").tempdir().unwrap();
    let before = Snapshot::take(&marker, &[root.path()]);
    let spec = format!("{}:/out", out.path().display());
    let script = "echo small > /out/a && truncate -s 1099511627776 /out/big";
    let mut child = root
        .command(&["run", "--output", &spec, "busybox:latest", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("exprun was still hashing the output 60 s after starting a run of a second");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("exprun: output /out: incomplete digest: 1 file(s) not digested"), "{stderr}");

    let rec = root.last_record();
    let tree = &rec["outputs"][0]["tree"];
    assert_eq!(tree["incomplete"], "1 file(s) not digested (see their entries)");
    let big = tree["entries"].as_array().unwrap().iter().find(|e| e["path"] == "big").unwrap();
    assert_eq!((big["size"].as_u64(), big.get("digest")), (Some(1 << 40), None));
    let why = big["unread"].as_str().unwrap();
    assert!(
        why.starts_with("not digested: its 1.0 TiB (sparse: 0 B on disk) would pass the run's output digest limit of 32.0 GiB")
            && why.contains("--output-digest-limit"),
        "{why}"
    );
    let a = tree["entries"].as_array().unwrap().iter().find(|e| e["path"] == "a").unwrap();
    assert!(a["digest"].is_string(), "files within the limit are digested: {a}");

    let id = rec["run_id"].as_str().unwrap().to_string();
    let show = root.exprun(&["runs", "show", &id], None);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("; INCOMPLETE: 1 file(s) not digested"), "runs show says so: {show}");
    let v = root.exprun(&["verify", &id], None);
    let report = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(1), "{report}\n{}", String::from_utf8_lossy(&v.stderr));
    assert!(report.contains("COULD NOT COMPARE"), "{report}");
    assert!(report.contains("out/big  could-not-compare"), "{report}");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "a sparse terabyte in an output");
    root.assert_no_leftovers();
}

/// Stops the attacker's loop however the test ends.
struct Stop {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        let _ = self.child.wait();
    }
}

#[test]
fn an_output_swapped_by_another_user_while_exprun_sets_up_is_never_bound() {
    if !privileged("an_output_swapped_by_another_user_while_exprun_sets_up_is_never_bound") {
        return;
    }
    let root = TestRoot::with_busybox();
    let marker = Marker::new();
    let tmp = shared_tmp();
    let parent = tmp.path().join("xxx");
    as_attacker(&format!("mkdir {}", parent.display()));
    let before = Snapshot::take(&marker, &[root.path()]);
    // The attacker owns the output's parent: they keep moving whatever `out` is
    // away and putting a directory of their own in its place, racing exprun
    // between its check and init's bind mount.
    let swapper = Command::new("/bin/sh")
        .args([
            "-c",
            "cd \"$1\" && i=0 && while [ ! -e stop ]; do i=$((i+1)); mv out old$i 2>/dev/null; \
             mkdir out 2>/dev/null; done",
            "sh",
        ])
        .arg(&parent)
        .uid(ATTACKER)
        .gid(ATTACKER)
        .spawn()
        .unwrap();
    let _stop = Stop { dir: parent.clone(), child: swapper };
    let (mut bound, mut refused) = (0, 0);
    for _ in 0..8 {
        let (code, stderr) = run_into(&root, &parent.join("out"));
        match code {
            0 => bound += 1,
            125 => {
                assert!(
                    stderr.contains("no longer the directory exprun checked")
                        || stderr.contains(&format!("is owned by uid {ATTACKER}")),
                    "{stderr}"
                );
                refused += 1;
            }
            _ => panic!("exit {code}: {stderr}"),
        }
    }
    drop(_stop);
    // Whatever won each race, the run wrote only into directories root made.
    for e in std::fs::read_dir(&parent).unwrap().flatten() {
        if e.path().join("secret").exists() {
            let owner = e.metadata().unwrap().uid();
            assert_eq!(owner, 0, "the run wrote into {} of uid {owner}", e.path().display());
        }
    }
    println!("{bound} run(s) bound exprun's own directory, {refused} refused");
    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "output swapped during set-up");
    root.assert_no_leftovers();
}
