//! The bounded, coalescing worker pool that runs blocking lookups.
//!
//! Callers [`submit`](Pool::submit) a key and get a [`Ticket`]; a worker thread runs the lookup
//! function on the key while callers [`wait`](Ticket::wait) on their tickets, each of which can
//! be interrupted or time out on its own. The pool:
//!
//! * **reuses** threads: an idle worker takes the next job and retires after `idle_timeout`;
//! * is **bounded**: at most `max_workers` threads exist, counting those stuck in a lookup that
//!   every caller has abandoned; further jobs wait in a FIFO queue;
//! * **withdraws** a queued job when its last caller gives up, so it never runs;
//! * **coalesces** identical keys: a key already queued or running gets another waiter instead
//!   of another lookup. Each waiter receives the shared outcome; one giving up leaves the others.
//!
//! All bookkeeping sits behind one mutex, held only for short, non-blocking updates. The lookup
//! itself runs without it. Outcomes are shared through `Arc`, so whichever of worker and callers
//! lets go last frees them.

use crate::signals::BlockedSignals;
use crate::wake::{WakeCell, Waker};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a pool sizes and names its threads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most worker threads alive at once (at least 1).
    pub max_workers: usize,
    /// How long an idle worker waits for work before it exits (changeable later).
    pub idle_timeout: Duration,
    /// Stack size of each worker thread, in bytes.
    pub stack_size: usize,
    /// Name given to worker threads (visible in `ps -L`, gdb, /proc).
    pub thread_name: String,
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads alive.
    pub workers: usize,
    /// Workers running a lookup (abandoned ones included).
    pub busy: usize,
    /// Workers waiting for work.
    pub idle: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Running lookups that no caller waits for any more.
    pub abandoned: usize,
    /// Submissions that joined an identical job instead of starting one (since the pool began).
    pub coalesced: u64,
    /// Lookups that ran to the end (since the pool began).
    pub completed: u64,
}

/// How a [`Ticket::wait`] ended.
#[derive(Debug)]
pub enum WaitEnd<O> {
    /// The lookup finished; the outcome is shared with any other waiter of the same job.
    Done(Arc<O>),
    /// The waiter was interrupted through its [`Waker`]; the ticket still waits for the job.
    Interrupted,
    /// The deadline passed first; the ticket still waits for the job.
    TimedOut,
    /// No worker thread could be started and none exists to run the job; carries the OS error.
    NoThread(std::io::Error),
    /// The lookup function panicked.
    Panicked,
}

type JobId = u64;
type LookupFn<K, O> = dyn Fn(&K) -> O + Send + Sync;

/// A pool of worker threads running `lookup` on keys of type `K`, producing outcomes `O`.
pub struct Pool<K, O> {
    shared: Arc<Shared<K, O>>,
}

struct Shared<K, O> {
    state: Mutex<State<K, O>>,
    work_ready: Condvar,
    lookup: Box<LookupFn<K, O>>,
    config: Config,
}

struct State<K, O> {
    jobs: HashMap<JobId, Job<K, O>>,
    /// Queued or running jobs by key, for coalescing. A finished job leaves at once.
    in_flight: HashMap<Arc<K>, JobId>,
    queue: VecDeque<JobId>,
    next_id: JobId,
    max_workers: usize,
    idle_timeout: Duration,
    workers: usize,
    idle: usize,
    busy: usize,
    abandoned: usize,
    coalesced: u64,
    completed: u64,
    /// Wake cells of finished waits, for reuse (cells are never freed, see `wake`).
    spare_cells: Vec<&'static WakeCell>,
}

struct Job<K, O> {
    key: Arc<K>,
    waiters: Vec<&'static WakeCell>,
    progress: Progress<O>,
}

enum Progress<O> {
    Queued,
    Running,
    Finished(Arc<O>),
    NoThread(std::io::Error),
    Panicked,
}

impl<K, O> Pool<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// Creates a pool; no thread starts until the first submission.
    pub fn new(config: Config, lookup: impl Fn(&K) -> O + Send + Sync + 'static) -> Self {
        let state = State {
            jobs: HashMap::new(),
            in_flight: HashMap::new(),
            queue: VecDeque::new(),
            next_id: 0,
            max_workers: config.max_workers.max(1),
            idle_timeout: config.idle_timeout,
            workers: 0,
            idle: 0,
            busy: 0,
            abandoned: 0,
            coalesced: 0,
            completed: 0,
            spare_cells: Vec::new(),
        };
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                work_ready: Condvar::new(),
                lookup: Box::new(lookup),
                config,
            }),
        }
    }

    /// Starts a lookup of `key`, or joins the identical one already queued or running.
    pub fn submit(&self, key: K) -> Ticket<K, O> {
        let mut state = self.shared.lock();
        let cell = state.spare_cells.pop().unwrap_or_else(WakeCell::leak_new);
        cell.reset();
        if let Some(&id) = state.in_flight.get(&key) {
            state.coalesced += 1;
            let job = state
                .jobs
                .get_mut(&id)
                .expect("in-flight job is registered");
            let was_abandoned = job.waiters.is_empty();
            job.waiters.push(cell);
            if was_abandoned {
                state.abandoned -= 1;
            }
            return self.ticket(id, cell);
        }
        let id = state.next_id;
        state.next_id += 1;
        let key = Arc::new(key);
        state.in_flight.insert(Arc::clone(&key), id);
        state.jobs.insert(
            id,
            Job {
                key,
                waiters: vec![cell],
                progress: Progress::Queued,
            },
        );
        state.queue.push_back(id);
        self.shared.staff_queue(state);
        self.ticket(id, cell)
    }

    fn ticket(&self, id: JobId, cell: &'static WakeCell) -> Ticket<K, O> {
        Ticket {
            shared: Arc::clone(&self.shared),
            id,
            cell,
            settled: false,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let state = self.shared.lock();
        Stats {
            workers: state.workers,
            busy: state.busy,
            idle: state.idle,
            queued: state.queue.len(),
            abandoned: state.abandoned,
            coalesced: state.coalesced,
            completed: state.completed,
        }
    }

    /// The cap on worker threads.
    pub fn max_workers(&self) -> usize {
        self.shared.lock().max_workers
    }

    /// Changes the cap (at least 1). Raising it starts workers for queued jobs; lowering it
    /// lets surplus workers exit as they finish their current lookup.
    pub fn set_max_workers(&self, max_workers: usize) {
        let mut state = self.shared.lock();
        state.max_workers = max_workers.max(1);
        self.shared.staff_queue(state);
    }

    /// Changes how long idle workers linger; workers idle right now apply it at once.
    pub fn set_idle_timeout(&self, idle_timeout: Duration) {
        self.shared.lock().idle_timeout = idle_timeout;
        self.shared.work_ready.notify_all();
    }
}

impl<K, O> Shared<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, State<K, O>> {
        // No code panics while holding the lock, but never let a poisoned flag wedge lookups.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes sure queued jobs have workers: wakes an idle one (never the whole idle crowd:
    /// callers add at most one job each time), starts new ones up to the cap.
    fn staff_queue<'a>(self: &'a Arc<Self>, mut state: MutexGuard<'a, State<K, O>>) {
        if !state.queue.is_empty() && state.idle > 0 {
            self.work_ready.notify_one();
        }
        while state.queue.len() > state.idle && state.workers < state.max_workers {
            state.workers += 1;
            state.idle += 1;
            drop(state);
            let spawned = self.spawn_worker();
            state = self.lock();
            if let Err(error) = spawned {
                state.workers -= 1;
                state.idle -= 1;
                if state.workers == 0 {
                    // Nobody will ever run the queued jobs: fail them rather than hang.
                    Self::fail_queue(&mut state, &error);
                }
                // With workers alive, queued jobs wait for one of them.
                return;
            }
        }
    }

    fn fail_queue(state: &mut State<K, O>, error: &std::io::Error) {
        while let Some(id) = state.queue.pop_front() {
            let job = state.jobs.get_mut(&id).expect("queued job is registered");
            job.progress = Progress::NoThread(std::io::Error::new(error.kind(), error.to_string()));
            for cell in &job.waiters {
                cell.notify_done();
            }
            let key = Arc::clone(&job.key);
            state.in_flight.remove(&key);
        }
    }

    fn spawn_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let shared = Arc::clone(self);
        // The new thread inherits a fully blocked signal mask (see `signals`).
        let _blocked = BlockedSignals::block_all();
        std::thread::Builder::new()
            .name(self.config.thread_name.clone())
            .stack_size(self.config.stack_size)
            .spawn(move || shared.work())
            .map(drop)
    }

    /// A worker's life: take queued jobs, idle for a while when there are none, then exit.
    /// A new worker starts counted as idle (by `staff_queue`), so that a job queued while
    /// the thread starts up does not make `staff_queue` start yet another one.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            let idle_since = Instant::now();
            while state.queue.is_empty() {
                let now = Instant::now();
                let retire_at = idle_since + state.idle_timeout;
                if now >= retire_at {
                    state.idle -= 1;
                    state.workers -= 1;
                    return;
                }
                state = self
                    .work_ready
                    .wait_timeout(state, retire_at - now)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            state.idle -= 1;
            let id = state.queue.pop_front().expect("queue is not empty");
            state = self.run(state, id);
            if state.workers > state.max_workers {
                state.workers -= 1;
                return;
            }
            state.idle += 1;
        }
    }

    /// Runs job `id` without the lock, then hands its outcome to the waiters.
    fn run<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<K, O>>,
        id: JobId,
    ) -> MutexGuard<'a, State<K, O>> {
        let job = state.jobs.get_mut(&id).expect("queued job is registered");
        job.progress = Progress::Running;
        let key = Arc::clone(&job.key);
        state.busy += 1;
        drop(state);

        let result = catch_unwind(AssertUnwindSafe(|| (self.lookup)(&key)));

        let mut state = self.lock();
        state.busy -= 1;
        state.completed += 1;
        state.in_flight.remove(&key);
        let job = state.jobs.get_mut(&id).expect("running job is registered");
        if job.waiters.is_empty() {
            state.abandoned -= 1;
            state.jobs.remove(&id);
            // The outcome nobody waits for drops here, after the lock.
            drop(state);
            drop(result);
            return self.lock();
        }
        job.progress = match result {
            Ok(outcome) => Progress::Finished(Arc::new(outcome)),
            Err(_) => Progress::Panicked,
        };
        for cell in &job.waiters {
            cell.notify_done();
        }
        state
    }
}

/// One caller's claim on a job. Dropping it before the job is done gives up the claim:
/// a queued job with no other waiter is withdrawn, a running one is left to finish alone.
pub struct Ticket<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    shared: Arc<Shared<K, O>>,
    id: JobId,
    cell: &'static WakeCell,
    /// The ticket has left its job (outcome taken or claim given up).
    settled: bool,
}

impl<K, O> Ticket<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// The handle that interrupts this ticket's [`wait`](Ticket::wait); async-signal-safe.
    pub fn waker(&self) -> Waker {
        self.cell.waker()
    }

    /// Forgets a past interrupt so that the next wait sleeps again.
    pub fn rearm(&self) {
        self.cell.clear_interrupt();
    }

    /// Waits for the outcome until interrupted or until `deadline`.
    ///
    /// After [`WaitEnd::Interrupted`] or [`WaitEnd::TimedOut`] the ticket still holds its place
    /// and may wait again; after any other end it is settled and further waits panic.
    pub fn wait(&mut self, deadline: Option<Instant>) -> WaitEnd<O> {
        assert!(!self.settled, "a settled ticket cannot wait again");
        loop {
            {
                let mut state = self.shared.lock();
                let job = state.jobs.get(&self.id).expect("waited job is registered");
                let end = match &job.progress {
                    Progress::Finished(outcome) => Some(WaitEnd::Done(Arc::clone(outcome))),
                    Progress::NoThread(error) => Some(WaitEnd::NoThread(std::io::Error::new(
                        error.kind(),
                        error.to_string(),
                    ))),
                    Progress::Panicked => Some(WaitEnd::Panicked),
                    Progress::Queued | Progress::Running => None,
                };
                if let Some(end) = end {
                    leave(&mut state, self.id, self.cell);
                    self.settled = true;
                    return end;
                }
                if self.cell.is_interrupted() {
                    return WaitEnd::Interrupted;
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return WaitEnd::TimedOut;
                }
            }
            // A completion between the unlock above and this sleep raises the done flag,
            // so the sleep returns at once: no wake-up is lost. Whatever woke us, look again.
            self.cell.sleep(deadline);
        }
    }
}

/// Removes the waiter `cell` from job `id`, withdrawing or releasing the job as needed.
fn leave<K: Eq + Hash, O>(state: &mut State<K, O>, id: JobId, cell: &'static WakeCell) {
    let job = state.jobs.get_mut(&id).expect("left job is registered");
    job.waiters.retain(|waiter| !std::ptr::eq(*waiter, cell));
    state.spare_cells.push(cell);
    if !job.waiters.is_empty() {
        return;
    }
    match job.progress {
        Progress::Queued => {
            let key = Arc::clone(&job.key);
            state.queue.retain(|queued| *queued != id);
            state.in_flight.remove(&key);
            state.jobs.remove(&id);
        }
        Progress::Running => state.abandoned += 1,
        Progress::Finished(_) | Progress::NoThread(_) | Progress::Panicked => {
            state.jobs.remove(&id);
        }
    }
}

impl<K, O> Drop for Ticket<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn drop(&mut self) {
        if !self.settled {
            leave(&mut self.shared.lock(), self.id, self.cell);
            self.settled = true;
        }
    }
}
