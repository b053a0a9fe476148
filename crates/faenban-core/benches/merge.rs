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

#[allow(dead_code)]
#[path = "../tests/support/rng.rs"]
mod rng;
use rng::SplitMix;

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

struct Workload {
    /// Every change, in the order the server receives them: each device
    /// pushes its outbox in batches of at most 1,000, devices taking turns.
    changes: Vec<Change>,
    /// How many changes were made without seeing the latest value.
    concurrent: usize,
}

/// How volunteers work: each device visits the households of its own
/// villages one at a time and records several fields at each visit. About 5%
/// of changes come from visits by a volunteer of another device who had not
/// synced, and so did not see the latest values (concurrent edits).
fn generate(total: usize) -> Workload {
    let households_per_device = (total as u64 / DEVICES / 50).max(1);
    let mut rng = SplitMix(0x00FA_E4BA_4000);
    let mut clocks = vec![1_760_000_000_000u64; DEVICES as usize];
    let mut heads: FxHashMap<(u64, usize), Vec<Stamp>> = FxHashMap::default();
    let mut outboxes: Vec<Vec<Change>> = vec![Vec::new(); DEVICES as usize];
    let mut concurrent = 0;
    let mut made = 0;
    while made < total {
        let device = rng.below(DEVICES);
        // A visit by a volunteer from another device, who had not synced.
        let foreign = rng.below(1_000) < 63;
        let owner = if foreign {
            (device + 1 + rng.below(DEVICES - 1)) % DEVICES
        } else {
            device
        };
        let household = owner * households_per_device + rng.below(households_per_device);
        let record = RecordKey::new(
            RecordKind::Household,
            Uuid::from_u64_pair(0x0190, household),
        );
        let fields_this_visit = (3 + rng.below(13)) as usize;
        for _ in 0..fields_this_visit.min(total - made) {
            let field = rng.below(FIELDS.len() as u64) as usize;
            clocks[device as usize] += 1 + rng.below(3);
            let stamp = Stamp::new(
                Hlc::at(clocks[device as usize]),
                DeviceId::from_u128(u128::from(device) + 1),
            );
            let register = heads.entry((household, field)).or_default();
            let supersedes: Vec<Stamp> = if foreign && !register.is_empty() {
                // A stale view: everything but the latest value.
                concurrent += 1;
                register[..register.len() - 1].to_vec()
            } else {
                register.clone()
            };
            register.retain(|s| !supersedes.contains(s));
            register.push(stamp);
            let value = if made % 2 == 0 {
                Value::from(rng.below(200_000))
            } else {
                Value::String(format!("บ้านเลขที่ {} หมู่ {}", rng.below(300), rng.below(20)))
            };
            outboxes[device as usize].push(Change {
                stamp,
                record: record.clone(),
                field: FIELDS[field].into(),
                value,
                supersedes: supersedes.into_iter().collect(),
                observed: Vec::new(),
                previous_stamps: Vec::new(),
            });
            made += 1;
        }
    }
    // Devices push in turn, a batch of at most 1,000 changes each time.
    let mut changes = Vec::with_capacity(total);
    let mut queues: Vec<std::vec::IntoIter<Change>> =
        outboxes.into_iter().map(Vec::into_iter).collect();
    while changes.len() < total {
        for queue in &mut queues {
            changes.extend(queue.by_ref().take(1_000));
        }
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
    // The input's buffer is gone now; what remains above the start is the state.
    let rss_state = proc_status_kib("VmRSS:");
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
        batched_1000.push(time_batch_merge(changes, 1_000));
    }
    let n = changes.len();
    println!("changes: {n} from {DEVICES} devices, {} concurrent ({:.1}%), {} open conflicts after merge",
        workload.concurrent, 100.0 * workload.concurrent as f64 / n as f64, conflicts);
    println!();
    println!("| measure (median of {RUNS}) | time | changes/s |");
    println!("|---|---:|---:|");
    for (name, runs) in [
        ("merge, change by change, in push order", &in_order),
        ("merge, change by change, in random order", &random),
        ("re-apply all (duplicates)", &again),
        (
            "merge in pushed batches of 1,000 (`apply_batch`)",
            &batched_1000,
        ),
        (
            "merge as one batch (`apply_batch`), random order",
            &batched_all,
        ),
        (
            "baseline: plain last-writer-wins hash map, push order",
            &plain,
        ),
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
        "memory: process after generating the {n} changes {:.0} MiB; peak while merging them (VmHWM) {:.0} MiB; \
         merged state once the input is freed {:.0} MiB",
        mib(rss_input.saturating_sub(rss_start)),
        mib(peak),
        mib(rss_state.saturating_sub(rss_start))
    );
}
