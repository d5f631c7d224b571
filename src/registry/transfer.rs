//! Moving several blobs at once, as `exprun pull` and `exprun push` do: a few
//! threads take blobs from a queue ([`crate::parallel`]), each with its
//! progress bar when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Error;
use crate::digest::Digest;

/// `work` on every item, `jobs` (1 to 16) at a time; see
/// [`crate::parallel::in_parallel`].
pub(crate) fn in_parallel<T, R, F>(items: &[T], jobs: usize, work: F) -> Result<Vec<R>, Error>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R, Error> + Sync,
{
    crate::parallel::in_parallel(items, jobs.clamp(1, 16), work)
}

/// How blobs move: how many at once, and whether to draw bars.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Blobs moved at once (1 to 16).
    pub jobs: usize,
    /// Draw a progress bar per blob on stderr, when it is a terminal.
    pub progress: bool,
}

impl Default for Transfer {
    fn default() -> Self {
        Self { jobs: 3, progress: true }
    }
}

/// Progress bars, one per blob, on stderr; none when it is not a terminal.
/// They are cleared when this is dropped.
pub(crate) struct Bars(Option<MultiProgress>);

impl Bars {
    pub(crate) fn new(progress: bool) -> Self {
        Self(
            (progress && std::io::stderr().is_terminal())
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        )
    }

    /// A bar for blob `d` of `size` bytes: its short digest, then the bar.
    pub(crate) fn add(&self, d: &Digest, size: u64) -> Option<ProgressBar> {
        let m = self.0.as_ref()?;
        let bar = ProgressBar::new(size);
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(d.short().to_string());
        Some(m.add(bar))
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(m) = &self.0 {
            let _ = m.clear();
        }
    }
}
