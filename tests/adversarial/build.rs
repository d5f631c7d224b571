//! `exprun build` attacks: whoever owns the source is another local user, and
//! root builds it. Symlinks planted at `.s2i/environment`, `.s2i` or
//! `.s2iignore`, a source directory that is the attacker's symlink, and
//! files and directories swapped for symlinks while exprun copies the source
//! must never get a root-only host file into an image, its Env, a blob of
//! the store or a message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// The uid of the other local user who owns the source.
const ATTACKER: u32 = 47_113;

/// A root-only (0600) file in the marker tree holding `content`.
fn root_only(marker: &Marker, name: &str, content: &str) -> PathBuf {
    let p = marker.path().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A secret no build could produce by chance.
fn secret(what: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("exprun-{what}-{}-{}", std::process::id(), t.as_nanos())
}

/// The tar entry type of `path` in the top layer of the image `reference`.
fn top_layer_entry(root: &TestRoot, reference: &str, path: &str) -> Option<tar::EntryType> {
    let out = root.exprun(&["image", "inspect", reference], None);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = info["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap().to_string();
    let blob = root.path().join("store/blobs/sha256").join(top.strip_prefix("sha256:").unwrap());
    let mut a = tar::Archive::new(std::fs::File::open(blob).unwrap());
    let found = a.entries().unwrap().map(Result::unwrap).find(|e| e.path().unwrap() == Path::new(path));
    found.map(|e| e.header().entry_type())
}

/// A source directory for the fixture builder.
fn source() -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("exprun-adv-src-").tempdir().unwrap();
    std::fs::write(d.path().join("app.sh"), "echo app\n").unwrap();
    d
}

/// root's `exprun build -q` of `src` as `tag`: (exit code, stdout, stderr).
fn build(root: &TestRoot, src: &Path, tag: &str) -> (i32, String, String) {
    let src = src.to_str().unwrap();
    let out = root.exprun(&["build", "--builder", "builder:latest", "--source", src, "-t", tag, "-q"], None);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every regular file under `dir` (symlinks not followed) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                todo.push(p);
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p);
                }
            }
        }
    }
    found
}

/// The names of the images in the store.
fn images(root: &TestRoot) -> Vec<String> {
    let out = root.exprun(&["image", "ls", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().filter_map(|i| i["name"].as_str().map(str::to_string)).collect()
}

/// The build was refused (125, `expect` in the message), the secret is in no
/// output and no file of the state root, and no image was made.
fn assert_refused(root: &TestRoot, got: (i32, String, String), expect: &[&str], secret: &str) {
    let (code, out, err) = got;
    assert_eq!(code, 125, "stdout: {out}\nstderr: {err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
    assert!(!out.contains(secret) && !err.contains(secret), "the secret was printed: {out}{err}");
    assert_eq!(
        files_holding(root.path(), secret.as_bytes()),
        Vec::<PathBuf>::new(),
        "the secret is in the root"
    );
    assert_eq!(images(root), ["builder:latest"]);
}

#[test]
fn a_symlinked_s2i_environment_never_puts_a_host_secret_into_the_image() {
    if !privileged("a_symlinked_s2i_environment_never_puts_a_host_secret_into_the_image") {
        return;
    }
    let root = TestRoot::with_builder();
    let marker = Marker::new();
    let value = secret("environment");
    let file = root_only(&marker, "root-only-env", &format!("LEAKED_VALUE={value}\n"));
    root_only(&marker, "s2i/environment", &format!("LEAKED_VALUE={value}\n"));
    let src = source();
    std::fs::create_dir(src.path().join(".s2i")).unwrap();
    std::os::unix::fs::symlink(&file, src.path().join(".s2i/environment")).unwrap();
    let before = Snapshot::take(&marker, &[root.path()]);

    let got = build(&root, src.path(), "app:1");
    let at = format!("{}/.s2i/environment: is a symlink (to {})", src.path().display(), file.display());
    assert_refused(&root, got, &[&at, "never through a link; put the file itself there"], &value);

    // The whole .s2i directory a symlink to a host directory.
    std::fs::remove_file(src.path().join(".s2i/environment")).unwrap();
    std::fs::remove_dir(src.path().join(".s2i")).unwrap();
    std::os::unix::fs::symlink(marker.path().join("s2i"), src.path().join(".s2i")).unwrap();
    let got = build(&root, src.path(), "app:1");
    let at = format!("{}/.s2i: is a symlink", src.path().display());
    assert_refused(
        &root,
        got,
        &[&at, "exprun reads .s2i/* only inside the source, never through a link; make it a real directory"],
        &value,
    );

    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "symlinked .s2i/environment");
    root.assert_no_leftovers();
}

#[test]
fn a_symlinked_s2iignore_never_shows_a_host_file_in_an_error() {
    if !privileged("a_symlinked_s2iignore_never_shows_a_host_file_in_an_error") {
        return;
    }
    let root = TestRoot::with_builder();
    let marker = Marker::new();
    // A first line that does not parse as a pattern: the old error quoted it.
    let line = secret("first-line");
    let file = root_only(&marker, "root-only-ignore", &format!("[{line}\nsecond\n"));
    let src = source();
    std::os::unix::fs::symlink(&file, src.path().join(".s2iignore")).unwrap();
    let before = Snapshot::take(&marker, &[root.path()]);

    let got = build(&root, src.path(), "app:1");
    let at = format!("{}/.s2iignore: is a symlink (to {})", src.path().display(), file.display());
    assert_refused(&root, got, &[&at], &line);

    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "symlinked .s2iignore");
    root.assert_no_leftovers();
}

#[test]
fn another_users_symlink_as_the_source_is_refused() {
    if !privileged("another_users_symlink_as_the_source_is_refused") {
        return;
    }
    let root = TestRoot::with_builder();
    let marker = Marker::new();
    let value = secret("source-link");
    root_only(&marker, "root-only", &value);
    // The attacker's source, replaced by a symlink of theirs to a root-only directory.
    let parent = tempfile::Builder::new().prefix("exprun-adv-home-").tempdir().unwrap();
    let link = parent.path().join("app");
    std::os::unix::fs::symlink(marker.path(), &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let before = Snapshot::take(&marker, &[root.path()]);

    let got = build(&root, &link, "app:1");
    let why = format!("{} is a symlink owned by uid {ATTACKER}, who is not root", link.display());
    assert_refused(&root, got, &[&why, "give the source's real path"], &value);

    Snapshot::take(&marker, &[root.path()]).assert_same_as(&before, "the source is another user's symlink");
    root.assert_no_leftovers();
}

/// How many builds race the swaps: each takes about a quarter of a second.
const RACED_BUILDS: usize = 40;
/// How many files the swapped directory holds (and the host directory swapped
/// in for it, under the same names): each is one more chance to be read
/// through the swap.
const SUB_FILES: usize = 50;

#[test]
fn a_source_swapped_for_symlinks_during_the_copy_never_gets_a_host_file_into_an_image() {
    if !privileged("a_source_swapped_for_symlinks_during_the_copy_never_gets_a_host_file_into_an_image") {
        return;
    }
    let root = TestRoot::with_builder();
    let marker = Marker::new();
    let value = secret("swapped");
    let file = root_only(&marker, "root-only", &value);
    for n in 0..SUB_FILES {
        root_only(&marker, &format!("host-dir/inner-{n:02}"), &value);
    }
    std::fs::set_permissions(marker.path().join("host-dir"), std::fs::Permissions::from_mode(0o700)).unwrap();

    // The source, and beside it (same filesystem) what the attacker swaps in.
    let work = tempfile::Builder::new().prefix("exprun-adv-race-").tempdir().unwrap();
    let (src, stage) = (work.path().join("src"), work.path().join("stage"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir(&stage).unwrap();
    std::fs::write(src.join("app.sh"), "echo app\n").unwrap();
    std::fs::write(src.join("data"), "harmless\n").unwrap();
    for n in 0..SUB_FILES {
        std::fs::write(src.join(format!("sub/inner-{n:02}")), "harmless\n").unwrap();
    }
    std::os::unix::fs::symlink(&file, stage.join("data")).unwrap();
    std::os::unix::fs::symlink(marker.path().join("host-dir"), stage.join("sub")).unwrap();
    // The store gains the built images; the host must not change.
    let before = Snapshot::take(&marker, &[]);

    // rename(2) exchanges, as fast as they go: `data` is a file or a symlink
    // to a root-only file, `sub` a directory or a symlink to a root-only one.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, src, stage) = (stop.clone(), swaps.clone(), src.clone(), stage.clone());
        std::thread::spawn(move || {
            use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
            while !stop.load(Ordering::Relaxed) {
                for name in ["data", "sub"] {
                    renameat2(
                        AT_FDCWD,
                        &src.join(name),
                        AT_FDCWD,
                        &stage.join(name),
                        RenameFlags::RENAME_EXCHANGE,
                    )
                    .unwrap();
                }
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let (mut failed, mut as_file, mut as_link) = (Vec::new(), 0, 0);
    for i in 0..RACED_BUILDS {
        let tag = format!("app:{i}");
        let (code, out, err) = build(&root, &src, &tag);
        assert!(!out.contains(&value) && !err.contains(&value), "build {i} printed the secret: {out}{err}");
        if code != 0 {
            failed.push(format!("build {i}: exit {code}: {err}"));
            continue;
        }
        match top_layer_entry(&root, &tag, "opt/app-root/src/data") {
            Some(tar::EntryType::Symlink) => as_link += 1,
            Some(_) => as_file += 1,
            None => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "{RACED_BUILDS} builds during {swaps} swaps: {} built ({as_file} with data a file, {as_link} a \
         symlink), {} failed",
        RACED_BUILDS - failed.len(),
        failed.len()
    );

    let leaked = files_holding(root.path(), value.as_bytes());
    let blobs = leaked.iter().filter(|p| p.starts_with(root.path().join("store/blobs"))).count();
    assert!(leaked.is_empty(), "a root-only host file got into {blobs} of {RACED_BUILDS} images: {leaked:?}");
    // A copy through descriptors has nothing to refuse mid-swap.
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(swaps > 1000, "the swaps did not race the builds ({swaps} swaps)");
    assert!(
        as_file > 0 && as_link > 0,
        "the builds did not meet both states of data: {as_file} files, {as_link} links"
    );
    Snapshot::take(&marker, &[]).assert_same_as(&before, "a source swapped during the copy");
    root.assert_no_leftovers();
}
