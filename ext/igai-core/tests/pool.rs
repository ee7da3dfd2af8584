//! The worker pool with an injected lookup function: no DNS, no Ruby.

use igai_core::pool::{Config, Pool, Stats, Ticket, WaitEnd};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lookups block until their key's gate opens; every call is counted per key.
#[derive(Default)]
struct Gates {
    open: Mutex<HashMap<u32, bool>>,
    changed: Condvar,
    calls: Mutex<HashMap<u32, usize>>,
}

impl Gates {
    fn lookup(self: &Arc<Self>) -> impl Fn(&u32) -> Outcome + Send + Sync + 'static {
        let gates = Arc::clone(self);
        move |key: &u32| {
            *gates.calls.lock().unwrap().entry(*key).or_default() += 1;
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

    fn calls(&self, key: u32) -> usize {
        self.calls.lock().unwrap().get(&key).copied().unwrap_or(0)
    }
}

static LIVE_OUTCOMES: AtomicUsize = AtomicUsize::new(0);

/// An outcome that counts how many are alive, to prove the last owner frees it.
#[derive(Debug)]
struct Outcome(u32);

impl Outcome {
    fn new(value: u32) -> Self {
        LIVE_OUTCOMES.fetch_add(1, Ordering::SeqCst);
        Outcome(value)
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        LIVE_OUTCOMES.fetch_sub(1, Ordering::SeqCst);
    }
}

fn config(max_workers: usize) -> Config {
    Config {
        max_workers,
        idle_timeout: Duration::from_secs(10),
        stack_size: 64 * 1024,
        thread_name: "igai-test".into(),
    }
}

/// Polls `stats` until `done` holds; fails the test when it does not within 10 s.
fn eventually(pool: &Pool<u32, Outcome>, done: impl Fn(&Stats) -> bool) -> Stats {
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

#[test]
fn an_idle_worker_takes_the_next_job_instead_of_a_new_thread() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(4), gates.lookup());
    gates.open(1);
    gates.open(2);
    assert_eq!(done_value(pool.submit(1).wait_bounded()), 10);
    eventually(&pool, |s| s.idle == 1);
    assert_eq!(done_value(pool.submit(2).wait_bounded()), 20);
    let stats = eventually(&pool, |s| s.idle == 1);
    assert_eq!(stats.workers, 1);
    assert_eq!(stats.completed, 2);
}

#[test]
fn jobs_beyond_the_cap_wait_in_the_queue_and_run_later() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(2), gates.lookup());
    let mut tickets: Vec<_> = (1..=5).map(|key| pool.submit(key)).collect();
    let stats = eventually(&pool, |s| s.busy == 2);
    assert_eq!((stats.workers, stats.busy, stats.queued), (2, 2, 3));
    for key in 1..=5 {
        gates.open(key);
    }
    let values: Vec<_> = tickets
        .iter_mut()
        .map(|t| done_value(t.wait_bounded()))
        .collect();
    assert_eq!(values, [10, 20, 30, 40, 50]);
    assert_eq!(pool.stats().workers, 2);
}

#[test]
fn a_queued_job_whose_caller_gives_up_is_withdrawn_and_never_runs() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(1), gates.lookup());
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
    let pool = Pool::new(config(4), gates.lookup());
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
    let pool = Pool::new(config(4), gates.lookup());
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
    let pool = Pool::new(cfg, gates.lookup());
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
    let pool = Pool::new(config(4), gates.lookup());
    gates.open(1);
    done_value(pool.submit(1).wait_bounded());
    eventually(&pool, |s| s.idle == 1);
    pool.set_idle_timeout(Duration::from_millis(1));
    assert_eq!(eventually(&pool, |s| s.workers == 0).workers, 0);
}

#[test]
fn an_abandoned_lookup_keeps_its_worker_until_it_ends_and_then_frees_its_outcome() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(4), gates.lookup());
    let before = LIVE_OUTCOMES.load(Ordering::SeqCst);
    let ticket = pool.submit(11);
    eventually(&pool, |s| s.busy == 1);
    drop(ticket);
    let stats = pool.stats();
    assert_eq!((stats.busy, stats.abandoned), (1, 1));
    gates.open(11);
    let stats = eventually(&pool, |s| s.busy == 0);
    assert_eq!(stats.abandoned, 0);
    assert_eq!(LIVE_OUTCOMES.load(Ordering::SeqCst), before);
}

#[test]
fn the_last_waiter_to_let_go_frees_the_outcome() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(4), gates.lookup());
    let before = LIVE_OUTCOMES.load(Ordering::SeqCst);
    let mut one = pool.submit(12);
    let mut two = pool.submit(12);
    gates.open(12);
    let a = match one.wait_bounded() {
        WaitEnd::Done(o) => o,
        other => panic!("{other:?}"),
    };
    drop(one);
    assert_eq!(LIVE_OUTCOMES.load(Ordering::SeqCst), before + 1);
    drop(a);
    // The second waiter has not collected yet: the outcome must still be alive for it.
    assert_eq!(LIVE_OUTCOMES.load(Ordering::SeqCst), before + 1);
    assert_eq!(done_value(two.wait_bounded()), 120);
    assert_eq!(LIVE_OUTCOMES.load(Ordering::SeqCst), before);
}

#[test]
fn joining_an_abandoned_lookup_makes_it_wanted_again() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(4), gates.lookup());
    let first = pool.submit(13);
    eventually(&pool, |s| s.busy == 1);
    drop(first);
    assert_eq!(pool.stats().abandoned, 1);
    let mut again = pool.submit(13);
    assert_eq!(pool.stats().abandoned, 0);
    gates.open(13);
    assert_eq!(done_value(again.wait_bounded()), 130);
    assert_eq!(gates.calls(13), 1);
}

#[test]
fn an_interrupt_ends_the_wait_but_keeps_the_ticket_waiting() {
    let gates = Arc::new(Gates::default());
    let pool = Pool::new(config(4), gates.lookup());
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
    let pool = Pool::new(config(1), gates.lookup());
    let _first = pool.submit(21);
    let mut second = pool.submit(22);
    eventually(&pool, |s| s.busy == 1 && s.queued == 1);
    pool.set_max_workers(2);
    gates.open(22);
    assert_eq!(done_value(second.wait_bounded()), 220);
    gates.open(21);
}

#[test]
fn a_thread_that_cannot_be_created_fails_the_job_with_the_os_error() {
    let gates = Arc::new(Gates::default());
    let mut cfg = config(4);
    cfg.stack_size = usize::MAX / 2; // no system can map this
    let pool = Pool::new(cfg, gates.lookup());
    let mut ticket = pool.submit(1);
    assert!(matches!(ticket.wait_bounded(), WaitEnd::NoThread(_)));
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.queued), (0, 0));
}

#[test]
fn a_panicking_lookup_reports_the_panic_and_the_worker_survives() {
    let pool: Pool<u32, u32> = Pool::new(config(1), |key: &u32| {
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
    let pool: Arc<Pool<u32, u32>> = Arc::new(Pool::new(config(8), |key: &u32| {
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
