//! A poisoned input digest cache: another local user plants a well-formed
//! cache that vouches for a dataset they changed, so that a replay would take
//! the changed input for the recorded one. exprun ignores a cache directory
//! or file it does not own, or that others may write, says so, and reads the
//! input; it writes nothing into such a directory.

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;

use exprun::digest::Digest;
use exprun::record::files::cache;

use crate::common::{privileged, TestRoot};
use crate::host::{Marker, Snapshot};

/// The other local user (no account is needed to own files).
const ATTACKER: u32 = 47_114;

fn exprun(root: &TestRoot, args: &[&str]) -> (i32, String) {
    let out = root.exprun(args, None);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A cache saying `file`, as it is now, holds `claimed`.
fn poison(file: &Path, claimed: &[u8]) -> Vec<u8> {
    let key = cache::Key::of(&nix::sys::stat::stat(file).unwrap());
    let far = key.mtime.max(key.ctime) + 3600 * 1_000_000_000;
    cache::serialize(&[cache::Entry::new(key, far, &Digest::of_bytes(claimed)).unwrap()])
}

/// `bytes` as the cache file `name` in `dir` (made afresh), the directory
/// and the file owned by `dir_owner` and `file_owner` with these modes.
fn plant(dir: &Path, name: &str, bytes: &[u8], owners: (u32, u32), modes: (u32, u32)) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir(dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    chown(&file, Some(owners.1), Some(owners.1)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(modes.1)).unwrap();
    chown(dir, Some(owners.0), Some(owners.0)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(modes.0)).unwrap();
}

#[test]
fn a_digest_cache_planted_by_another_user_is_not_trusted() {
    if !privileged("a_digest_cache_planted_by_another_user_is_not_trusted") {
        return;
    }
    let marker = Marker::new();
    let r = TestRoot::with_busybox();
    let data = tempfile::tempdir().unwrap();
    let f = data.path().join("weights.bin");
    std::fs::write(&f, "real").unwrap();
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let arg = format!("{}:/in", data.path().display());
    let (code, err) = exprun(&r, &["run", "--name", "orig", "--input", &arg, "busybox:latest", "true"]);
    assert_eq!(code, 0, "{err}");
    let dir = r.path().join("cache").join(cache::DIR);
    let name = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().file_name();
    let name = name.to_str().unwrap().to_string();

    // The dataset is changed behind the record's back, size and mtime kept.
    std::fs::write(&f, "evil").unwrap();
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
    let bytes = poison(&f, b"real");

    // Control: the same cache, had exprun written it, would hide the change.
    plant(&dir, &name, &bytes, (0, 0), (0o700, 0o600));
    let (code, err) = exprun(&r, &["replay", "orig"]);
    assert!(code == 0 && err.contains("no drift"), "the poison is well formed: {err}");

    let before = Snapshot::take(&marker, &[r.path()]);
    for (what, owners, modes) in [
        ("a directory the attacker owns", (ATTACKER, ATTACKER), (0o755, 0o644)),
        ("the attacker's file in exprun's directory", (0, ATTACKER), (0o700, 0o644)),
        ("a directory others may write", (0, 0), (0o777, 0o600)),
        ("a file others may write", (0, 0), (0o700, 0o666)),
    ] {
        plant(&dir, &name, &bytes, owners, modes);
        let (code, err) = exprun(&r, &["replay", "orig"]);
        assert_eq!(code, 125, "{what}: {err}");
        assert!(err.contains("input /in") && err.contains("changed: weights.bin"), "{what}: {err}");
        assert!(err.contains("the input digest cache") && err.contains("is ignored"), "{what}: {err}");
        if owners.0 == ATTACKER {
            assert!(err.contains(&format!("owned by uid {ATTACKER}, not by you (uid 0)")), "{err}");
            assert_eq!(std::fs::read(dir.join(&name)).unwrap(), bytes, "nothing written in its directory");
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "{what}");
        }
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a planted input digest cache");
    std::fs::remove_dir_all(&dir).unwrap();
    r.assert_no_leftovers();
}
