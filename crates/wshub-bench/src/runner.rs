//! Threads, phases and the progress line.
//!
//! Each worker thread runs a single-threaded tokio runtime with a `LocalSet`,
//! so a thread's connections share one read buffer and one set of
//! statistics without locks. The calling thread coordinates: it moves the
//! run from [`Phase::Setup`] to [`Phase::Run`] once every connection is
//! open, ends it, and draws the progress line.

use std::cell::RefCell;
use std::future::Future;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::stats::{Live, Timing};
use crate::target::Target;
use crate::{Config, Error};

/// Bytes of the read buffer each worker thread shares among its connections.
const READ_BUFFER: usize = 256 * 1024;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connections are being opened; the clock has not started.
    Setup,
    /// Load runs on this clock.
    Run(Timing),
    /// Connections close.
    Stop,
}

/// What every thread of a run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) target: Target,
    pub(crate) live: Live,
    phase: watch::Sender<Phase>,
}

impl Shared {
    pub(crate) fn new(config: Config, target: Target) -> Arc<Self> {
        Arc::new(Self {
            config,
            target,
            live: Live::default(),
            phase: watch::Sender::new(Phase::Setup),
        })
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub(crate) fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

/// Waits until the run leaves [`Phase::Setup`]; `None` if it went straight
/// to [`Phase::Stop`].
/// Waits for a shard's local tasks, re-raising a panic from any of them, and
/// returns the statistics they shared once every one has ended.
pub(crate) async fn join_local<S>(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Rc<RefCell<S>>,
) -> S {
    for task in tasks {
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    Rc::try_unwrap(stats)
        .unwrap_or_else(|_| unreachable!("every task holding the statistics has ended"))
        .into_inner()
}

pub(crate) async fn run_started(rx: &mut watch::Receiver<Phase>) -> Option<Timing> {
    let phase = rx.wait_for(|p| *p != Phase::Setup).await.map(|p| *p);
    match phase {
        Ok(Phase::Run(timing)) => Some(timing),
        _ => None,
    }
}

/// Waits for [`Phase::Stop`].
pub(crate) async fn stopped(mut rx: watch::Receiver<Phase>) {
    let _ = rx.wait_for(|p| *p == Phase::Stop).await;
}

/// One worker thread's state, shared by its connections.
#[derive(Debug)]
pub(crate) struct Shard {
    /// This thread's number, 0 to `threads - 1`.
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// The read buffer: borrowed only within one poll, never across an await.
    pub(crate) buf: RefCell<Vec<u8>>,
}

impl Shard {
    /// Connection indices (0 to `count - 1`) this thread owns.
    pub(crate) fn owned(&self, count: usize) -> impl Iterator<Item = usize> {
        (self.index..count).step_by(self.shared.config.threads)
    }
}

/// Starts `config.threads` worker threads, each running `make(shard)` to
/// completion on its own single-threaded runtime.
pub(crate) fn spawn_shards<R, Fut, Make>(
    shared: &Arc<Shared>,
    make: Make,
) -> Result<Vec<JoinHandle<std::io::Result<R>>>, Error>
where
    R: Send + 'static,
    Fut: Future<Output = R> + 'static,
    Make: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
{
    (0..shared.config.threads)
        .map(|index| {
            let make = make.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("wshub-bench-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let local = tokio::task::LocalSet::new();
                    let shard = Rc::new(Shard {
                        index,
                        shared,
                        buf: RefCell::new(vec![0; READ_BUFFER]),
                    });
                    Ok(local.block_on(&runtime, make(shard)))
                })
                .map_err(Error::Runtime)
        })
        .collect()
}

/// Waits for every worker thread and returns their results in thread order.
pub(crate) fn join_shards<R>(
    handles: Vec<JoinHandle<std::io::Result<R>>>,
) -> Result<Vec<R>, Error> {
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Error::Runtime(e)),
            Err(_) => Err(Error::WorkerPanicked),
        })
        .collect()
}

/// The calling thread's side of a run: it waits in short sleeps, checks
/// conditions and redraws the progress line.
#[derive(Debug)]
pub(crate) struct Coordinator {
    shared: Arc<Shared>,
    bar: Option<ProgressBar>,
    unit: &'static str,
    last_draw: Instant,
    rate_at: Instant,
    rate_events: u64,
    rate: f64,
}

impl Coordinator {
    /// `unit` names what [`Live::events`] counts, e.g. `msg`.
    pub(crate) fn new(shared: &Arc<Shared>, unit: &'static str) -> Self {
        let bar = (shared.config.progress && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        let now = Instant::now();
        Self {
            shared: shared.clone(),
            bar,
            unit,
            last_draw: now,
            rate_at: now,
            rate_events: 0,
            rate: 0.0,
        }
    }

    /// Returns once `done()` holds or every worker thread has ended.
    pub(crate) fn wait_until<R>(
        &mut self,
        handles: &[JoinHandle<R>],
        mut done: impl FnMut() -> bool,
    ) {
        while !done() && !handles.iter().all(JoinHandle::is_finished) {
            self.draw();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sleeps until `deadline`, or until every worker thread has ended.
    pub(crate) fn sleep_until<R>(&mut self, handles: &[JoinHandle<R>], deadline: Instant) {
        self.wait_until(handles, || Instant::now() >= deadline);
    }

    fn draw(&mut self) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if now - self.last_draw < Duration::from_millis(200) {
            return;
        }
        self.last_draw = now;
        let live = &self.shared.live;
        let events = Live::get(&live.events);
        if now - self.rate_at >= Duration::from_millis(500) {
            self.rate = (events - self.rate_events) as f64 / (now - self.rate_at).as_secs_f64();
            self.rate_at = now;
            self.rate_events = events;
        }
        let mode = self.shared.config.mode.name();
        let errors = Live::get(&live.errors);
        let message = match self.shared.phase() {
            Phase::Setup => format!(
                "{mode}: opening {}/{} connections, {} failed",
                Live::get(&live.opened),
                self.shared.config.connections(),
                Live::get(&live.failed)
            ),
            Phase::Run(t) => {
                let stage = if now < t.measure_from {
                    "warm-up"
                } else {
                    "measuring"
                };
                let elapsed = now.saturating_duration_since(t.start).as_secs_f64();
                let total = (t.end - t.start).as_secs_f64();
                if self.unit.is_empty() {
                    format!(
                        "{mode}: {stage} {elapsed:.1}/{total:.1} s, {} connections open, {errors} errors",
                        Live::get(&live.opened)
                    )
                } else {
                    format!(
                        "{mode}: {stage} {elapsed:.1}/{total:.1} s, {} {}/s, {errors} errors",
                        crate::report::thousands(self.rate),
                        self.unit
                    )
                }
            }
            Phase::Stop => format!("{mode}: closing connections, {errors} errors"),
        };
        bar.set_message(message);
        bar.tick();
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and checks that
/// `connections` fit, with a margin for the process's other files.
pub(crate) fn raise_file_limit(connections: usize) -> Result<(), Error> {
    let needed = connections as u64 + 64;
    #[cfg(unix)]
    if let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) {
        if needed > limit {
            return Err(Error::TooManyConnections {
                connections: connections as u64,
                needed,
                limit,
            });
        }
    }
    Ok(())
}
