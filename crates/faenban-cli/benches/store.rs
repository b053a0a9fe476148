//! Benchmark: the volunteer's database at provincial scale. Fills a file
//! with 100,000 synthetic households (about 1.6 million field changes), then
//! measures one edit's commit latency, `status` start-up, search, list and
//! export through the real `faenban` binary, with raw SQLite inserts of the
//! same change rows measured beside the fill in the same run.
//!
//! Run with `cargo bench -p faenban-cli --bench store` (add `-- --households
//! N` for another size, `--keep DIR` to keep the files). It prints a
//! Markdown table for docs/PERFORMANCE.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faenban_fixtures::{populate, Detail, Rng, Spec};
use faenban_store::Store;
use rusqlite::Connection;
use serde_json::json;

const EDITS: usize = 1_000;
const RUNS: usize = 15;

fn main() -> anyhow::Result<()> {
    let mut households = 100_000;
    let mut keep: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--households" => households = args.next().unwrap_or_default().parse()?,
            "--keep" => keep = args.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    let scratch = tempfile::tempdir()?;
    let dir = keep.clone().unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("province.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    // Fill: the store's write path, households and their heads.
    let mut store = Store::open(&db)?;
    let spec = Spec {
        detail: Detail::Minimal,
        ..Spec::khon_kaen(2568, households)
    };
    let started = Instant::now();
    let summary = populate(&mut store, &spec)?;
    let fill = started.elapsed();
    let changes = summary.changes;
    drop(store);

    // The same change rows, inserted raw into a table of the same shape in
    // transactions of the same size (what SQLite alone costs).
    let raw = raw_inserts(&db, &dir.join("raw.db"), households)?;

    // One edit per command: a household's notes, as `household edit` does.
    let mut store = Store::open(&db)?;
    let keys: Vec<_> = store
        .records(&faenban_core::RecordKind::Household)?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut rng = Rng::new(7);
    let mut latencies = Vec::with_capacity(EDITS);
    let mut wall = 1_800_000_000_000;
    for n in 0..EDITS {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        wall += 1_000;
        let started = Instant::now();
        store.write(wall, |s| s.set(key, "notes", json!(format!("visit {n}"))))?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    drop(store);

    // The real binary, each command a fresh process on the big file.
    let cli = Path::new(env!("CARGO_BIN_EXE_faenban"));
    let (house_code, village) = one_household(&db)?;
    let out = dir.join("export.json");
    let out_csv = dir.join("export.csv");
    let db_arg = db.to_str().expect("utf-8 path");
    let timed: Vec<(&str, Vec<String>)> = vec![
        ("`faenban status`", vec!["status".into()]),
        (
            "`household search` by house code",
            vec!["household".into(), "search".into(), house_code.clone()],
        ),
        (
            "`household search` by name (prefix, ≤500 hits)",
            vec!["household".into(), "search".into(), "สม".into()],
        ),
        (
            "`household list --area` (one village)",
            vec!["household".into(), "list".into(), "--area".into(), village],
        ),
        (
            "`household list` (all 100,000)",
            vec!["household".into(), "list".into()],
        ),
        (
            "`export --format json`",
            vec![
                "export".into(),
                "--output".into(),
                out.display().to_string(),
            ],
        ),
        (
            "`export --format csv`",
            vec![
                "export".into(),
                "--format".into(),
                "csv".into(),
                "--output".into(),
                out_csv.display().to_string(),
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (name, args) in &timed {
        let runs = if name.contains("export") || name.contains("all") {
            3
        } else {
            RUNS
        };
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new(cli)
                .arg("--db")
                .arg(db_arg)
                .args(args)
                .stdout(Stdio::null())
                .status()?;
            times.push(started.elapsed());
            anyhow::ensure!(status.success(), "{name} failed");
        }
        times.sort();
        rows.push((*name, times[times.len() / 2], times[times.len() - 1]));
    }

    let file_size = std::fs::metadata(&db)?.len();
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "households: {households}; field changes: {changes}; database file: {:.0} MiB",
        file_size as f64 / 1_048_576.0
    );
    println!(
        "bytes per field change, by table and index: {}",
        faenban_fixtures::bytes_per_change_by_table(&Store::open(&db)?, changes as u64)?
    );
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| fill through the store (merge, outbox, state, search terms) | {:.1} s, {:.0} changes/s |",
        fill.as_secs_f64(),
        per_s(changes, fill)
    );
    println!(
        "| raw SQLite inserts of the same change rows | {:.1} s, {:.0} rows/s |",
        raw.as_secs_f64(),
        per_s(changes, raw)
    );
    println!(
        "| store fill ÷ raw insert rate | {:.0}% |",
        100.0 * per_s(changes, fill) / per_s(changes, raw)
    );
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "| one edit committed (own transaction), p50 / p99 / max of {EDITS} | {:.2} / {:.2} / {:.2} ms |",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(latencies[latencies.len() - 1])
    );
    for (name, median, worst) in rows {
        println!(
            "| {name}, median / worst | {:.0} / {:.0} ms |",
            ms(median),
            ms(worst)
        );
    }
    if keep.is_none() {
        drop(scratch);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Copies the change rows out of `db` and times inserting them into a fresh
/// file with the same table and indexes, in the fill's transaction sizes.
fn raw_inserts(db: &Path, raw_path: &Path, households: usize) -> anyhow::Result<Duration> {
    let source = Connection::open(db)?;
    let mut statement = source.prepare(
        "SELECT wall_ms, counter, device, record, field, body FROM changes ORDER BY seq",
    )?;
    type Row = (i64, i64, i64, i64, i64, Vec<u8>);
    let rows: Vec<Row> = statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", raw_path.display()));
    }
    let mut raw = Connection::open(raw_path)?;
    raw.pragma_update(None, "journal_mode", "WAL")?;
    raw.pragma_update(None, "synchronous", "NORMAL")?;
    raw.pragma_update(None, "cache_size", -32_768)?;
    raw.execute_batch(
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY, wall_ms INTEGER NOT NULL, \
         counter INTEGER NOT NULL, device INTEGER NOT NULL, record INTEGER NOT NULL, \
         field INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (wall_ms, counter, device)); \
         CREATE INDEX changes_by_record ON changes (record, seq);",
    )?;
    let per_transaction = rows.len().div_ceil(households.div_ceil(500)).max(1);
    let started = Instant::now();
    for chunk in rows.chunks(per_transaction) {
        let tx = raw.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO changes (wall_ms, counter, device, record, field, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for row in chunk {
                insert.execute(rusqlite::params![row.0, row.1, row.2, row.3, row.4, row.5])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// The house code and village of one household in the file.
fn one_household(db: &Path) -> anyhow::Result<(String, String)> {
    let connection = Connection::open(db)?;
    let state: Vec<u8> = connection.query_row(
        "SELECT r.state FROM record_numbers rn JOIN records r ON r.n = rn.n \
         WHERE rn.kind = 'household' ORDER BY rn.id LIMIT 1",
        [],
        |r| r.get(0),
    )?;
    let state = faenban_core::codec::decode_state(&state)?;
    let shown = |field| {
        state
            .shown(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Ok((shown("house_code"), shown("village")))
}
