use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

use super::*;
use crate::record::files::digest_tree;

fn me() -> (u32, u32) {
    (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
}

fn copy_of(from: &Path, to: &Path, ignore: &ignore::Ignore) -> Result<OwnedFd, Error> {
    let (uid, gid) = me();
    let source = Source::open(from)?;
    SourceCopy { ignore, uid, gid, epoch: 1234 }.copy(&source, to)
}

#[test]
fn s2i_environment_files_parse_or_name_the_line() {
    let env = parse_environment("# comment\n\nMODE=prod\n  GREETING=a=b \n").unwrap();
    assert_eq!(env, [("MODE".into(), "prod".into()), ("GREETING".into(), "a=b".into())]);
    assert_eq!(
        parse_environment("X=1\nnot a pair\n").unwrap_err(),
        "line 2: \"not a pair\" is not NAME=VALUE"
    );
    assert!(parse_environment("1X=2").unwrap_err().contains("not a variable name"));
}

#[test]
fn the_source_copy_has_fixed_times_and_owners() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("from");
    std::fs::create_dir_all(from.join("sub")).unwrap();
    std::fs::write(from.join("sub/a"), b"a").unwrap();
    symlink("sub/a", from.join("link")).unwrap();
    std::fs::set_permissions(from.join("sub/a"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let to = d.path().join("to");
    copy_of(&from, &to, &ignore::Ignore::default()).unwrap();
    let m = std::fs::symlink_metadata(to.join("sub/a")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime(), m.uid()), (0o751, 1234, me().0));
    assert_eq!(std::fs::read_link(to.join("link")).unwrap(), Path::new("sub/a"));
    assert_eq!(std::fs::symlink_metadata(to.join("link")).unwrap().mtime(), 1234);
    assert_eq!(std::fs::metadata(to.join("sub")).unwrap().mtime(), 1234);
    assert_eq!(std::fs::metadata(&to).unwrap().mtime(), 1234);
    assert_eq!(digest_tree(&from).unwrap().digest, digest_tree(&to).unwrap().digest);
}

#[test]
fn symlinks_in_the_source_are_copied_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret").unwrap();
    let from = d.path().join("from");
    std::fs::create_dir(&from).unwrap();
    symlink(outside.join("secret"), from.join("file")).unwrap();
    symlink(&outside, from.join("dir")).unwrap();
    let to = d.path().join("to");
    copy_of(&from, &to, &ignore::Ignore::default()).unwrap();
    assert_eq!(std::fs::read_link(to.join("file")).unwrap(), outside.join("secret"));
    assert_eq!(std::fs::read_link(to.join("dir")).unwrap(), outside);
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 2);
}

#[test]
fn ignored_paths_and_special_files() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("from");
    std::fs::create_dir_all(from.join("build")).unwrap();
    std::fs::write(from.join("build/out"), "x").unwrap();
    std::fs::write(from.join("keep"), "x").unwrap();
    nix::unistd::mkfifo(&from.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let to = d.path().join("to");
    let e = copy_of(&from, &to, &ignore::Ignore::default()).unwrap_err().to_string();
    assert!(e.contains("fifo") && e.contains("is not a regular file, directory or symlink"), "{e}");
    let to = d.path().join("to2");
    copy_of(&from, &to, &ignore::Ignore::parse("build\nfifo\n").unwrap()).unwrap();
    assert!(to.join("keep").exists() && !to.join("build").exists() && !to.join("fifo").exists());
}

#[test]
fn s2i_files_through_symlinks_are_refused_naming_the_link() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("environment"), "[host line\n").unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join(".s2i")).unwrap();
    symlink(outside.join("environment"), src.join(".s2i/environment")).unwrap();
    symlink(outside.join("environment"), src.join(".s2iignore")).unwrap();
    let s = Source::open(&src).unwrap();
    let e = s.ignore().unwrap_err().to_string();
    assert!(e.contains(".s2iignore: is a symlink (to ") && e.contains("never through a link"), "{e}");
    assert!(!e.contains("host line"), "{e}");
    let e = overrides(s.dir(), &src).err().unwrap().to_string();
    assert!(e.contains(".s2i/environment: is a symlink"), "{e}");
    assert!(!e.contains("host line"), "{e}");

    // A symlinked .s2i or .s2i/bin: refused whatever is behind it.
    std::fs::remove_file(src.join(".s2i/environment")).unwrap();
    std::fs::remove_dir(src.join(".s2i")).unwrap();
    symlink(&outside, src.join(".s2i")).unwrap();
    let e = overrides(s.dir(), &src).err().unwrap().to_string();
    assert!(e.contains(&format!("{}/.s2i: is a symlink", src.display())), "{e}");
    assert!(
        e.contains("exprun reads .s2i/* only inside the source") && e.contains("make it a real directory"),
        "{e}"
    );
    std::fs::remove_file(src.join(".s2i")).unwrap();
    std::fs::create_dir(src.join(".s2i")).unwrap();
    symlink(&outside, src.join(".s2i/bin")).unwrap();
    let e = overrides(s.dir(), &src).err().unwrap().to_string();
    assert!(e.contains(".s2i/bin: is a symlink"), "{e}");

    // A symlinked assemble is refused; a real one is taken.
    std::fs::remove_file(src.join(".s2i/bin")).unwrap();
    std::fs::create_dir(src.join(".s2i/bin")).unwrap();
    symlink("/bin/sh", src.join(".s2i/bin/assemble")).unwrap();
    let e = overrides(s.dir(), &src).err().unwrap().to_string();
    assert!(e.contains(".s2i/bin/assemble: is a symlink (to /bin/sh)"), "{e}");
    std::fs::remove_file(src.join(".s2i/bin/assemble")).unwrap();
    std::fs::write(src.join(".s2i/bin/assemble"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join(".s2i/bin/assemble"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(src.join(".s2i/environment"), "A=1\n").unwrap();
    let o = overrides(s.dir(), &src).unwrap();
    assert!(o.assemble);
    assert_eq!(o.env, [("A".to_string(), "1".to_string())]);
    // .s2i/bin/run is refused even as a dangling link.
    symlink("/nowhere", src.join(".s2i/bin/run")).unwrap();
    let e = overrides(s.dir(), &src).err().unwrap().to_string();
    assert!(e.contains(".s2i/bin/run: overrides the builder's run script"), "{e}");
}

#[test]
fn config_files_must_be_small_regular_utf8_files() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path();
    std::fs::create_dir(src.join(".s2iignore")).unwrap();
    let s = Source::open(src).unwrap();
    assert!(s.ignore().unwrap_err().to_string().contains("is not a regular file"));
    std::fs::remove_dir(src.join(".s2iignore")).unwrap();
    std::fs::write(src.join(".s2iignore"), vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    assert!(s.ignore().unwrap_err().to_string().contains("more than the 1048576 exprun reads"));
    std::fs::write(src.join(".s2iignore"), b"\xff\n").unwrap();
    assert!(s.ignore().unwrap_err().to_string().contains("is not UTF-8 text"));
    std::fs::write(src.join(".s2iignore"), b"*.log\n").unwrap();
    assert!(s.ignore().unwrap().ignores(Path::new("a.log")));
}

#[test]
fn the_source_argument_follows_only_roots_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real");
    std::fs::create_dir(&real).unwrap();
    symlink(&real, d.path().join("mine")).unwrap();
    symlink("real", d.path().join("relative")).unwrap();
    let s = Source::open(&d.path().join("mine/../mine/")).unwrap();
    assert_eq!(s.path, std::fs::canonicalize(&real).unwrap());
    assert_eq!(Source::open(&d.path().join("relative")).unwrap().path, s.path);
    let e = Source::open(&d.path().join("missing")).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    std::fs::write(d.path().join("file"), "").unwrap();
    let e = Source::open(&d.path().join("file")).unwrap_err().to_string();
    assert!(e.contains("is not a directory"), "{e}");
    if nix::unistd::geteuid().is_root() {
        let theirs = d.path().join("theirs");
        symlink(&real, &theirs).unwrap();
        std::os::unix::fs::lchown(&theirs, Some(4711), Some(4711)).unwrap();
        let e = Source::open(&theirs.join(".")).unwrap_err().to_string();
        assert!(e.contains("is a symlink owned by uid 4711, who is not root"), "{e}");
    }
}

#[test]
fn sources_deeper_than_the_limit_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("from");
    std::fs::create_dir(&from).unwrap();
    // Deeper than PATH_MAX allows by name: made one level at a time.
    let mut dir = nix::fcntl::open(&from, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..=MAX_DEPTH {
        mkdirat(dir.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(dir.as_fd(), "d", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
    let e = copy_of(&from, &d.path().join("to"), &ignore::Ignore::default()).unwrap_err().to_string();
    assert!(e.contains("is more than 256 directories deep"), "{e}");
}
