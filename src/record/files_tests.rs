use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn open(p: &Path) -> OwnedFd {
    nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
}

fn digest_output(p: &Path, budget: &mut Budget, keep: Keep) -> TreeDigest {
    digest_at(open(p).as_fd(), budget, keep).unwrap()
}

#[test]
fn equal_trees_equal_digests_and_any_change_shows() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/x.csv"), "1,2\n").unwrap();
        fs::write(d.join("top"), "t").unwrap();
        std::os::unix::fs::symlink("top", d.join("link")).unwrap();
    }
    let da = digest_tree(a.path()).unwrap();
    assert_eq!(da, digest_tree(b.path()).unwrap());
    assert_eq!((da.files, da.bytes), (2, 5));
    assert_eq!(da.incomplete, None);
    assert_eq!(
        da.entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["link", "sub", "sub/x.csv", "top"]
    );
    fs::set_permissions(b.path().join("top"), fs::Permissions::from_mode(0o600)).unwrap();
    let mode_changed = digest_tree(b.path()).unwrap();
    assert_ne!(da.digest, mode_changed.digest, "a mode change shows");
    fs::set_permissions(b.path().join("top"), fs::Permissions::from_mode(da.entries[3].mode.unwrap()))
        .unwrap();
    assert_eq!(da, digest_tree(b.path()).unwrap());
    fs::write(b.path().join("sub/x.csv"), "1,3\n").unwrap();
    assert_ne!(da.digest, digest_tree(b.path()).unwrap().digest);
}

#[test]
fn the_listing_digest_is_the_one_recorded_before_the_walk_used_descriptors() {
    // Build images label their source with this digest: it must not change.
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a"), "x").unwrap();
    fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o644)).unwrap();
    let line = format!("file\ta\t1\t0644\t{}\n", Digest::of_bytes(b"x"));
    assert_eq!(digest_tree(d.path()).unwrap().digest, Digest::of_bytes(line.as_bytes()));
}

#[test]
fn a_symlinked_root_is_followed_like_the_bind_mount() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("real")).unwrap();
    fs::write(d.path().join("real/f"), "x").unwrap();
    std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
    assert_eq!(digest_tree(&d.path().join("link")).unwrap(), digest_tree(&d.path().join("real")).unwrap());
}

#[test]
fn symlinks_inside_are_recorded_and_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), d.path().join("dir")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("secret"), d.path().join("file")).unwrap();
    let t = digest_tree(d.path()).unwrap();
    assert_eq!(t.entries.len(), 2, "{t:?}");
    assert!(t.entries.iter().all(|e| e.kind == "symlink" && e.digest.is_none()), "{t:?}");
}

#[test]
fn a_single_file_is_a_tree_of_one() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("data.bin");
    fs::write(&f, b"abc").unwrap();
    let t = digest_tree(&f).unwrap();
    assert_eq!(t.entries.len(), 1);
    assert_eq!(t.entries[0].digest, Some(Digest::of_bytes(b"abc")));
}

#[test]
fn a_device_as_the_whole_tree_is_listed_not_read() {
    let t = digest_tree(Path::new("/dev/zero")).unwrap();
    assert_eq!((t.entries.len(), t.entries[0].kind.as_str(), t.files), (1, "other", 0));
}

#[test]
fn set_id_bits_are_removed_and_reported_unless_kept() {
    let d = tempfile::tempdir().unwrap();
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755), ("both", 0o6711), ("plain", 0o755)] {
        fs::write(d.path().join(name), name).unwrap();
        fs::set_permissions(d.path().join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    let kept = digest_output(d.path(), &mut Budget::unlimited(), Keep { suid: true, dev: false });
    assert!(kept.cleaned.is_empty());
    assert_eq!(fs::metadata(d.path().join("suid")).unwrap().mode() & 0o7777, 0o4755);

    let t = digest_output(d.path(), &mut Budget::unlimited(), Keep::default());
    let changes: Vec<(&str, &str)> = t.cleaned.iter().map(|c| (c.path.as_str(), c.change.as_str())).collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        changes[0].0 == "both"
            && changes[0].1.starts_with("setuid and setgid bits removed (mode 6711 -> 0711")
    );
    assert!(changes[1].0 == "sgid" && changes[1].1.starts_with("setgid bit removed (mode 2755 -> 0755"));
    assert!(changes[2].0 == "suid" && changes[2].1.starts_with("setuid bit removed (mode 4755 -> 0755"));
    for name in ["suid", "sgid", "both", "plain"] {
        assert_eq!(fs::metadata(d.path().join(name)).unwrap().mode() & 0o6000, 0, "{name}");
    }
    // The record is of what is on disk now.
    assert_eq!(t.digest, digest_tree(d.path()).unwrap().digest);
    assert!(t.entries.iter().all(|e| e.mode.unwrap() & 0o6000 == 0));
}

#[test]
fn special_files_are_removed_and_reported_unless_kept() {
    let d = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(&d.path().join("fifo"), Mode::from_bits_truncate(0o666)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
    let kept = digest_output(d.path(), &mut Budget::unlimited(), Keep { suid: false, dev: true });
    assert_eq!(kept.entries.iter().filter(|e| e.kind == "other").count(), 2);
    assert!(kept.cleaned.is_empty());

    let t = digest_output(d.path(), &mut Budget::unlimited(), Keep::default());
    assert!(t.entries.is_empty(), "{t:?}");
    assert_eq!(t.cleaned.len(), 2);
    assert!(t.cleaned[0].change.starts_with("fifo (mode 0") && t.cleaned[0].change.ends_with("removed"));
    assert!(t.cleaned[1].change.starts_with("socket"));
    assert!(!d.path().join("fifo").exists() && !d.path().join("sock").exists());
}

#[test]
fn the_budget_bounds_the_bytes_read_over_every_tree_and_says_what_it_left() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    fs::write(a.path().join("small"), vec![1u8; 600]).unwrap();
    fs::write(b.path().join("small"), vec![1u8; 300]).unwrap();
    fs::write(b.path().join("next"), vec![1u8; 300]).unwrap();
    let mut budget = Budget::of(1000);
    let ta = digest_output(a.path(), &mut budget, Keep::default());
    assert_eq!(ta.incomplete, None);
    let tb = digest_output(b.path(), &mut budget, Keep::default());
    // Sorted: `next` (300 B) fits in the 400 B left, `small` does not.
    let unread: Vec<&FileEntry> = tb.entries.iter().filter(|e| e.unread.is_some()).collect();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].path, "small");
    assert_eq!(unread[0].digest, None);
    let why = unread[0].unread.as_deref().unwrap();
    assert!(why.contains("limit of 1000 B") && why.contains("--output-digest-limit"), "{why}");
    assert_eq!(tb.incomplete.as_deref(), Some("1 file(s) not digested (see their entries)"));
    let whole = digest_output(b.path(), &mut Budget::unlimited(), Keep::default());
    assert_ne!(tb.digest, whole.digest, "an incomplete tree never equals the whole one");
}

#[test]
fn a_sparse_file_past_the_budget_costs_nothing_and_says_it_is_sparse() {
    let d = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(d.path().join("big")).unwrap();
    f.set_len(1 << 30).unwrap();
    let start = std::time::Instant::now();
    let t = digest_output(d.path(), &mut Budget::of(1 << 20), Keep::default());
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    let why = t.entries[0].unread.as_deref().unwrap();
    assert!(why.starts_with("not digested: its 1.0 GiB (sparse: 0 B on disk)"), "{why}");
    assert_eq!(t.entries[0].size, Some(1 << 30));
}

#[test]
fn deep_trees_are_cut_and_marked_incomplete() {
    let d = tempfile::tempdir().unwrap();
    let mut dir = open(d.path());
    for _ in 0..MAX_DEPTH + 5 {
        nix::sys::stat::mkdirat(dir.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(dir.as_fd(), "d", OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
    let t = digest_tree(d.path()).unwrap();
    assert_eq!(t.entries.len(), MAX_DEPTH);
    assert!(t.incomplete.as_deref().unwrap().contains("deeper than 256 levels"), "{t:?}");
    // The tempdir's own removal goes by path and fails this deep: unlink it here.
    let _ = std::process::Command::new("rm").arg("-rf").arg(d.path()).status();
}

#[test]
fn file_capabilities_are_removed_and_reported_unless_kept() {
    let setcap = |args: &[&str]| std::process::Command::new("setcap").args(args).status();
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("tool");
    fs::write(&f, "x").unwrap();
    let f_str = f.to_str().unwrap();
    // Setting one needs CAP_SETFCAP and the setcap tool: not every test host has both.
    if !nix::unistd::geteuid().is_root() || !setcap(&["cap_net_raw+ep", f_str]).is_ok_and(|s| s.success()) {
        println!("SKIP: file_capabilities_are_removed_and_reported_unless_kept: needs root and setcap");
        return;
    }
    let kept = digest_output(d.path(), &mut Budget::unlimited(), Keep { suid: true, dev: false });
    assert!(kept.cleaned.is_empty());
    let t = digest_output(d.path(), &mut Budget::unlimited(), Keep::default());
    assert_eq!(t.cleaned.len(), 1);
    assert_eq!(t.cleaned[0].change, "file capabilities (security.capability) removed");
    let again = digest_output(d.path(), &mut Budget::unlimited(), Keep::default());
    assert!(again.cleaned.is_empty(), "removed for good: {again:?}");
}

#[test]
fn sizes_read_in_binary_units() {
    assert_eq!(size_text(0), "0 B");
    assert_eq!(size_text(1023), "1023 B");
    assert_eq!(size_text(1536), "1.5 KiB");
    assert_eq!(size_text(3 << 20), "3.0 MiB");
    assert_eq!(size_text(5 << 30), "5.0 GiB");
    assert_eq!(size_text(5 << 40), "5.0 TiB");
}

fn input(p: &Path, cache: Option<&Path>) -> TreeDigest {
    digest_input(p, "input /data", cache).unwrap()
}

fn tree_of_many(d: &Path) {
    for i in 0..300 {
        let sub = d.join(format!("d{}", i % 7));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("f{i}")), format!("file {i}\n").repeat(i % 50)).unwrap();
    }
    std::os::unix::fs::symlink("d0/f0", d.join("link")).unwrap();
}

#[test]
fn an_input_has_the_listing_entries_and_a_merkle_digest_of_them() {
    let d = tempfile::tempdir().unwrap();
    tree_of_many(d.path());
    let listing = digest_tree(d.path()).unwrap();
    let merkle = input(d.path(), None);
    assert_eq!(merkle.entries, listing.entries, "hashed on every core, the same entries");
    assert_eq!((merkle.files, merkle.bytes), (listing.files, listing.bytes));
    assert_eq!((merkle.scheme, listing.scheme), (Scheme::Merkle, Scheme::Listing));
    assert_eq!(merkle.digest, Scheme::Merkle.of_entries(&listing.entries));
    assert_ne!(merkle.digest, listing.digest);
    // A record from before Merkle digests compares like with like.
    assert!(listing.matches(&merkle) && merkle.matches(&listing) && merkle.matches(&merkle));
    fs::write(d.path().join("d3/f3"), "changed").unwrap();
    let changed = input(d.path(), None);
    assert!(!listing.matches(&changed) && !merkle.matches(&changed));
    let json = serde_json::to_value(&listing).unwrap();
    assert!(json.get("scheme").is_none(), "a listing digest is recorded as before: {json}");
    assert_eq!(serde_json::to_value(&merkle).unwrap()["scheme"], "merkle");
    let old: TreeDigest = serde_json::from_value(json).unwrap();
    assert_eq!(old.scheme, Scheme::Listing);
}

#[test]
fn the_merkle_digest_sees_every_change_and_where_it_is() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("a/b")).unwrap();
    fs::write(d.path().join("a/b/x"), "x").unwrap();
    fs::write(d.path().join("a.txt"), "t").unwrap();
    let base = input(d.path(), None).digest;
    fs::rename(d.path().join("a/b/x"), d.path().join("a/x")).unwrap();
    let moved = input(d.path(), None).digest;
    assert_ne!(base, moved, "a file moved to another directory");
    fs::set_permissions(d.path().join("a/b"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(moved, input(d.path(), None).digest, "a directory's mode");
    // A name cannot pass for a line of its directory's listing.
    let e = |path: &str, kind: &str, digest: Option<Digest>| FileEntry {
        path: path.into(),
        kind: kind.into(),
        size: digest.as_ref().map(|_| 1),
        digest,
        target: None,
        mode: Some(0o644),
        unread: None,
    };
    let x = Digest::of_bytes(b"x");
    let forged = format!("a {x}\nfile 0644 1 1:b");
    let one = vec![e(&forged, "file", Some(x.clone()))];
    let two = vec![e("a", "file", Some(x.clone())), e("b", "file", Some(x))];
    assert_ne!(Scheme::Merkle.of_entries(&one), Scheme::Merkle.of_entries(&two));
    let single = tempfile::NamedTempFile::new().unwrap();
    fs::write(single.path(), "abc").unwrap();
    let t = input(single.path(), None);
    assert_eq!((t.entries.len(), t.entries[0].digest.clone()), (1, Some(Digest::of_bytes(b"abc"))));
}

/// A cache file for the input `root` holding `entries`, as another exprun
/// (or an attacker) would write it.
fn plant(cache: &Path, root: &Path, entries: &[cache::Entry]) -> std::path::PathBuf {
    let dir = cache.join(cache::DIR);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let st = fs::metadata(root).unwrap();
    let name = Digest::of_bytes(format!("{}:{}", st.dev(), st.ino()).as_bytes()).hex()[..32].to_string();
    let file = dir.join(name);
    fs::write(&file, cache::serialize(entries)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// An entry for `file` saying its content is `claimed`, seen `after` ns
/// after its last change.
fn claim(file: &Path, claimed: &[u8], after: i64) -> cache::Entry {
    let st = nix::sys::stat::stat(file).unwrap();
    let key = cache::Key::of(&st);
    cache::Entry::new(key, key.mtime.max(key.ctime) + after, &Digest::of_bytes(claimed)).unwrap()
}

#[test]
fn a_trusted_cache_entry_is_believed_without_reading_the_file() {
    let d = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    fs::write(&f, "real").unwrap();
    let lie = claim(&f, b"cached", cache::RACY_WINDOW_NS);
    plant(cache.path(), d.path(), std::slice::from_ref(&lie));
    // The entry's digest, not the content's: the file was not read.
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, Some(Digest::of_bytes(b"cached")));
    // Racily clean: changed within the window before it was looked at.
    let racy = claim(&f, b"cached", cache::RACY_WINDOW_NS - 1);
    plant(cache.path(), d.path(), &[racy]);
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, Some(Digest::of_bytes(b"real")));
    // Another inode with the same size and times is another file.
    let mut other = lie.clone();
    other.key.ino += 1;
    plant(cache.path(), d.path(), &[other]);
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, Some(Digest::of_bytes(b"real")));
    // Same size, mtime put back: the ctime tells.
    plant(cache.path(), d.path(), &[lie]);
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    fs::write(&f, "RealX").unwrap();
    fs::write(&f, "REAL").unwrap();
    fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, Some(Digest::of_bytes(b"REAL")));
}

#[test]
fn an_untrusted_or_corrupt_cache_is_ignored_and_a_corrupt_one_replaced() {
    let d = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    fs::write(&f, "real").unwrap();
    let real = Some(Digest::of_bytes(b"real"));
    let lie = claim(&f, b"cached", cache::RACY_WINDOW_NS);
    let planted = plant(cache.path(), d.path(), std::slice::from_ref(&lie));
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o620)).unwrap();
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, real, "group-writable file");
    let planted = plant(cache.path(), d.path(), std::slice::from_ref(&lie));
    fs::set_permissions(planted.parent().unwrap(), fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, real, "world-writable directory");
    let st = nix::sys::stat::stat(d.path()).unwrap();
    let mut c = cache::Cache::open(cache.path(), &st);
    let notes = c.take_notes();
    assert!(notes.len() == 1 && notes[0].contains("mode 0777: group or others may write it"), "{notes:?}");
    assert_eq!(c.lookup(&nix::sys::stat::stat(&f).unwrap()), None);

    let planted = plant(cache.path(), d.path(), std::slice::from_ref(&lie));
    let mut bytes = fs::read(&planted).unwrap();
    bytes[cache::MAGIC.len() + 50] ^= 1;
    fs::write(&planted, &bytes).unwrap();
    let mut c = cache::Cache::open(cache.path(), &st);
    let notes = c.take_notes();
    assert!(notes.len() == 1 && notes[0].contains("corrupt (its checksum does not match"), "{notes:?}");
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, real);
    assert!(cache::parse(&fs::read(&planted).unwrap()).is_ok(), "rewritten whole");
    fs::write(&planted, b"short").unwrap();
    assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, real);

    if nix::unistd::geteuid().is_root() {
        let planted = plant(cache.path(), d.path(), &[lie]);
        nix::unistd::chown(&planted, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let mut c = cache::Cache::open(cache.path(), &st);
        let notes = c.take_notes();
        assert!(notes.len() == 1 && notes[0].contains("owned by uid 65534, not by you (uid 0)"), "{notes:?}");
        assert_eq!(input(d.path(), Some(cache.path())).entries[0].digest, real, "another user's file");
    }
}

#[test]
fn hashed_files_are_remembered_once_they_are_old_enough() {
    let d = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    tree_of_many(d.path());
    fs::write(d.path().join("young"), "y").unwrap();
    fs::hard_link(d.path().join("d0/f0"), d.path().join("hard")).unwrap();
    let first = input(d.path(), Some(cache.path()));
    let dir = cache.path().join(cache::DIR);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "all of them racily clean: nothing to keep");
    std::thread::sleep(std::time::Duration::from_nanos(cache::RACY_WINDOW_NS as u64 + 100_000_000));
    assert_eq!(input(d.path(), Some(cache.path())), first);
    let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let kept = cache::parse(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(kept.len() as u64, first.files - 1, "one entry for the two names of `hard`");
    assert!(kept.iter().all(cache::Entry::trusted));
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(file.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
    // Served from the cache now, and the same, without writing it again.
    let written = fs::metadata(&file).unwrap().ino();
    assert_eq!(input(d.path(), Some(cache.path())), first);
    assert_eq!(fs::metadata(&file).unwrap().ino(), written, "unchanged: not rewritten");
    assert_eq!(fs::read_dir(file.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
}

#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn shown(tty: bool, after: std::time::Duration, work: std::time::Duration) -> String {
    use std::time::Duration;
    let out = Shared::default();
    let p =
        progress::Progress::to(Box::new(out.clone()), tty, "input /data", after, Duration::from_secs(3600));
    p.listed(3 << 30);
    p.listed(1 << 30);
    p.hashed(1 << 30);
    p.file_done();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(|| p.report(stopped));
        std::thread::sleep(work);
        drop(stop);
    });
    let text = out.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[test]
fn progress_shows_only_for_slow_digests_in_place_on_a_terminal() {
    use std::time::Duration;
    assert_eq!(shown(false, Duration::from_secs(1), Duration::ZERO), "", "silent when fast");
    let plain = shown(false, Duration::from_millis(10), Duration::from_millis(300));
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines[0], "exprun: hashing input /data: 1.0 GiB of 4.0 GiB, 1 of 2 files (still listing)");
    assert!(lines.len() == 2 && lines[1].starts_with("exprun: hashed input /data: 4.0 GiB, 2 files in "));
    assert!(!plain.contains('\r'));
    let tty = shown(true, Duration::from_millis(10), Duration::from_millis(300));
    assert!(tty.starts_with("\rexprun: hashing input /data: 1.0 GiB of 4.0 GiB, 1 of 2 files"), "{tty:?}");
    assert!(tty.contains("\x1b[K\rexprun: hashed input /data") && tty.ends_with("\x1b[K\n"), "{tty:?}");
}
