//! Per-queue event counters, their smoothed rates and the 61-point metrics series.
//! Memory only: they start from zero at every start, as in 0.15.0.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::types::MetricPoint;

/// Smoothing factor of the rates: each sample moves the rate 1/15 of the way.
const ALPHA: f64 = 1.0 / 15.0;
/// Points kept per queue: one minute at 1 s plus the current one.
pub const SERIES_POINTS: usize = 61;

/// Event counters of one queue; shared with the queue so counting takes no map lookup.
/// Requirements: WS-0024
#[derive(Debug, Default)]
pub struct Counters {
    pub publish: AtomicU64,
    pub ack: AtomicU64,
    pub nack: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Entry {
    counters: Arc<Counters>,
    last: [u64; 3],
    last_ms: u64,
    rates: Option<[f64; 3]>,
    series: VecDeque<MetricPoint>,
}

impl Entry {
    fn new(counters: Arc<Counters>, now_ms: u64) -> Entry {
        let last = snapshot(&counters);
        Entry { counters, last, last_ms: now_ms, rates: None, series: VecDeque::new() }
    }
}

fn snapshot(c: &Counters) -> [u64; 3] {
    [
        c.publish.load(Ordering::Relaxed),
        c.ack.load(Ordering::Relaxed),
        c.nack.load(Ordering::Relaxed),
    ]
}

/// Every queue name that has counters, existing or deleted (a deleted queue keeps being
/// sampled with zero counts).
#[derive(Debug, Default)]
pub struct Rates {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Rates {
    /// The counters of `name`, created on first use.
    pub fn counters(&self, name: &str, now_ms: u64) -> Arc<Counters> {
        let mut map = self.entries.lock();
        map.entry(name.to_string())
            .or_insert_with(|| Entry::new(Arc::new(Counters::default()), now_ms))
            .counters
            .clone()
    }

    /// Counters and rates follow a rename; the metrics series starts empty under the new
    /// name.
    /// Requirements: API-0010
    pub fn rename(&self, from: &str, to: &str, now_ms: u64) -> Arc<Counters> {
        let mut map = self.entries.lock();
        let moved = map.remove(from);
        let entry = match moved {
            Some(mut e) => {
                e.series.clear();
                e
            }
            None => Entry::new(Arc::new(Counters::default()), now_ms),
        };
        let counters = entry.counters.clone();
        map.insert(to.to_string(), entry);
        counters
    }

    /// Latest smoothed rates (publish, ack, nack); zeros before the first sample.
    pub fn current(&self, name: &str) -> [f64; 3] {
        self.entries.lock().get(name).and_then(|e| e.rates).unwrap_or([0.0; 3])
    }

    /// Requirements: API-0022
    pub fn series(&self, name: &str) -> Vec<MetricPoint> {
        self.entries
            .lock()
            .get(name)
            .map(|e| e.series.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// One sampler tick. `counts` gives (total, locked) of a queue name, or None when no
    /// such queue exists now.
    /// Requirements: API-0021, API-0022
    pub fn sample(&self, now_ms: u64, counts: impl Fn(&str) -> Option<(u64, u64)>) {
        let mut map = self.entries.lock();
        for (name, e) in map.iter_mut() {
            let now = snapshot(&e.counters);
            let dt = (now_ms.saturating_sub(e.last_ms)) as f64 / 1000.0;
            if dt <= 0.0 {
                continue;
            }
            let mut inst = [0.0; 3];
            for i in 0..3 {
                inst[i] = now[i].saturating_sub(e.last[i]) as f64 / dt;
            }
            let rates = match e.rates {
                None => inst,
                Some(prev) => {
                    let mut r = [0.0; 3];
                    for i in 0..3 {
                        r[i] = ALPHA * inst[i] + (1.0 - ALPHA) * prev[i];
                    }
                    r
                }
            };
            e.rates = Some(rates);
            e.last = now;
            e.last_ms = now_ms;
            let (total, locked) = counts(name).unwrap_or((0, 0));
            e.series.push_back(MetricPoint {
                t_ms: now_ms,
                total,
                locked,
                publish_rate_per_sec: rates[0],
                ack_rate_per_sec: rates[1],
                nack_rate_per_sec: rates[2],
            });
            while e.series.len() > SERIES_POINTS {
                e.series.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0021
    #[test]
    fn first_sample_is_the_raw_rate_then_smoothed() {
        let r = Rates::default();
        let c = r.counters("q", 0);
        Counters::add(&c.publish, 10);
        r.sample(1000, |_| Some((10, 0)));
        assert_eq!(r.current("q")[0], 10.0);
        r.sample(2000, |_| Some((10, 0)));
        let expected = 10.0 * (1.0 - ALPHA);
        assert!((r.current("q")[0] - expected).abs() < 1e-9);
        assert_eq!(r.series("q").len(), 2);
    }

    // Verifies: API-0022
    #[test]
    fn series_keeps_61_points() {
        let r = Rates::default();
        r.counters("q", 0);
        for i in 1..=100 {
            r.sample(i * 1000, |_| Some((0, 0)));
        }
        let s = r.series("q");
        assert_eq!(s.len(), SERIES_POINTS);
        assert_eq!(s.last().unwrap().t_ms, 100_000);
    }

    // Verifies: API-0010
    #[test]
    fn rename_moves_counters_but_not_history() {
        let r = Rates::default();
        let c = r.counters("a", 0);
        Counters::add(&c.ack, 3);
        r.sample(1000, |_| Some((0, 0)));
        let moved = r.rename("a", "b", 1000);
        assert_eq!(moved.ack.load(Ordering::Relaxed), 3);
        assert!(r.series("b").is_empty());
        assert_eq!(r.current("b")[1], 3.0);
    }
}
