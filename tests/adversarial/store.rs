//! The image store against the host's other users, and the bounds on what a
//! hostile image can make exprun do: expand, fill the disk, spin.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};
use crate::layout::{self, Entry};

/// `cmd` as the user nobody: any other local user. (Not setpriv: it keeps
/// root's capabilities until the execve, whose path walk then passes
/// directories that nobody could pass.)
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    Command::new("runuser").args(["-u", "nobody", "--"]).args(cmd).output().unwrap()
}

fn import(r: &TestRoot, layout: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["image", "import", "-q", "--name", "hostile:1"];
    args.extend_from_slice(extra);
    let out = r.exprun(&args, Some(layout));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The store's layer directory of the image's top layer.
fn top_layer(r: &TestRoot, tar: &[u8]) -> std::path::PathBuf {
    r.path().join("store/layers").join(layout::digest(tar).trim_start_matches("sha256:"))
}

#[test]
fn another_user_cannot_reach_a_layers_setuid_binary_device_node_or_tmp() {
    if !privileged("another_user_cannot_reach_a_layers_setuid_binary_device_node_or_tmp") {
        return;
    }
    let r = TestRoot::new();
    // /var/lib/exprun is 0755 on most hosts; so is this root for the attack.
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = std::fs::read("/usr/bin/id").unwrap();
    let tar = layout::tar(&[
        Entry::File("id", &id, 0o4755, 0),
        Entry::Node("kmsg", tar::EntryType::Char, 1, 11, 0o666),
        Entry::Dir("tmp", 0o1777),
    ]);
    let src = tempfile::tempdir().unwrap();
    let mut layers = layout::busybox_layers();
    layers.push((tar.clone(), tar.clone()));
    layout::write(src.path(), &layers, serde_json::json!({}));
    let (code, err) = import(&r, src.path(), &[]);
    assert_eq!(code, 0, "{err}");
    let layer = top_layer(&r, &tar);
    assert_eq!(
        std::fs::metadata(layer.join("id")).unwrap().mode() & 0o7777,
        0o4755,
        "the layer is as the image says"
    );

    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let store = r.path().join("store");
    assert_eq!(std::fs::metadata(&store).unwrap().mode() & 0o777, 0o700);
    // euid 0 through the layer's setuid-root `id`.
    let out = as_nobody(&[layer.join("id").to_str().unwrap(), "-u"]);
    assert!(!out.status.success(), "a setuid-root binary of a layer ran for another user: {out:?}");
    // The kernel log through the layer's 0666 char 1:11.
    let out = as_nobody(&["sh", "-c", &format!("echo pwned > {}", layer.join("kmsg").display())]);
    assert!(!out.status.success(), "another user wrote to a layer's device node");
    // A file in the layer's 1777 /tmp would appear in every image with that layer.
    let out = as_nobody(&["touch", layer.join("tmp/planted").to_str().unwrap()]);
    assert!(!out.status.success(), "another user planted a file in a layer");
    let out = as_nobody(&["ls", store.join("layers").to_str().unwrap()]);
    assert!(!out.status.success(), "another user listed the layers");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "another user in the store");
    r.assert_no_leftovers();
}

#[test]
fn an_open_store_is_tightened_and_another_users_store_is_refused() {
    if !privileged("an_open_store_is_tightened_and_another_users_store_is_refused") {
        return;
    }
    let r = TestRoot::with_busybox();
    let store = r.path().join("store");
    // A store made 0755 by an older exprun: the next command closes it, saying so.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = r.exprun(&["image", "ls"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("was mode 0755, open to other users; it is now 0700"), "{err}");
    assert_eq!(std::fs::metadata(&store).unwrap().mode() & 0o7777, 0o700);
    // A store another user owns could have been changed by that user.
    std::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap();
    let out = r.exprun(&["image", "ls"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("owned by uid 65534") && err.contains(&store.display().to_string()), "{err}");
    std::os::unix::fs::chown(&store, Some(0), Some(0)).unwrap();
    r.assert_no_leftovers();
}

#[test]
fn a_sparse_layer_is_stored_sparse_and_an_image_is_bounded_as_a_whole() {
    if !privileged("a_sparse_layer_is_stored_sparse_and_an_image_is_bounded_as_a_whole") {
        return;
    }
    // A GNU sparse entry of a few hundred bytes that unpacks to 2 GiB.
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    std::fs::File::create(&big).unwrap().set_len(2 << 30).unwrap();
    let st = Command::new("tar")
        .args(["--format=gnu", "-S", "-C", work.path().to_str().unwrap(), "-cf", "layer.tar", "big"])
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(st.success());
    let tar = std::fs::read(work.path().join("layer.tar")).unwrap();
    assert!(tar.len() < 64 << 10, "the layer tar is small: {}", tar.len());
    let src = tempfile::tempdir().unwrap();
    let mut layers = layout::busybox_layers();
    layers.push((tar.clone(), tar.clone()));
    layout::write(src.path(), &layers, serde_json::json!({}));

    let marker = Marker::new();
    // Under a bound for the whole image: refused, and nothing stored.
    let r = TestRoot::new();
    assert!(r.exprun(&["image", "ls"], None).status.success());
    let before = Snapshot::take(&marker, &[r.path()]);
    let (code, err) = import(&r, src.path(), &["--max-image-size", "1g"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("limit for one image") && err.contains("--max-image-size"), "{err}");
    assert!(!top_layer(&r, &tar).exists());
    let stored: Vec<_> = std::fs::read_dir(r.path().join("store/layers")).unwrap().collect();
    assert!(stored.is_empty(), "a refused image leaves no layer: {stored:?}");
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a sparse tar bomb");
    r.assert_no_leftovers();

    // Within the bounds: stored, and sparse (the 2 GiB take no disk).
    let (code, err) = import(&r, src.path(), &[]);
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::metadata(top_layer(&r, &tar).join("big")).unwrap();
    assert_eq!(meta.len(), 2 << 30);
    assert!(meta.blocks() * 512 < 1 << 20, "stored sparse: {} blocks", meta.blocks());
    let (code, out, err) = r.run(&["hostile:1", "stat", "-c", "%s", "/big"]);
    assert_eq!((code, out.as_str()), (0, "2147483648\n"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn unpacking_stops_before_the_stores_filesystem_is_full() {
    if !privileged("unpacking_stops_before_the_stores_filesystem_is_full") {
        return;
    }
    // 300 MiB of content in a blob of a few hundred KiB, onto a 256 MiB disk.
    let content = vec![b'a'; 300 << 20];
    let tar = layout::tar(&[Entry::File("fill", &content, 0o644, 0)]);
    drop(content);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let blob = gz.finish().unwrap();
    let src = tempfile::tempdir().unwrap();
    layout::write(src.path(), &[(blob, tar)], serde_json::json!({}));

    let r = TestRoot::new();
    let disk = r.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let st =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"]).arg(&disk).status().unwrap();
    assert!(st.success());
    let out = Command::new(crate::common::exprun_bin())
        .args(["--root"])
        .arg(&disk)
        .args(["image", "import", "-q", "--name", "fill:1"])
        .arg(src.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let free = nix::sys::statvfs::statvfs(&disk).unwrap();
    let free = free.blocks_available() as u64 * free.fragment_size() as u64;
    let layers: Vec<_> = std::fs::read_dir(disk.join("store/layers")).unwrap().collect();
    let tmp: Vec<_> = std::fs::read_dir(disk.join("store/tmp")).unwrap().collect();
    let _ = Command::new("umount").arg(&disk).status();
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("MiB free, below the") && err.contains("image gc"), "{err}");
    assert!(layers.is_empty() && tmp.is_empty(), "nothing is left: {layers:?} {tmp:?}");
    assert!(free > 200 << 20, "the half-unpacked layer was removed: {free} bytes free");
    r.assert_no_leftovers();
}

#[test]
fn a_million_environment_entries_do_not_make_run_spin() {
    if !privileged("a_million_environment_entries_do_not_make_run_spin") {
        return;
    }
    let env: Vec<String> = (0..1_000_000).map(|i| format!("V{i}=x")).collect();
    let src = tempfile::tempdir().unwrap();
    layout::write(src.path(), &layout::busybox_layers(), serde_json::json!({"Env": env}));
    let r = TestRoot::new();
    let (code, err) = import(&r, src.path(), &[]);
    assert_eq!(code, 0, "{err}");
    // The merge was quadratic (minutes for this image); now it is linear, and
    // the run is refused for what it is: more than the kernel takes.
    let t0 = std::time::Instant::now();
    let (code, _, err) = r.run(&["-e", "V999999=y", "hostile:1", "true"]);
    let took = t0.elapsed();
    assert!(took.as_secs() < 120, "run took {took:?}");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("1000009 variables") && err.contains("ARG_MAX"), "{err}");
    r.assert_no_leftovers();
}

#[test]
fn the_writable_layer_is_bounded_without_memory_limit() {
    if !privileged("the_writable_layer_is_bounded_without_memory_limit") {
        return;
    }
    let r = TestRoot::with_busybox();
    let df = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["busybox:latest", "sh", "-c", "df -k / | tail -1 | awk '{print $2}'"]);
        let (code, out, err) = r.run(&full);
        assert_eq!(code, 0, "{err}");
        out.trim().parse::<u64>().unwrap()
    };
    assert_eq!(df(&[]), 4 << 20, "4 GiB by default");
    assert_eq!(df(&["--memory", "256m"]), 256 << 10, "the memory limit with --memory");
    assert_eq!(df(&["--storage-opt", "size=1g"]), 1 << 20);
    let (code, out, err) = r.run(&[
        "--storage-opt",
        "size=64m",
        "busybox:latest",
        "sh",
        "-c",
        "dd if=/dev/zero of=/fill bs=1M count=100 2>/dev/null; echo $?",
    ]);
    assert_eq!((code, out.as_str()), (0, "1\n"), "the container's write fails at the bound: {err}");
    let (code, _, err) = r.run(&["--keep", "--storage-opt", "size=64m", "busybox:latest", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--storage-opt size") && err.contains("--keep"), "{err}");
    let (code, _, err) = r.run(&["--storage-opt", "quota=1", "busybox:latest", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("size=SIZE"), "{err}");
    r.assert_no_leftovers();
}
