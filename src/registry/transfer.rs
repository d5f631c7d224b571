//! Moving several blobs at once, as `exprun pull` and `exprun push` do: a few
//! threads take blobs from a queue, each with its progress bar when stderr is a
//! terminal; the first error stops the others from taking more.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Error;
use crate::digest::Digest;

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

/// `work` on every item, `jobs` (1 to 16) at a time, in the items' order of
/// start; the results in the order they ended. After the first error no item is
/// started, and that error is returned once the running ones end.
pub(crate) fn in_parallel<T, R, F>(items: &[T], jobs: usize, work: F) -> Result<Vec<R>, Error>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R, Error> + Sync,
{
    let next = Mutex::new(items.iter());
    let results = Mutex::new(Vec::with_capacity(items.len()));
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 16).min(items.len().max(1)) {
            s.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let Some(item) = next.lock().ok().and_then(|mut it| it.next()) else { return };
                match work(item) {
                    Ok(r) => {
                        if let Ok(mut v) = results.lock() {
                            v.push(r);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn runs_every_item_at_most_jobs_at_once() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let items: Vec<u32> = (0..8).collect();
        let mut done = in_parallel(&items, 3, |&i| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            now.fetch_sub(1, Ordering::SeqCst);
            Ok(i * 2)
        })
        .unwrap();
        done.sort_unstable();
        assert_eq!(done, (0..8).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_first_error_stops_new_items() {
        let started = AtomicUsize::new(0);
        let items: Vec<u32> = (0..50).collect();
        let e = in_parallel(&items, 1, |&i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 2 {
                return Err(Error::Invalid { what: format!("item {i}"), why: "test".into() });
            }
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("item 2"), "{e}");
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }
}
