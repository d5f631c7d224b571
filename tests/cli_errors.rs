#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad input through the real binary: clear errors, exit status 125, nothing
//! stored or left behind.

mod common;

use std::fs;
use std::path::Path;

use common::{privileged, TestRoot};
use sha2::Digest as _;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The store holds no blob and no layer.
fn assert_store_empty(r: &TestRoot) {
    for sub in ["store/blobs/sha256", "store/layers"] {
        let n = fs::read_dir(r.path().join(sub)).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 0, "{sub} is not empty after a refused import");
    }
}

#[test]
fn bad_command_lines_exit_125_and_help_exits_0() {
    let r = TestRoot::new();
    let out = r.exprun(&["run", "--no-such-flag", "img"], None);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("--no-such-flag"), "{}", stderr_of(&out));
    assert_eq!(r.exprun(&["run", "--help"], None).status.code(), Some(0));
    assert_eq!(r.exprun(&["--version"], None).status.code(), Some(0));
    let out = r.exprun(&["run", "--cpus", "abc", "img"], None);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("--cpus \"abc\""), "{}", stderr_of(&out));
    let out = r.exprun(&["run", "-v", "/no/such/dir:/x", "img"], None);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("/no/such/dir") && stderr_of(&out).contains("does not exist"));
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    if !privileged("a_corrupted_blob_is_refused_and_nothing_is_stored") {
        return;
    }
    let r = TestRoot::new();
    let copy = tempfile::tempdir().unwrap();
    let layout = copy.path().join("busybox-oci");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::fixture_dir().join("busybox-oci"))
        .arg(&layout)
        .status()
        .unwrap();
    assert!(st.success());
    let layer = common::pinned("LAYER1_DIGEST");
    let blob = layout.join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let out = r.exprun(&["image", "import"], Some(&layout));
    assert_eq!(out.status.code(), Some(125));
    let err = stderr_of(&out);
    assert!(err.contains("digest mismatch") && err.contains(&layer), "{err}");
    assert!(err.contains(&format!("found sha256:{}", sha256_hex(&bytes))), "{err}");
    assert_store_empty(&r);
    r.assert_no_leftovers();
}

/// A one-layer OCI layout whose layer holds a single entry with a raw name.
fn layout_with_entry(dir: &Path, name: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header, &b"evil"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let layer_hex = sha256_hex(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/x"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{layer_hex}"]}}}}"#
    );
    let config_hex = sha256_hex(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_hex}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_hex}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_hex = sha256_hex(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        manifest.len()
    );
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(&layer_hex), &layer).unwrap();
    fs::write(blobs.join(&config_hex), &config).unwrap();
    fs::write(blobs.join(&manifest_hex), &manifest).unwrap();
    fs::write(dir.join("index.json"), index).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn malicious_layer_entries_are_refused_by_name() {
    if !privileged("malicious_layer_entries_are_refused_by_name") {
        return;
    }
    for (name, why) in
        [(&b"../escape"[..], "escapes"), (&b"a/../../escape"[..], "escapes"), (&b"/etc/evil"[..], "absolute")]
    {
        let r = TestRoot::new();
        let src = tempfile::tempdir().unwrap();
        layout_with_entry(src.path(), name);
        let out = r.exprun(&["image", "import"], Some(src.path()));
        assert_eq!(out.status.code(), Some(125), "{}", String::from_utf8_lossy(name));
        let err = stderr_of(&out);
        assert!(err.contains(why) && err.contains(&*String::from_utf8_lossy(name)), "{err}");
        assert_store_empty(&r);
        assert!(!Path::new("/escape").exists() && !Path::new("/etc/evil").exists());
        r.assert_no_leftovers();
    }
}

#[test]
fn import_progress_is_drawn_only_on_a_terminal() {
    if !privileged("import_progress_is_drawn_only_on_a_terminal") {
        return;
    }
    let layout = common::fixture_dir().join("busybox-oci");
    // Not a terminal: one line per image, nothing else.
    let r = TestRoot::new();
    let out = r.exprun(&["image", "import"], Some(&layout));
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // A terminal (script(1) gives the command a pty): the progress bar appears.
    let r = TestRoot::new();
    let cmd = format!(
        "{} --root {} image import {}",
        common::exprun_bin().display(),
        r.path().display(),
        layout.display()
    );
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("importing ["), "no progress bar on a terminal: {text:?}");
    assert!(text.contains("imported busybox-oci:latest"), "{text:?}");
}

#[test]
fn limits_that_cannot_be_applied_are_refused_before_the_run() {
    if !privileged("limits_that_cannot_be_applied_are_refused_before_the_run") {
        return;
    }
    let r = TestRoot::with_busybox();
    let (code, out, err) =
        r.run(&["--ulimit", "nofile=100:200", "busybox:latest", "--", "sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "100\n200\n");
    let (code, _, err) = r.run(&["--cpus", "999", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--cpus") && err.contains("CPUs online"), "{err}");
    let (code, _, err) = r.run(&["--input", "/no/such/input:/in", "busybox:latest", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--input") && err.contains("/no/such/input"), "{err}");
    if !caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE).unwrap() {
        let (code, _, err) = r.run(&["--ulimit", "nofile=4294967295", "busybox:latest", "--", "true"]);
        assert_eq!(code, 125);
        assert!(err.contains("RLIMIT_NOFILE") && err.contains("CAP_SYS_RESOURCE"), "{err}");
    }
    r.assert_no_leftovers();
}
