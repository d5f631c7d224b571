use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let r = crate::sys::lsetxattr(path, name, value);
    assert!(r.is_ok(), "setting {name} on {}: {r:?}", path.display());
}

fn mkdir(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// One entry of a tar as read back.
#[derive(Debug, PartialEq)]
struct Read {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    mtime: u64,
    size: u64,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_tar(path: &Path) -> Vec<Read> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let xattrs = e
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        let h = e.header();
        assert!(h.username_bytes().is_none_or(<[u8]>::is_empty), "no user names");
        assert!(h.groupname_bytes().is_none_or(<[u8]>::is_empty), "no group names");
        out.push(Read {
            path: e.path().unwrap().to_string_lossy().into_owned(),
            kind: h.entry_type().as_byte() as char,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            mtime: h.mtime().unwrap(),
            size: h.size().unwrap(),
            link: e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()),
            xattrs,
        });
    }
    out
}

fn paths(entries: &[Read]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Self { dir: tempfile::tempdir().unwrap() };
        fs::create_dir(f.upper()).unwrap();
        fs::create_dir(f.lower()).unwrap();
        f
    }
    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    fn lower(&self) -> PathBuf {
        self.dir.path().join("lower")
    }
    fn capture(&self, stubs: &[&str], epoch: u64, name: &str) -> Result<(Layer, Vec<Read>), Error> {
        self.capture_as(stubs, epoch, Compression::None, name)
    }
    fn capture_as(
        &self,
        stubs: &[&str],
        epoch: u64,
        compression: Compression,
        name: &str,
    ) -> Result<(Layer, Vec<Read>), Error> {
        let stubs: BTreeSet<PathBuf> = stubs.iter().map(PathBuf::from).collect();
        let out = self.dir.path().join(name);
        let c = Capture { upper: &self.upper(), lower: &[self.lower()], stubs: &stubs, epoch, compression };
        let layer = capture(&c, &out)?;
        assert_eq!(Digest::of_file(&out).unwrap(), (layer.digest.clone(), layer.size));
        let tar = match compression {
            Compression::None => out.clone(),
            Compression::Gzip => {
                let tar = out.with_extension("ungz");
                let mut gz = flate2::read::GzDecoder::new(fs::File::open(&out).unwrap());
                io::copy(&mut gz, &mut fs::File::create(&tar).unwrap()).unwrap();
                tar
            }
        };
        assert_eq!(Digest::of_file(&tar).unwrap(), (layer.diff_id.clone(), layer.tar_size));
        let read = read_tar(&tar);
        assert_eq!(read.len(), layer.entries);
        Ok((layer, read))
    }
}

#[test]
fn entries_are_sorted_with_fixed_times_and_hardlinks_kept() {
    let f = Fixture::new();
    let u = f.upper();
    write(&u.join("a/b"), "bee");
    write(&u.join("a-b"), "dash");
    fs::hard_link(u.join("a/b"), u.join("a/c")).unwrap();
    symlink("b", u.join("a/s")).unwrap();
    mkdir(&u.join("a/empty"), 0o2750);
    fs::set_permissions(u.join("a-b"), fs::Permissions::from_mode(0o4755)).unwrap();
    let (_, got) = f.capture(&[], 1_700_000_000, "l.tar").unwrap();
    assert_eq!(paths(&got), ["a", "a-b", "a/b", "a/c", "a/empty", "a/s"]);
    assert!(got.iter().all(|e| e.mtime == 1_700_000_000), "{got:?}");
    let by = |p: &str| got.iter().find(|e| e.path == p).unwrap();
    assert_eq!((by("a/b").kind, by("a/b").size), ('0', 3));
    assert_eq!((by("a/c").kind, by("a/c").link.as_deref(), by("a/c").size), ('1', Some("a/b"), 0));
    assert_eq!((by("a/s").kind, by("a/s").link.as_deref()), ('2', Some("b")));
    assert_eq!((by("a/empty").kind, by("a/empty").mode), ('5', 0o2750));
    assert_eq!(by("a-b").mode, 0o4755);
    assert_eq!(by("a").uid, u64::from(nix::unistd::geteuid().as_raw()));
}

#[test]
fn the_same_content_gives_the_same_bytes() {
    let make = |f: &Fixture, reverse: bool| {
        let u = f.upper();
        let mut names = vec!["x/1", "x/2", "y", "z/deep/file"];
        if reverse {
            names.reverse();
        }
        for n in names {
            write(&u.join(n), n);
            let t = nix::sys::time::TimeSpec::new(if reverse { 5 } else { 99_999 }, 7);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &u.join(n),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    };
    let (a, b) = (Fixture::new(), Fixture::new());
    make(&a, false);
    make(&b, true);
    let (la, _) = a.capture(&[], 42, "a.tar").unwrap();
    let (lb, _) = b.capture(&[], 42, "b.tar").unwrap();
    assert_eq!(la, lb);
    let (lc, _) = b.capture(&[], 43, "c.tar").unwrap();
    assert_ne!(la.diff_id, lc.diff_id, "the epoch is in every header");
    write(&b.upper().join("y"), "Y");
    let (ld, _) = b.capture(&[], 42, "d.tar").unwrap();
    assert_ne!(la.diff_id, ld.diff_id, "one changed byte");
}

#[test]
fn a_gzip_layer_holds_the_same_tar_and_is_the_same_each_time() {
    let f = Fixture::new();
    write(&f.upper().join("app/data.txt"), &"line of text\n".repeat(2000));
    write(&f.upper().join("app/run.sh"), "#!/bin/sh\n");
    let (plain, entries) = f.capture(&[], 7, "l.tar").unwrap();
    assert_eq!((plain.digest.clone(), plain.size), (plain.diff_id.clone(), plain.tar_size));
    let (gz, gz_entries) = f.capture_as(&[], 7, Compression::Gzip, "l.tar.gz").unwrap();
    assert_eq!((gz.diff_id.clone(), gz.tar_size), (plain.diff_id.clone(), plain.tar_size));
    assert_eq!(gz_entries, entries);
    assert_ne!(gz.digest, gz.diff_id);
    assert!(gz.size * 4 < gz.tar_size, "{} of {} bytes", gz.size, gz.tar_size);
    assert_eq!(gz.compression.media_type(), "application/vnd.oci.image.layer.v1.tar+gzip");
    let (again, _) = f.capture_as(&[], 7, Compression::Gzip, "again.tar.gz").unwrap();
    assert_eq!(again, gz);
    // A fixed header: no name, mtime 0.
    let bytes = fs::read(f.dir.path().join("l.tar.gz")).unwrap();
    assert_eq!((bytes[3], &bytes[4..8]), (0, &[0u8; 4][..]), "flags and mtime");
}

#[test]
fn whiteouts_become_wh_files() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: whiteouts_become_wh_files: mknod of a 0:0 character device needs root");
        return;
    }
    let f = Fixture::new();
    write(&f.lower().join("etc/gone"), "old");
    write(&f.lower().join("etc/kept"), "old");
    mkdir(&f.upper().join("etc"), fs::metadata(f.lower().join("etc")).unwrap().permissions().mode());
    nix::sys::stat::mknod(
        &f.upper().join("etc/gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    let (_, got) = f.capture(&[], 0, "l.tar").unwrap();
    assert_eq!(paths(&got), ["etc", "etc/.wh.gone"]);
    let wh = &got[1];
    assert_eq!((wh.kind, wh.size, wh.mode, wh.uid), ('0', 0, 0, 0));
}

#[test]
fn whiteout_files_marked_by_xattr_become_wh_files() {
    let f = Fixture::new();
    write(&f.upper().join("d/gone"), "");
    set_xattr(&f.upper().join("d/gone"), "user.overlay.whiteout", b"");
    let (_, got) = f.capture(&[], 0, "l.tar").unwrap();
    assert_eq!(paths(&got), ["d", "d/.wh.gone"]);
}

#[test]
fn opaque_directories_get_an_opq_marker() {
    let f = Fixture::new();
    write(&f.lower().join("opt/data/old"), "old");
    write(&f.upper().join("opt/data/new"), "new");
    set_xattr(&f.upper().join("opt/data"), "user.overlay.opaque", b"y");
    // "x" only says the directory holds whiteout files: not opaque.
    write(&f.upper().join("opt/other/file"), "f");
    set_xattr(&f.upper().join("opt/other"), "user.overlay.opaque", b"x");
    let (_, got) = f.capture(&[], 0, "l.tar").unwrap();
    assert_eq!(
        paths(&got),
        ["opt", "opt/data", "opt/data/.wh..wh..opq", "opt/data/new", "opt/other", "opt/other/file"]
    );
    assert!(got.iter().all(|e| e.xattrs.is_empty()), "overlay's own xattrs stay out: {got:?}");
    if nix::unistd::geteuid().is_root() {
        let g = Fixture::new();
        write(&g.upper().join("o/n"), "n");
        set_xattr(&g.upper().join("o"), "trusted.overlay.opaque", b"y");
        let (_, got) = g.capture(&[], 0, "l.tar").unwrap();
        assert_eq!(paths(&got), ["o", "o/.wh..wh..opq", "o/n"]);
    }
}

#[test]
fn what_exprun_made_for_the_run_stays_out() {
    let f = Fixture::new();
    let (l, u) = (f.lower(), f.upper());
    mkdir(&l.join("etc"), 0o755);
    mkdir(&l.join("tmp"), 0o1777);
    write(&l.join("etc/passwd"), "root");
    // Mount points exprun made: empty files and directories, and the copies
    // of their parents.
    mkdir(&u.join("etc"), 0o755);
    write(&u.join("etc/hostname"), "");
    write(&u.join("etc/hosts"), "");
    mkdir(&u.join("tmp"), 0o1777);
    mkdir(&u.join("tmp/src"), 0o755);
    mkdir(&u.join("proc"), 0o755);
    mkdir(&u.join("dev"), 0o755);
    mkdir(&u.join("srv/app"), 0o755);
    // What assemble wrote.
    write(&u.join("opt/app/run.sh"), "echo");
    mkdir(&u.join("var/empty"), 0o700);
    let stubs = ["/proc", "/dev", "/dev/pts", "/etc/hostname", "/etc/hosts", "/tmp/src", "/srv/app"];
    let (_, got) = f.capture(&stubs, 0, "a.tar").unwrap();
    assert_eq!(paths(&got), ["opt", "opt/app", "opt/app/run.sh", "var", "var/empty"]);

    // assemble changed a copied-up directory's mode, and wrote into the
    // working directory exprun made: both are assemble's.
    fs::set_permissions(u.join("tmp"), fs::Permissions::from_mode(0o1775)).unwrap();
    write(&u.join("srv/app/out"), "o");
    // A stub with content (assemble wrote to a file exprun may have made):
    // kept, as is anything in the builder already.
    write(&u.join("etc/hosts"), "127.0.0.1 x\n");
    let (_, got) = f.capture(&stubs, 0, "b.tar").unwrap();
    assert_eq!(
        paths(&got),
        [
            "etc",
            "etc/hosts",
            "opt",
            "opt/app",
            "opt/app/run.sh",
            "srv",
            "srv/app",
            "srv/app/out",
            "tmp",
            "var",
            "var/empty"
        ]
    );
}

#[test]
fn long_names_and_xattrs_survive() {
    let f = Fixture::new();
    let long = format!("{}/{}", "d".repeat(90), "f".repeat(90));
    write(&f.upper().join(&long), "x");
    symlink("t".repeat(150), f.upper().join("lnk")).unwrap();
    set_xattr(&f.upper().join(&long), "user.checksum", b"abc =1");
    set_xattr(&f.upper().join(&long), "user.a", b"\x00\xff");
    let (_, got) = f.capture(&[], 0, "l.tar").unwrap();
    let file = got.iter().find(|e| e.path == long).unwrap();
    assert_eq!(
        file.xattrs,
        [
            ("SCHILY.xattr.user.a".to_string(), b"\x00\xff".to_vec()),
            ("SCHILY.xattr.user.checksum".to_string(), b"abc =1".to_vec())
        ]
    );
    let lnk = got.iter().find(|e| e.path == "lnk").unwrap();
    assert_eq!(lnk.link.as_deref(), Some("t".repeat(150).as_str()));

    set_xattr(&f.upper().join(&long), "user.multi", b"two\nlines");
    let e = f.capture(&[], 0, "m.tar").unwrap_err().to_string();
    assert!(e.contains("user.multi") && e.contains("newline"), "{e}");
}

#[test]
fn renamed_lower_directories_are_refused() {
    let f = Fixture::new();
    mkdir(&f.upper().join("moved"), 0o755);
    set_xattr(&f.upper().join("moved"), "user.overlay.redirect", b"/orig");
    let e = f.capture(&[], 0, "l.tar").unwrap_err().to_string();
    assert!(e.contains("/moved") && e.contains("redirect"), "{e}");
}

#[test]
fn lower_entries_follow_overlay_rules() {
    let d = tempfile::tempdir().unwrap();
    let (l1, l2) = (d.path().join("1"), d.path().join("2"));
    write(&l1.join("a/x"), "x");
    write(&l1.join("b/y"), "y");
    write(&l1.join("c/z"), "z");
    write(&l1.join("keep/k"), "k");
    mkdir(&l2.join("a"), 0o755);
    set_xattr(&l2.join("a"), "user.overlay.opaque", b"y");
    write(&l2.join("b"), "now a file");
    write(&l2.join("keep/new"), "n");
    // A symlink of the image pointing at a host directory: never looked through.
    let host = d.path().join("host");
    write(&host.join("assemble"), "host file");
    mkdir(&l2.join("usr"), 0o755);
    std::os::unix::fs::symlink(&host, l2.join("usr/s2i")).unwrap();
    std::os::unix::fs::symlink("../../host", l2.join("rel")).unwrap();
    let layers = [l1, l2];
    let has = |p: &str| overlay::lookup(&layers, Path::new(p)).unwrap().is_some();
    assert!(!has("/usr/s2i/assemble"), "looked up through the layer's symlink on the host");
    assert!(!has("/rel/host/assemble"));
    assert!(has("/usr/s2i"), "the symlink itself is there");
    assert!(!has("/a/x"), "hidden by an opaque directory above");
    assert!(has("/a"));
    assert!(!has("/b/y"), "hidden by a file above");
    assert!(has("/c/z") && has("/keep/k") && has("/keep/new"));
    assert!(!has("/nothing"));
    assert!(has("/"));
}
