//! Work on the items of a list with a few threads at once: downloads and
//! uploads of blobs, unpacking of layers.

use std::sync::Mutex;

/// `work` on every item, at most `jobs` (at least 1) at a time, started in the
/// items' order; the results in the order they ended. After the first error no
/// item is started, and that error is returned once the running ones end.
pub fn in_parallel<T, R, E, F>(items: &[T], jobs: usize, work: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(&T) -> Result<R, E> + Sync,
{
    let next = Mutex::new(items.iter());
    let results = Mutex::new(Vec::with_capacity(items.len()));
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(items.len().max(1)) {
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
            Ok::<_, String>(i * 2)
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
                return Err(format!("item {i}"));
            }
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("item 2"), "{e}");
        assert_eq!(started.load(Ordering::SeqCst), 3);
    }
}
