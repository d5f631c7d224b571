//! `exprun replay` and `exprun verify`.

use std::path::PathBuf;

use clap::Args;

use super::Globals;
use crate::error::Result;
use crate::image::ImageStore;
use crate::run::Replay;
use crate::state::Root;
use crate::verify::replay;

/// The options of `exprun replay`.
#[derive(Debug, Args)]
#[command(after_help = "The replay uses the recorded image and inputs by digest, the recorded argv, \
    environment, limits, mounts and pins. It first prints what differs from the original run (drift); \
    a different image, input or secret refuses the replay unless --allow-drift. Secret-looking variables \
    are recorded as digests: export them again before replaying.\n\n\
    Exit status: the command's own, as for exprun run; 125 when the replay cannot be made.")]
pub struct ReplayArgs {
    /// Run name, id or id prefix
    #[arg(value_name = "RUN")]
    run: String,
    /// Replay even when the image, an input or a secret differs from the record
    #[arg(long = "allow-drift")]
    allow_drift: bool,
    /// Write the outputs under DIR (an output at /out goes to DIR/out)
    /// [default: the replay's record directory, RUNS/<id>/outputs]
    #[arg(long = "output-root", value_name = "DIR")]
    output_root: Option<PathBuf>,
    /// Print the drift table and stop
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Run `exprun replay`.
pub fn replay(globals: &Globals, a: ReplayArgs) -> Result<i32> {
    let root = Root::new(&globals.root);
    let original = root.read_record(&root.resolve_run(&a.run)?)?;
    let id = crate::fsutil::random_hex(16);
    let output_root = match &a.output_root {
        Some(d) => super::oci::absolute(d.clone())?,
        None => root.runs_dir().join(&id).join("outputs"),
    };
    let store = ImageStore::open(&root.store_dir())?;
    let cgroups = crate::cgroups::CgroupHost::detect().map_err(crate::plan::Error::from)?;
    let prepared = replay::prepare(
        &store,
        &original,
        &output_root,
        &crate::record::host::facts(&cgroups),
        &crate::record::exprun_info(&root.cache_dir()),
        &|n| std::env::var(n).ok(),
    )?;
    let table = replay::render_drift(&prepared.drift);
    if prepared.blocked() && !a.allow_drift {
        return Err(crate::verify::Error::Drift { table }.into());
    }
    eprint!("{table}");
    if a.dry_run {
        return Ok(0);
    }
    let options = prepared.options;
    let result = crate::run::run_with(
        &root,
        &options,
        std::env::args().collect(),
        Replay {
            id: Some(id.clone()),
            of: Some(original.run_id.clone()),
            pins: original.determinism.as_ref(),
            inputs: Some(prepared.inputs),
            drift: prepared.drift,
            ..Replay::default()
        },
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing of a replay that never ran is kept.
            if a.output_root.is_none() && !root.runs_dir().join(&id).join("record.json").exists() {
                let _ = std::fs::remove_dir_all(root.runs_dir().join(&id));
            }
            return Err(e);
        }
    };
    if let Some(note) = &result.note {
        eprintln!("exprun: {note} (run {})", &id[..12]);
    }
    let outputs = if options.outputs.is_empty() {
        String::new()
    } else {
        format!("; outputs under {}", output_root.display())
    };
    eprintln!("exprun: replay of {} recorded as {}{outputs}", &original.run_id[..12], &id[..12]);
    Ok(result.exit_code)
}
