//! What `exprun verify` finds: each replay's comparison, the variations'
//! outcomes and what they are attributed to, and the verdict.

use serde::{Deserialize, Serialize};

use super::compare::{FileReport, TreeReport};
use super::config::Settings;
use super::replay::Drift;

/// How one replay compared with the original.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplayReport {
    /// The replay's run id.
    pub run_id: String,
    /// The variations it ran under (empty: a plain replay).
    pub variation: Vec<String>,
    /// The original's exit status.
    pub expected_exit: Option<i32>,
    /// The replay's.
    pub actual_exit: Option<i32>,
    /// stdout and stderr, when not identical.
    pub streams: Vec<FileReport>,
    /// One report per output.
    pub outputs: Vec<TreeReport>,
    /// Everything that differs, as `exit`, `stdout`, `stderr` or
    /// `<destination>/<path>`.
    pub differs: Vec<String>,
    /// Output entries that could not be compared (not digested in full on one
    /// side), as `<destination>/<path>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
    /// Output entries whose content is the same and whose permission bits
    /// differ: a difference only with `--compare modes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mode_changes: Vec<String>,
    /// What differs but is left out by `--ignore`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// The GPU facts (model, driver, CUDA version) that differ from the
    /// original's, as `gpu NODE FACT: ORIGINAL -> REPLAY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// What one variation did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariationOutcome {
    /// The variation.
    pub variation: String,
    /// `changes-result`, `no-change` or `not-tested`.
    pub outcome: String,
    /// What it was (e.g. `uid 1000 (researcher)`), when tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// Why it was not tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// What it changes (alone or with the variations named in `with`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// The other variations it changes the result only together with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with: Vec<String>,
}

/// A variation (or combination) the result depends on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attribution {
    /// The variation, or `a+b` when only the combination changes the result.
    pub variation: String,
    /// What it changes, beyond what differs on a plain replay.
    pub changes: Vec<String>,
}

/// The verdict of `exprun verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// [`VERDICT_SCHEMA`].
    pub schema: String,
    /// The original run's id.
    pub run: String,
    /// `reproduced`, `differs`, or `could-not-compare` (nothing differs, but an
    /// output was not digested in full on one side).
    pub verdict: String,
    /// What drifted since the original (see `exprun replay`).
    pub drift: Vec<Drift>,
    /// The plain replays.
    pub replays: Vec<ReplayReport>,
    /// What differs on a plain replay: depends on the wall clock, randomness or
    /// scheduling, since nothing else changed.
    pub unstable: Vec<String>,
    /// The variations tried.
    pub varied: Vec<String>,
    /// Replays under variations, in the order made.
    pub variation_replays: Vec<ReplayReport>,
    /// The variations the result depends on.
    pub attributions: Vec<Attribution>,
    /// Variations that could not take effect (e.g. dirent-order without input
    /// directories of two or more entries), as `name: why`.
    pub not_applicable: Vec<String>,
    /// Each variation asked for: whether it changes the result, does not, or
    /// could not be tested. Variations are judged on what is stable on a
    /// plain replay (everything but `unstable`).
    #[serde(default)]
    pub variations: Vec<VariationOutcome>,
    /// Tolerance rules that matched no output file.
    pub unmatched_rules: Vec<String>,
    /// The settings compared with: the command line's and the settings file's.
    #[serde(default)]
    pub settings: Settings,
}

impl Verdict {
    /// Whether the run reproduced: every plain replay equal (within tolerance),
    /// and no variation changing the result.
    pub fn reproduced(&self) -> bool {
        self.verdict == "reproduced"
    }
}
