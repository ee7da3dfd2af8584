//! The bounded, fair, coalescing worker pool that runs blocking lookups.
//!
//! Callers [`submit`](Pool::submit) a key and get a [`Ticket`]; a worker thread runs the lookup
//! function on the key while callers [`wait`](Ticket::wait) on their tickets, each of which can
//! be interrupted or time out on its own. The pool:
//!
//! * is **bounded**: at most `max_workers` threads exist, counting those stuck in a lookup that
//!   every caller has abandoned; further jobs wait in a queue;
//! * **coalesces** identical keys: a key already queued or running with a caller still waiting
//!   gets another waiter instead of another lookup. Each waiter receives the shared outcome;
//!   one giving up leaves the others;
//! * **withdraws** a queued job when its last caller gives up, so it never runs;
//! * **forgets** a running job when its last caller gives up: it keeps its worker until the
//!   lookup function returns (a thread blocked in glibc cannot be stopped), its outcome is
//!   dropped, and an identical later submission starts a fresh lookup instead of joining one
//!   that may never answer (a lost packet, say);
//! * **limits stuck work per zone**: every key belongs to a zone (a DNS zone for the resolver;
//!   the pool only compares zone names). A zone holding `max_stuck_per_zone` abandoned lookups
//!   starts nothing more until one of them ends: its further jobs wait in the zone's queue,
//!   withdrawn like any queued job when their callers give up. Lookups that callers still
//!   wait for never count, so a slow but alive zone is not serialized; a dead zone cannot
//!   take every worker and stall the other zones;
//! * **caps running lookups per zone**: a zone runs at most `max_workers - reserve` lookups at
//!   once, abandoned or not, where `reserve = max(1, max_workers / 4)` (48 of 64; with one
//!   worker, that worker is shared). Its further jobs wait in its queue, counted in
//!   `waiting_for_zone` like jobs of a stuck zone. A burst of lookups to one dead zone, all
//!   still waited for, so not limited as stuck work, thus never takes the whole pool: the
//!   reserve keeps serving other zones while the burst's lookups hang. The cap follows
//!   [`set_max_workers`](Pool::set_max_workers);
//! * is **fair between zones**: when workers are scarce, zones with queued jobs take turns
//!   (round robin), each in its own FIFO order;
//! * **shrinks**: idle workers wait on a stack and the most recently idle one takes the next
//!   job, so under a trickle of lookups the same few workers serve it and the surplus ones
//!   retire after `idle_timeout`.
//! * **hands over quickly**: while lookups and the gaps between them are short, callers and
//!   idle workers watch their wake-up flag for a moment before parking (see [`crate::spin`]),
//!   which spares both sides the cost of waking a parked thread.
//!
//! All bookkeeping sits behind one mutex, held only for short, non-blocking updates. The lookup
//! itself runs without it. Outcomes are shared through `Arc`, so whichever of worker and callers
//! lets go last frees them. A panic in a worker's bookkeeping (a bug) does not wedge the pool:
//! the dying worker's counts are given back and its job, if any, is failed (see `WorkerExit`).

use crate::signals::BlockedSignals;
use crate::spin::SpinPolicy;
use crate::wake::{WakeCell, Waker};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Abandoned lookups a zone may hold before its further jobs wait (at least 1).
    pub max_stuck_per_zone: usize,
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
    /// Jobs waiting for a worker (jobs held back by their zone not included).
    pub queued: usize,
    /// Running lookups that no caller waits for any more.
    pub abandoned: usize,
    /// Submissions that joined an identical job instead of starting one (since the pool began).
    pub coalesced: u64,
    /// Lookups that ran to the end (since the pool began).
    pub completed: u64,
    /// Zones holding `max_stuck_per_zone` abandoned lookups, whose new jobs wait.
    pub stuck_zones: usize,
    /// Queued jobs held back by their zone: it is stuck, or runs its cap of lookups.
    pub waiting_for_zone: usize,
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

type JobId = u64;
type LookupFn<K, O> = dyn Fn(&K) -> O + Send + Sync;
type ZoneFn<K> = dyn Fn(&K) -> String + Send + Sync;
/// A zone's name, shared by its jobs.
type ZoneName = Arc<str>;

/// A pool of worker threads running `lookup` on keys of type `K`, producing outcomes `O`.
pub struct Pool<K, O> {
    shared: Arc<Shared<K, O>>,
}

struct Shared<K, O> {
    state: Mutex<State<K, O>>,
    lookup: Box<LookupFn<K, O>>,
    zone_of: Box<ZoneFn<K>>,
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
    /// Zones with queued jobs or running lookups.
    zones: HashMap<ZoneName, Zone>,
    /// Zones with queued jobs that they may start now, in turn order.
    ready_zones: VecDeque<ZoneName>,
    /// Queued jobs of ready zones (the `queued` count).
    ready_jobs: usize,
    /// Queued jobs of held zones (the `waiting_for_zone` count).
    held_jobs: usize,
    /// Zones at the stuck limit.
    stuck_zones: usize,
    next_id: JobId,
    max_workers: usize,
    max_stuck_per_zone: usize,
    idle_timeout: Duration,
    workers: usize,
    idle: usize,
    busy: usize,
    abandoned: usize,
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

/// One zone's queued jobs and running lookups.
#[derive(Default)]
struct Zone {
    queue: VecDeque<JobId>,
    /// Running lookups of this zone, abandoned ones included.
    running: usize,
    /// Running lookups of this zone that every caller abandoned.
    abandoned: usize,
    /// At the stuck limit.
    stuck: bool,
    /// Stuck or running its cap of lookups: queued jobs wait (in `held_jobs`).
    held: bool,
    /// Listed in `ready_zones`.
    ready: bool,
}

/// Whether a queued job is taken by a worker at once: its zone is not `held` back, and one of
/// `idle` workers is free or, with `workers` of `max_workers` alive, one may start.
fn a_worker_takes_it_now(held: bool, idle: usize, workers: usize, max_workers: usize) -> bool {
    !held && (idle > 0 || workers < max_workers)
}

/// How many lookups one zone may run at once with `max_workers` workers: all but a reserve of
/// a quarter of them (at least one) kept for other zones; at least one.
fn zone_cap(max_workers: usize) -> usize {
    let reserve = (max_workers / 4).max(1);
    max_workers.saturating_sub(reserve).max(1)
}

impl<K, O> Pool<K, O>
where
    K: Eq + Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// Creates a pool; no thread starts until the first submission. `zone_of` names the zone
    /// of a key (see the module documentation); it runs on the submitting thread.
    pub fn new(
        config: Config,
        zone_of: impl Fn(&K) -> String + Send + Sync + 'static,
        lookup: impl Fn(&K) -> O + Send + Sync + 'static,
    ) -> Self {
        let state = State {
            jobs: HashMap::new(),
            in_flight: HashMap::new(),
            zones: HashMap::new(),
            ready_zones: VecDeque::new(),
            ready_jobs: 0,
            held_jobs: 0,
            stuck_zones: 0,
            next_id: 0,
            max_workers: config.max_workers.max(1),
            max_stuck_per_zone: config.max_stuck_per_zone.max(1),
            idle_timeout: config.idle_timeout,
            workers: 0,
            idle: 0,
            busy: 0,
            abandoned: 0,
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
                zone_of: Box::new(zone_of),
                config,
                outcome_spin: SpinPolicy::new(),
                job_spin: SpinPolicy::new(),
            }),
        }
    }

    /// Starts a lookup of `key`, or joins the identical one that callers already wait for.
    pub fn submit(&self, key: K) -> Ticket<K, O> {
        let zone: ZoneName = (self.shared.zone_of)(&key).into();
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
        state.enqueue(id, zone);
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

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let state = self.shared.lock();
        Stats {
            workers: state.workers,
            busy: state.busy,
            idle: state.idle,
            queued: state.ready_jobs,
            abandoned: state.abandoned,
            coalesced: state.coalesced,
            completed: state.completed,
            stuck_zones: state.stuck_zones,
            waiting_for_zone: state.held_jobs,
        }
    }

    /// The zones holding abandoned lookups, with how many each holds, most first (then by
    /// name). At most `max_workers` lookups can be stuck, so the list stays short.
    pub fn abandoned_by_zone(&self) -> Vec<(String, usize)> {
        let state = self.shared.lock();
        let mut zones: Vec<(String, usize)> = state
            .zones
            .iter()
            .filter(|(_, zone)| zone.abandoned > 0)
            .map(|(name, zone)| (name.to_string(), zone.abandoned))
            .collect();
        drop(state);
        zones.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        zones
    }

    /// The cap on worker threads.
    pub fn max_workers(&self) -> usize {
        self.shared.lock().max_workers
    }

    /// Changes the cap (at least 1), and with it each zone's cap on running lookups. Raising
    /// it starts workers for queued jobs; lowering it lets surplus workers exit as they finish
    /// their current lookup.
    pub fn set_max_workers(&self, max_workers: usize) {
        self.change_limits(|state| state.max_workers = max_workers.max(1));
    }

    /// Changes how many abandoned lookups a zone may hold before its jobs wait (at least 1).
    pub fn set_max_stuck_per_zone(&self, max_stuck: usize) {
        self.change_limits(|state| state.max_stuck_per_zone = max_stuck.max(1));
    }

    /// Applies `change` to the limits, then judges every zone again (which may hold or
    /// release its queued jobs) and staffs the jobs that became ready.
    fn change_limits(&self, change: impl FnOnce(&mut State<K, O>)) {
        let mut state = self.shared.lock();
        change(&mut state);
        state.refresh_zones();
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
    /// Puts job `id` at the end of its zone's queue.
    fn enqueue(&mut self, id: JobId, zone: ZoneName) {
        let entry = self.zones.entry(Arc::clone(&zone)).or_default();
        entry.queue.push_back(id);
        if entry.held {
            self.held_jobs += 1;
        } else {
            self.ready_jobs += 1;
        }
        self.refresh_zone(&zone);
    }

    /// The next job to run: the first of the zone whose turn it is, counted as running in
    /// its zone from now on (the caller runs it without letting go of the lock).
    fn take_job(&mut self) -> Option<JobId> {
        while let Some(name) = self.ready_zones.pop_front() {
            let Some(zone) = self.zones.get_mut(&name) else {
                continue;
            };
            zone.ready = false;
            let next = zone.queue.pop_front();
            if next.is_some() {
                zone.running += 1;
                self.ready_jobs = self.ready_jobs.saturating_sub(1);
            }
            // Back at the end of the line if it has more.
            self.refresh_zone(&name);
            if next.is_some() {
                return next;
            }
        }
        None
    }

    /// Takes queued job `id` out of its zone's queue.
    fn withdraw(&mut self, id: JobId, name: &ZoneName) {
        let Some(zone) = self.zones.get_mut(name) else {
            return;
        };
        // Callers mostly give up in the order they came, so look from the front.
        if let Some(at) = zone.queue.iter().position(|queued| *queued == id) {
            zone.queue.remove(at);
            if zone.held {
                self.held_jobs = self.held_jobs.saturating_sub(1);
            } else {
                self.ready_jobs = self.ready_jobs.saturating_sub(1);
            }
        }
        self.refresh_zone(name);
    }

    /// Re-establishes every zone's flags (after a change of a limit).
    fn refresh_zones(&mut self) {
        let names: Vec<ZoneName> = self.zones.keys().cloned().collect();
        for name in &names {
            self.refresh_zone(name);
        }
    }

    /// Re-establishes zone `name`'s flags after a change: stuck or not, held or not, in the
    /// turn order or not, kept or dropped. The one place that moves jobs between `queued` and
    /// `waiting_for_zone`.
    fn refresh_zone(&mut self, name: &ZoneName) {
        let cap = zone_cap(self.max_workers);
        let Some(zone) = self.zones.get_mut(name) else {
            return;
        };
        let stuck = zone.abandoned >= self.max_stuck_per_zone;
        if stuck != zone.stuck {
            zone.stuck = stuck;
            if stuck {
                self.stuck_zones += 1;
            } else {
                self.stuck_zones = self.stuck_zones.saturating_sub(1);
            }
        }
        let held = stuck || zone.running >= cap;
        if held != zone.held {
            zone.held = held;
            let waiting = zone.queue.len();
            if held {
                self.ready_jobs = self.ready_jobs.saturating_sub(waiting);
                self.held_jobs += waiting;
            } else {
                self.held_jobs = self.held_jobs.saturating_sub(waiting);
                self.ready_jobs += waiting;
            }
        }
        let ready = !zone.held && !zone.queue.is_empty();
        if ready != zone.ready {
            zone.ready = ready;
            if ready {
                self.ready_zones.push_back(Arc::clone(name));
            } else {
                self.ready_zones.retain(|listed| listed != name);
            }
        }
        if zone.queue.is_empty() && zone.running == 0 {
            // Neither stuck nor listed (both need one of the two; abandoned lookups run).
            self.zones.remove(name);
        }
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
            Progress::Queued => {
                let held = self.zones.get(&job.zone).is_some_and(|zone| zone.held);
                a_worker_takes_it_now(held, self.idle, self.workers, self.max_workers)
            }
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

    /// Counts one more abandoned lookup in zone `name`.
    fn add_abandoned(&mut self, name: &ZoneName) {
        self.abandoned += 1;
        self.zones.entry(Arc::clone(name)).or_default().abandoned += 1;
        self.refresh_zone(name);
    }

    /// Counts one running lookup of zone `name`, abandoned or not, as ended.
    fn end_running(&mut self, name: &ZoneName, abandoned: bool) {
        if abandoned {
            self.abandoned = self.abandoned.saturating_sub(1);
        }
        if let Some(zone) = self.zones.get_mut(name) {
            zone.running = zone.running.saturating_sub(1);
            if abandoned {
                zone.abandoned = zone.abandoned.saturating_sub(1);
            }
        }
        self.refresh_zone(name);
    }

    /// Recounts each zone's running lookups from the jobs table (after a bug unwound a
    /// worker, when the counts may be off by its job).
    fn recount_running(&mut self) {
        for zone in self.zones.values_mut() {
            zone.running = 0;
        }
        for job in self.jobs.values() {
            if matches!(job.progress, Progress::Running) {
                self.zones.entry(Arc::clone(&job.zone)).or_default().running += 1;
            }
        }
        self.refresh_zones();
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
            if state.ready_jobs <= awake_idle {
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
            let spawn = state.ready_jobs > state.idle && state.workers < state.max_workers;
            drop(state);
            for cell in wake {
                cell.notify_done();
            }
            if !spawn {
                return;
            }
            state = self.lock();
        }
        while state.ready_jobs > state.idle && state.workers < state.max_workers {
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
        let names: Vec<ZoneName> = state.zones.keys().cloned().collect();
        for name in names {
            let Some(zone) = state.zones.get_mut(&name) else {
                continue;
            };
            let queued: Vec<JobId> = zone.queue.drain(..).collect();
            if zone.held {
                state.held_jobs = state.held_jobs.saturating_sub(queued.len());
            } else {
                state.ready_jobs = state.ready_jobs.saturating_sub(queued.len());
            }
            for id in queued {
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
            state.refresh_zone(&name);
        }
    }

    fn spawn_worker(self: &Arc<Self>, cell: &'static WakeCell) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(code) = tests::take_spawn_failure() {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        let shared = Arc::clone(self);
        // The new thread inherits a fully blocked signal mask (see `signals`).
        let _blocked = BlockedSignals::block_all();
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
            if let Some(id) = state.take_job() {
                state.idle -= 1;
                exit.phase = Phase::Busy(id);
                state = self.run(state, id);
                exit.phase = Phase::Idle;
                #[cfg(test)]
                tests::maybe_panic_in_bookkeeping();
                if state.workers > state.max_workers {
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
                if state.ready_jobs > awake_idle {
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
            // A taken job missing would be a bug: count its zone right again.
            guard.recount_running();
            guard.idle += 1;
            return guard;
        };
        job.progress = Progress::Running;
        let key = Arc::clone(&job.key);
        guard.busy += 1;
        drop(guard);

        let result = catch_unwind(AssertUnwindSafe(|| (self.lookup)(&key)));

        let mut guard = self.lock();
        let state = &mut *guard;
        state.busy = state.busy.saturating_sub(1);
        state.idle += 1;
        state.completed += 1;
        let Some(job) = state.jobs.get_mut(&id) else {
            state.recount_running();
            return guard;
        };
        let zone = Arc::clone(&job.zone);
        if job.waiters.is_empty() {
            // Abandoned: already forgotten; its zone may start another lookup now.
            state.jobs.remove(&id);
            state.end_running(&zone, true);
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
        state.end_running(&zone, false);
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
    /// Counted in `busy`, running (or about to run) this job.
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
                // The panic came before or after the lookup, whose own panics are caught:
                // `busy` may or may not count it. Recount from the jobs table instead.
                if let Some(job) = state.jobs.get_mut(&id) {
                    if matches!(job.progress, Progress::Running | Progress::Queued) {
                        let key = Arc::clone(&job.key);
                        let zone = Arc::clone(&job.zone);
                        if job.waiters.is_empty() {
                            state.jobs.remove(&id);
                            state.end_running(&zone, true);
                        } else {
                            job.progress = Progress::Panicked;
                            for cell in &job.waiters {
                                cell.notify_done();
                            }
                            state.forget(&key, id);
                        }
                    }
                }
                state.busy = state
                    .jobs
                    .values()
                    .filter(|job| matches!(job.progress, Progress::Running))
                    .count();
                state.recount_running();
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
            let may_end_soon;
            {
                let mut guard = self.shared.lock();
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
                may_end_soon = state.may_end_soon(self.id);
            }
            // A completion between the unlock above and this sleep raises the done flag,
            // so the sleep returns at once: no wake-up is lost. Whatever woke us, look again.
            if may_end_soon {
                self.cell
                    .spin_then_sleep(deadline, &self.shared.outcome_spin);
            } else {
                self.cell.sleep(deadline);
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
            state.withdraw(id, &zone);
            state.forget(&key, id);
            state.jobs.remove(&id);
        }
        Progress::Running => {
            // Forget it at once: the next identical call starts a fresh lookup.
            state.forget(&key, id);
            state.add_abandoned(&zone);
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
            leave(&mut self.shared.lock(), self.id, self.cell);
            self.settled = true;
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
    /// worker (max_workers 1) nor while its zone is held back (a stuck zone); a running job,
    /// or a queued one that an idle worker takes, could.
    #[test]
    fn callers_spin_only_while_their_job_may_end_soon() {
        let release = Arc::new(std::sync::Barrier::new(2));
        let in_lookup = Arc::clone(&release);
        let config = Config {
            max_workers: 1,
            max_stuck_per_zone: 1,
            ..config()
        };
        let pool = Pool::new(
            config,
            |key: &u32| format!("zone{}", key / 10),
            move |key: &u32| {
                if *key == 1 {
                    in_lookup.wait();
                }
                *key
            },
        );
        let running = pool.submit(1);
        let give_up = Instant::now() + Duration::from_secs(10);
        while pool.stats().busy != 1 {
            assert!(Instant::now() < give_up, "the lookup never started");
            std::thread::yield_now();
        }
        let behind_busy_worker = pool.submit(20);
        let same_zone = pool.submit(2);
        assert!(running.may_end_soon(), "a running job may end soon");
        assert!(!behind_busy_worker.may_end_soon(), "no worker is free");
        drop(running); // abandoned: zone0 is stuck (max_stuck_per_zone 1)
        assert!(!same_zone.may_end_soon(), "its zone is held back");
        pool.set_max_workers(3);
        assert!(!same_zone.may_end_soon(), "its zone is still held back");
        assert!(
            behind_busy_worker.may_end_soon(),
            "a worker may start for it"
        );
        release.wait();
    }

    #[test]
    fn a_queued_job_is_taken_at_once_only_from_a_free_zone_by_an_idle_or_new_worker() {
        // (held, idle, workers, max_workers) -> taken at once
        let cases = [
            ((false, 1, 4, 4), true),
            ((false, 0, 3, 4), true),
            ((false, 2, 2, 4), true),
            ((false, 0, 4, 4), false),
            ((true, 1, 3, 4), false),
            ((true, 0, 4, 4), false),
        ];
        for ((held, idle, workers, max), taken) in cases {
            assert_eq!(
                a_worker_takes_it_now(held, idle, workers, max),
                taken,
                "held {held}, idle {idle}, {workers} of {max}"
            );
        }
    }

    #[test]
    fn a_zone_may_run_all_but_a_quarter_of_the_workers_and_always_one() {
        let caps: Vec<usize> = [1, 2, 3, 4, 5, 8, 64].into_iter().map(zone_cap).collect();
        assert_eq!(caps, [1, 1, 2, 3, 4, 6, 48]);
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
