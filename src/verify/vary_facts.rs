//! What the variations take from the image and this host, so that each
//! changes what the program sees and nothing else: a user the image's
//! `/etc/passwd` knows, a locale the image has, and the CPU count files a
//! program reads (`/sys/devices/system/cpu/online`, `/proc/cpuinfo`) for the
//! CPUs the replay is bound to. When the image lacks what a variation needs,
//! the variation is reported as not tested, with the reason.

use std::io;
use std::path::{Path, PathBuf};

/// A user of the image's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// The users of a passwd file, in file order (malformed lines skipped).
pub fn passwd_users(passwd: &str) -> Vec<ImageUser> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (name, uid, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            (!name.is_empty() && !name.starts_with('#')).then(|| ImageUser {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// The user the `user` variation runs as: for root, the first ordinary user
/// (uid 1000 and above, but not nobody), else nobody, else any other; for
/// another user, root. Err: why none.
pub fn other_user(passwd: Option<&str>, uid: u32) -> Result<ImageUser, String> {
    let Some(passwd) = passwd else {
        return Err("the image has no /etc/passwd, so no other user its programs know".into());
    };
    let users = passwd_users(passwd);
    let others: Vec<&ImageUser> = users.iter().filter(|u| u.uid != uid).collect();
    let pick = if uid == 0 {
        others
            .iter()
            .find(|u| u.uid >= 1000 && u.uid != 65534)
            .or_else(|| others.iter().find(|u| u.uid == 65534))
            .or_else(|| others.first())
    } else {
        others.iter().find(|u| u.uid == 0)
    };
    pick.map(|u| (*u).clone()).ok_or_else(|| {
        format!("the image's /etc/passwd has no user but uid {uid}; add one to the image to test this")
    })
}

/// The locales an image has: the directories of `/usr/lib/locale` (glibc's
/// compiled locales, `C.utf8` among them on Debian) and the locales enabled in
/// `/etc/locale.gen` (compiled into `/usr/lib/locale/locale-archive`).
pub fn image_locales(layers: &[PathBuf]) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let archive = crate::image::overlay::lookup(layers, Path::new("usr/lib/locale/locale-archive"))?;
    if archive.is_some_and(|(_, m)| m.is_file()) {
        let gen = crate::spec::user::read_image_file(layers, Path::new("etc/locale.gen"))?;
        for l in gen.iter().flat_map(|g| g.lines()) {
            let l = l.trim();
            if let Some(name) = l.split_whitespace().next().filter(|_| !l.starts_with('#')) {
                out.push(name.to_string());
            }
        }
    }
    // Each layer's directories, as the merged image shows them (a directory
    // hidden by a layer above is not listed by `lookup`).
    let mut names = Vec::new();
    for l in layers {
        if let Ok(rd) = std::fs::read_dir(l.join("usr/lib/locale")) {
            names.extend(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        }
    }
    names.sort();
    names.dedup();
    for n in names {
        let rel = Path::new("usr/lib/locale").join(&n);
        let present = crate::image::overlay::lookup(layers, &rel)?;
        if present.is_some_and(|(_, m)| m.is_dir()) && !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// A locale name as glibc compares it: `fr_FR.UTF-8` and `fr_FR.utf8` are one.
fn normalise(locale: &str) -> String {
    match locale.split_once('.') {
        Some((lang, codeset)) => {
            let cs: String = codeset
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            format!("{lang}.{cs}")
        }
        None if locale.is_empty() || locale == "POSIX" => "C".into(),
        None => locale.to_string(),
    }
}

/// The locale the `locale` variation sets, from those the image has: one
/// other than `current` (the run's LC_ALL, else LANG, else C), preferring a
/// language's locale to C.UTF-8. Err: why none.
pub fn other_locale(available: &[String], current: &str) -> Result<String, String> {
    let cur = normalise(current);
    let others: Vec<&String> = available.iter().filter(|l| normalise(l) != cur).collect();
    others
        .iter()
        .find(|l| !l.starts_with("C.") && !l.starts_with("POSIX"))
        .or_else(|| others.first())
        .map(|l| (*l).clone())
        .ok_or_else(|| {
            format!(
                "the image has no locale but {current} (none in /usr/lib/locale or /etc/locale.gen); \
                 install one in the image (Debian: locales, with a line in /etc/locale.gen) to test this"
            )
        })
}

/// The CPU count files of the `cpus` variation, written under `dir` for the
/// CPUs `cpus`: `online` (the list, as the kernel writes it) and `cpuinfo`
/// (this host's entries for those CPUs only).
pub fn write_cpu_files(dir: &Path, cpus: &[usize]) -> io::Result<(PathBuf, PathBuf)> {
    let online = dir.join("online");
    std::fs::write(&online, format!("{}\n", crate::spec::options::format_cpuset(cpus)))?;
    let host = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpuinfo = dir.join("cpuinfo");
    std::fs::write(&cpuinfo, cpuinfo_for(&host, cpus))?;
    Ok((online, cpuinfo))
}

/// The stanzas of a cpuinfo text for the processors `cpus`.
fn cpuinfo_for(host: &str, cpus: &[usize]) -> String {
    let mut out = String::new();
    for stanza in host.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let n = stanza.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "processor").then(|| v.trim().parse::<usize>().ok()).flatten()
        });
        if n.is_some_and(|n| cpus.contains(&n)) {
            out.push_str(stanza.trim_end_matches('\n'));
            out.push_str("\n\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n\
        nobody:x:65534:65534::/nonexistent:/bin/false\nresearcher:x:1000:1001::/home/r:/bin/sh\n";

    #[test]
    fn the_other_user_is_one_the_image_knows() {
        assert_eq!(other_user(Some(PASSWD), 0).unwrap().uid, 1000);
        assert_eq!(other_user(Some(PASSWD), 1000).unwrap().uid, 0);
        let no_ordinary = "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        assert_eq!(other_user(Some(no_ordinary), 0).unwrap().gid, 65534);
        let e = other_user(Some("root:x:0:0::/:/bin/sh\n"), 0).unwrap_err();
        assert!(e.contains("no user but uid 0"), "{e}");
        assert!(other_user(None, 0).unwrap_err().contains("no /etc/passwd"));
    }

    #[test]
    fn the_other_locale_is_one_the_image_has() {
        let have = vec!["C.utf8".to_string(), "fr_FR.UTF-8".to_string()];
        assert_eq!(other_locale(&have, "C").unwrap(), "fr_FR.UTF-8");
        assert_eq!(other_locale(&have, "fr_FR.utf8").unwrap(), "C.utf8");
        assert_eq!(other_locale(&have[..1], "").unwrap(), "C.utf8");
        assert!(other_locale(&have[..1], "C.UTF-8").unwrap_err().contains("no locale but C.UTF-8"));
    }

    #[test]
    fn cpuinfo_keeps_the_bound_cpus_only() {
        let host = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\n";
        assert_eq!(cpuinfo_for(host, &[1]), "processor\t: 1\nmodel name\t: X\n\n");
    }

    #[test]
    fn locales_are_read_from_the_layers() {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("l0");
        std::fs::create_dir_all(l.join("usr/lib/locale/C.utf8")).unwrap();
        std::fs::create_dir_all(l.join("etc")).unwrap();
        std::fs::write(l.join("usr/lib/locale/locale-archive"), "").unwrap();
        std::fs::write(l.join("etc/locale.gen"), "# en_US.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n").unwrap();
        assert_eq!(image_locales(&[l]).unwrap(), ["de_DE.UTF-8", "C.utf8"]);
    }
}
