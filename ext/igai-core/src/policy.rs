//! The pool's scheduling policy: which queued lookup starts next, which waits for its zone,
//! and which running lookups count against `max_workers`. No threads, no locks: the pool
//! ([`crate::pool`]) calls it under its mutex and does what it says.
//!
//! The guarantee it serves: **a lookup of a name whose DNS answers is never delayed by lookups
//! that stall for longer than the stall threshold, while lookup threads stay at most
//! [`THREAD_CEILING`] × `max_workers`.** Its rules:
//!
//! 1. **Stalled work does not take the capacity healthy names need.** A running lookup is
//!    *stuck* once every caller abandoned it, or once it has been in flight for the stall
//!    threshold ([`DEFAULT_STALL_AFTER`], 500 ms). Stuck lookups no longer count against
//!    `max_workers`: a new thread starts for a queued job while fewer than `max_workers`
//!    threads are idle or running lookups that are not stuck, and fewer than
//!    `THREAD_CEILING × max_workers` threads exist. So a healthy name waits for a stall at
//!    most the threshold (while more than `max_workers` lookups began to stall within it),
//!    and not at all once they are known to be stuck, until stuck lookups fill the ceiling.
//!    Why 500 ms: glibc waits at least 1 s before it sends a query again, so a lookup past
//!    500 ms is, nearly always, waiting for a lost or unanswered packet, while answers of a
//!    live resolver (even a cold recursive resolution over several servers) come well within
//!    it; a slow but live zone that exceeds it loses nothing but is treated as below.
//! 2. **A zone that answers is not dead.** Every lookup belongs to a zone (a DNS zone for the
//!    resolver, see [`crate::zone`]; here only a name) and a sub-zone within it. A zone is
//!    *dead* while it holds `max_stuck_per_zone` stuck lookups begun since its last answer
//!    (a lookup that returned, or, for the resolver, returned anything but a timeout). While a
//!    zone holds a stuck lookup, the first lookup of each sub-zone to start is that sub-zone's
//!    *probe*, until it ends. A dead zone starts new lookups only as probes: in a sub-zone
//!    without one, at most `max_stuck_per_zone` probes at once. A probe that is answered
//!    re-opens the zone at once (the stuck lookups began before that answer and no longer
//!    count); one that stalls keeps its sub-zone's further jobs waiting until it ends. So a
//!    dead zone met by abandoned lookups holds `max_stuck_per_zone` threads (all but the first
//!    were probes); one met by callers that wait holds those that started before it stalled,
//!    up to `max_stuck_per_zone - 1` more started while fewer of them had crossed the
//!    threshold, and one probe per sub-zone; and a live zone (a stalled sub-zone of a live
//!    domain, a service whose one packet was lost) is re-opened by its first healthy name.
//! 3. **Healthy zones come first.** Zones with queued jobs they may start take turns (round
//!    robin, each in FIFO order), but a zone holding no stuck lookup goes before the zones that
//!    hold some: a stream of new dead zones cannot take the workers freed for a healthy name.
//! 4. **Surplus is measured like capacity.** A worker that ends its lookup retires only when
//!    the threads that are idle or run lookups that are not stuck exceed `max_workers` (or
//!    threads exceed the ceiling): lowering `max_workers` mid-outage does not make the one
//!    worker able to take a queued job leave while stuck ones hold the rest.
//!
//! Lookups that callers wait for and that end within the threshold are never limited by
//! their zone: 64 concurrent lookups of one zone take 64 workers at once.
//!
//! Limits of the guarantee: a healthy name submitted while more than `max_workers` lookups
//! are in flight and none has crossed the threshold yet waits up to the threshold; once stuck
//! lookups fill the ceiling, healthy names wait for one of them to end; and every answer of a
//! live zone lets a dead sub-zone of it take up to `max_stuck_per_zone` more threads (its
//! earlier stuck lookups no longer count), bounded by the ceiling.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job's number in the pool.
pub(crate) type JobId = u64;
/// A zone's (or sub-zone's) name, shared by its jobs.
pub(crate) type ZoneName = Arc<str>;

/// How long a lookup may be in flight before it counts as stuck (see rule 1).
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_millis(500);
/// Lookup threads never exceed this many times `max_workers` (see rule 1).
pub const THREAD_CEILING: usize = 4;

/// Where a lookup belongs: the zone whose outage would stall it, and the sub-zone within it
/// (a delegated part, a tenant) whose probes are told apart. A plain `String` converts to a
/// place whose sub-zone is the zone itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The zone: at most `max_stuck_per_zone` stuck lookups since its last answer, then probes.
    pub zone: String,
    /// The sub-zone: one probe in flight at a time.
    pub sub_zone: String,
}

impl Place {
    /// A place in `zone`, sub-zone `sub_zone`.
    pub fn new(zone: impl Into<String>, sub_zone: impl Into<String>) -> Self {
        Place {
            zone: zone.into(),
            sub_zone: sub_zone.into(),
        }
    }
}

impl From<String> for Place {
    fn from(zone: String) -> Self {
        Place {
            sub_zone: zone.clone(),
            zone,
        }
    }
}

impl From<&str> for Place {
    fn from(zone: &str) -> Self {
        Place::from(zone.to_owned())
    }
}

/// The bookkeeping of zones, queued jobs and running lookups.
pub(crate) struct Policy {
    zones: HashMap<ZoneName, Zone>,
    /// Zones with jobs they may start now, in turn order.
    ready_zones: VecDeque<ZoneName>,
    runs: HashMap<JobId, Run>,
    /// Running lookups by start, oldest first, to find those crossing the stall threshold.
    /// Entries of lookups that ended or are stuck already are skipped when met.
    by_start: VecDeque<(Instant, JobId)>,
    /// Queued jobs that may start now (the `queued` count).
    ready_jobs: usize,
    /// Every queued job, held or not.
    queued_jobs: usize,
    dead_zones: usize,
    /// Running lookups that are stuck: abandoned, or in flight past the threshold.
    stuck: usize,
    abandoned: usize,
    max_stuck: usize,
    stall_after: Duration,
}

#[derive(Default)]
struct Zone {
    /// Queued jobs with their sub-zones, in FIFO order.
    queue: VecDeque<(JobId, ZoneName)>,
    /// Running lookups, stuck ones included.
    running: usize,
    /// Running lookups that every caller abandoned.
    abandoned: usize,
    /// Stuck lookups begun since the last answer (those of the current `epoch`).
    stuck: usize,
    /// Counts answers: a lookup started in an earlier epoch began before the last answer.
    epoch: u64,
    /// The sub-zones of the probes in flight, one entry per probe.
    probes: Vec<ZoneName>,
    /// How many of the queued jobs may start now (its share of `ready_jobs`).
    may_start: usize,
    /// Listed in `ready_zones`.
    listed: bool,
    /// Holds `max_stuck` stuck lookups since its last answer.
    dead: bool,
}

/// A running lookup.
struct Run {
    zone: ZoneName,
    sub_zone: ZoneName,
    /// The zone's epoch when it started.
    epoch: u64,
    stuck: bool,
    abandoned: bool,
    /// Counted in its zone's `stuck` (stuck in the epoch it started in).
    counted: bool,
    probe: bool,
}

impl Policy {
    pub(crate) fn new(max_stuck: usize) -> Self {
        Policy {
            zones: HashMap::new(),
            ready_zones: VecDeque::new(),
            runs: HashMap::new(),
            by_start: VecDeque::new(),
            ready_jobs: 0,
            queued_jobs: 0,
            dead_zones: 0,
            stuck: 0,
            abandoned: 0,
            max_stuck: max_stuck.max(1),
            stall_after: DEFAULT_STALL_AFTER,
        }
    }

    /// Queued jobs that may start now.
    pub(crate) fn ready_jobs(&self) -> usize {
        self.ready_jobs
    }

    /// Whether `zone` may start one of its queued jobs now (a dead zone: only a probe).
    pub(crate) fn zone_may_start(&self, zone: &ZoneName) -> bool {
        self.zones.get(zone).is_some_and(|zone| zone.may_start > 0)
    }

    /// Queued jobs held back by their zone.
    pub(crate) fn held_jobs(&self) -> usize {
        self.queued_jobs - self.ready_jobs
    }

    /// Running lookups.
    pub(crate) fn running(&self) -> usize {
        self.runs.len()
    }

    /// Running lookups that are stuck (abandoned, or in flight past the threshold).
    pub(crate) fn stuck(&self) -> usize {
        self.stuck
    }

    /// Running lookups that every caller abandoned.
    pub(crate) fn abandoned(&self) -> usize {
        self.abandoned
    }

    /// Zones that are dead (rule 2).
    pub(crate) fn dead_zones(&self) -> usize {
        self.dead_zones
    }

    /// How many stuck lookups a zone may hold since its last answer.
    pub(crate) fn set_max_stuck(&mut self, max_stuck: usize) {
        self.max_stuck = max_stuck.max(1);
        let names: Vec<ZoneName> = self.zones.keys().cloned().collect();
        for name in &names {
            self.refresh(name);
        }
    }

    pub(crate) fn set_stall_after(&mut self, stall_after: Duration) {
        self.stall_after = stall_after;
    }

    /// Whether a new thread may start, with `workers` threads and `max_workers` as the cap:
    /// fewer than `max_workers` of them idle or running lookups that are not stuck, and fewer
    /// than the ceiling in all.
    pub(crate) fn may_add_thread(&self, workers: usize, max_workers: usize) -> bool {
        workers.saturating_sub(self.stuck) < max_workers
            && workers < max_workers.saturating_mul(THREAD_CEILING)
    }

    /// Whether a worker that just ended its lookup is one too many and should retire.
    pub(crate) fn is_surplus(&self, workers: usize, max_workers: usize) -> bool {
        workers.saturating_sub(self.stuck) > max_workers
            || workers > max_workers.saturating_mul(THREAD_CEILING)
    }

    /// Queues job `id` of `zone`, sub-zone `sub_zone`, at the end of its zone's queue.
    pub(crate) fn enqueue(&mut self, id: JobId, zone: &ZoneName, sub_zone: ZoneName) {
        self.zones
            .entry(Arc::clone(zone))
            .or_default()
            .queue
            .push_back((id, sub_zone));
        self.queued_jobs += 1;
        self.refresh(zone);
    }

    /// Takes queued job `id` out of its zone's queue; false when it was not queued there.
    pub(crate) fn withdraw(&mut self, id: JobId, zone: &ZoneName) -> bool {
        let Some(entry) = self.zones.get_mut(zone) else {
            return false;
        };
        // Callers mostly give up in the order they came, so look from the front.
        let Some(at) = entry.queue.iter().position(|(queued, _)| *queued == id) else {
            return false;
        };
        entry.queue.remove(at);
        self.queued_jobs -= 1;
        self.refresh(zone);
        true
    }

    /// The job to start now, counted as running from `now` (rule 3 chooses the zone).
    pub(crate) fn start(&mut self, now: Instant) -> Option<JobId> {
        loop {
            let healthy = self
                .ready_zones
                .iter()
                .position(|name| self.zones.get(name).is_some_and(|zone| zone.stuck == 0));
            let name = self.ready_zones.remove(healthy.unwrap_or(0))?;
            let Some(zone) = self.zones.get_mut(&name) else {
                continue;
            };
            zone.listed = false;
            let at = if zone.dead {
                zone.queue
                    .iter()
                    .position(|(_, sub)| !zone.probes.contains(sub))
            } else {
                Some(0)
            };
            let Some((id, sub_zone)) = at.and_then(|at| zone.queue.remove(at)) else {
                self.refresh(&name);
                continue;
            };
            // While the zone holds a stuck lookup, the first lookup of each sub-zone probes it.
            let probe = zone.stuck > 0 && !zone.probes.contains(&sub_zone);
            if probe {
                zone.probes.push(Arc::clone(&sub_zone));
            }
            zone.running += 1;
            self.queued_jobs -= 1;
            self.runs.insert(
                id,
                Run {
                    zone: Arc::clone(&name),
                    sub_zone,
                    epoch: zone.epoch,
                    stuck: false,
                    abandoned: false,
                    counted: false,
                    probe,
                },
            );
            self.by_start.push_back((now, id));
            // Back at the end of the line if it may start more.
            self.refresh(&name);
            return Some(id);
        }
    }

    /// Every caller of running job `id` gave up: it is stuck from now on.
    pub(crate) fn abandon(&mut self, id: JobId) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if run.abandoned {
            return;
        }
        run.abandoned = true;
        self.abandoned += 1;
        if let Some(zone) = self.zones.get_mut(&run.zone) {
            zone.abandoned += 1;
        }
        self.make_stuck(id);
    }

    /// Counts running job `id` as stuck (once), and in its zone when it began since the
    /// zone's last answer.
    fn make_stuck(&mut self, id: JobId) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        if run.stuck {
            return;
        }
        run.stuck = true;
        self.stuck += 1;
        let name = Arc::clone(&run.zone);
        if let Some(zone) = self.zones.get_mut(&name) {
            if zone.epoch == run.epoch {
                run.counted = true;
                zone.stuck += 1;
            }
        }
        self.refresh(&name);
    }

    /// Counts the lookups in flight for the stall threshold at `now` as stuck; true when
    /// there were any (capacity and zones may have changed).
    pub(crate) fn note_stalls(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while let Some(&(started, id)) = self.by_start.front() {
            if now.saturating_duration_since(started) < self.stall_after {
                break;
            }
            self.by_start.pop_front();
            if self.runs.get(&id).is_some_and(|run| !run.stuck) {
                self.make_stuck(id);
                changed = true;
            }
        }
        changed
    }

    /// When the oldest running lookup not yet stuck crosses the stall threshold (perhaps
    /// earlier: an ended lookup's entry may come first), if any runs.
    pub(crate) fn next_stall(&self) -> Option<Instant> {
        self.by_start
            .front()
            .map(|&(started, _)| started + self.stall_after)
    }

    /// Running job `id` ended; `answered` says whether its zone answered (rule 2).
    pub(crate) fn end(&mut self, id: JobId, answered: bool) {
        let Some(run) = self.runs.remove(&id) else {
            return;
        };
        if run.stuck {
            self.stuck -= 1;
        }
        if run.abandoned {
            self.abandoned -= 1;
        }
        if let Some(zone) = self.zones.get_mut(&run.zone) {
            zone.running -= 1;
            if run.abandoned {
                zone.abandoned -= 1;
            }
            if run.counted && run.epoch == zone.epoch {
                zone.stuck -= 1;
            }
            if run.probe {
                if let Some(at) = zone.probes.iter().position(|sub| *sub == run.sub_zone) {
                    zone.probes.swap_remove(at);
                }
            }
            if answered {
                // Every stuck lookup began before this answer: none counts any more.
                zone.epoch += 1;
                zone.stuck = 0;
            }
        }
        self.forget_start(id);
        self.refresh(&run.zone);
    }

    /// Drops the start entries of lookups that ended, so that a long threshold does not let
    /// them pile up: the front one at once, all of them when they outnumber the running ones.
    fn forget_start(&mut self, id: JobId) {
        if self.by_start.front().is_some_and(|&(_, first)| first == id) {
            self.by_start.pop_front();
        }
        if self.by_start.len() > 2 * self.runs.len() + 64 {
            let runs = &self.runs;
            self.by_start
                .retain(|(_, id)| runs.get(id).is_some_and(|run| !run.stuck));
        }
    }

    /// Empties every queue (no thread can run them); the jobs that were queued.
    pub(crate) fn drain_queued(&mut self) -> Vec<JobId> {
        let names: Vec<ZoneName> = self.zones.keys().cloned().collect();
        let mut drained = Vec::new();
        for name in &names {
            if let Some(zone) = self.zones.get_mut(name) {
                drained.extend(zone.queue.drain(..).map(|(id, _)| id));
            }
            self.refresh(name);
        }
        self.queued_jobs -= drained.len();
        drained
    }

    /// The zones holding abandoned lookups, with how many each holds (in no order).
    pub(crate) fn abandoned_by_zone(&self) -> Vec<(String, usize)> {
        self.zones
            .iter()
            .filter(|(_, zone)| zone.abandoned > 0)
            .map(|(name, zone)| (name.to_string(), zone.abandoned))
            .collect()
    }

    /// Re-establishes zone `name`'s flags after a change: dead or not, how many of its jobs may
    /// start, in the turn order or not, kept or dropped. The one place that moves jobs between
    /// ready and held.
    fn refresh(&mut self, name: &ZoneName) {
        let max_stuck = self.max_stuck;
        let Some(zone) = self.zones.get_mut(name) else {
            return;
        };
        let dead = zone.stuck >= max_stuck;
        if dead != zone.dead {
            zone.dead = dead;
            if dead {
                self.dead_zones += 1;
            } else {
                self.dead_zones -= 1;
            }
        }
        let may_start = if !dead {
            zone.queue.len()
        } else {
            // One probe at a time (each start refreshes again), in a sub-zone without one.
            let probe = zone.probes.len() < max_stuck
                && zone.queue.iter().any(|(_, sub)| !zone.probes.contains(sub));
            usize::from(probe)
        };
        self.ready_jobs = self.ready_jobs - zone.may_start + may_start;
        zone.may_start = may_start;
        let listed = may_start > 0;
        if listed != zone.listed {
            zone.listed = listed;
            if listed {
                self.ready_zones.push_back(Arc::clone(name));
            } else {
                self.ready_zones.retain(|other| other != name);
            }
        }
        if zone.queue.is_empty() && zone.running == 0 {
            // Nothing left to count: not dead (stuck lookups run), not listed (nothing queued).
            self.zones.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rules without threads: each test drives the policy through its events.
    use super::*;

    fn name(text: &str) -> ZoneName {
        text.into()
    }

    /// Queues job `id` in `zone`, sub-zone `sub`.
    fn queue(policy: &mut Policy, id: JobId, zone: &str, sub: &str) {
        policy.enqueue(id, &name(zone), name(sub));
    }

    /// Queues job `id` in `zone`, sub-zone `sub`, starts it (it must be next) and abandons it.
    fn abandoned(policy: &mut Policy, id: JobId, zone: &str, sub: &str) {
        queue(policy, id, zone, sub);
        assert_eq!(policy.start(Instant::now()), Some(id));
        policy.abandon(id);
    }

    fn counts(policy: &Policy) -> (usize, usize, usize, usize, usize) {
        (
            policy.ready_jobs(),
            policy.held_jobs(),
            policy.running(),
            policy.stuck(),
            policy.dead_zones(),
        )
    }

    #[test]
    fn abandoned_lookups_make_a_zone_dead_and_it_starts_one_probe_per_sub_zone() {
        let now = Instant::now();
        let mut policy = Policy::new(2);
        for id in 1..=2 {
            abandoned(&mut policy, id, "z", "a.z");
        }
        // The second was a's probe: the zone is dead and a holds a probe.
        assert_eq!(counts(&policy), (0, 0, 2, 2, 1));
        // Two more of sub-zone a wait; one of b probes.
        queue(&mut policy, 3, "z", "a.z");
        queue(&mut policy, 4, "z", "a.z");
        queue(&mut policy, 5, "z", "b.z");
        assert_eq!(counts(&policy), (1, 2, 2, 2, 1));
        assert_eq!(policy.start(now), Some(5));
        assert_eq!(policy.start(now), None);
        assert_eq!(counts(&policy), (0, 2, 3, 2, 1));
        // b's probe is answered: the zone re-opens and a's waiting jobs may start.
        policy.end(5, true);
        assert_eq!(counts(&policy), (2, 0, 2, 2, 0));
        assert_eq!(policy.start(now), Some(3));
    }

    #[test]
    fn probes_are_at_most_max_stuck_at_once() {
        let now = Instant::now();
        let mut policy = Policy::new(1);
        abandoned(&mut policy, 1, "z", "a");
        queue(&mut policy, 2, "z", "b");
        queue(&mut policy, 3, "z", "c");
        assert_eq!(policy.start(now), Some(2));
        assert_eq!(
            policy.start(now),
            None,
            "one probe at once with a limit of one"
        );
        // The probe ends without an answer (a timeout): the next may probe.
        policy.end(2, false);
        assert_eq!(policy.start(now), Some(3));
    }

    #[test]
    fn lookups_in_flight_past_the_threshold_are_stuck_and_free_capacity() {
        let start = Instant::now();
        let mut policy = Policy::new(2);
        policy.set_stall_after(Duration::from_millis(100));
        for id in 1..=3 {
            queue(&mut policy, id, "z", "z");
            policy.start(start);
        }
        assert!(!policy.may_add_thread(3, 3));
        assert_eq!(
            policy.next_stall(),
            Some(start + Duration::from_millis(100))
        );
        assert!(!policy.note_stalls(start + Duration::from_millis(99)));
        assert!(policy.note_stalls(start + Duration::from_millis(100)));
        assert_eq!(counts(&policy), (0, 0, 3, 3, 1));
        assert!(policy.may_add_thread(3, 3));
        assert!(!policy.note_stalls(start + Duration::from_secs(1)), "once");
        // The zone answers through one of them: alive again, the others no longer count.
        policy.end(1, true);
        assert_eq!(counts(&policy), (0, 0, 2, 2, 0));
    }

    #[test]
    fn threads_never_exceed_the_ceiling_and_surplus_counts_like_capacity() {
        let mut policy = Policy::new(100);
        for id in 0..10 {
            abandoned(&mut policy, id, "z", "z");
        }
        assert!(policy.may_add_thread(11, 3), "ten stuck, one fresh");
        assert!(
            !policy.may_add_thread(14, 4),
            "ten stuck, four fresh, cap 4"
        );
        assert!(!policy.may_add_thread(12, 3), "the ceiling of 4 x 3");
        assert!(!policy.is_surplus(12, 3), "two fresh, at the ceiling");
        assert!(policy.is_surplus(13, 3), "beyond the ceiling");
        assert!(!policy.is_surplus(13, 4), "three fresh beside ten stuck");
        assert!(policy.is_surplus(15, 4), "five fresh beside ten stuck");
    }

    #[test]
    fn a_zone_without_stuck_lookups_takes_its_turn_before_zones_with_some() {
        let now = Instant::now();
        let mut policy = Policy::new(5);
        abandoned(&mut policy, 1, "dead", "dead");
        queue(&mut policy, 2, "dead", "dead");
        queue(&mut policy, 3, "other-dead", "other-dead");
        queue(&mut policy, 4, "ok", "ok");
        assert_eq!(
            policy.start(now),
            Some(3),
            "no stuck lookup: healthy so far"
        );
        assert_eq!(policy.start(now), Some(4));
        assert_eq!(policy.start(now), Some(2));
    }

    #[test]
    fn a_lookup_that_began_before_an_answer_does_not_count_when_it_stalls() {
        let start = Instant::now();
        let mut policy = Policy::new(1);
        queue(&mut policy, 1, "z", "z");
        queue(&mut policy, 2, "z", "z");
        policy.start(start);
        policy.start(start);
        policy.end(2, true);
        policy.abandon(1);
        assert_eq!(counts(&policy), (0, 0, 1, 1, 0));
        // It ends: the counts balance.
        policy.end(1, false);
        assert_eq!(counts(&policy), (0, 0, 0, 0, 0));
        assert!(policy.zones.is_empty());
    }

    #[test]
    fn withdrawing_and_draining_keep_the_counts() {
        let mut policy = Policy::new(1);
        abandoned(&mut policy, 1, "z", "z");
        queue(&mut policy, 2, "z", "z");
        queue(&mut policy, 3, "y", "y");
        assert!(policy.withdraw(3, &name("y")));
        assert!(!policy.withdraw(3, &name("y")));
        assert!(!policy.withdraw(9, &name("z")));
        queue(&mut policy, 4, "z", "z");
        assert_eq!(counts(&policy), (1, 1, 1, 1, 1));
        assert_eq!(policy.drain_queued(), [2, 4]);
        assert_eq!(counts(&policy), (0, 0, 1, 1, 1));
        assert_eq!(policy.abandoned_by_zone(), [("z".to_owned(), 1)]);
        policy.end(1, false);
        assert_eq!(counts(&policy), (0, 0, 0, 0, 0));
        assert_eq!(policy.abandoned(), 0);
    }

    #[test]
    fn raising_the_limit_revives_a_dead_zone() {
        let mut policy = Policy::new(1);
        abandoned(&mut policy, 1, "z", "z");
        policy.abandon(1);
        assert_eq!(policy.abandoned(), 1, "abandoned once");
        queue(&mut policy, 2, "z", "z");
        queue(&mut policy, 3, "z", "z");
        assert_eq!(counts(&policy), (1, 1, 1, 1, 1));
        policy.set_max_stuck(2);
        assert_eq!(counts(&policy), (2, 0, 1, 1, 0));
    }

    #[test]
    fn start_entries_of_ended_lookups_do_not_pile_up() {
        let now = Instant::now();
        let mut policy = Policy::new(1);
        policy.set_stall_after(Duration::from_secs(3600));
        queue(&mut policy, 0, "long", "long");
        policy.start(now);
        for id in 1..1000 {
            queue(&mut policy, id, "z", "z");
            policy.start(now);
            policy.end(id, true);
        }
        assert!(policy.by_start.len() <= 66, "{}", policy.by_start.len());
        // The long lookup's entry survived every clean-up: it still stalls.
        assert!(policy.note_stalls(now + Duration::from_secs(3600)));
        assert_eq!(policy.stuck(), 1);
    }

    #[test]
    fn a_lookup_ending_leaves_the_start_entry_of_an_older_one() {
        let now = Instant::now();
        let mut policy = Policy::new(2);
        policy.set_stall_after(Duration::from_millis(100));
        queue(&mut policy, 1, "z", "z");
        queue(&mut policy, 2, "z", "z");
        policy.start(now);
        policy.start(now);
        policy.end(2, true);
        assert!(policy.note_stalls(now + Duration::from_millis(100)));
        assert_eq!(policy.stuck(), 1);
    }

    #[test]
    fn an_abandoned_lookup_that_ends_leaves_its_zones_list_of_abandoned_ones() {
        let mut policy = Policy::new(5);
        abandoned(&mut policy, 1, "z", "z");
        abandoned(&mut policy, 2, "z", "z");
        policy.end(1, false);
        assert_eq!(policy.abandoned_by_zone(), [("z".to_owned(), 1)]);
    }

    #[test]
    fn places_from_strings_are_their_own_sub_zone() {
        assert_eq!(Place::from("z"), Place::new("z", "z"));
        assert_eq!(Place::from("z".to_owned()).sub_zone, "z");
    }
}
