//! The mapped part of a mapped capture around its read position: pages are mapped in ahead
//! of the reader and handed back behind it in steps, so that one system call maps a whole
//! step (instead of a page fault every few pages) and read pages do not pile up as the
//! process's resident memory. For a file larger than the window, a helper thread makes
//! those system calls, so the reading thread (the critical path of an offline audit) only
//! records where it is; on a machine with a core to spare, the helper also reads the pages
//! it maps in, so the reader finds them in the cache the cores share (see [`warm`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use memmap2::Mmap;

/// Pages are mapped in and handed back in steps of this size, up to two steps ahead of the
/// reader and from two steps behind it. A caller that hands frames to other threads holds
/// back the pages they have yet to read ([`Window::hold_from`]); a read after a page was
/// handed back is still correct (the page is mapped again from the file, and stays mapped).
const WINDOW_STEP: usize = 4 << 20;

/// Keeps a mapped file's pages around its read position.
pub(super) enum Window {
    /// The reading thread makes the calls itself: a file within the window (everything is
    /// mapped in at once), or no thread could be started.
    Inline {
        pages: Pages,
        held_from: usize,
    },
    Helper(Helper),
}

impl Window {
    pub(super) fn new(map: &Arc<Mmap>) -> Self {
        if map.len() > 2 * WINDOW_STEP {
            if let Some(helper) = Helper::start(Arc::clone(map)) {
                return Window::Helper(helper);
            }
        }
        Window::Inline {
            pages: Pages::default(),
            held_from: usize::MAX,
        }
    }

    /// The reader is at `at`.
    pub(super) fn follow(&mut self, map: &Mmap, at: usize) {
        match self {
            Window::Inline { pages, held_from } => {
                pages.follow(map, at, *held_from);
            }
            Window::Helper(helper) => helper.follow(at),
        }
    }

    /// Nothing at or after `offset` is handed back.
    pub(super) fn hold_from(&mut self, offset: usize) {
        match self {
            Window::Inline { held_from, .. } => *held_from = offset,
            Window::Helper(helper) => helper.reach.held_from.store(offset, Ordering::Relaxed),
        }
    }
}

/// How far pages are mapped in and handed back.
#[derive(Default)]
pub(super) struct Pages {
    /// Mapped in up to here (a multiple of the step, or the end of the map).
    populated: usize,
    /// Handed back before here (a multiple of the step).
    released: usize,
    /// Also read the pages it maps in ([`warm`]): on the helper, with a core to spare.
    warm: bool,
}

impl Pages {
    /// Maps in and hands back what the reader's position `at` calls for; false when there
    /// was nothing to do.
    #[allow(unsafe_code)]
    fn follow(&mut self, map: &Mmap, at: usize, held_from: usize) -> bool {
        let mut worked = false;
        // Handed back first: a helper that fell behind (its core busy) bounds the resident
        // pages before it maps more.
        let behind = at.saturating_sub(2 * WINDOW_STEP).min(held_from);
        let behind = behind - behind % WINDOW_STEP;
        if behind > self.released {
            // SAFETY: MADV_DONTNEED on a read-only file mapping only drops this process's
            // page table entries; a later read, on any thread, maps the unchanged file
            // pages again. Both ends are multiples of the step (page aligned) and lie
            // inside the map.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.released,
                    behind - self.released,
                )
            };
            self.released = behind;
            worked = true;
        }
        // Steps the reader has already left are neither mapped in nor read: it has mapped
        // them itself, page faults and all.
        let from = self.populated.max(at - at % WINDOW_STEP);
        let ahead = (at + 2 * WINDOW_STEP).min(map.len());
        if ahead > from {
            let end = ahead.next_multiple_of(WINDOW_STEP).min(map.len());
            // Best effort: kernels before 5.14 do not know MADV_POPULATE_READ, and a file
            // cut short after it was mapped fails here (EFAULT) instead of raising SIGBUS.
            let mapped_in = map.advise_range(memmap2::Advice::PopulateRead, from, end - from);
            // Only pages the kernel just mapped in are read: past the end of a file cut
            // short, a read would raise SIGBUS.
            if self.warm && mapped_in.is_ok() {
                warm(map.get(from..end).unwrap_or_default());
            }
            self.populated = end;
            worked = true;
        }
        worked
    }
}

/// Bytes between the reads of [`warm`]: a cache line of x86-64 and most ARM cores.
const CACHE_LINE: usize = 64;

/// Reads a byte of every cache line of `bytes`. Done on the helper's core a step or two
/// ahead of the reader, it brings the lines through that core's cache into the cache both
/// cores share, where the reader finds them: it walks the records as a chain (each header
/// gives the next one's place), and would otherwise wait on memory at every record. A
/// prefetch hint or a `pread` of the same pages did not do it on the AMD machine; reads do
/// (one thread, 1M-packet mix, 8 alternating runs: 0.21-0.22 s -> 0.15-0.18 s).
fn warm(bytes: &[u8]) {
    // One load per line: black_box keeps the compiler from dropping or batching them.
    for byte in bytes.iter().step_by(CACHE_LINE) {
        std::hint::black_box(*byte);
    }
}

/// A thread that keeps the window for the reader. It sleeps until the reader crosses a
/// step, and stops when the reader is dropped.
pub(super) struct Helper {
    reach: Arc<Reach>,
    /// The reader wakes the helper when it reaches this offset (the next step).
    wake_at: usize,
    thread: Option<JoinHandle<()>>,
}

/// What the reader tells the helper.
struct Reach {
    at: AtomicUsize,
    held_from: AtomicUsize,
    stop: AtomicBool,
}

impl Helper {
    fn start(map: Arc<Mmap>) -> Option<Self> {
        let reach = Arc::new(Reach {
            at: AtomicUsize::new(0),
            held_from: AtomicUsize::new(usize::MAX),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&reach);
        let thread = thread::Builder::new()
            .name("capture-pages".into())
            .spawn(move || {
                // With one core, reading ahead would take time from the reader itself.
                let spare_core = thread::available_parallelism().is_ok_and(|n| n.get() > 1);
                let mut pages = Pages {
                    warm: spare_core,
                    ..Pages::default()
                };
                while !shared.stop.load(Ordering::Acquire) {
                    let at = shared.at.load(Ordering::Relaxed);
                    let held_from = shared.held_from.load(Ordering::Relaxed);
                    if !pages.follow(&map, at, held_from) {
                        // An unpark between the check and here makes park return at once.
                        thread::park();
                    }
                }
            })
            .ok()?;
        Some(Self {
            reach,
            wake_at: WINDOW_STEP,
            thread: Some(thread),
        })
    }

    fn follow(&mut self, at: usize) {
        self.reach.at.store(at, Ordering::Relaxed);
        if at >= self.wake_at {
            self.wake_at = at - at % WINDOW_STEP + WINDOW_STEP;
            if let Some(thread) = &self.thread {
                thread.thread().unpark();
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.reach.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The helper only makes system calls that return; a panic there (none is
            // expected) must not take the reader down with it.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::Duration;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Arc<Mmap>) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let chunk = vec![0x5a; 1 << 20];
        for _ in 0..len.div_ceil(chunk.len()) {
            file.write_all(&chunk).unwrap();
        }
        file.flush().unwrap();
        // SAFETY (test): the file is private to this test and only cut on purpose below.
        #[allow(unsafe_code)]
        let map = Arc::new(unsafe { Mmap::map(file.as_file()) }.unwrap());
        (file, map)
    }

    /// Drops `window` on another thread and waits a bounded time for it.
    fn dropped_in_time(window: Window) -> bool {
        let (done, finished) = mpsc::channel();
        thread::spawn(move || {
            drop(window);
            let _ = done.send(());
        });
        finished.recv_timeout(Duration::from_secs(20)).is_ok()
    }

    #[test]
    fn only_a_file_larger_than_the_window_gets_a_helper() {
        let (_small, map) = file_of(2 * WINDOW_STEP);
        assert!(matches!(Window::new(&map), Window::Inline { .. }));
        let (_large, map) = file_of(3 * WINDOW_STEP);
        assert!(matches!(Window::new(&map), Window::Helper(_)));
    }

    #[test]
    fn the_helper_stops_with_its_reader_wherever_the_reader_is() {
        let (_file, map) = file_of(6 * WINDOW_STEP);
        for stop_at in [0, WINDOW_STEP + 1, map.len()] {
            let mut window = Window::new(&map);
            let mut at = 0;
            while at < stop_at {
                window.follow(&map, at);
                at += 64 << 10;
            }
            window.follow(&map, stop_at);
            assert!(
                dropped_in_time(window),
                "the helper did not stop at {stop_at}"
            );
        }
    }

    /// Bytes of `map` this process has mapped in (its `Rss` in /proc/self/smaps).
    fn resident(map: &Mmap) -> usize {
        let start = format!("{:x}-", map.as_ptr() as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let kb = smaps
            .lines()
            .skip_while(|line| !line.starts_with(&start))
            .find_map(|line| line.strip_prefix("Rss:"))
            .and_then(|rss| rss.trim().strip_suffix("kB")?.trim().parse::<usize>().ok())
            .unwrap();
        kb * 1024
    }

    #[test]
    fn a_helper_that_fell_behind_maps_in_only_what_is_still_ahead() {
        let (_file, map) = file_of(16 * WINDOW_STEP);
        let mut pages = Pages::default();
        assert!(pages.follow(&map, 0, usize::MAX));
        assert!(resident(&map) >= 2 * WINDOW_STEP, "the first two steps");
        // The reader went on to step 10 while the helper's core was busy (the reader maps
        // in what it reads itself; here it reads nothing).
        assert!(pages.follow(&map, 10 * WINDOW_STEP, usize::MAX));
        // Steps 0-1 handed back, 2-9 left alone: only steps 10-11 are mapped in (and a
        // little around them: the kernel maps neighbouring pages of a fault).
        let resident = resident(&map);
        assert!(resident <= 2 * WINDOW_STEP + (1 << 20), "{resident} bytes");
    }

    #[test]
    fn a_file_cut_short_while_mapped_does_not_end_the_process() {
        let (file, map) = file_of(6 * WINDOW_STEP);
        // Cut before the helper starts: a cut while it reads the pages ahead would end the
        // process, as it would when the reader came to them (the hazard the docs name).
        file.as_file().set_len(WINDOW_STEP as u64).unwrap();
        // Mapping in pages past the new end is a failed call, not SIGBUS, and pages that
        // failed to map in are not read: here, and on the helper as the reader moves on.
        assert!(Pages::default().follow(&map, map.len(), usize::MAX));
        let mut warming = Pages {
            warm: true,
            ..Pages::default()
        };
        assert!(warming.follow(&map, map.len(), usize::MAX));
        let mut window = Window::new(&map);
        assert!(matches!(window, Window::Helper(_)));
        let mut at = 0;
        while at <= map.len() {
            window.follow(&map, at);
            at += 64 << 10;
        }
        assert!(dropped_in_time(window));
        // What is left of the file still reads.
        assert_eq!(map.get(..16), Some(&[0x5a; 16][..]));
    }
}
