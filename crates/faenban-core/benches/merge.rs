//! Benchmark: in-memory merge of 1,000,000 field changes from 100 devices,
//! 5% of them concurrent edits, with throughput and peak memory.
//!
//! Run with `cargo bench -p faenban-core --bench merge` (add `-- --changes N`
//! for another size). It prints a Markdown table for docs/PERFORMANCE.md.

use std::time::{Duration, Instant};

use faenban_core::{Change, DeviceId, Hlc, RecordKey, RecordKind, Stamp, State};
use rustc_hash::FxHashMap;
use serde_json::Value;
use uuid::Uuid;

const DEVICES: u64 = 100;
const FIELDS: [&str; 10] = [
    "address",
    "notes",
    "status",
    "classification",
    "livelihood",
    "welfare_card",
    "income_per_year",
    "head",
    "location",
    "entry",
];
const RUNS: usize = 5;

/// A small deterministic generator: the same changes on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Workload {
    changes: Vec<Change>,
    concurrent: usize,
}

/// 100 devices edit the households of their own villages; 5% of changes are
/// made by another device that had not seen the latest value.
fn generate(total: usize) -> Workload {
    let records_per_device = (total as u64 / DEVICES / 50).max(1);
    let records = records_per_device * DEVICES;
    let mut rng = SplitMix(0x00FA_E4BA_4000);
    let mut clocks = vec![1_760_000_000_000u64; DEVICES as usize];
    let mut heads: FxHashMap<(u64, usize), Vec<Stamp>> = FxHashMap::default();
    let mut changes = Vec::with_capacity(total);
    let mut concurrent = 0;
    for i in 0..total {
        let record = rng.below(records);
        let owner = record % DEVICES;
        let field = rng.below(FIELDS.len() as u64) as usize;
        // A fifth of changes are first writes, which cannot be concurrent with
        // anything; 6.25% of all changes makes 5% of the rest concurrent.
        let is_concurrent = rng.below(10_000) < 625;
        let device = if is_concurrent {
            (owner + 1 + rng.below(DEVICES - 1)) % DEVICES
        } else {
            owner
        };
        clocks[device as usize] += 1 + rng.below(3);
        let stamp = Stamp::new(
            Hlc::at(clocks[device as usize]),
            DeviceId::from_u128(u128::from(device) + 1),
        );
        let register = heads.entry((record, field)).or_default();
        let supersedes = if is_concurrent && !register.is_empty() {
            // A stale view: everything but the latest value.
            concurrent += 1;
            register[..register.len() - 1].to_vec()
        } else {
            register.clone()
        };
        if is_concurrent && !register.is_empty() {
            register.retain(|s| !supersedes.contains(s));
            register.push(stamp);
        } else {
            register.clear();
            register.push(stamp);
        }
        let value = if i % 2 == 0 {
            Value::from(rng.below(200_000))
        } else {
            Value::String(format!("บ้านเลขที่ {} หมู่ {}", rng.below(300), rng.below(20)))
        };
        changes.push(Change {
            stamp,
            record: RecordKey::new(RecordKind::Household, Uuid::from_u64_pair(0x0190, record)),
            field: FIELDS[field].into(),
            value,
            supersedes: supersedes.into_iter().collect(),
            observed: Vec::new(),
            previous_stamps: Vec::new(),
        });
    }
    Workload {
        changes,
        concurrent,
    }
}

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn shuffled(changes: &[Change], seed: u64) -> Vec<Change> {
    let mut rng = SplitMix(seed);
    let mut out = changes.to_vec();
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    out
}

fn time_merge(input: &[Change]) -> (Duration, State) {
    let batch = input.to_vec();
    let start = Instant::now();
    let mut state = State::new();
    state.apply_all(batch);
    (start.elapsed(), state)
}

fn time_batch_merge(input: &[Change], batch_size: usize) -> Duration {
    let batches: Vec<Vec<Change>> = input.chunks(batch_size).map(<[Change]>::to_vec).collect();
    let start = Instant::now();
    let mut state = State::new();
    for batch in batches {
        state.apply_batch(batch);
    }
    let elapsed = start.elapsed();
    std::hint::black_box(state.len());
    elapsed
}

/// The least any merge must do: put each value in a hash map under its
/// record and field, last writer wins, no history and no conflicts.
fn time_plain_map(input: &[Change]) -> Duration {
    let batch = input.to_vec();
    let start = Instant::now();
    let mut map: FxHashMap<(RecordKey, faenban_core::FieldName), (Stamp, Value)> =
        FxHashMap::default();
    for change in batch {
        let slot = map
            .entry((change.record, change.field))
            .or_insert((change.stamp, Value::Null));
        if change.stamp >= slot.0 {
            *slot = (change.stamp, change.value);
        }
    }
    let elapsed = start.elapsed();
    std::hint::black_box(map.len());
    elapsed
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let mut total = 1_000_000;
    let mut profile_batch = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--changes" {
            total = args.next().and_then(|n| n.parse().ok()).unwrap_or(total);
        }
        // Runs only the batch merge, many times, for a profiler to look at.
        profile_batch |= arg == "--profile-batch";
    }
    if profile_batch {
        let workload = generate(total);
        let random_order = shuffled(&workload.changes, 7);
        for _ in 0..10 {
            time_batch_merge(&random_order, random_order.len());
        }
        return;
    }
    // Memory first, while the process has held nothing else: the changes are
    // moved into the state (as a server does with a batch it decoded), so the
    // peak is input + state, with no copy of the input.
    let rss_start = proc_status_kib("VmRSS:");
    let workload = generate(total);
    let rss_input = proc_status_kib("VmRSS:");
    let mut state = State::new();
    state.apply_all(workload.changes);
    let peak = proc_status_kib("VmHWM:");
    let conflicts = state.conflicts().len();
    drop(state);

    let workload = generate(total);
    let changes = &workload.changes;
    let random_order = shuffled(changes, 7);

    let mut in_order = Vec::new();
    let mut random = Vec::new();
    let mut again = Vec::new();
    let mut plain = Vec::new();
    let mut batched_all = Vec::new();
    let mut batched_1000 = Vec::new();
    for _ in 0..RUNS {
        let (elapsed, mut state) = time_merge(changes);
        in_order.push(elapsed);
        let duplicate = changes.to_vec();
        let start = Instant::now();
        state.apply_all(duplicate);
        again.push(start.elapsed());
        drop(state);
        random.push(time_merge(&random_order).0);
        plain.push(time_plain_map(changes));
        batched_all.push(time_batch_merge(&random_order, changes.len()));
        batched_1000.push(time_batch_merge(&random_order, 1_000));
    }
    let n = changes.len();
    println!("changes: {n} from {DEVICES} devices, {} concurrent ({:.1}%), {} open conflicts after merge",
        workload.concurrent, 100.0 * workload.concurrent as f64 / n as f64, conflicts);
    println!();
    println!("| measure (median of {RUNS}) | time | changes/s |");
    println!("|---|---:|---:|");
    for (name, runs) in [
        ("merge, delivery order", &in_order),
        ("merge, random order", &random),
        ("re-apply all (duplicates)", &again),
        (
            "merge as one batch grouped by record (`apply_batch`), random order",
            &batched_all,
        ),
        (
            "merge in batches of 1,000 (`apply_batch`), random order",
            &batched_1000,
        ),
        ("baseline: plain last-writer-wins hash map", &plain),
    ] {
        let m = median(runs.clone());
        println!(
            "| {name} | {:.0} ms | {:.2} M |",
            m.as_secs_f64() * 1e3,
            rate(n, m) / 1e6
        );
    }
    println!();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "memory: the {n} changes held in memory {:.0} MiB; peak while merging them (VmHWM) {:.0} MiB, \
         so the merge itself adds at most {:.0} MiB",
        mib(rss_input.saturating_sub(rss_start)),
        mib(peak),
        mib(peak.saturating_sub(rss_input))
    );
}
