//! `exprun build`: source-to-image, the way OpenShift's s2i does it, reproducibly.
//!
//! Parse → plan → apply, as for a run:
//! 1. [`plan`] (no side effects): the `-t` name, the source directory (opened
//!    once, and its `.s2iignore` read, by [`source`]), the
//!    builder image resolved in the store, its scripts directory (the label
//!    `io.openshift.s2i.scripts-url`, `image:///PATH`, else `/usr/libexec/s2i`),
//!    the assemble and run scripts (both must be in the image), the user that
//!    assembles (the label `io.openshift.s2i.assemble-user`, else the image's
//!    `User`), where the source goes (`<io.openshift.s2i.destination>/src`,
//!    default `/tmp/src`) and `SOURCE_DATE_EPOCH`;
//! 2. a scratch directory `<root>/build/<run id>/` (locked, so a later build
//!    removes it if this exprun dies), and in it a copy of the source owned by
//!    the assembling user, every timestamp set to `SOURCE_DATE_EPOCH`, made by
//!    [`source`] through directory descriptors, never through a symlink (the
//!    source may be another user's), and its `.s2i/*` read from the copy;
//! 3. the assemble script runs as an ordinary `exprun run` of the builder
//!    (recorded, deterministic profile, no network unless `--network host`),
//!    with the copy bound at the source path and the writable layer on disk;
//!    when the run ends its upper directory is moved into the scratch
//!    directory instead of being discarded;
//! 4. [`layer`]: that upper directory, less what exprun itself made for the run
//!    (mount points, the working directory), becomes an OCI layer tar,
//!    byte-for-byte the same for the same content (gzip'd with `--compress`);
//! 5. [`image`]: the builder's config with the run script as `Cmd`, the layer's
//!    diff_id appended, written as an OCI layout and imported into the store
//!    with `ImageStore::import`, which verifies every blob, under the `-t` name;
//! 6. the scratch directory is removed, whatever happened.
//!
//! Two builds of the same source with the same builder and epoch give the same
//! manifest digest: nothing host-specific or random (the run id, the time, the
//! source's path) goes into the image. The run record of the assemble step is
//! the build's provenance; the store remembers the scratch directory (named by
//! the run id) as the image's source.

pub mod ignore;
pub mod image;
pub mod layer;
pub mod source;

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use crate::digest::Digest;
use crate::image::{ImageStore, ResolvedImage};
use crate::record::files::digest_tree;
use crate::spec::options::{HostMount, Network, RunOptions, SeccompChoice};
use crate::state::Root;

/// The label naming the builder's scripts directory.
pub const SCRIPTS_URL_LABEL: &str = "io.openshift.s2i.scripts-url";
/// The label naming the user that runs assemble.
pub const ASSEMBLE_USER_LABEL: &str = "io.openshift.s2i.assemble-user";
/// The label naming the directory the source goes into (as `DIR/src`).
pub const DESTINATION_LABEL: &str = "io.openshift.s2i.destination";
/// The scripts directory when the builder has no scripts-url label.
pub const DEFAULT_SCRIPTS_DIR: &str = "/usr/libexec/s2i";
/// Where the source goes when the builder has no destination label.
pub const DEFAULT_DESTINATION: &str = "/tmp";
/// The file in the source that lists paths assemble does not get.
pub const IGNORE_FILE: &str = ".s2iignore";

/// Build errors. Each names the option, label, path or run concerned and what
/// to do; all of them are exit status 125.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation of the build failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The source directory cannot be used.
    #[error("--source {}: {why}", path.display())]
    Source {
        /// The path as given (or the file inside it).
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// The `-t` name does not parse.
    #[error("-t {value:?}: {why}; give NAME[:TAG], e.g. -t myapp:1")]
    Tag {
        /// As given.
        value: String,
        /// Why.
        why: String,
    },
    /// An option is invalid.
    #[error("{option} {value:?}: {why}")]
    Option {
        /// The option.
        option: &'static str,
        /// As given.
        value: String,
        /// Why, and what to give instead.
        why: String,
    },
    /// The builder image cannot build.
    #[error("builder {builder}: {why}")]
    Builder {
        /// The builder reference as given.
        builder: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// The assemble script failed; the run record holds its output.
    #[error(
        "assemble ({script}) {how} in run {run}; no image was written. The run's record: exprun runs show \
         {run}; its output: {output}/stdout and stderr"
    )]
    Assemble {
        /// The script's path in the container.
        script: String,
        /// "exited with status 3", "was killed by SIGKILL", ...
        how: String,
        /// The run id.
        run: String,
        /// The directory holding the run's record and output.
        output: String,
    },
    /// The container's writable layer holds something no layer tar can carry.
    #[error("capturing the layer: {}: {why}", path.display())]
    Layer {
        /// The path in the container.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// exprun was asked to stop (SIGINT, SIGTERM, ...) during the build.
    #[error("interrupted by {signal}{}; no image was written", run.as_ref().map(|r| format!(" after run {r}")).unwrap_or_default())]
    Interrupted {
        /// The signal's name.
        signal: String,
        /// The assemble run, if it had started.
        run: Option<String>,
    },
    /// The build cannot be done by this caller.
    #[error("{0}")]
    Unsupported(String),
}

type Result<T, E = crate::Error> = std::result::Result<T, E>;

fn io_at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// What `exprun build` was asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--builder`: the builder image reference.
    pub builder: String,
    /// `--source`: the application source directory on the host.
    pub source: PathBuf,
    /// `-t`: the new image's `NAME[:TAG]`.
    pub tag: String,
    /// `-e`: environment of the assemble step (and, unless secret-looking, of
    /// the image), in order; later wins.
    pub env: Vec<(String, String)>,
    /// `--network`.
    pub network: Network,
    /// `--source-date-epoch`, else the caller's `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: u64,
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `-q`: do not copy the assemble step's output to exprun's own.
    pub quiet: bool,
    /// `--compress`: how the new layer's blob is compressed.
    pub compression: layer::Compression,
}

/// The build, resolved and checked: what the apply steps read.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// The builder, by digest.
    pub builder: ResolvedImage,
    /// The builder's unpacked layers, bottom first.
    pub builder_layers: Vec<PathBuf>,
    /// The new image's `name:tag`.
    pub name: String,
    /// The source directory on the host, open.
    pub source: source::Source,
    /// Its `.s2iignore`: what is left out of the copy assemble gets.
    pub ignore: ignore::Ignore,
    /// Where the source is in the container (`/tmp/src`).
    pub source_dest: PathBuf,
    /// The scripts directory in the builder.
    pub scripts_dir: PathBuf,
    /// The assemble script.
    pub assemble: PathBuf,
    /// The run script: the new image's `Cmd`.
    pub run: PathBuf,
    /// The user that runs assemble, as given to `-u` (`None`: the image's User).
    pub user: Option<String>,
    /// Its numeric ids in the builder, which own the copy of the source.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// `SOURCE_DATE_EPOCH`: every timestamp of the source copy and the layer,
    /// and the image's `created`.
    pub epoch: u64,
    /// How the new layer's blob is compressed.
    pub compression: layer::Compression,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The new image's `name:tag`.
    pub name: String,
    /// Its manifest digest.
    pub manifest_digest: Digest,
    /// The captured layer.
    pub layer: layer::Layer,
    /// The assemble step's run id.
    pub run_id: String,
    /// The source tree's digest (the label `dev.exprun.build.source-digest`).
    pub source_digest: Digest,
}

/// Resolve and check everything a build needs, without side effects.
pub fn plan(store: &ImageStore, opts: &BuildOptions) -> Result<BuildPlan> {
    let name = crate::image::reference::parse_name(&opts.tag).map_err(|e| Error::Tag {
        value: opts.tag.clone(),
        why: match e {
            crate::image::Error::InvalidReference { why, .. } => why,
            other => other.to_string(),
        },
    })?;
    let source = source::Source::open(&opts.source)?;
    let ignore = source.ignore()?;
    let builder = store.resolve(&opts.builder).map_err(|e| Error::Builder {
        builder: opts.builder.clone(),
        why: match e {
            crate::image::Error::NotFound { .. } => {
                "not in the image store; import it first with exprun image import (exprun image ls lists \
                 the images)"
                    .into()
            }
            other => other.to_string(),
        },
    })?;
    let builder_layers: Vec<PathBuf> = builder.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
    let bad = |why: String| Error::Builder { builder: opts.builder.clone(), why };
    let cfg = builder.config.config().clone().unwrap_or_default();
    let labels = cfg.labels().clone().unwrap_or_default();

    let scripts_dir = match labels.get(SCRIPTS_URL_LABEL).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => PathBuf::from(DEFAULT_SCRIPTS_DIR),
        Some(url) => {
            scripts_dir_of(url).map_err(|why| bad(format!("label {SCRIPTS_URL_LABEL}={url:?}: {why}")))?
        }
    };
    let where_from = if labels.contains_key(SCRIPTS_URL_LABEL) {
        format!("the label {SCRIPTS_URL_LABEL} names {}", scripts_dir.display())
    } else {
        format!(
            "the image has no label {SCRIPTS_URL_LABEL}, so the default {DEFAULT_SCRIPTS_DIR} was looked in"
        )
    };
    let script = |name: &str| -> Result<PathBuf> {
        let path = scripts_dir.join(name);
        match crate::image::overlay::lookup(&builder_layers, &path) {
            Ok(Some((_, m))) if !m.is_dir() => Ok(path),
            Ok(_) => Err(bad(format!(
                "no {name} script: {} is not in the image ({where_from}); an s2i builder needs \
                 assemble and run scripts there",
                path.display()
            ))
            .into()),
            Err(e) => Err(Error::Io { op: "looking for the script", path, source: e }.into()),
        }
    };
    let assemble = script("assemble")?;
    let run = script("run")?;

    let destination = match labels.get(DESTINATION_LABEL).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => PathBuf::from(DEFAULT_DESTINATION),
        Some(d) => container_dir(d).ok_or_else(|| {
            bad(format!("label {DESTINATION_LABEL}={d:?}: not an absolute path without '..'"))
        })?,
    };
    let source_dest = destination.join("src");

    let user = labels.get(ASSEMBLE_USER_LABEL).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let user_spec = user.clone().or_else(|| cfg.user().clone()).unwrap_or_default();
    let read = |p: &str| {
        crate::spec::user::read_image_file(&builder_layers, Path::new(p)).map_err(|source| Error::Io {
            op: "reading the builder's",
            path: Path::new("/").join(p),
            source,
        })
    };
    let resolved =
        crate::spec::user::resolve(&user_spec, read("etc/passwd")?.as_deref(), read("etc/group")?.as_deref())
            .map_err(|e| bad(format!("the user that runs assemble ({user_spec:?}): {e}")))?;

    Ok(BuildPlan {
        builder,
        builder_layers,
        name,
        source,
        ignore,
        source_dest,
        scripts_dir,
        assemble,
        run,
        user,
        uid: resolved.uid,
        gid: resolved.gid,
        epoch: opts.source_date_epoch,
        compression: opts.compression,
    })
}

/// The directory an `io.openshift.s2i.scripts-url` names: only `image:///PATH`,
/// a directory inside the builder, is taken.
pub fn scripts_dir_of(url: &str) -> Result<PathBuf, String> {
    if let Some(path) = url.strip_prefix("image://") {
        return container_dir(path).ok_or_else(|| {
            "an image:// URL must name an absolute directory in the image, e.g. image:///usr/libexec/s2i"
                .into()
        });
    }
    let scheme = url.split_once("://").map_or("a bare path", |(s, _)| s);
    Err(format!(
        "only image:///PATH (scripts inside the builder image) is supported, not {scheme}; exprun does not \
         fetch scripts from URLs or the host, since no digest would pin them: put the scripts into the \
         builder image and label it {SCRIPTS_URL_LABEL}=image:///PATH"
    ))
}

/// An absolute, normalised container path without `..`, or `None`.
fn container_dir(s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(p.components().collect())
}

/// The caller's `SOURCE_DATE_EPOCH`, `--source-date-epoch` first.
pub fn source_date_epoch(option: Option<&str>, env: Option<&str>) -> Result<u64, Error> {
    let parse = |option: &'static str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| Error::Option {
            option,
            value: v.into(),
            why: "not a number of seconds since 1970-01-01 00:00 UTC".into(),
        })
    };
    match (option, env.filter(|e| !e.is_empty())) {
        (Some(v), _) => parse("--source-date-epoch", v),
        (None, Some(v)) => parse("SOURCE_DATE_EPOCH (from the environment)", v),
        (None, None) => Ok(0),
    }
}

/// Build an image: see the module documentation for the steps.
pub fn build(root: &Root, opts: &BuildOptions, command_line: Vec<String>) -> Result<BuildResult> {
    if !nix::unistd::geteuid().is_root() || !crate::userns::in_initial_userns() {
        return Err(Error::Unsupported(
            "exprun build needs root for now: the source copy is given to the builder's user and the \
             captured layer keeps the container's owners, which a rootless caller cannot map back; \
             run it as root"
                .into(),
        )
        .into());
    }
    // From here on SIGINT, SIGTERM, ... are queued, not fatal: during the
    // assemble step the run stops the container on them, and between steps
    // they stop the build; either way the scratch directory is removed.
    let signals = crate::spawn::block_signals()?;
    let interrupted = |run: Option<&str>| -> Result<()> {
        match signals.read_signal() {
            Ok(Some(s)) => Err(Error::Interrupted {
                signal: crate::spawn::wait::signal_name(s.ssi_signo as i32),
                run: run.map(str::to_string),
            }
            .into()),
            _ => Ok(()),
        }
    };

    let store = ImageStore::open(&root.store_dir())?;
    let plan = plan(&store, opts)?;
    if std::fs::canonicalize(root.dir()).is_ok_and(|r| r.starts_with(&plan.source.path)) {
        return Err(Error::Source {
            path: opts.source.clone(),
            why: format!(
                "holds exprun's state root {}, where the source is copied to; give the application's own \
                 directory",
                root.dir().display()
            ),
        }
        .into());
    }
    remove_stale(root);
    interrupted(None)?;

    let id = crate::fsutil::random_hex(16);
    let scratch = Scratch::create(&root.dir().join(BUILD_DIR).join(&id))?;
    let src = scratch.dir.join("src");
    let copy = source::SourceCopy { ignore: &plan.ignore, uid: plan.uid, gid: plan.gid, epoch: plan.epoch };
    let copied = copy.copy(&plan.source, &src)?;
    let source_digest = digest_tree(&src)
        .map_err(|e| Error::Source { path: opts.source.clone(), why: format!("digesting the copy: {e}") })?
        .digest;
    let overrides = source::overrides(copied.as_fd(), &opts.source)?;
    drop(copied);
    // `.s2i/environment` first, then `-e`: the command line wins, as with s2i.
    let env: Vec<(String, String)> = overrides.env.into_iter().chain(opts.env.iter().cloned()).collect();
    let assemble = match overrides.assemble {
        true => plan.source_dest.join(".s2i/bin/assemble"),
        false => plan.assemble.clone(),
    };
    interrupted(None)?;

    // The assemble step: an ordinary recorded run of the builder, by digest.
    let run_opts = run_options(&plan, opts, &src, &env, &assemble);
    let upper = scratch.dir.join("upper");
    let result = crate::run::run_with(
        root,
        &run_opts,
        command_line,
        crate::run::Replay {
            id: Some(id.clone()),
            quiet: opts.quiet,
            keep_upper_at: Some(upper.clone()),
            stop_on_signal: true,
            ..Default::default()
        },
    )?;
    let record = root.read_record(&id)?;
    if let Some(f) = record.signals.first() {
        // The run passed the signal on to assemble; the build stops here.
        return Err(Error::Interrupted { signal: f.signal.clone(), run: Some(id) }.into());
    }
    if result.exit_code != 0 {
        let how = match (&record.exit.signal, &result.note) {
            (Some(sig), _) => format!("was killed by {sig}"),
            (None, Some(note)) => format!("exited with status {} ({note})", result.exit_code),
            (None, None) => format!("exited with status {}", result.exit_code),
        };
        let output = root.runs_dir().join(&id).display().to_string();
        return Err(Error::Assemble { script: assemble.display().to_string(), how, run: id, output }.into());
    }
    interrupted(Some(&id))?;

    // What exprun made for the run (mount points, the working directory) is
    // not the build's: the recorded spec says exactly what that was.
    let mut stubs: BTreeSet<PathBuf> =
        record.spec.mounts().iter().flatten().map(|m| m.destination().clone()).collect();
    if let Some(p) = record.spec.process() {
        stubs.insert(p.cwd().clone());
    }
    let layer_path = scratch.dir.join("layer.tar");
    let captured = {
        let _lock = store.lock_shared()?;
        layer::capture(
            &layer::Capture {
                upper: &upper,
                lower: &plan.builder_layers,
                stubs: &stubs,
                epoch: plan.epoch,
                compression: plan.compression,
            },
            &layer_path,
        )?
    };
    interrupted(Some(&id))?;

    let layout = scratch.dir.join("image");
    let manifest_digest = image::write_layout(
        &store,
        &layout,
        &image::NewImage {
            plan: &plan,
            layer: &captured,
            layer_path: &layer_path,
            env: &env,
            source_digest: &source_digest,
        },
    )?;
    interrupted(Some(&id))?;
    let imported = store.import(&layout, Some(&plan.name), crate::image::Progress::Hidden)?;
    if !imported.iter().any(|s| s.manifest_digest == manifest_digest) {
        return Err(Error::Io {
            op: "importing the built image",
            path: layout,
            source: io::Error::other("the store holds another digest than the one written"),
        }
        .into());
    }
    drop(scratch);
    Ok(BuildResult { name: plan.name, manifest_digest, layer: captured, run_id: id, source_digest })
}

/// The assemble step as `exprun run` options.
fn run_options(
    plan: &BuildPlan,
    opts: &BuildOptions,
    src: &Path,
    env: &[(String, String)],
    assemble: &Path,
) -> RunOptions {
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| k == "SOURCE_DATE_EPOCH") {
        env.push(("SOURCE_DATE_EPOCH".into(), plan.epoch.to_string()));
    }
    // By digest (with the name it was found by, for the record's readers), so
    // the run uses the builder that was planned even if the name moves.
    let image = match &plan.builder.name {
        Some(n) => format!("{}@{}", crate::image::reference::split_tag(n).0, plan.builder.manifest_digest),
        None => plan.builder.manifest_digest.to_string(),
    };
    RunOptions {
        image,
        command: vec![assemble.display().to_string()],
        entrypoint: Some(Vec::new()),
        env,
        workdir: None,
        user: plan.user.clone(),
        hostname: None,
        volumes: vec![HostMount {
            source: src.to_path_buf(),
            destination: plan.source_dest.clone(),
            readonly: false,
            keep: Default::default(),
        }],
        inputs: Vec::new(),
        outputs: Vec::new(),
        tmpfs: Vec::new(),
        memory: opts.memory,
        cpus: opts.cpus,
        pids_limit: opts.pids_limit,
        network: opts.network,
        name: None,
        keep: true,
        read_only: false,
        tty: false,
        interactive: false,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        ulimits: Vec::new(),
        cgroup_parent: None,
        pass_env: Vec::new(),
        passed_env: Vec::new(),
        unpin: Vec::new(),
        umask: None,
        aslr: true,
        cpuset: Vec::new(),
        seccomp: SeccompChoice::Default,
        no_limits: false,
        storage_size: None,
        output_digest_limit: None,
        devices: Default::default(),
        shm_size: None,
        ipc: Default::default(),
    }
}

/// Scratch directories of builds, under the state root.
pub const BUILD_DIR: &str = "build";

/// A build's scratch directory, locked while the build lives (so a later build
/// or `exprun gc` can tell an abandoned one), removed when dropped.
struct Scratch {
    dir: PathBuf,
    _lock: crate::fsutil::Lock,
}

impl Scratch {
    fn create(dir: &Path) -> Result<Self> {
        if let Some(parent) = dir.parent() {
            crate::fsutil::create_private_dir_all(parent).map_err(io_at("creating", parent))?;
        }
        std::fs::create_dir(dir).map_err(io_at("creating the build directory", dir))?;
        match crate::fsutil::Lock::acquire_dir(dir) {
            Ok(lock) => Ok(Self { dir: dir.to_path_buf(), _lock: lock }),
            Err(e) => {
                let _ = crate::fsutil::remove_tree(dir);
                Err(Error::Io { op: "locking", path: dir.to_path_buf(), source: e }.into())
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = crate::fsutil::remove_tree(&self.dir) {
            eprintln!("exprun: removing the build directory {}: {e}", self.dir.display());
        }
    }
}

/// Remove the scratch directories of builds whose exprun died. Returns how many.
pub fn remove_stale(root: &Root) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(root.dir().join(BUILD_DIR)).into_iter().flatten().flatten() {
        let dir = e.path();
        if let Ok(Some(lock)) = crate::fsutil::Lock::try_dir(&dir) {
            if crate::fsutil::remove_tree(&dir).is_ok() {
                n += 1;
            }
            drop(lock);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_url_takes_image_paths_only() {
        assert_eq!(scripts_dir_of("image:///usr/libexec/s2i").unwrap(), Path::new("/usr/libexec/s2i"));
        assert_eq!(scripts_dir_of("image:///opt/s2i/").unwrap(), Path::new("/opt/s2i"));
        for bad in ["http://example.com/s2i", "https://x/y", "file:///tmp/s2i", "/usr/libexec/s2i"] {
            let e = scripts_dir_of(bad).unwrap_err();
            assert!(e.contains("image:///PATH"), "{bad}: {e}");
        }
        assert!(scripts_dir_of("http://x").unwrap_err().contains("not http"));
        assert!(scripts_dir_of("image://relative/path").is_err());
        assert!(scripts_dir_of("image:///a/../b").is_err());
    }

    #[test]
    fn source_date_epoch_prefers_the_option() {
        assert_eq!(source_date_epoch(Some("10"), Some("20")).unwrap(), 10);
        assert_eq!(source_date_epoch(None, Some("20")).unwrap(), 20);
        assert_eq!(source_date_epoch(None, Some("")).unwrap(), 0);
        assert_eq!(source_date_epoch(None, None).unwrap(), 0);
        let e = source_date_epoch(Some("yesterday"), None).unwrap_err().to_string();
        assert!(e.contains("--source-date-epoch") && e.contains("seconds"), "{e}");
        let e = source_date_epoch(None, Some("-1")).unwrap_err().to_string();
        assert!(e.contains("SOURCE_DATE_EPOCH"), "{e}");
    }
}
