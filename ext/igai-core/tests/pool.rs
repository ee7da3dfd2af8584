//! The worker pool with an injected lookup function: no DNS, no Ruby.

use igai_core::pool::{Config, Place, Pool, Stats, Ticket, WaitEnd};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lookups block until their key's gate opens; every call is counted per key.
#[derive(Default)]
struct Gates {
    open: Mutex<HashMap<u32, bool>>,
    changed: Condvar,
    calls: Mutex<HashMap<u32, usize>>,
    /// Keys in the order their lookups started.
    started: Mutex<Vec<u32>>,
}

impl Gates {
    fn lookup(self: &Arc<Self>) -> impl Fn(&u32) -> Outcome + Send + Sync + 'static {
        let gates = Arc::clone(self);
        move |key: &u32| {
            *gates.calls.lock().unwrap().entry(*key).or_default() += 1;
            gates.started.lock().unwrap().push(*key);
            let mut open = gates.open.lock().unwrap();
            while !open.get(key).copied().unwrap_or(false) {
                open = gates.changed.wait(open).unwrap();
            }
            Outcome::new(*key * 10)
        }
    }

    fn open(&self, key: u32) {
        self.open.lock().unwrap().insert(key, true);
        self.changed.notify_all();
    }

    fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }

    fn calls(&self, key: u32) -> usize {
        self.calls.lock().unwrap().get(&key).copied().unwrap_or(0)
    }
}

/// Outcomes alive, by value: tests that count them use keys of their own, so that tests
/// running side by side do not see each other's outcomes.
static LIVE_OUTCOMES: Mutex<BTreeMap<u32, usize>> = Mutex::new(BTreeMap::new());

/// How many outcomes of value `value` are alive.
fn live_outcomes(value: u32) -> usize {
    LIVE_OUTCOMES
        .lock()
        .unwrap()
        .get(&value)
        .copied()
        .unwrap_or(0)
}

/// An outcome that counts how many are alive, to prove the last owner frees it.
#[derive(Debug)]
struct Outcome(u32);

impl Outcome {
    fn new(value: u32) -> Self {
        *LIVE_OUTCOMES.lock().unwrap().entry(value).or_default() += 1;
        Outcome(value)
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        *LIVE_OUTCOMES.lock().unwrap().entry(self.0).or_default() -= 1;
    }
}

fn config(max_workers: usize) -> Config {
    Config {
        max_workers,
        idle_timeout: Duration::from_secs(10),
        stack_size: 64 * 1024,
        thread_name: "igai-test".into(),
        max_stuck_per_zone: 2,
    }
}

/// Keys fall in zones of a hundred: 0..=99 in "z0", 100..=199 in "z1" and so on.
fn zone_of(key: &u32) -> String {
    format!("z{}", key / 100)
}

/// A pool whose lookups never count as stuck for being slow (tests of the stall threshold
/// set their own): only abandoned ones do, whatever the load of the machine.
fn pool(config: Config, gates: &Arc<Gates>) -> Pool<u32, Outcome> {
    let pool = Pool::new(config, zone_of, gates.lookup());
    pool.set_stall_after(Duration::from_secs(3600));
    pool
}

/// Polls `stats` until `done` holds; fails the test when it does not within [`LIMIT`].
fn eventually<O: Send + Sync + 'static>(
    pool: &Pool<u32, O>,
    done: impl Fn(&Stats) -> bool,
) -> Stats {
    let give_up = Instant::now() + LIMIT;
    loop {
        let stats = pool.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < give_up,
            "the awaited pool state did not come within {LIMIT:?}; last stats: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The longest any test waits for something that should come at once: a regression fails the
/// test with a message instead of hanging `cargo test`.
const LIMIT: Duration = Duration::from_secs(10);

/// `Ticket::wait` bounded by [`LIMIT`].
trait WaitBounded<O> {
    fn wait_bounded(&mut self) -> WaitEnd<O>;
}

impl<K, O> WaitBounded<O> for Ticket<K, O>
where
    K: Eq + std::hash::Hash + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn wait_bounded(&mut self) -> WaitEnd<O> {
        match self.wait(Some(Instant::now() + LIMIT)) {
            WaitEnd::TimedOut => panic!("the lookup did not end within {LIMIT:?}"),
            end => end,
        }
    }
}

fn done_value(end: WaitEnd<Outcome>) -> u32 {
    match end {
        WaitEnd::Done(outcome) => outcome.0,
        other => panic!("expected an outcome, got {other:?}"),
    }
}

/// Resolves keys 1 and 2, the second once the first's worker is idle again; the stats then.
fn two_lookups_one_after_the_other(pool: &Pool<u32, Outcome>, gates: &Gates) -> Stats {
    gates.open(1);
    gates.open(2);
    assert_eq!(done_value(pool.submit(1).wait_bounded()), 10);
    eventually(pool, |s| s.idle == 1);
    assert_eq!(done_value(pool.submit(2).wait_bounded()), 20);
    eventually(pool, |s| s.idle == 1)
}

#[test]
fn an_idle_worker_takes_the_next_job_instead_of_a_new_thread() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let stats = two_lookups_one_after_the_other(&pool, &gates);
    assert_eq!(stats.workers, 1);
    assert_eq!(stats.completed, 2);
}

#[test]
fn jobs_beyond_the_cap_wait_in_the_queue_and_run_later() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(2), &gates);
    let keys = [1, 101, 201, 301, 401];
    let mut tickets: Vec<_> = keys.iter().map(|&key| pool.submit(key)).collect();
    let stats = eventually(&pool, |s| s.busy == 2);
    assert_eq!((stats.workers, stats.busy, stats.queued), (2, 2, 3));
    for key in keys {
        gates.open(key);
    }
    let values: Vec<_> = tickets
        .iter_mut()
        .map(|t| done_value(t.wait_bounded()))
        .collect();
    assert_eq!(values, [10, 1010, 2010, 3010, 4010]);
    assert_eq!(pool.stats().workers, 2);
}

#[test]
fn a_queued_job_whose_caller_gives_up_is_withdrawn_and_never_runs() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    let mut running = pool.submit(1);
    eventually(&pool, |s| s.busy == 1);
    let mut queued = pool.submit(2);
    let deadline = Instant::now() + Duration::from_millis(20);
    assert!(matches!(queued.wait(Some(deadline)), WaitEnd::TimedOut));
    drop(queued);
    assert_eq!(pool.stats().queued, 0);
    gates.open(1);
    gates.open(2);
    assert_eq!(done_value(running.wait_bounded()), 10);
    eventually(&pool, |s| s.idle == 1);
    assert_eq!(gates.calls(2), 0, "the withdrawn lookup must not run");
}

#[test]
fn identical_keys_share_one_lookup_and_one_waiter_leaving_does_not_disturb_the_others() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let mut first = pool.submit(7);
    let second = pool.submit(7);
    let mut third = pool.submit(7);
    eventually(&pool, |s| s.busy == 1);
    drop(second);
    gates.open(7);
    assert_eq!(done_value(first.wait_bounded()), 70);
    assert_eq!(done_value(third.wait_bounded()), 70);
    let stats = pool.stats();
    assert_eq!(stats.coalesced, 2);
    assert_eq!(stats.completed, 1);
    assert_eq!(gates.calls(7), 1);
}

#[test]
fn a_finished_lookup_is_not_reused_by_later_callers() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    gates.open(3);
    done_value(pool.submit(3).wait_bounded());
    done_value(pool.submit(3).wait_bounded());
    assert_eq!(gates.calls(3), 2);
}

#[test]
fn idle_workers_retire_after_the_idle_timeout() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(4);
    cfg.idle_timeout = Duration::from_millis(30);
    let pool = pool(cfg, &gates);
    gates.open(1);
    gates.open(2);
    let mut a = pool.submit(1);
    let mut b = pool.submit(2);
    done_value(a.wait_bounded());
    done_value(b.wait_bounded());
    let stats = eventually(&pool, |s| s.workers == 0);
    assert_eq!(stats.workers, 0);
    assert_eq!(stats.idle, 0);
}

#[test]
fn shortening_the_idle_timeout_retires_workers_already_idle() {
    let gates = Arc::new(Gates::default());
    // Far longer than `eventually` waits: only the shortened timeout can retire the worker.
    let mut cfg = config(4);
    cfg.idle_timeout = Duration::from_secs(3600);
    let pool = pool(cfg, &gates);
    gates.open(1);
    done_value(pool.submit(1).wait_bounded());
    eventually(&pool, |s| s.idle == 1);
    pool.set_idle_timeout(Duration::from_millis(1));
    assert_eq!(eventually(&pool, |s| s.workers == 0).workers, 0);
}

#[test]
fn an_abandoned_lookup_keeps_its_worker_until_it_ends_and_then_frees_its_outcome() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let ticket = pool.submit(11);
    eventually(&pool, |s| s.busy == 1);
    drop(ticket);
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.abandoned), (1, 1));
    assert_eq!(live_outcomes(110), 0, "the lookup has not ended yet");
    gates.open(11);
    let stats = eventually(&pool, |s| s.busy == 0);
    assert_eq!(stats.abandoned, 0);
    // The worker drops the outcome nobody waits for just after it leaves the counts.
    eventually(&pool, |_| live_outcomes(110) == 0);
    assert_eq!(live_outcomes(110), 0);
}

#[test]
fn the_last_waiter_to_let_go_frees_the_outcome() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let mut one = pool.submit(12);
    let mut two = pool.submit(12);
    gates.open(12);
    let a = match one.wait_bounded() {
        WaitEnd::Done(o) => o,
        other => panic!("{other:?}"),
    };
    drop(one);
    assert_eq!(live_outcomes(120), 1);
    drop(a);
    // The second waiter has not collected yet: the outcome must still be alive for it.
    assert_eq!(live_outcomes(120), 1);
    assert_eq!(done_value(two.wait_bounded()), 120);
    assert_eq!(live_outcomes(120), 0);
}

#[test]
fn an_abandoned_lookup_is_forgotten_and_the_same_key_starts_a_fresh_lookup() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let first = pool.submit(13);
    eventually(&pool, |s| s.busy == 1);
    drop(first);
    assert_eq!(pool.stats().abandoned, 1);
    // The first lookup may never answer (a lost packet): the retry must not join it.
    let mut again = pool.submit(13);
    eventually(&pool, |_| gates.calls(13) == 2);
    assert_eq!(gates.calls(13), 2);
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.abandoned, stats.coalesced), (2, 1, 0));
    gates.open(13);
    assert_eq!(done_value(again.wait_bounded()), 130);
    let stats = eventually(&pool, |s| s.busy == 0);
    assert_eq!(stats.abandoned, 0);
    eventually(&pool, |_| live_outcomes(130) == 0);
    assert_eq!(live_outcomes(130), 0, "the forgotten outcome is dropped");
}

#[test]
fn callers_still_waiting_keep_sharing_a_lookup_that_one_of_them_left() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let first = pool.submit(15);
    let mut second = pool.submit(15);
    eventually(&pool, |s| s.busy == 1);
    drop(first);
    let mut third = pool.submit(15);
    assert_eq!(pool.stats().abandoned, 0);
    gates.open(15);
    assert_eq!(done_value(second.wait_bounded()), 150);
    assert_eq!(done_value(third.wait_bounded()), 150);
    assert_eq!(gates.calls(15), 1);
}

#[test]
fn an_interrupt_ends_the_wait_but_keeps_the_ticket_waiting() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let mut ticket = pool.submit(14);
    let waker = ticket.waker();
    let interrupter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        waker.interrupt();
    });
    assert!(matches!(ticket.wait_bounded(), WaitEnd::Interrupted));
    interrupter.join().unwrap();
    ticket.rearm();
    gates.open(14);
    assert_eq!(done_value(ticket.wait_bounded()), 140);
}

#[test]
fn raising_the_cap_starts_workers_for_queued_jobs() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    let _first = pool.submit(21);
    // Another zone: with two workers a zone alone may run only one lookup.
    let mut second = pool.submit(122);
    eventually(&pool, |s| s.busy == 1 && s.queued == 1);
    pool.set_max_workers(2);
    gates.open(122);
    assert_eq!(done_value(second.wait_bounded()), 1220);
    gates.open(21);
}

#[test]
fn a_thread_that_cannot_be_created_fails_the_job_with_the_os_error() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(4);
    cfg.stack_size = usize::MAX / 2; // no system can map this
    let pool = pool(cfg, &gates);
    let mut ticket = pool.submit(1);
    assert!(matches!(ticket.wait_bounded(), WaitEnd::NoThread(_)));
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.queued), (0, 0));
}

#[test]
fn a_panicking_lookup_reports_the_panic_and_the_worker_survives() {
    let pool: Pool<u32, u32> = Pool::new(config(1), zone_of, |key: &u32| {
        assert!(*key != 0, "lookup of zero panics");
        *key
    });
    assert!(matches!(pool.submit(0).wait_bounded(), WaitEnd::Panicked));
    match pool.submit(5).wait_bounded() {
        WaitEnd::Done(v) => assert_eq!(*v, 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.stats().workers, 1);
}

#[test]
fn many_callers_many_keys_all_get_their_own_answer() {
    let pool: Arc<Pool<u32, u32>> = Arc::new(Pool::new(config(8), zone_of, |key: &u32| {
        std::thread::sleep(Duration::from_micros(200));
        key + 1
    }));
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let key = (t * 7 + i) % 40;
                    match pool.submit(key).wait_bounded() {
                        WaitEnd::Done(v) => assert_eq!(*v, key + 1),
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = pool.stats();
    assert!(stats.workers <= 8);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.busy, 0);
}

/// Submits `key` and abandons it once it runs, leaving its worker stuck until its gate opens.
fn abandon(pool: &Pool<u32, Outcome>, gates: &Gates, key: u32) {
    let ticket = pool.submit(key);
    let give_up = Instant::now() + Duration::from_secs(5);
    while gates.calls(key) == 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(gates.calls(key), 1, "lookup of {key} should have started");
    drop(ticket);
}

/// A pool whose zone z0 is dead: it holds its limit of two abandoned lookups (keys 1 and 2,
/// the second its probe); and the ticket of key 3, held back in z0's queue.
fn held_behind_a_stuck_zone(gates: &Arc<Gates>) -> (Pool<u32, Outcome>, Ticket<u32, Outcome>) {
    let pool = pool(config(8), gates);
    abandon(&pool, gates, 1);
    abandon(&pool, gates, 2);
    let held = pool.submit(3);
    (pool, held)
}

#[test]
fn a_dead_zone_starts_no_more_lookups_until_a_stuck_one_ends() {
    let gates = Arc::new(Gates::default());
    let (pool, mut held) = held_behind_a_stuck_zone(&gates);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.abandoned,
            stats.stuck_zones,
            stats.waiting_for_zone,
            stats.queued
        ),
        (2, 1, 1, 0)
    );
    assert_eq!(pool.abandoned_by_zone(), vec![("z0".to_owned(), 2)]);
    // Another zone is not held up.
    gates.open(101);
    assert_eq!(done_value(pool.submit(101).wait_bounded()), 1010);
    assert_eq!(
        gates.calls(3),
        0,
        "the dead zone must not start another lookup"
    );
    // A stuck lookup ends with an answer: the zone is alive again and starts its waiting job.
    gates.open(3);
    gates.open(1);
    assert_eq!(done_value(held.wait_bounded()), 30);
    let stats = eventually(&pool, |s| s.abandoned == 1);
    assert_eq!((stats.stuck_zones, stats.waiting_for_zone), (0, 0));
    gates.open(2);
    let stats = eventually(&pool, |s| s.busy == 0);
    assert_eq!(stats.abandoned, 0);
    assert!(pool.abandoned_by_zone().is_empty());
}

#[test]
fn a_job_waiting_for_its_zone_is_withdrawn_when_its_caller_gives_up_and_obeys_its_deadline() {
    let gates = Arc::new(Gates::default());
    let (pool, mut held) = held_behind_a_stuck_zone(&gates);
    let start = Instant::now();
    assert!(matches!(
        held.wait(Some(start + Duration::from_millis(30))),
        WaitEnd::TimedOut
    ));
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(held);
    assert_eq!(pool.stats().waiting_for_zone, 0);
    for key in 1..=3 {
        gates.open(key);
    }
    eventually(&pool, |s| s.busy == 0 && s.idle == 2);
    assert_eq!(gates.calls(3), 0, "the withdrawn lookup must not run");
}

#[test]
fn lookups_that_callers_wait_for_are_limited_by_their_zone_only_once_they_stall() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(32), &gates);
    abandon(&pool, &gates, 1);
    let mut waiting: Vec<_> = (10..22).map(|key| pool.submit(key)).collect();
    let stats = eventually(&pool, |s| s.busy == 13);
    assert_eq!(
        (stats.busy, stats.queued, stats.waiting_for_zone),
        (13, 0, 0)
    );
    // Once they have been in flight for the threshold, they are stuck: the zone is dead and
    // further jobs wait (key 10, the first to start beside the stuck one, is z0's probe).
    pool.set_stall_after(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    let stats = pool.stats();
    assert_eq!((stats.stuck, stats.stuck_zones), (13, 1), "{stats:?}");
    let mut held = [pool.submit(30), pool.submit(31)];
    let stats = pool.stats();
    assert_eq!(
        (stats.busy, stats.waiting_for_zone, stats.queued),
        (13, 2, 0),
        "{stats:?}"
    );
    // The probe is answered: the zone re-opens.
    gates.open(10);
    for key in (11..22).chain([30, 31]) {
        gates.open(key);
    }
    for (ticket, key) in waiting.iter_mut().zip(10..) {
        assert_eq!(done_value(ticket.wait_bounded()), key * 10);
    }
    assert_eq!(done_value(held[0].wait_bounded()), 300);
    assert_eq!(done_value(held[1].wait_bounded()), 310);
    gates.open(1);
}

#[test]
fn raising_the_zone_limit_releases_the_waiting_jobs() {
    let gates = Arc::new(Gates::default());
    let (pool, mut held) = held_behind_a_stuck_zone(&gates);
    assert_eq!(pool.stats().waiting_for_zone, 1);
    pool.set_max_stuck_per_zone(3);
    gates.open(3);
    assert_eq!(done_value(held.wait_bounded()), 30);
    // That answer came after the stuck lookups began: they no longer count, whatever the limit.
    pool.set_max_stuck_per_zone(1);
    assert_eq!(pool.stats().stuck_zones, 0);
    gates.open(1);
    gates.open(2);
    let stats = eventually(&pool, |s| s.abandoned == 0);
    assert_eq!(stats.stuck_zones, 0);
}

#[test]
fn stuck_lookups_leave_max_workers_to_other_lookups_up_to_the_ceiling() {
    let gates = Arc::new(Gates::default());
    // One worker, a ceiling of four threads; zones never dead here.
    let mut cfg = config(1);
    cfg.max_stuck_per_zone = 100;
    let pool = pool(cfg, &gates);
    for key in [1, 101, 201] {
        abandon(&pool, &gates, key);
    }
    // Three stuck: the fourth thread answers another zone.
    gates.open(301);
    assert_eq!(done_value(pool.submit(301).wait_bounded()), 3010);
    abandon(&pool, &gates, 302);
    let mut queued = pool.submit(401);
    let stats = pool.stats();
    assert_eq!(
        (stats.workers, stats.busy, stats.stuck, stats.queued),
        (4, 4, 4, 1)
    );
    gates.open(401);
    gates.open(101);
    assert_eq!(done_value(queued.wait_bounded()), 4010);
    for key in [1, 201, 302] {
        gates.open(key);
    }
    assert!(eventually(&pool, |s| s.busy == 0).workers <= 4);
}

#[test]
fn a_queued_job_starts_when_the_running_lookup_crosses_the_stall_threshold() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    pool.set_stall_after(Duration::from_millis(100));
    let mut slow = pool.submit(1);
    eventually(&pool, |s| s.busy == 1);
    gates.open(101);
    let start = Instant::now();
    // Nothing else happens in the pool: the waiting caller itself notices the stall.
    assert_eq!(done_value(pool.submit(101).wait_bounded()), 1010);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(gates.calls(1), 1);
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.stuck), (2, 1), "{stats:?}");
    gates.open(1);
    assert_eq!(done_value(slow.wait_bounded()), 10);
}

/// Keys 1000 and up fall in zone "shared", the sub-zone "stall.shared" below 1500 and
/// "ok.shared" from 1500; other keys as [`zone_of`].
fn place_of(key: &u32) -> Place {
    match *key {
        1000..=1499 => Place::new("shared", "stall.shared"),
        1500.. => Place::new("shared", "ok.shared"),
        _ => zone_of(key).into(),
    }
}

#[test]
fn a_dead_zone_probes_each_sub_zone_once_and_an_answered_probe_reopens_it() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(8), place_of, gates.lookup());
    pool.set_stall_after(Duration::from_secs(3600));
    for key in 1000..1002 {
        abandon(&pool, &gates, key);
    }
    // Two stuck, the second the stalled sub-zone's probe: its further names wait.
    let held = pool.submit(1003);
    let stats = pool.stats();
    assert_eq!(
        (stats.abandoned, stats.stuck_zones, stats.waiting_for_zone),
        (2, 1, 1)
    );
    drop(held);
    // A name of the other sub-zone probes, is answered, and the zone is open again.
    gates.open(1500);
    assert_eq!(done_value(pool.submit(1500).wait_bounded()), 15000);
    assert_eq!(pool.stats().stuck_zones, 0);
    gates.open(1501);
    gates.open(1502);
    let mut both = [pool.submit(1501), pool.submit(1502)];
    assert_eq!(done_value(both[0].wait_bounded()), 15010);
    assert_eq!(done_value(both[1].wait_bounded()), 15020);
    assert_eq!(gates.calls(1003), 0);
    for key in 1000..1002 {
        gates.open(key);
    }
    eventually(&pool, |s| s.busy == 0);
}

#[test]
fn a_stuck_lookup_that_ends_unanswered_does_not_reopen_its_zone() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(8);
    cfg.max_stuck_per_zone = 1;
    // Outcomes of zone z1 (keys 100..200, values 1000..2000) are timeouts.
    let pool = Pool::with_answered(cfg, zone_of, gates.lookup(), |outcome: &Outcome| {
        !(1000..2000).contains(&outcome.0)
    });
    pool.set_stall_after(Duration::from_secs(3600));
    abandon(&pool, &gates, 101);
    abandon(&pool, &gates, 102);
    let mut held = pool.submit(103);
    assert_eq!(pool.stats().waiting_for_zone, 1);
    // The probe times out: the next job probes, and the zone stays dead.
    gates.open(102);
    eventually(&pool, |_| gates.calls(103) == 1);
    let stats = pool.stats();
    assert_eq!((stats.stuck_zones, stats.abandoned), (1, 1), "{stats:?}");
    gates.open(103);
    assert_eq!(done_value(held.wait_bounded()), 1030);
    gates.open(101);
    eventually(&pool, |s| s.busy == 0);
}

#[test]
fn a_zone_without_stuck_lookups_gets_the_freed_worker_before_one_with_some() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    abandon(&pool, &gates, 1);
    let mut blocker = pool.submit(999);
    eventually(&pool, |s| s.busy == 2);
    // z0 holds a stuck lookup (not dead with a limit of two) and queues first.
    let mut tickets = [pool.submit(2), pool.submit(101)];
    assert_eq!(pool.stats().queued, 2);
    for key in [2, 101, 999] {
        gates.open(key);
    }
    done_value(blocker.wait_bounded());
    for ticket in &mut tickets {
        done_value(ticket.wait_bounded());
    }
    assert_eq!(gates.started()[2..], [101, 2]);
    gates.open(1);
}

#[test]
fn lowering_max_workers_mid_outage_keeps_the_worker_that_takes_the_queued_job() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(2), &gates);
    for key in [1, 101, 201] {
        abandon(&pool, &gates, key);
    }
    let mut running = [pool.submit(301), pool.submit(401)];
    eventually(&pool, |s| s.busy == 5);
    let mut queued = pool.submit(501);
    pool.set_max_workers(1);
    gates.open(301);
    gates.open(401);
    gates.open(501);
    assert_eq!(done_value(running[0].wait_bounded()), 3010);
    assert_eq!(done_value(running[1].wait_bounded()), 4010);
    // One of the two workers retires, the other takes the queued job (the stuck ones run on).
    assert_eq!(done_value(queued.wait_bounded()), 5010);
    let stats = eventually(&pool, |s| s.busy == 3);
    assert_eq!((stats.workers, stats.idle), (4, 1), "{stats:?}");
    for key in [1, 101, 201] {
        gates.open(key);
    }
}

#[test]
fn zones_take_turns_when_workers_are_scarce() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    let mut blocker = pool.submit(999);
    eventually(&pool, |s| s.busy == 1);
    // Zone z0 queues five jobs before zone z1 and z2 queue one each.
    let mut tickets: Vec<_> = [1, 2, 3, 4, 5, 101, 201]
        .into_iter()
        .map(|key| pool.submit(key))
        .collect();
    assert_eq!(pool.stats().queued, 7);
    for key in [1, 2, 3, 4, 5, 101, 201, 999] {
        gates.open(key);
    }
    done_value(blocker.wait_bounded());
    for ticket in &mut tickets {
        done_value(ticket.wait_bounded());
    }
    assert_eq!(gates.started(), [999, 1, 101, 201, 2, 3, 4, 5]);
}

#[test]
fn under_a_trickle_the_most_recently_idle_worker_serves_and_surplus_workers_retire() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(6);
    cfg.idle_timeout = Duration::from_millis(300);
    let pool = pool(cfg, &gates);
    // A burst: six workers (one lookup in each of six zones, as a zone may not take them all).
    let keys = [1, 101, 201, 301, 401, 501];
    let mut burst: Vec<_> = keys.iter().map(|&key| pool.submit(key)).collect();
    eventually(&pool, |s| s.busy == 6);
    for key in keys {
        gates.open(key);
    }
    for ticket in &mut burst {
        done_value(ticket.wait_bounded());
    }
    // Then one lookup every 20 ms for a second: far more often than the idle timeout.
    for key in 10..60 {
        gates.open(key);
        done_value(pool.submit(key).wait_bounded());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = pool.stats();
    assert!(
        stats.workers <= 2,
        "surplus workers should have retired: {stats:?}"
    );
}

#[test]
fn a_huge_idle_timeout_means_workers_never_retire_and_lookups_work() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    pool.set_idle_timeout(Duration::MAX);
    let stats = two_lookups_one_after_the_other(&pool, &gates);
    assert_eq!(stats.workers, 1);
}

#[test]
fn a_thread_that_cannot_be_created_keeps_its_os_error_number() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(4);
    cfg.stack_size = usize::MAX / 2; // no system can map this
    let pool = pool(cfg, &gates);
    let mut one = pool.submit(1);
    let mut two = pool.submit(1);
    for ticket in [&mut one, &mut two] {
        match ticket.wait_bounded() {
            WaitEnd::NoThread(error) => assert!(
                error.raw_os_error().is_some(),
                "the OS error number is lost: {error:?}"
            ),
            other => panic!("expected NoThread, got {other:?}"),
        }
    }
}

#[test]
fn back_to_back_lookups_of_one_caller_are_served_by_one_worker() {
    let pool: Pool<u32, u32> = Pool::new(config(8), zone_of, |key: &u32| *key);
    // The caller submits again the moment it is woken: the worker that woke it must
    // already count as idle, or each lookup could start another thread.
    for key in 0..300 {
        match pool.submit(key).wait_bounded() {
            WaitEnd::Done(v) => assert_eq!(*v, key),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pool.stats().workers, 1);
}

#[test]
fn the_books_balance_after_a_storm_of_lookups_abandoned_withdrawn_and_answered() {
    // Lookups of 0..5 ms in five zones, two sub-zones each; callers give up after 0..4 ms or
    // wait; few workers, a zone limit of one and a stall threshold of 3 ms, while another
    // thread changes the limits, so that every path (queued, held, withdrawn, forgotten,
    // coalesced, taking turns, stalled, probing, answered or not) is taken many times.
    let mut cfg = config(4);
    cfg.max_stuck_per_zone = 1;
    let pool: Arc<Pool<u32, u32>> = Arc::new(Pool::with_answered(
        cfg,
        |key: &u32| Place::new(zone_of(key), format!("{}", key % 2)),
        |key: &u32| {
            std::thread::sleep(Duration::from_micros(u64::from(key % 5) * 1000));
            key + 1
        },
        |outcome: &u32| outcome % 3 != 0,
    ));
    pool.set_stall_after(Duration::from_millis(3));
    let storming = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let changer = {
        let (pool, storming) = (Arc::clone(&pool), Arc::clone(&storming));
        std::thread::spawn(move || {
            let mut turn = 0;
            while storming.load(std::sync::atomic::Ordering::Relaxed) {
                turn += 1;
                pool.set_max_workers(1 + turn % 4);
                pool.set_max_stuck_per_zone(1 + turn % 2);
                std::thread::sleep(Duration::from_millis(7));
            }
            pool.set_max_workers(4);
            pool.set_max_stuck_per_zone(1);
        })
    };
    let handles: Vec<_> = (0..12u32)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut seed = 0x9e37_79b9_u32.wrapping_mul(t + 1);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed
                };
                for _ in 0..150 {
                    let key = (next() % 5) * 100 + next() % 7;
                    let patience = next() % 6;
                    let deadline = (patience < 5).then(|| {
                        Instant::now() + Duration::from_micros(u64::from(patience) * 1000)
                    });
                    match pool.submit(key).wait(deadline) {
                        WaitEnd::Done(v) => assert_eq!(*v, key + 1),
                        WaitEnd::TimedOut => {}
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    storming.store(false, std::sync::atomic::Ordering::Relaxed);
    changer.join().unwrap();
    let stats = eventually(&pool, |s| s.busy == 0 && s.idle == s.workers);
    assert_eq!(
        (
            stats.busy,
            stats.queued,
            stats.abandoned,
            stats.stuck_zones,
            stats.waiting_for_zone,
            stats.stuck
        ),
        (0, 0, 0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.idle, stats.workers);
    // Idle workers beyond the final cap retire after the idle timeout; never beyond the ceiling.
    assert!(stats.workers <= 4 * igai_core::pool::THREAD_CEILING);
    assert!(pool.abandoned_by_zone().is_empty());
    // And the pool still works.
    match pool.submit(1).wait_bounded() {
        WaitEnd::Done(v) => assert_eq!(*v, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_workers_reports_the_cap_and_never_goes_below_one() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(3), &gates);
    assert_eq!(pool.max_workers(), 3);
    pool.set_max_workers(0);
    assert_eq!(pool.max_workers(), 1);
    pool.set_max_workers(7);
    assert_eq!(pool.max_workers(), 7);
}

#[test]
fn abandoned_by_zone_lists_only_zones_holding_abandoned_lookups() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let mut waited_for = pool.submit(1);
    let left = pool.submit(101);
    eventually(&pool, |s| s.busy == 2);
    assert_eq!(pool.abandoned_by_zone(), []);
    drop(left);
    assert_eq!(pool.abandoned_by_zone(), [("z1".to_owned(), 1)]);
    gates.open(1);
    gates.open(101);
    assert_eq!(done_value(waited_for.wait_bounded()), 10);
}

#[test]
fn lowering_the_zone_limit_holds_the_jobs_already_queued_in_that_zone() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(2);
    cfg.max_stuck_per_zone = 3;
    let pool = pool(cfg, &gates);
    abandon(&pool, &gates, 1);
    abandon(&pool, &gates, 2);
    // Two more zones take the two workers, so that z0's next jobs wait for a worker, not for
    // their zone.
    let mut others = [pool.submit(101), pool.submit(201)];
    eventually(&pool, |s| s.busy == 4);
    let mut queued = [pool.submit(3), pool.submit(4)];
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.waiting_for_zone), (2, 0));
    assert_eq!(pool.abandoned_by_zone(), [("z0".to_owned(), 2)]);
    // Dead now; its probe (key 2) is in flight: both wait.
    pool.set_max_stuck_per_zone(2);
    let stats = pool.stats();
    assert_eq!(
        (stats.stuck_zones, stats.queued, stats.waiting_for_zone),
        (1, 0, 2)
    );
    for key in [1, 2, 3, 4, 101, 201] {
        gates.open(key);
    }
    assert_eq!(done_value(queued[0].wait_bounded()), 30);
    assert_eq!(done_value(queued[1].wait_bounded()), 40);
    assert_eq!(done_value(others[0].wait_bounded()), 1010);
    assert_eq!(done_value(others[1].wait_bounded()), 2010);
}

#[test]
fn a_zone_with_queued_jobs_but_nothing_abandoned_is_not_listed_as_abandoned() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    let mut running = pool.submit(1);
    eventually(&pool, |s| s.busy == 1);
    // One worker: the second waits for it.
    let mut queued = pool.submit(2);
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.waiting_for_zone), (1, 0), "{stats:?}");
    assert_eq!(pool.abandoned_by_zone(), []);
    gates.open(1);
    gates.open(2);
    assert_eq!(done_value(running.wait_bounded()), 10);
    assert_eq!(done_value(queued.wait_bounded()), 20);
}

#[test]
fn withdrawing_one_zones_queued_job_leaves_the_other_zones_in_turn() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(1), &gates);
    let mut running = pool.submit(201);
    eventually(&pool, |s| s.busy == 1);
    let withdrawn = pool.submit(1);
    let mut other_zone = pool.submit(101);
    assert_eq!(pool.stats().queued, 2);
    drop(withdrawn);
    assert_eq!(pool.stats().queued, 1);
    gates.open(201);
    gates.open(101);
    assert_eq!(done_value(running.wait_bounded()), 2010);
    assert_eq!(done_value(other_zone.wait_bounded()), 1010);
    assert_eq!(gates.calls(1), 0, "the withdrawn lookup must not run");
}

#[test]
fn after_rearm_a_wait_sleeps_again_instead_of_ending_at_once() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(4), &gates);
    let mut ticket = pool.submit(16);
    ticket.waker().interrupt();
    assert!(matches!(ticket.wait_bounded(), WaitEnd::Interrupted));
    ticket.rearm();
    let soon = Instant::now() + Duration::from_millis(30);
    assert!(matches!(ticket.wait(Some(soon)), WaitEnd::TimedOut));
    gates.open(16);
    assert_eq!(done_value(ticket.wait_bounded()), 160);
}

#[test]
fn lowering_the_cap_retires_surplus_workers_as_they_finish() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(3), &gates);
    // Three zones, as one zone may run only two lookups in a pool of three.
    let keys = [1, 101, 201];
    let mut tickets: Vec<_> = keys.iter().map(|&key| pool.submit(key)).collect();
    eventually(&pool, |s| s.busy == 3);
    pool.set_max_workers(1);
    for key in keys {
        gates.open(key);
    }
    for ticket in &mut tickets {
        done_value(ticket.wait_bounded());
    }
    let stats = eventually(&pool, |s| s.workers == 1);
    assert_eq!((stats.workers, stats.idle, stats.busy), (1, 1, 0));
}

/// Submits `keys` and waits until `running` of them run; their tickets.
fn burst(
    pool: &Pool<u32, Outcome>,
    keys: impl Iterator<Item = u32>,
    running: usize,
) -> Vec<Ticket<u32, Outcome>> {
    let tickets: Vec<_> = keys.map(|key| pool.submit(key)).collect();
    let stats = eventually(pool, |s| s.busy == running);
    assert_eq!(stats.busy, running, "{stats:?}");
    tickets
}

#[test]
fn a_burst_of_one_zone_frees_the_workers_once_it_stalls_and_holds_all_but_a_probe() {
    let gates = Arc::new(Gates::default());
    let pool = pool(config(8), &gates);
    // Eight of the twelve start; within the threshold they take every worker.
    let tickets = burst(&pool, 1..=12, 8);
    assert_eq!(pool.stats().queued, 4);
    // Past the threshold they are stuck: the zone is dead, one probe starts, three wait, and
    // other zones are answered at once. (All eight cross the threshold at once here: crossing
    // it one by one, the first ones would let another job start before the zone is dead.)
    std::thread::sleep(Duration::from_millis(30));
    pool.set_stall_after(Duration::from_millis(20));
    let stats = eventually(&pool, |s| s.busy == 9);
    assert_eq!(
        (
            stats.stuck,
            stats.stuck_zones,
            stats.queued,
            stats.waiting_for_zone
        ),
        (8, 1, 0, 3),
        "{stats:?}"
    );
    gates.open(101);
    gates.open(201);
    let mut others = [pool.submit(101), pool.submit(201)];
    assert_eq!(done_value(others[0].wait_bounded()), 1010);
    assert_eq!(done_value(others[1].wait_bounded()), 2010);
    // Every caller of the burst gives up: the waiting ones are withdrawn.
    drop(tickets);
    let stats = pool.stats();
    assert_eq!(
        (stats.abandoned, stats.stuck_zones, stats.waiting_for_zone),
        (9, 1, 0)
    );
    for key in 1..=12 {
        gates.open(key);
    }
    let stats = eventually(&pool, |s| s.busy == 0 && s.abandoned == 0);
    assert_eq!(
        (stats.stuck_zones, stats.queued, stats.waiting_for_zone),
        (0, 0, 0)
    );
    assert!(pool.abandoned_by_zone().is_empty());
    assert_eq!(gates.calls(12), 0, "withdrawn jobs must not run");
}
