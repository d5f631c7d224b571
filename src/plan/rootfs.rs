//! What becomes the container's `/` (an image's layers under an overlay, or a
//! bundle's directory) and the mounts made in it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::host::Host;
use super::mounts::{self, MountOp};
use super::{Error, PlanContext, Result, Source};
use crate::cgroups::{CgroupPlan, Version};
use crate::image::ResolvedImage;

/// Longest overlayfs option string the kernel accepts in one page, with margin.
const MAX_OVERLAY_DATA: usize = 4000;

/// What becomes the container's `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsPlan {
    /// An overlay of an image's layers from the store and a per-run writable layer.
    Overlay(Overlay),
    /// A directory prepared by the caller (an OCI bundle's rootfs), used in place.
    Bundle {
        /// The directory, absolute.
        path: PathBuf,
    },
}

impl RootfsPlan {
    /// The directory that becomes `/`.
    pub fn target(&self) -> &Path {
        match self {
            RootfsPlan::Overlay(o) => &o.target,
            RootfsPlan::Bundle { path } => path,
        }
    }

    /// The store layers (diff_id hex) the root is made of.
    pub fn layers(&self) -> &[String] {
        match self {
            RootfsPlan::Overlay(o) => &o.lower,
            RootfsPlan::Bundle { .. } => &[],
        }
    }
}

/// The overlay that becomes the container's `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// The directory holding the layer directories (lowerdirs are relative to it,
    /// which keeps the mount data short).
    pub layers_root: PathBuf,
    /// Layer directory names, topmost first (overlayfs order).
    pub lower: Vec<String>,
    /// The per-run writable layer.
    pub upper: PathBuf,
    /// overlayfs's work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// The mount point.
    pub target: PathBuf,
    /// Where upper/ and work/ live.
    pub scratch: Scratch,
    /// The most bytes the writable layer's tmpfs holds (none on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_bytes: Option<u64>,
}

/// The writable layer's size without `--storage-opt size=` or `--memory`: a
/// container must not fill half of the host's memory (a tmpfs's own default).
pub const DEFAULT_SCRATCH_BYTES: u64 = 4 << 30;

/// Where the run's writable layer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scratch {
    /// A tmpfs that init mounts over the run directory inside its own mount
    /// namespace: no disk writes, charged to the run's memory cgroup, and gone with
    /// the namespace, whatever happens to exprun.
    Tmpfs,
    /// Directories on the state root's filesystem (`--keep`: kept after the run).
    Disk,
}

/// The root filesystem of `spec` from where `ctx` says it comes from.
pub(super) fn rootfs(spec: &Spec, ctx: &PlanContext<'_>, host: &Host) -> Result<RootfsPlan> {
    let linux = &*super::linux_of(spec);
    let root_path = spec.root().as_ref().map(|r| r.path().clone());
    Ok(match ctx.source {
        Source::Image { image, layers_root } => {
            let memory = linux.resources().as_ref().and_then(|r| r.memory().as_ref()).and_then(|m| m.limit());
            RootfsPlan::Overlay(overlay(ctx, image, layers_root, root_path, memory.filter(|l| *l > 0))?)
        }
        Source::Bundle { .. } => {
            let path = root_path.filter(|p| p.is_absolute()).ok_or_else(|| Error::Process {
                field: "root.path",
                why: "missing or not absolute (resolve it against the bundle first)".into(),
            })?;
            if !host.stat(&path).is_ok_and(|s| s.dir) {
                return Err(Error::Mount {
                    destination: "/".into(),
                    why: format!("the root filesystem {} is not a directory", path.display()),
                });
            }
            RootfsPlan::Bundle { path }
        }
    })
}

/// The config's mounts, in order: bind sources checked, a `cgroup` mount
/// expanded to the view of `cgroup` the container gets.
pub(super) fn mounts(
    spec: &Spec,
    ctx: &PlanContext<'_>,
    host: &Host,
    cgroup: &CgroupPlan,
    cgroup_ns: bool,
) -> Result<Vec<MountOp>> {
    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let mut op = mounts::resolve(&m)?;
        if op.bind && Path::new(&op.source).starts_with(ctx.state_dir) {
            // A file the run writes itself (hosts, hostname) before it starts.
            op.file = true;
        } else if op.bind && ctx.outputs.iter().any(|o| Path::new(&op.source) == o.source) {
            // An output directory, created (if missing) when the run is set up.
            op.file = false;
        } else if op.bind {
            let stat = host.stat(Path::new(&op.source)).map_err(|source| Error::Source {
                option: format!("mount {}", op.destination.display()),
                path: op.source.clone().into(),
                source,
            })?;
            op.file = !stat.dir;
        }
        if m.typ().as_deref() == Some("cgroup") {
            let v1 = cgroup.version == Version::V1;
            let expanded = if cgroup_ns {
                let h = v1.then(|| host.cgroups.v1_hierarchies(cgroup));
                mounts::cgroup_mounts(&op, mounts::CgroupView::Namespace(h.as_deref()))
            } else {
                let dirs: Vec<(String, PathBuf)> = if v1 {
                    host.cgroups.v1_hierarchy_dirs(cgroup).into_iter().map(|(n, _, d)| (n, d)).collect()
                } else {
                    cgroup.dirs.values().map(|d| (String::new(), d.clone())).collect()
                };
                mounts::cgroup_mounts(&op, mounts::CgroupView::Bind { v2: !v1, dirs: &dirs })
            };
            mounts.extend(expanded);
            continue;
        }
        // Two of exprun run's own mounts on one path is a mistake on the command
        // line; in a bundle a later mount stacks on an earlier one (CRI binds the
        // pod's /dev/shm over the default tmpfs), as with runc.
        let from_image = matches!(ctx.source, Source::Image { .. });
        if from_image && mounts.iter().any(|o: &MountOp| o.destination == op.destination) {
            return Err(Error::Mount {
                destination: op.destination.display().to_string(),
                why: "two mounts have this destination".into(),
            });
        }
        mounts.push(op);
    }
    Ok(mounts)
}

fn overlay(
    ctx: &PlanContext<'_>,
    image: &ResolvedImage,
    layers_root: &Path,
    root: Option<PathBuf>,
    memory: Option<i64>,
) -> Result<Overlay> {
    let target = root.unwrap_or_else(|| crate::spec::rootfs_dir(ctx.state_dir));
    let lower: Vec<String> = image.layers.iter().rev().map(|l| l.diff_id.hex().to_string()).collect();
    if lower.is_empty() {
        return Err(Error::Image { image: image.reference.clone(), why: "the image has no layers".into() });
    }
    let data_len: usize =
        lower.iter().map(|l| l.len() + 1).sum::<usize>() + 2 * ctx.state_dir.as_os_str().len() + 64;
    if data_len > MAX_OVERLAY_DATA {
        return Err(Error::Image {
            image: image.reference.clone(),
            why: format!(
                "{} layers do not fit in one overlayfs mount (limit about {} layers); squash the image",
                lower.len(),
                MAX_OVERLAY_DATA / 65
            ),
        });
    }
    Ok(Overlay {
        layers_root: layers_root.to_path_buf(),
        lower,
        upper: ctx.state_dir.join("upper"),
        work: ctx.state_dir.join("work"),
        target,
        scratch: if ctx.keep { Scratch::Disk } else { Scratch::Tmpfs },
        scratch_bytes: scratch_bytes(ctx, memory)?,
    })
}

/// The writable layer's size: as asked, else the memory limit (the tmpfs is
/// charged to the run's memory cgroup and cannot outgrow it anyway), else
/// [`DEFAULT_SCRATCH_BYTES`]. A kept layer is on disk, where no size applies.
fn scratch_bytes(ctx: &PlanContext<'_>, memory: Option<i64>) -> Result<Option<u64>> {
    match (ctx.keep, ctx.scratch_bytes) {
        (true, Some(_)) => Err(Error::Config(
            "--storage-opt size: a layer kept with --keep is written to disk, where exprun cannot \
             bound its size; drop one of the two"
                .into(),
        )),
        (true, None) => Ok(None),
        (false, Some(n)) => Ok(Some(n)),
        (false, None) => Ok(Some(memory.map_or(DEFAULT_SCRATCH_BYTES, |m| m as u64))),
    }
}
