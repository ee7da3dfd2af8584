//! The bounded, fair, coalescing worker pool that runs blocking lookups.
//!
//! Callers [`submit`](Pool::submit) a key and get a [`Ticket`]; a worker thread runs the lookup
//! function on the key while callers [`wait`](Ticket::wait) on their tickets, each of which can
//! be interrupted or time out on its own. The pool:
//!
//! * is **bounded**: at most `max_workers` threads are idle or run lookups that are not stuck,
//!   and at most [`THREAD_CEILING`] × `max_workers` threads exist; further jobs wait in a queue;
//! * keeps **stalled work out of the way of healthy names**: a lookup that every caller
//!   abandoned, or that has been in flight for the stall threshold (500 ms, see
//!   [`set_stall_after`](Pool::set_stall_after)), is *stuck* and stops counting against
//!   `max_workers`; a zone holding `max_stuck_per_zone` stuck lookups since its last answer
//!   is *dead* and starts only probes, one per sub-zone, which re-open it when answered;
//!   zones holding no stuck lookup take their turns first. The rules, and why they give the
//!   guarantee that a name whose DNS answers is never delayed by stalls beyond the threshold,
//!   are in [`crate::policy`];
//! * **coalesces** identical keys: a key already queued or running with a caller still waiting
//!   gets another waiter instead of another lookup. Each waiter receives the shared outcome;
//!   one giving up leaves the others;
//! * **withdraws** a queued job when its last caller gives up, so it never runs;
//! * **forgets** a running job when its last caller gives up: it keeps its worker until the
//!   lookup function returns (a thread blocked in glibc cannot be stopped), its outcome is
//!   dropped, and an identical later submission starts a fresh lookup instead of joining one
//!   that may never answer (a lost packet, say);
//! * **shrinks**: idle workers wait on a stack and the most recently idle one takes the next
//!   job, so under a trickle of lookups the same few workers serve it and the surplus ones
//!   retire after `idle_timeout`.
//! * **hands over quickly**: while lookups and the gaps between them are short, callers and
//!   idle workers watch their wake-up flag for a moment before parking (see [`crate::spin`]),
//!   which spares both sides the cost of waking a parked thread.
//!
//! Nothing runs on a timer: the pool notices lookups crossing the stall threshold whenever it
//! looks at its books (a submission, a lookup's end, the stats), and a caller whose job is
//! queued wakes when the oldest running lookup crosses it, to start its job if that freed a
//! worker.
//!
//! All bookkeeping sits behind one mutex, held only for short, non-blocking updates. The lookup
//! itself runs without it. Outcomes are shared through `Arc`, so whichever of worker and callers
//! lets go last frees them. A panic in a worker's bookkeeping (a bug) does not wedge the pool:
//! the dying worker's counts are given back and its job, if any, is failed (see `WorkerExit`).

use crate::policy::{JobId, Policy, ZoneName};
pub use crate::policy::{Place, DEFAULT_STALL_AFTER, THREAD_CEILING};
use crate::signals::BlockedSignals;
use crate::spin::SpinPolicy;
use crate::wake::{WakeCell, Waker};
use std::collections::HashMap;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a pool sizes and names its threads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most worker threads idle or running lookups that are not stuck (at least 1).
    pub max_workers: usize,
    /// How long an idle worker waits for work before it exits (changeable later).
    pub idle_timeout: Duration,
    /// Stack size of each worker thread, in bytes.
    pub stack_size: usize,
    /// Name given to worker threads (visible in `ps -L`, gdb, /proc).
    pub thread_name: String,
    /// Stuck lookups begun since its last answer that make a zone dead (at least 1).
    pub max_stuck_per_zone: usize,
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads alive.
    pub workers: usize,
    /// Workers running a lookup (stuck ones included).
    pub busy: usize,
    /// Workers waiting for work.
    pub idle: usize,
    /// Jobs waiting for a worker (jobs held back by their zone not included).
    pub queued: usize,
    /// Running lookups that no caller waits for any more.
    pub abandoned: usize,
    /// Submissions that joined an identical job instead of starting one (since the pool began).
    pub coalesced: u64,
    /// Lookups that ran to the end (since the pool began).
    pub completed: u64,
    /// Dead zones: holding `max_stuck_per_zone` stuck lookups begun since their last answer.
    pub stuck_zones: usize,
    /// Queued jobs held back by their dead zone.
    pub waiting_for_zone: usize,
    /// Running lookups that are stuck (abandoned, or in flight past the stall threshold), which
    /// do not count against `max_workers`.
    pub stuck: usize,
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
    /// No worker thread could be started and none exists to run the job; carries the OS error
    /// (with its `raw_os_error` when the system gave one).
    NoThread(std::io::Error),
    /// The lookup function (or, through a bug, the pool's own bookkeeping) panicked.
    Panicked,
}

type LookupFn<K, O> = dyn Fn(&K) -> O + Send + Sync;
type PlaceFn<K> = dyn Fn(&K) -> Place + Send + Sync;
type AnsweredFn<O> = dyn Fn(&O) -> bool + Send + Sync;

/// A pool of worker threads running `lookup` on keys of type `K`, producing outcomes `O`.
pub struct Pool<K, O> {
    shared: Arc<Shared<K, O>>,
}

struct Shared<K, O> {
    state: Mutex<State<K, O>>,
    lookup: Box<LookupFn<K, O>>,
    place_of: Box<PlaceFn<K>>,
    answered: Box<AnsweredFn<O>>,
    config: Config,
    /// How long callers' waits for outcomes last, to decide whether they spin first.
    outcome_spin: SpinPolicy,
    /// How long idle workers' waits for jobs last, likewise.
    job_spin: SpinPolicy,
}

struct State<K, O> {
    jobs: HashMap<JobId, Job<K, O>>,
    /// Queued or running jobs that a caller still waits for, by key, for coalescing. A job
    /// leaves when it finishes or when its last caller gives up.
    in_flight: HashMap<Arc<K>, JobId>,
    /// Zones, queues, running lookups and their states (see [`crate::policy`]).
    policy: Policy,
    next_id: JobId,
    max_workers: usize,
    idle_timeout: Duration,
    workers: usize,
    idle: usize,
    coalesced: u64,
    completed: u64,
    /// Wake cells of idle workers asleep, most recently idle last. Always at most `idle` long.
    sleeping_workers: Vec<&'static WakeCell>,
    /// Wake cells of finished waits, for reuse (cells are never freed, see `wake`).
    spare_cells: Vec<&'static WakeCell>,
    /// Wake cells of retired workers, for reuse. Kept apart from the callers' cells, which
    /// may receive a late interrupt that no worker should ever see.
    spare_worker_cells: Vec<&'static WakeCell>,
}

struct Job<K, O> {
    key: Arc<K>,
    zone: ZoneName,
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

/// Whether a queued job is taken by a worker at once: its zone may start a job now, and a
/// worker is idle or one may start (`may_add_thread`, the policy's verdict).
fn a_worker_takes_it_now(zone_may_start: bool, idle: usize, may_add_thread: bool) -> bool {
    zone_may_start && (idle > 0 || may_add_thread)
}

impl<K, O> Pool<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// Creates a pool; no thread starts until the first submission. `place_of` names the zone
    /// (and sub-zone) of a key (see [`crate::policy`]); it runs on the submitting thread.
    /// Every lookup that returns counts as an answer of its zone.
    pub fn new<P: Into<Place>>(
        config: Config,
        place_of: impl Fn(&K) -> P + Send + Sync + 'static,
        lookup: impl Fn(&K) -> O + Send + Sync + 'static,
    ) -> Self {
        Self::with_answered(config, place_of, lookup, |_: &O| true)
    }

    /// Like [`new`](Pool::new), where only outcomes for which `answered` holds count as an
    /// answer of the lookup's zone (the resolver's timeouts do not: a dead zone's lookups end
    /// that way).
    pub fn with_answered<P: Into<Place>>(
        config: Config,
        place_of: impl Fn(&K) -> P + Send + Sync + 'static,
        lookup: impl Fn(&K) -> O + Send + Sync + 'static,
        answered: impl Fn(&O) -> bool + Send + Sync + 'static,
    ) -> Self {
        let state = State {
            jobs: HashMap::new(),
            in_flight: HashMap::new(),
            policy: Policy::new(config.max_stuck_per_zone),
            next_id: 0,
            max_workers: config.max_workers.max(1),
            idle_timeout: config.idle_timeout,
            workers: 0,
            idle: 0,
            coalesced: 0,
            completed: 0,
            sleeping_workers: Vec::new(),
            spare_cells: Vec::new(),
            spare_worker_cells: Vec::new(),
        };
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                lookup: Box::new(lookup),
                place_of: Box::new(move |key: &K| place_of(key).into()),
                answered: Box::new(answered),
                config,
                outcome_spin: SpinPolicy::new(),
                job_spin: SpinPolicy::new(),
            }),
        }
    }

    /// Starts a lookup of `key`, or joins the identical one that callers already wait for.
    pub fn submit(&self, key: K) -> Ticket<K, O> {
        let place = (self.shared.place_of)(&key);
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let cell = state.spare_cells.pop().unwrap_or_else(WakeCell::leak_new);
        cell.reset();
        if let Some(&id) = state.in_flight.get(&key) {
            state.coalesced += 1;
            if let Some(job) = state.jobs.get_mut(&id) {
                job.waiters.push(cell);
                return self.ticket(id, cell);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let key = Arc::new(key);
        let zone: ZoneName = place.zone.into();
        state.in_flight.insert(Arc::clone(&key), id);
        state.jobs.insert(
            id,
            Job {
                key,
                zone: Arc::clone(&zone),
                waiters: vec![cell],
                progress: Progress::Queued,
            },
        );
        state.policy.note_stalls(Instant::now());
        state.policy.enqueue(id, &zone, place.sub_zone.into());
        self.shared.staff(guard);
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

    /// Current counters (lookups that crossed the stall threshold counted as stuck).
    pub fn stats(&self) -> Stats {
        let mut state = self.shared.lock();
        if state.policy.note_stalls(Instant::now()) {
            self.shared.staff(state);
            state = self.shared.lock();
        }
        Stats {
            workers: state.workers,
            busy: state.policy.running(),
            idle: state.idle,
            queued: state.policy.ready_jobs(),
            abandoned: state.policy.abandoned(),
            coalesced: state.coalesced,
            completed: state.completed,
            stuck_zones: state.policy.dead_zones(),
            waiting_for_zone: state.policy.held_jobs(),
            stuck: state.policy.stuck(),
        }
    }

    /// The zones holding abandoned lookups, with how many each holds, most first (then by
    /// name).
    pub fn abandoned_by_zone(&self) -> Vec<(String, usize)> {
        let mut zones = self.shared.lock().policy.abandoned_by_zone();
        zones.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        zones
    }

    /// The cap on worker threads that are idle or run lookups that are not stuck.
    pub fn max_workers(&self) -> usize {
        self.shared.lock().max_workers
    }

    /// Changes the cap (at least 1), and with it the ceiling on threads. Raising it starts
    /// workers for queued jobs; lowering it lets surplus workers exit as they finish their
    /// current lookup.
    pub fn set_max_workers(&self, max_workers: usize) {
        self.change_limits(|state| state.max_workers = max_workers.max(1));
    }

    /// Changes how many stuck lookups make a zone dead (at least 1).
    pub fn set_max_stuck_per_zone(&self, max_stuck: usize) {
        self.change_limits(|state| state.policy.set_max_stuck(max_stuck));
    }

    /// Changes how long a lookup may be in flight before it counts as stuck (default
    /// [`DEFAULT_STALL_AFTER`]).
    pub fn set_stall_after(&self, stall_after: Duration) {
        self.change_limits(|state| state.policy.set_stall_after(stall_after));
    }

    /// Applies `change` to the limits, then staffs the jobs that became ready.
    fn change_limits(&self, change: impl FnOnce(&mut State<K, O>)) {
        let mut state = self.shared.lock();
        change(&mut state);
        state.policy.note_stalls(Instant::now());
        self.shared.staff(state);
    }

    /// Changes how long idle workers linger; workers idle right now apply it at once.
    pub fn set_idle_timeout(&self, idle_timeout: Duration) {
        let state = &mut *self.shared.lock();
        state.idle_timeout = idle_timeout;
        // Wake them without taking them off the stack: each looks at its retirement time
        // and goes back to sleep in its place.
        for cell in &state.sleeping_workers {
            cell.notify_done();
        }
    }
}

impl<K, O> State<K, O> {
    /// Whether ready jobs outnumber the idle workers and the policy lets another thread start.
    fn needs_thread(&self) -> bool {
        self.policy.ready_jobs() > self.idle
            && self.policy.may_add_thread(self.workers, self.max_workers)
    }

    /// Whether job `id` could end within a caller's spin: it runs, or it is queued where a
    /// worker takes it at once (its zone is not held back, and a worker is idle or may start).
    /// A caller whose job waits behind a held zone or for a busy worker cannot see an outcome
    /// soon, so spinning would only burn CPU.
    fn may_end_soon(&self, id: JobId) -> bool {
        let Some(job) = self.jobs.get(&id) else {
            return true;
        };
        match job.progress {
            Progress::Queued => a_worker_takes_it_now(
                self.policy.zone_may_start(&job.zone),
                self.idle,
                self.policy.may_add_thread(self.workers, self.max_workers),
            ),
            _ => true,
        }
    }

    /// Drops `key` from the coalescing table if it still names job `id`.
    fn forget(&mut self, key: &Arc<K>, id: JobId)
    where
        K: Eq + Hash,
    {
        if self.in_flight.get(key) == Some(&id) {
            self.in_flight.remove(key);
        }
    }

    /// Counts an idle worker, whose wake cell is `cell`, out of the pool, and keeps its cell
    /// for the next worker.
    fn retire_worker(&mut self, cell: &'static WakeCell) {
        self.idle -= 1;
        self.workers -= 1;
        self.spare_worker_cells.push(cell);
    }

    /// Takes `cell` off the stack of sleeping workers if it is there.
    fn unstack(&mut self, cell: &'static WakeCell) {
        if let Some(at) = self
            .sleeping_workers
            .iter()
            .rposition(|sleeping| std::ptr::eq(*sleeping, cell))
        {
            self.sleeping_workers.remove(at);
        }
    }
}

/// A copy of an OS error that keeps its error number.
fn copy_error(error: &std::io::Error) -> std::io::Error {
    match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(error.kind(), error.to_string()),
    }
}

impl<K, O> Shared<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn lock(&self) -> MutexGuard<'_, State<K, O>> {
        // A panicking worker gives its counts back (see WorkerExit): never let the poisoned
        // flag it leaves wedge lookups.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes sure ready jobs have workers: wakes the most recently idle sleepers for jobs that
    /// no awake idle worker will take, then starts new workers up to the cap.
    /// Sleepers are woken after the lock is released, so that they do not wake only to wait
    /// for it.
    fn staff<'a>(self: &'a Arc<Self>, mut state: MutexGuard<'a, State<K, O>>) {
        let mut wake = Vec::new();
        loop {
            let awake_idle = state.idle.saturating_sub(state.sleeping_workers.len());
            if state.policy.ready_jobs() <= awake_idle {
                break;
            }
            match state.sleeping_workers.pop() {
                Some(cell) => wake.push(cell),
                None => break,
            }
        }
        if !wake.is_empty() {
            // Off the stack, they already count as awake and idle. Taking the lock again
            // only when a thread must be started spares the woken worker a wait for it.
            let spawn = state.needs_thread();
            drop(state);
            for cell in wake {
                cell.notify_done();
            }
            if !spawn {
                return;
            }
            state = self.lock();
        }
        while state.needs_thread() {
            state.workers += 1;
            state.idle += 1;
            let cell = state
                .spare_worker_cells
                .pop()
                .unwrap_or_else(WakeCell::leak_new);
            cell.reset();
            drop(state);
            let spawned = self.spawn_worker(cell);
            state = self.lock();
            if let Err(error) = spawned {
                state.workers -= 1;
                state.idle -= 1;
                state.spare_worker_cells.push(cell);
                if state.workers == 0 {
                    // Nobody will ever run the queued jobs: fail them rather than hang.
                    Self::fail_queue(&mut state, &error);
                }
                // With workers alive, queued jobs wait for one of them.
                return;
            }
        }
    }

    /// Fails every queued job, held ones included, with `error`.
    fn fail_queue(state: &mut State<K, O>, error: &std::io::Error) {
        for id in state.policy.drain_queued() {
            let Some(job) = state.jobs.get_mut(&id) else {
                continue;
            };
            job.progress = Progress::NoThread(copy_error(error));
            for cell in &job.waiters {
                cell.notify_done();
            }
            let key = Arc::clone(&job.key);
            state.forget(&key, id);
        }
    }

    fn spawn_worker(self: &Arc<Self>, cell: &'static WakeCell) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(code) = tests::take_spawn_failure() {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        let shared = Arc::clone(self);
        // The new thread inherits a signal mask that blocks all but the fork gate's parking
        // signal (see `signals`).
        let _blocked = BlockedSignals::block_all_but_parking();
        std::thread::Builder::new()
            .name(self.config.thread_name.clone())
            .stack_size(self.config.stack_size)
            .spawn(move || shared.work(cell))
            .map(drop)
    }

    /// A worker's life: take queued jobs, sleep on the idle stack when there are none, retire
    /// after `idle_timeout` without work. A new worker starts counted as idle (by `staff`), so
    /// that a job queued while the thread starts up does not make `staff` start another one.
    fn work(self: &Arc<Self>, cell: &'static WakeCell) {
        let mut exit = WorkerExit {
            shared: self,
            cell,
            phase: Phase::Idle,
        };
        let mut state = self.lock();
        let mut idle_since = Instant::now();
        loop {
            state.unstack(cell);
            if let Some(id) = state.policy.start(Instant::now()) {
                state.idle -= 1;
                exit.phase = Phase::Busy(id);
                state = self.run(state, id);
                exit.phase = Phase::Idle;
                #[cfg(test)]
                tests::maybe_panic_in_bookkeeping();
                if state.policy.is_surplus(state.workers, state.max_workers) {
                    state.retire_worker(cell);
                    exit.phase = Phase::Gone;
                    // The lookup's end may have released its zone's jobs: others take them.
                    self.staff(state);
                    return;
                }
                idle_since = Instant::now();
                // Ending an abandoned lookup may have let a stuck zone's jobs go: more than
                // this worker alone will take.
                let awake_idle = state.idle.saturating_sub(state.sleeping_workers.len());
                if state.policy.ready_jobs() > awake_idle {
                    self.staff(state);
                    state = self.lock();
                }
                continue;
            }
            // A huge idle timeout means "never retire", not an overflow.
            let retire_at = idle_since.checked_add(state.idle_timeout);
            if retire_at.is_some_and(|retire_at| Instant::now() >= retire_at) {
                state.retire_worker(cell);
                exit.phase = Phase::Gone;
                return;
            }
            state.sleeping_workers.push(cell);
            drop(state);
            // A job handed over between the unlock and this sleep raised the done flag, so
            // the sleep returns at once: no wake-up is lost.
            cell.spin_then_sleep(retire_at, &self.job_spin);
            state = self.lock();
        }
    }

    /// Runs job `id` without the lock, then hands its outcome to the waiters. The worker
    /// (taken out of `idle` by the caller) counts as idle again before anyone is woken: a
    /// caller woken by the outcome and submitting its next lookup at once must find it idle,
    /// not start another thread.
    fn run<'a>(
        &'a self,
        mut guard: MutexGuard<'a, State<K, O>>,
        id: JobId,
    ) -> MutexGuard<'a, State<K, O>> {
        let Some(job) = guard.jobs.get_mut(&id) else {
            // A taken job missing would be a bug: let its zone go.
            guard.policy.end(id, false);
            guard.idle += 1;
            return guard;
        };
        job.progress = Progress::Running;
        let key = Arc::clone(&job.key);
        drop(guard);

        let result = catch_unwind(AssertUnwindSafe(|| (self.lookup)(&key)));
        let answered = result
            .as_ref()
            .is_ok_and(|outcome| (self.answered)(outcome));

        let mut guard = self.lock();
        let state = &mut *guard;
        state.idle += 1;
        state.completed += 1;
        state.policy.end(id, answered);
        state.policy.note_stalls(Instant::now());
        let Some(job) = state.jobs.get_mut(&id) else {
            return guard;
        };
        if job.waiters.is_empty() {
            // Abandoned: already forgotten.
            state.jobs.remove(&id);
            // The outcome nobody waits for drops here, after the lock.
            drop(guard);
            drop(result);
            return self.lock();
        }
        job.progress = match result {
            Ok(outcome) => Progress::Finished(Arc::new(outcome)),
            Err(_) => Progress::Panicked,
        };
        let waiters = job.waiters.clone();
        state.forget(&key, id);
        // Wake the waiters once the lock is free for them to collect the outcome.
        drop(guard);
        for cell in waiters {
            cell.notify_done();
        }
        self.lock()
    }
}

/// What a worker is doing, for [`WorkerExit`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Counted in `idle`.
    Idle,
    /// Running (or about to run) this job.
    Busy(JobId),
    /// Left the counts the regular way.
    Gone,
}

/// Gives a worker's counts back if its thread unwinds from a panic outside the lookup (a bug
/// in the bookkeeping): without this, the pool would count a dead worker forever and, once
/// all were dead, queue jobs that nobody runs. Its job, if any, fails as `Panicked`; ready
/// jobs get a new worker.
struct WorkerExit<'a, K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    shared: &'a Arc<Shared<K, O>>,
    cell: &'static WakeCell,
    phase: Phase,
}

impl<K, O> Drop for WorkerExit<'_, K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn drop(&mut self) {
        if self.phase == Phase::Gone {
            return;
        }
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        state.unstack(self.cell);
        state.workers = state.workers.saturating_sub(1);
        match self.phase {
            Phase::Idle => state.idle = state.idle.saturating_sub(1),
            Phase::Busy(id) => {
                // The panic came before or after the lookup, whose own panics are caught: the
                // policy may or may not count the job as running; ending it twice is harmless.
                state.policy.end(id, false);
                if let Some(job) = state.jobs.get_mut(&id) {
                    if matches!(job.progress, Progress::Running | Progress::Queued) {
                        let key = Arc::clone(&job.key);
                        if job.waiters.is_empty() {
                            state.jobs.remove(&id);
                        } else {
                            job.progress = Progress::Panicked;
                            for cell in &job.waiters {
                                cell.notify_done();
                            }
                            state.forget(&key, id);
                        }
                    }
                }
            }
            Phase::Gone => {}
        }
        state.spare_worker_cells.push(self.cell);
        self.shared.staff(guard);
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
            let (wake_at, may_end_soon);
            {
                let mut guard = self.shared.lock();
                if guard.policy.note_stalls(Instant::now()) {
                    // Lookups crossed the stall threshold: workers may be free for queued jobs.
                    self.shared.staff(guard);
                    guard = self.shared.lock();
                }
                let state = &mut *guard;
                let end = match state.jobs.get(&self.id).map(|job| &job.progress) {
                    Some(Progress::Finished(outcome)) => Some(WaitEnd::Done(Arc::clone(outcome))),
                    Some(Progress::NoThread(error)) => Some(WaitEnd::NoThread(copy_error(error))),
                    // A job missing while a ticket waits would be a bug; report, never hang.
                    Some(Progress::Panicked) | None => Some(WaitEnd::Panicked),
                    Some(Progress::Queued | Progress::Running) => None,
                };
                if let Some(end) = end {
                    leave(state, self.id, self.cell);
                    self.settled = true;
                    return end;
                }
                if self.cell.is_interrupted() {
                    return WaitEnd::Interrupted;
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return WaitEnd::TimedOut;
                }
                // A queued job also looks again when the oldest running lookup crosses the
                // stall threshold, which may free a worker for it.
                let queued = matches!(
                    state.jobs.get(&self.id).map(|job| &job.progress),
                    Some(Progress::Queued)
                );
                wake_at = match (
                    queued.then(|| state.policy.next_stall()).flatten(),
                    deadline,
                ) {
                    (Some(stall), Some(deadline)) => Some(stall.min(deadline)),
                    (stall, deadline) => stall.or(deadline),
                };
                may_end_soon = state.may_end_soon(self.id);
            }
            // A completion between the unlock above and this sleep raises the done flag,
            // so the sleep returns at once: no wake-up is lost. Whatever woke us, look again.
            if may_end_soon {
                self.cell
                    .spin_then_sleep(wake_at, &self.shared.outcome_spin);
            } else {
                self.cell.sleep(wake_at);
            }
        }
    }

    /// Whether this ticket's job could end within a spin (see [`State::may_end_soon`]).
    #[cfg(test)]
    fn may_end_soon(&self) -> bool {
        self.shared.lock().may_end_soon(self.id)
    }
}

/// Removes the waiter `cell` from job `id`, withdrawing or forgetting the job when it was the
/// last.
fn leave<K: Eq + Hash, O>(state: &mut State<K, O>, id: JobId, cell: &'static WakeCell) {
    state.spare_cells.push(cell);
    let Some(job) = state.jobs.get_mut(&id) else {
        return;
    };
    job.waiters.retain(|waiter| !std::ptr::eq(*waiter, cell));
    if !job.waiters.is_empty() {
        return;
    }
    let key = Arc::clone(&job.key);
    let zone = Arc::clone(&job.zone);
    match job.progress {
        Progress::Queued => {
            state.policy.withdraw(id, &zone);
            state.forget(&key, id);
            state.jobs.remove(&id);
        }
        Progress::Running => {
            // Forget it at once: the next identical call starts a fresh lookup.
            state.forget(&key, id);
            state.policy.abandon(id);
        }
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
            let mut state = self.shared.lock();
            leave(&mut state, self.id, self.cell);
            self.settled = true;
            // An abandoned lookup no longer counts against `max_workers`: a queued job may
            // get a worker now.
            self.shared.staff(state);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Faults that only a bug or an exhausted system produce, injected to prove the pool
    //! survives them. Each test injects through its own thread-safe switch; tests that use
    //! them run one at a time.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    static SPAWN_FAILURE: AtomicI32 = AtomicI32::new(0);
    static PANIC_ONCE: AtomicBool = AtomicBool::new(false);
    static SERIAL: Mutex<()> = Mutex::new(());

    /// The error number the next thread creation fails with, if one was injected.
    pub(super) fn take_spawn_failure() -> Option<i32> {
        match SPAWN_FAILURE.swap(0, Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    /// Workers of the pool that is asked to panic carry this name, so that a worker left over
    /// from an earlier test cannot take the injected panic.
    const PANICKING_POOL: &str = "igai-unit-panic";

    /// Panics once, where a worker's bookkeeping runs, if asked to.
    pub(super) fn maybe_panic_in_bookkeeping() {
        if std::thread::current().name() == Some(PANICKING_POOL)
            && PANIC_ONCE.swap(false, Ordering::SeqCst)
        {
            panic!("injected panic in the worker's bookkeeping");
        }
    }

    fn config() -> Config {
        Config {
            max_workers: 2,
            idle_timeout: Duration::from_secs(10),
            stack_size: 64 * 1024,
            thread_name: "igai-unit".into(),
            max_stuck_per_zone: 2,
        }
    }

    fn pool() -> Pool<u32, u32> {
        Pool::new(config(), |_: &u32| "zone".to_owned(), |key: &u32| *key + 1)
    }

    /// Callers spin only while their job could end soon: not while it waits for a busy
    /// worker (max_workers 1) nor while its zone is held back (a dead zone whose sub-zone has
    /// its probe in flight); a running job, or a queued one that a worker takes, could.
    #[test]
    fn callers_spin_only_while_their_job_may_end_soon() {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let gate = Arc::clone(&open);
        let config = Config {
            max_workers: 1,
            max_stuck_per_zone: 1,
            ..config()
        };
        // Keys below 10 (zone0) block until the test opens the gate; others answer at once.
        let pool = Pool::new(
            config,
            |key: &u32| format!("zone{}", key / 10),
            move |key: &u32| {
                if *key < 10 {
                    let (lock, opened) = &*gate;
                    let mut open = lock.lock().unwrap();
                    while !*open {
                        open = opened.wait(open).unwrap();
                    }
                }
                *key
            },
        );
        let settle = |done: &dyn Fn(&Stats) -> bool| {
            let give_up = Instant::now() + Duration::from_secs(10);
            while !done(&pool.stats()) {
                assert!(Instant::now() < give_up, "the pool never got there");
                std::thread::yield_now();
            }
        };
        let running = pool.submit(1);
        settle(&|stats| stats.busy == 1);
        let mut behind_busy_worker = pool.submit(20);
        assert!(running.may_end_soon(), "a running job may end soon");
        assert!(!behind_busy_worker.may_end_soon(), "no worker is free");
        drop(running); // abandoned: stuck, so zone0 is dead and a worker may start for zone2
        assert!(
            behind_busy_worker.may_end_soon(),
            "a worker may start for it"
        );
        assert!(matches!(behind_busy_worker.wait(None), WaitEnd::Done(_)));
        let probe = pool.submit(2);
        settle(&|stats| stats.busy == 2);
        let held = pool.submit(3);
        assert!(probe.may_end_soon(), "the probe runs");
        assert!(
            !held.may_end_soon(),
            "its zone is held back until the probe answers"
        );
        let (lock, opened) = &*open;
        *lock.lock().unwrap() = true;
        opened.notify_all();
    }

    #[test]
    fn a_queued_job_is_taken_at_once_only_from_a_zone_that_may_start_by_an_idle_or_new_worker() {
        // (zone may start, idle, a thread may start) -> taken at once
        let cases = [
            ((true, 1, false), true),
            ((true, 0, true), true),
            ((true, 2, true), true),
            ((true, 0, false), false),
            ((false, 1, true), false),
            ((false, 0, false), false),
        ];
        for ((zone_may_start, idle, may_add_thread), taken) in cases {
            assert_eq!(
                a_worker_takes_it_now(zone_may_start, idle, may_add_thread),
                taken,
                "zone may start {zone_may_start}, idle {idle}, new thread {may_add_thread}"
            );
        }
    }

    #[test]
    fn a_failed_thread_creation_keeps_its_error_number() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pool();
        SPAWN_FAILURE.store(libc::ENOMEM, Ordering::SeqCst);
        match pool.submit(1).wait(None) {
            WaitEnd::NoThread(error) => assert_eq!(error.raw_os_error(), Some(libc::ENOMEM)),
            other => panic!("expected NoThread, got {other:?}"),
        }
        // The failure was the system's, not the pool's: the next submission works.
        assert!(matches!(pool.submit(2).wait(None), WaitEnd::Done(v) if *v == 3));
    }

    #[test]
    fn a_panic_in_a_workers_bookkeeping_does_not_wedge_the_pool() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let config = Config {
            thread_name: PANICKING_POOL.into(),
            ..config()
        };
        let pool = Pool::new(config, |_: &u32| "zone".to_owned(), |key: &u32| *key + 1);
        PANIC_ONCE.store(true, Ordering::SeqCst);
        // The lookup itself succeeds; the worker dies just after handing the outcome over.
        assert!(matches!(pool.submit(1).wait(None), WaitEnd::Done(v) if *v == 2));
        let give_up = Instant::now() + Duration::from_secs(5);
        while pool.stats().workers != 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(2));
        }
        let stats = pool.stats();
        assert_eq!((stats.workers, stats.idle, stats.busy), (0, 0, 0));
        for key in 10..20 {
            assert!(matches!(pool.submit(key).wait(None), WaitEnd::Done(v) if *v == key + 1));
        }
    }
}
