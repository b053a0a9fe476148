//! The sync bench's PostgreSQL part (`--postgres`): the same province's
//! batches merged by the PostgreSQL backend beside raw inserts of the same
//! rows into PostgreSQL, re-pushed, pulled, and the devices syncing at once
//! against one and against two server processes on one database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faenban_core::sync::Role;
use faenban_core::DeviceId;
use faenban_fixtures::{populate, Detail, Spec};
use faenban_keys::DeviceKey;
use faenban_server::backend::Backend;
use faenban_server::postgres::PostgresBackend;
use faenban_server::token;
use faenban_store::server::{Account, PushInput};
use faenban_store::Store;

use super::{account, load_devices, load_on, ms, pull_everything, Keys};

#[allow(dead_code)] // the tests' helpers; the bench uses the cluster alone
#[path = "../../tests/support/postgres_support.rs"]
mod postgres_support;

/// Runs `work` on a thread of its own, outside any async runtime (the
/// helpers' way).
#[allow(dead_code)]
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(work).join().unwrap())
}

/// A PostgreSQL cluster to measure on: `FAENBAN_TEST_POSTGRES`, or one
/// started for this run.
fn cluster() -> anyhow::Result<String> {
    Ok(postgres_support::cluster_url().to_owned())
}

/// A new database on the cluster; its URL.
fn database(cluster: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = postgres::Client::connect(cluster, postgres::NoTls)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let base = cluster.rsplit_once('/').map_or(cluster, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// The same change rows the backend logs, inserted into a table of the
/// same shape in one transaction per batch (commits as durable as the
/// server's: `synchronous_commit` on, the cluster's `fsync`).
fn raw_inserts(url: &str, runs: &[PushInput]) -> anyhow::Result<Duration> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.batch_execute(
        "CREATE TABLE raw_changes (province smallint NOT NULL, seq bigint NOT NULL, \
         device uuid NOT NULL, wall_ms bigint NOT NULL, counter bigint NOT NULL, \
         record bigint NOT NULL, field integer NOT NULL, body bytea NOT NULL, \
         PRIMARY KEY (seq, province), UNIQUE (device, wall_ms, counter, province)); \
         CREATE INDEX ON raw_changes (record, seq)",
    )?;
    let mut records: std::collections::HashMap<faenban_core::RecordKey, i64> = Default::default();
    let mut fields: std::collections::HashMap<faenban_core::FieldName, i32> = Default::default();
    let mut seq = 0i64;
    let started = Instant::now();
    for run in runs {
        let mut columns = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for change in &run.changes {
            seq += 1;
            let next = records.len() as i64 + 1;
            let record = *records.entry(change.record.clone()).or_insert(next);
            let next = fields.len() as i32 + 1;
            let field = *fields.entry(change.field.clone()).or_insert(next);
            columns.0.push(40i16);
            columns.1.push(seq);
            columns.2.push(change.stamp.device.0);
            columns.3.push(change.stamp.hlc.wall_ms as i64);
            columns.4.push(i64::from(change.stamp.hlc.counter));
            columns.5.push(record);
            columns.6.push(field);
            columns
                .7
                .push(faenban_core::codec::encode_change_body(change));
        }
        let mut tx = client.transaction()?;
        tx.execute(
            "INSERT INTO raw_changes SELECT * FROM unnest($1::int2[], $2::int8[], $3::uuid[], \
             $4::int8[], $5::int8[], $6::int8[], $7::int4[], $8::bytea[])",
            &[
                &columns.0, &columns.1, &columns.2, &columns.3, &columns.4, &columns.5, &columns.6,
                &columns.7,
            ],
        )?;
        tx.commit()?;
    }
    Ok(started.elapsed())
}

pub fn run(
    runs: &[PushInput],
    keys: &Keys,
    pushing: [DeviceId; 3],
    devices: usize,
    sqlite_merge: Duration,
    total_changes: usize,
) -> anyhow::Result<()> {
    let cluster = cluster()?;
    let url = database(&cluster, "faenban_bench_merge")?;
    let backend = PostgresBackend::open(&url)?;
    let province = account(&backend, "province", Role::Province, &[])?;
    let province_account = backend
        .account_by_token(&token::hash(&province))?
        .expect("account just made");
    for device in pushing {
        backend.hello(
            &province_account,
            device,
            "bench",
            &keys.key(device).public(),
            1_800_000_000_000,
        )?;
    }
    // Cloned before the clock starts, as the SQLite measure does.
    let pushed = runs.to_vec();
    let started = Instant::now();
    for run in pushed {
        backend.push(&province_account, run, 1_800_000_000_000)?;
    }
    let merge = started.elapsed();
    let raw = raw_inserts(&database(&cluster, "faenban_bench_raw")?, runs)?;
    // Cloned before the clock starts, as the SQLite measure does.
    let pushed = runs.to_vec();
    let started = Instant::now();
    for run in pushed {
        let outcome = backend.push(&province_account, run, 1_800_000_000_000)?;
        assert_eq!(outcome.applied, 0);
    }
    let repush = started.elapsed();
    let bytes: i64 = postgres::Client::connect(&url, postgres::NoTls)?
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);

    // The province's pull over HTTP, from a server on this backend.
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let runtime = tokio::runtime::Runtime::new()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(faenban_server::run(listener, backend.clone(), async {
        let _ = stopped.await;
    }));
    let pull = pull_everything(&format!("http://{address}"), &province)?;
    let _ = stop.send(());
    runtime.block_on(server)??;
    drop(backend);

    // The devices at once, against one process and against two.
    let mut loads = Vec::new();
    for processes in [1, 2] {
        let url = database(&cluster, &format!("faenban_bench_load_{processes}"))?;
        let backend = PostgresBackend::open(&url)?;
        let load_devices = load_devices(&backend, devices)?;
        drop(backend);
        let store = vec!["--postgres".into(), url.into()];
        loads.push(load_on(&vec![store; processes], &load_devices)?);
    }

    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!("| PostgreSQL ({}) | result |", postgres_version(&cluster)?);
    println!("|---|---|");
    println!(
        "| merge: the same {total_changes} changes in batches of 1,000 | {:.2} s, **{:.0} changes/s** (SQLite: {:.0} changes/s) |",
        merge.as_secs_f64(),
        per_s(total_changes, merge),
        per_s(total_changes, sqlite_merge)
    );
    println!(
        "| raw PostgreSQL inserts of the same change rows (one multi-row INSERT and commit per batch) | {:.2} s, {:.0} rows/s |",
        raw.as_secs_f64(),
        per_s(total_changes, raw)
    );
    println!(
        "| merge rate / raw insert rate | **{:.0}%** |",
        100.0 * raw.as_secs_f64() / merge.as_secs_f64()
    );
    println!(
        "| re-push of every batch already held | {:.2} s, **{:.0} changes/s** |",
        repush.as_secs_f64(),
        per_s(total_changes, repush)
    );
    println!(
        "| database after the merge (`pg_database_size`) | {:.0} MB, **{:.0} bytes per field change** |",
        bytes as f64 / 1e6,
        bytes as f64 / total_changes as f64
    );
    println!(
        "| pull from scratch, whole province: {} changes, {} pages | {:.2} s (**{:.1} s per million**), **{:.1} bytes/change** on the wire |",
        pull.changes,
        pull.pages,
        pull.time.as_secs_f64(),
        pull.time.as_secs_f64() * 1e6 / pull.changes.max(1) as f64,
        pull.wire_bytes as f64 / pull.changes.max(1) as f64
    );
    for load in &loads {
        let first = &load[0];
        println!(
            "| {devices} devices syncing at once against {} server process{} | {:.2} s, {:.0} syncs/s; push p50 / p99 {:.0} / {:.0} ms, pull p50 / p99 {:.0} / {:.0} ms; peak memory {} |",
            load.len(),
            if load.len() == 1 { "" } else { "es" },
            first.time.as_secs_f64(),
            per_s(devices, first.time),
            ms(first.push[first.push.len() / 2]),
            ms(first.push[first.push.len() * 99 / 100]),
            ms(first.pull[first.pull.len() / 2]),
            ms(first.pull[first.pull.len() * 99 / 100]),
            load.iter()
                .map(|process| format!("{:.0} MB", process.peak_kb as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(())
}

fn postgres_version(cluster: &str) -> anyhow::Result<String> {
    Ok(postgres::Client::connect(cluster, postgres::NoTls)?
        .query_one("SHOW server_version", &[])?
        .get(0))
}

/// One province's batches (or a part of its households), generated from
/// `seed` and signed by a device of its own.
fn province_runs(
    code: &str,
    seed: u64,
    households: usize,
) -> anyhow::Result<(DeviceKey, Vec<PushInput>)> {
    let mut laptop = Store::open_in_memory()?;
    let spec = Spec {
        detail: Detail::Minimal,
        province: faenban_core::codes::AreaCode::parse(code)?,
        // A seed of each part's own: its own device and records.
        ..Spec::khon_kaen(seed, households)
    };
    populate(&mut laptop, &spec)?;
    let key = laptop.device_key()?.expect("populate makes a device");
    let device = key.device_id();
    let runs = laptop
        .outbox()?
        .chunks(super::BATCH)
        .map(|chunk| {
            let changes: Vec<_> = chunk.iter().map(|(_, change)| change.clone()).collect();
            PushInput {
                device,
                relay: false,
                first_sequence: chunk[0].0,
                signature: key.sign_run(device, chunk[0].0, &changes),
                changes,
                public_key: None,
            }
        })
        .collect();
    Ok((key, runs))
}

/// A province's figures in one database.
struct ProvinceFigures {
    changes: usize,
    push: Duration,
    pull_changes: usize,
    pull: Duration,
    report: Duration,
}

/// Households of other provinces loaded beside the measured one: a
/// province code and a number of households.
type Beside = [(&'static str, usize)];

/// At most this many households are generated and held in memory at once
/// while the other provinces are loaded.
const PART: usize = 100_000;

/// Pushes a province's batches through `backend` as the office.
fn push_all(
    backend: &PostgresBackend,
    office: &Account,
    (key, runs): &(DeviceKey, Vec<PushInput>),
) -> anyhow::Result<Duration> {
    backend.hello(
        office,
        key.device_id(),
        "bench",
        &key.public(),
        1_800_000_000_000,
    )?;
    // Cloned before the clock starts, as the SQLite measure does.
    let pushed = runs.to_vec();
    let started = Instant::now();
    for run in pushed {
        backend.push(office, run, 1_800_000_000_000)?;
    }
    Ok(started.elapsed())
}

/// Loads the households of `beside` into the database at `url` (generated
/// a part of at most [`PART`] at a time, each part from a seed of its own),
/// then pushes `measured` (timed), and pulls and reports its province
/// `code` as its team.
fn load_provinces(
    url: &str,
    beside: &Beside,
    measured: &(DeviceKey, Vec<PushInput>),
    code: &str,
) -> anyhow::Result<ProvinceFigures> {
    let backend = PostgresBackend::open(url)?;
    let office = account(&backend, "office", Role::Province, &[])?;
    let office = backend
        .account_by_token(&token::hash(&office))?
        .expect("account just made");
    let mut seed = 1_000;
    for &(province, households) in beside {
        let started = Instant::now();
        let mut left = households;
        while left > 0 {
            let part = left.min(PART);
            seed += 1;
            push_all(&backend, &office, &province_runs(province, seed, part)?)?;
            left -= part;
        }
        println!(
            "loaded {households} households of province {province} in {:.0?}",
            started.elapsed()
        );
    }
    // Both databases start the measured push from a checkpoint: the first
    // change to each page after one writes the whole page to the WAL, so a
    // checkpoint that falls inside one run and not the other would be
    // measured instead of the province.
    let mut operator = postgres::Client::connect(url, postgres::NoTls)?;
    operator.batch_execute("CHECKPOINT")?;
    let profiled = statements_reset(&mut operator);
    let push = push_all(&backend, &office, measured)?;
    if profiled {
        print_statements(&mut operator, &format!("the measured push, {url}"))?;
    }
    let changes = measured.1.iter().map(|run| run.changes.len()).sum();
    // Statistics of what was just loaded, as autovacuum would have them
    // soon after: without them the pull's plans are guessed from none.
    operator.batch_execute("ANALYZE")?;
    let team = faenban_core::sync::Scope {
        role: Role::Team,
        areas: vec![code.to_owned()],
        dimension: None,
    };
    let profiled = statements_reset(&mut operator);
    let started = Instant::now();
    let (mut since, mut check, mut pull_changes) = (0, None, 0);
    loop {
        let page = backend.pull(&team, since, check.as_deref(), 5_000)?;
        pull_changes += page.changes.len();
        since = page.next;
        check = page.check;
        if !page.more {
            break;
        }
    }
    let pull = started.elapsed();
    if profiled {
        print_statements(&mut operator, &format!("the team's pull, {url}"))?;
    }
    let started = Instant::now();
    let report = backend.report(
        &faenban_core::areas::Areas::builtin(),
        &faenban_core::report::ReportOptions {
            area: Some(faenban_core::codes::AreaCode::parse(code)?),
            level: Some(faenban_core::codes::AreaLevel::District),
            ..Default::default()
        },
    )?;
    let report_time = started.elapsed();
    anyhow::ensure!(
        report.total.households > 0,
        "the province's report is empty"
    );
    Ok(ProvinceFigures {
        changes,
        push,
        pull_changes,
        pull,
        report: report_time,
    })
}

/// Starts counting statements afresh when the cluster has
/// `pg_stat_statements` loaded (`shared_preload_libraries`); whether it has.
fn statements_reset(operator: &mut postgres::Client) -> bool {
    operator
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        )
        .is_ok()
}

/// The statements of this database that took the most time since
/// [`statements_reset`]: where a measured phase spent its time.
fn print_statements(operator: &mut postgres::Client, phase: &str) -> anyhow::Result<()> {
    println!("statements of {phase} (ms executing, ms planning, calls, ms per call, blocks read from outside the buffers):");
    let rows = operator.query(
        "SELECT total_exec_time, total_plan_time, calls, shared_blks_read, query FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         ORDER BY total_exec_time DESC LIMIT 15",
        &[],
    )?;
    for row in rows {
        let (total, planning, calls, read, query): (f64, f64, i64, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let query: String = query.chars().take(110).collect();
        println!(
            "  {total:9.0} {planning:9.0} {calls:7} {:8.3} {read:8}  {query}",
            total / calls.max(1) as f64
        );
    }
    Ok(())
}

/// A province pushed, pulled and reported alone in a database, and beside
/// other provinces: two of the same size, or, with `beside` households,
/// that many split between Kalasin and Sisaket.
pub fn scale(households: usize, beside: usize) -> anyhow::Result<()> {
    let cluster = cluster()?;
    let started = Instant::now();
    let khon_kaen = province_runs("40", 40, households)?;
    println!("generated Khon Kaen in {:.1?}", started.elapsed());
    let others: [(&'static str, usize); 2] = if beside == 0 {
        [("46", households), ("33", households)]
    } else {
        [("46", beside / 2), ("33", beside - beside / 2)]
    };
    let alone = load_provinces(
        &database(&cluster, "faenban_bench_one_province")?,
        &[],
        &khon_kaen,
        "40",
    )?;
    let beside_url = database(&cluster, "faenban_bench_three_provinces")?;
    let crowded = load_provinces(&beside_url, &others, &khon_kaen, "40")?;
    let size: i64 = postgres::Client::connect(&beside_url, postgres::NoTls)?
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);
    let all = households + others.iter().map(|(_, n)| n).sum::<usize>();
    println!(
        "the database of the three provinces: {all} households, {:.1} GB",
        size as f64 / 1e9
    );
    let rate = |figures: &ProvinceFigures| figures.changes as f64 / figures.push.as_secs_f64();
    println!();
    println!("| Khon Kaen ({households} households) in a database of | it alone | {all} households | beside / alone |");
    println!("|---|---|---|---|");
    println!(
        "| push, batches of 1,000 | {:.0} changes/s | {:.0} changes/s | {:.2} |",
        rate(&alone),
        rate(&crowded),
        rate(&crowded) / rate(&alone)
    );
    println!(
        "| the province team's pull from scratch ({} / {} changes) | {:.2} s | {:.2} s | {:.2} |",
        alone.pull_changes,
        crowded.pull_changes,
        alone.pull.as_secs_f64(),
        crowded.pull.as_secs_f64(),
        crowded.pull.as_secs_f64() / alone.pull.as_secs_f64()
    );
    println!(
        "| the province's report by district | {:.0} ms | {:.0} ms | {:.2} |",
        ms(alone.report),
        ms(crowded.report),
        crowded.report.as_secs_f64() / alone.report.as_secs_f64()
    );
    Ok(())
}
