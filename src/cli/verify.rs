//! `exprun replay` and `exprun verify`.

use std::path::PathBuf;

use clap::Args;

use super::Globals;
use crate::error::Result;
use crate::image::ImageStore;
use crate::run::Replay;
use crate::verify::replay;

/// The options of `exprun replay`.
#[derive(Debug, Args)]
#[command(after_help = "The replay uses the recorded image and inputs by digest, the recorded argv, \
    environment, limits, mounts and pins. It first prints what differs from the original run (drift); \
    a different image, input or secret refuses the replay unless --allow-drift. Secret variables \
    are recorded as keyed digests: export them again before replaying; a secret recorded under \
    another state root's key cannot be compared, and the drift table says so.\n\n\
    Exit status: the command's own, as for exprun run; 125 when the replay cannot be made.")]
pub struct ReplayArgs {
    /// Run name, id or id prefix, or oci://REF for a run pushed with `exprun push --run`
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
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

/// Run `exprun replay`.
pub fn replay(globals: &Globals, a: ReplayArgs) -> Result<i32> {
    let root = globals.state();
    let store = ImageStore::open(&root.store_dir())?;
    let original = match a.run.strip_prefix("oci://") {
        Some(reference) => fetch(&root, &store, reference, &a.registry)?,
        None => {
            let mut record = root.read_record(&root.resolve_run(&a.run)?)?;
            crate::registry::artifact::localise(&mut record, &root.runs_dir());
            record
        }
    };
    let id = crate::fsutil::random_hex(16);
    let output_root = match &a.output_root {
        Some(d) => super::oci::absolute(d.clone())?,
        None => root.runs_dir().join(&id).join("outputs"),
    };
    let cgroups = crate::cgroups::CgroupHost::detect().map_err(crate::plan::Error::from)?;
    let prepared = replay::prepare(
        &store,
        &original,
        &output_root,
        &crate::record::host::facts(&cgroups),
        &crate::record::exprun_info(&root.cache_dir()),
        &|n| std::env::var(n).ok(),
        &crate::record::Key::open(root.dir())?,
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

/// Fetch a run pushed with `exprun push --run` (record, files, image).
fn fetch(
    root: &crate::state::Root,
    store: &ImageStore,
    reference: &str,
    registry: &super::registry::RegistryArgs,
) -> Result<crate::record::RunRecord> {
    let r = crate::registry::parse_ref(reference)?;
    let record = crate::registry::artifact::fetch_run(root, store, &r, &registry.options())?;
    eprintln!("exprun: fetched run {} from {r}", &record.run_id[..12]);
    Ok(record)
}

/// The options of `exprun verify`.
#[derive(Debug, Args)]
#[command(after_help = "Each replay runs as `exprun replay` would (and is recorded, with replay_of); \
    its exit status, stdout, stderr and output files are compared with the original's: bit-exact \
    first, then, for JSON and CSV/TSV files, number by number within the declared tolerances. \
    Whatever differs on a plain replay depends on the wall clock, randomness or scheduling. \
    With --vary, the run is replayed under the variations, and when the result changes, the \
    variations are bisected to name the one (or the combination) responsible.\n\n\
    Variations: hostname, user, tz, locale, umask, cpus, aslr, env-order, dirent-order (input \
    directories listed in another order), or all.\n\n\
    Exit status: 0 reproduced, 1 differs, 125 could not check.\n\n\
    Examples:\n  exprun verify --latest\n  \
    exprun verify train-42 --tolerance 'metrics.json:$.accuracy=1e-6' --json > verdict.json\n  \
    exprun verify train-42 --vary all")]
pub struct VerifyArgs {
    /// Run name, id or id prefix, or oci://REF for a run pushed with `exprun push --run`
    #[arg(value_name = "RUN", required_unless_present = "latest", conflicts_with = "latest")]
    run: Option<String>,
    /// Verify the most recently recorded run
    #[arg(short = 'l', long)]
    latest: bool,
    /// Number of plain replays
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Replay under these variations too (comma-separated, or all)
    #[arg(long, value_name = "LIST", action = clap::ArgAction::Append)]
    vary: Vec<String>,
    /// Tolerance for numbers in one file: FILE[:JSONPATH]=TOL, e.g. metrics.json:$.accuracy=1e-6
    #[arg(long, value_name = "RULE", action = clap::ArgAction::Append)]
    tolerance: Vec<String>,
    /// Relative tolerance for every number in JSON and CSV/TSV outputs
    #[arg(long, value_name = "X")]
    rtol: Option<String>,
    /// Absolute tolerance for every number in JSON and CSV/TSV outputs
    #[arg(long, value_name = "X")]
    atol: Option<String>,
    /// Verify even when the image, an input or a secret differs from the record
    #[arg(long = "allow-drift")]
    allow_drift: bool,
    /// Keep the replays' outputs under DIR (DIR/1, DIR/2, ...) instead of removing them
    #[arg(long = "keep-outputs", value_name = "DIR")]
    keep_outputs: Option<PathBuf>,
    /// Print the verdict as JSON (schema exprun.dev/verify/v1)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

/// Run `exprun verify`.
pub fn verify(globals: &Globals, a: VerifyArgs) -> Result<i32> {
    use crate::verify::check;
    let root = globals.state();
    let original = match a.run.as_deref().map(|r| (r, r.strip_prefix("oci://"))) {
        Some((_, Some(reference))) => {
            fetch(&root, &ImageStore::open(&root.store_dir())?, reference, &a.registry)?
        }
        given => {
            let id = match given {
                Some((r, _)) => root.resolve_run(r)?,
                None => root.latest_run()?,
            };
            let mut record = root.read_record(&id)?;
            crate::registry::artifact::localise(&mut record, &root.runs_dir());
            record
        }
    };
    let options = check::VerifyOptions {
        runs: a.runs,
        vary: crate::verify::vary::Variation::parse_list(&a.vary)?,
        tolerances: crate::verify::compare::Tolerances::parse(
            a.rtol.as_deref(),
            a.atol.as_deref(),
            &a.tolerance,
        )
        .map_err(crate::verify::Error::from)?,
        allow_drift: a.allow_drift,
        keep_outputs: a.keep_outputs.map(super::oci::absolute).transpose()?,
    };
    let verdict = check::verify(&root, &original, &options)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict).unwrap_or_default());
    } else {
        print!("{}", check::render(&verdict));
    }
    Ok(if verdict.reproduced() { 0 } else { 1 })
}
