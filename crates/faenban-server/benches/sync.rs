//! Benchmark: the sync server at provincial scale.
//!
//! 1. Merge: a generated province (100,000 households by default) pushed in
//!    batches of 1,000 changes, with concurrent edits from two other devices
//!    so that conflicts are kept; beside it, raw SQLite inserts of the same
//!    change rows in transactions of the same size.
//! 2. Re-push of every batch already held.
//! 3. Pull from scratch over HTTP on loopback (gzip, as a client gets it):
//!    one village of about 200 households, and the whole province.
//! 4. 500 simulated devices syncing at once against a `faenban-server`
//!    process: throughput, latency percentiles, the server's peak memory.
//!
//! Run with `cargo bench -p faenban-server --bench sync` (add `--
//! --households N` for another size, `--devices N` for the simultaneous
//! devices (500), `--merge-only` to profile the merge, `--no-load` to stop
//! after the pulls, `--postgres` to measure the PostgreSQL backend beside
//! SQLite on the same province: its merge beside raw PostgreSQL inserts,
//! re-push, the province's pull, and the devices against one and two server
//! processes). It prints Markdown for docs/PERFORMANCE.md.
//!
//! `--scale N` (with `--postgres`): a province of N households pushed,
//! pulled and reported in a database that holds it alone, and in one that
//! also holds two other provinces of N households, or, with `--beside M`,
//! M households of two other provinces (loaded 100,000 at a time);
//! `--scale-only` measures that alone, without the rest.
//!
//! PostgreSQL: the cluster `FAENBAN_TEST_POSTGRES` names, or a throw-away
//! one `.ci/postgres` starts (Debian's `postgresql` package).

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faenban_core::sync::{ChangeSet, PullPage, Role, Scope, PROTOCOL_VERSION};
use faenban_core::{Change, DeviceId, RecordKey, RecordKind, Replica, Stamp};
use faenban_fixtures::{populate, Detail, Spec};
use faenban_keys::DeviceKey;
use faenban_server::backend::{Backend, SqliteBackend};
use faenban_server::token;
use faenban_store::server::{Account, PushInput};
use faenban_store::Store;
use rusqlite::{params, Connection};
use serde_json::json;
use uuid::Uuid;

mod postgres_bench;

const BATCH: usize = 1_000;

/// A simulated device of the load test: its account's token, its key's
/// seed, the changes it pushes.
type LoadDevice = (String, [u8; 32], Vec<Change>);

fn main() -> anyhow::Result<()> {
    let mut households = 100_000;
    let mut merge_only = false;
    let mut no_load = false;
    let mut devices = 500;
    let mut postgres = false;
    let mut scale = 0;
    let mut beside = 0;
    let mut scale_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--households" => households = args.next().unwrap_or_default().parse()?,
            "--merge-only" => merge_only = true,
            "--no-load" => no_load = true,
            "--devices" => devices = args.next().unwrap_or_default().parse()?,
            "--postgres" => postgres = true,
            "--scale" => scale = args.next().unwrap_or_default().parse()?,
            "--beside" => beside = args.next().unwrap_or_default().parse()?,
            "--scale-only" => scale_only = true,
            _ => {} // cargo bench passes --bench
        }
    }
    if scale_only {
        anyhow::ensure!(scale > 0, "--scale-only needs --scale N");
        return postgres_bench::scale(scale, beside);
    }
    let scratch = tempfile::tempdir()?;

    // The province, as one laptop made it.
    let mut laptop = Store::open_in_memory()?;
    let spec = Spec {
        detail: Detail::Minimal,
        ..Spec::khon_kaen(2568, households)
    };
    let started = Instant::now();
    populate(&mut laptop, &spec)?;
    let mut keys = Keys::default();
    let generator = keys.remember(laptop.device_key()?.expect("populate makes a device"));
    let outbox = laptop.outbox()?;
    let homes = laptop.records(&RecordKind::Household)?;
    println!(
        "generated {} households, {} changes in {:.1?}",
        homes.len(),
        outbox.len(),
        started.elapsed()
    );
    // Two more devices edit 5% of the addresses concurrently, each having
    // seen only the first value: every such household ends in conflict.
    let conflicting: Vec<(DeviceId, Vec<Change>)> = [0xB_u128, 0xC]
        .into_iter()
        .map(|seed| {
            let device = keys.remember(DeviceKey::from_seed([seed as u8; 32]));
            let changes = homes
                .iter()
                .step_by(20)
                .enumerate()
                .map(|(n, (key, state))| Change {
                    stamp: Stamp::new(faenban_core::Hlc::at(1_900_000_000_000 + n as u64), device),
                    record: key.clone(),
                    field: "address".into(),
                    value: json!(format!("{n} หมู่ 2 ({device})")),
                    supersedes: state.live_stamps("address").into_iter().collect(),
                    observed: Vec::new(),
                    previous_stamps: Vec::new(),
                })
                .collect();
            (device, changes)
        })
        .collect();

    // 1. Merge.
    let data = scratch.path().join("server");
    let backend = SqliteBackend::open(&data)?;
    let province = account(&backend, "province", Role::Province, &[])?;
    let account_of = |backend: &SqliteBackend, token: &str| -> anyhow::Result<Account> {
        Ok(backend
            .account_by_token(&token::hash(token))?
            .expect("account just made"))
    };
    let province_account = account_of(&backend, &province)?;
    let mut runs: Vec<PushInput> = outbox
        .chunks(BATCH)
        .map(|chunk| {
            let changes: Vec<Change> = chunk.iter().map(|(_, change)| change.clone()).collect();
            keys.signed(generator, chunk[0].0, changes)
        })
        .collect();
    for (device, changes) in &conflicting {
        runs.extend(
            changes
                .chunks(BATCH)
                .enumerate()
                .map(|(n, chunk)| keys.signed(*device, (n * BATCH) as u64 + 1, chunk.to_vec())),
        );
    }
    for device in [generator, conflicting[0].0, conflicting[1].0] {
        backend.hello(
            &province_account,
            device,
            "bench",
            &keys.key(device).public(),
            1_800_000_000_000,
        )?;
    }
    let total_changes: usize = runs.iter().map(|run| run.changes.len()).sum();
    let signed_bytes = |form: faenban_core::sync::RunSigning| -> f64 {
        let bytes: usize = runs
            .iter()
            .map(|run| {
                form.message(run.device, run.first_sequence, &run.changes)
                    .len()
            })
            .sum();
        bytes as f64 / total_changes as f64
    };
    println!(
        "signing message, bytes per change: compact form {:.0}, JSON form {:.0}",
        signed_bytes(faenban_core::sync::RunSigning::Compact),
        signed_bytes(faenban_core::sync::RunSigning::Json)
    );
    // Cloned before the clock starts: the measure is the server's, not the
    // copying of the batches.
    let pushed = runs.clone();
    let started = Instant::now();
    for run in pushed {
        backend.push(&province_account, run, 1_800_000_000_000)?;
    }
    let merge = started.elapsed();
    if merge_only {
        println!("merge: {total_changes} changes in {merge:.2?}");
        return Ok(());
    }
    // What the background checkpoint still has to copy into the database
    // file, done here at once so that it does not run under the next
    // measures.
    let started = Instant::now();
    Store::open(backend.path())?.checkpoint(0)?;
    let settle = started.elapsed();
    let conflicts = Store::open(backend.path())?.status()?.conflicts;
    let raw = raw_inserts(&scratch.path().join("raw.db"), &runs)?;

    // 2. Re-push.
    let pushed = runs.clone();
    let started = Instant::now();
    for run in pushed {
        let outcome = backend.push(&province_account, run, 1_800_000_000_000)?;
        assert_eq!(outcome.applied, 0);
    }
    let repush = started.elapsed();
    let server_file = file_size(backend.path());
    println!(
        "server database, bytes per field change, by table and index: {}",
        faenban_fixtures::bytes_per_change_by_table(
            &Store::open(backend.path())?,
            total_changes as u64
        )?
    );

    // 3. Pull over HTTP.
    // A volunteer's scope of about 200 households: neighbouring villages,
    // in code order, until they hold 200.
    let mut per_village: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, state) in &homes {
        let village = state
            .shown("village")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        *per_village.entry(village.to_owned()).or_default() += 1;
    }
    let mut villages = Vec::new();
    let mut in_scope = 0;
    for (village, count) in per_village {
        if in_scope >= 200 {
            break;
        }
        in_scope += count;
        villages.push(village);
    }
    let village = format!("{} villages", villages.len());
    let areas: Vec<&str> = villages.iter().map(String::as_str).collect();
    let volunteer = account(&backend, "village", Role::Volunteer, &areas)?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let runtime = tokio::runtime::Runtime::new()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(faenban_server::run(listener, backend.clone(), async {
        let _ = stopped.await;
    }));
    let base = format!("http://{address}");
    let village_pull = pull_everything(&base, &volunteer)?;
    let province_pull = pull_everything(&base, &province)?;
    let first_sync = first_sync(&scratch.path().join("new-laptop.db"), &base, &province)?;
    let _ = stop.send(());
    runtime.block_on(server)??;
    drop(backend);
    if postgres {
        postgres_bench::run(
            &runs,
            &keys,
            [generator, conflicting[0].0, conflicting[1].0],
            devices,
            merge,
            total_changes,
        )?;
        if scale > 0 {
            postgres_bench::scale(scale, beside)?;
        }
        return Ok(());
    }

    if no_load {
        for pull in [&village_pull, &province_pull] {
            println!(
                "pull: {} changes in {:.2?}, {:.1} bytes/change on the wire",
                pull.changes,
                pull.time,
                pull.wire_bytes as f64 / pull.changes.max(1) as f64
            );
        }
        return Ok(());
    }
    // 4. What setting refused records aside costs.
    let held = held_back_cost(scratch.path(), &mut keys)?;
    let digests = report_digest_cost(scratch.path(), &mut keys)?;

    // 5. Many devices at once, against the real binary.
    let load = load_test(scratch.path(), devices)?;

    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| merge: {total_changes} changes pushed in batches of {BATCH} ({conflicts} records left in conflict) | {:.2} s, **{:.0} changes/s** |",
        merge.as_secs_f64(),
        per_s(total_changes, merge)
    );
    println!(
        "| the write-ahead log left to copy into the database after the merge | {:.2} s |",
        settle.as_secs_f64()
    );
    println!(
        "| raw SQLite inserts of the same change rows, same transactions | {:.2} s, {:.0} rows/s |",
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
        "| merge of {} fully recorded households ({} changes: members, a visit, assistance, pairings), the report's digests kept / not kept | {:.2} s / {:.2} s: keeping them costs **{:.2}×** |",
        digests.households,
        digests.changes,
        digests.kept.as_secs_f64(),
        digests.not_kept.as_secs_f64(),
        digests.kept.as_secs_f64() / digests.not_kept.as_secs_f64()
    );
    println!(
        "| server database after the merge (file and write-ahead log) | {:.0} MB, **{:.0} bytes per field change** |",
        server_file as f64 / 1e6,
        server_file as f64 / total_changes as f64
    );
    println!(
        "| a district team's batches of new households ({} changes): all in its district / half outside it, held back | {:.2} s / {:.2} s, **{:.2}×** the time for the half that is applied |",
        held.changes,
        held.all_in.as_secs_f64(),
        held.half_out.as_secs_f64(),
        held.half_out.as_secs_f64() / (held.all_in.as_secs_f64() / 2.0)
    );
    for (name, pull) in [
        (village.clone(), &village_pull),
        ("whole province".to_owned(), &province_pull),
    ] {
        println!(
            "| pull from scratch, {name}: {} changes, {} households, {} pages | {:.2} s, {:.1} MB on the wire, **{:.1} bytes/change** ({:.0} bytes/change uncompressed) |",
            pull.changes,
            pull.households,
            pull.pages,
            pull.time.as_secs_f64(),
            pull.wire_bytes as f64 / 1e6,
            pull.wire_bytes as f64 / pull.changes.max(1) as f64,
            pull.json_bytes as f64 / pull.changes.max(1) as f64,
        );
    }
    println!(
        "| a new laptop's first sync of the whole province (pull and apply, through the client library): {} changes | {:.2} s, **{:.1} s per million changes**; laptop file {:.0} MB |",
        first_sync.changes,
        first_sync.time.as_secs_f64(),
        first_sync.time.as_secs_f64() * 1e6 / first_sync.changes.max(1) as f64,
        first_sync.file_bytes as f64 / 1e6
    );
    println!(
        "| {devices} devices syncing at once ({} changes pushed, each device then pulls its village) | {:.2} s, {:.0} syncs/s, {:.0} changes/s |",
        load.changes,
        load.time.as_secs_f64(),
        per_s(devices, load.time),
        per_s(load.changes, load.time)
    );
    println!(
        "| request latency under that load: hello p50 / p99, push p50 / p99, pull p50 / p99 | {:.0} / {:.0} ms, {:.0} / {:.0} ms, {:.0} / {:.0} ms |",
        ms(load.hello[load.hello.len() / 2]),
        ms(load.hello[load.hello.len() * 99 / 100]),
        ms(load.push[load.push.len() / 2]),
        ms(load.push[load.push.len() * 99 / 100]),
        ms(load.pull[load.pull.len() / 2]),
        ms(load.pull[load.pull.len() * 99 / 100]),
    );
    let again = &load.again;
    println!(
        "| the same {devices} devices at once again (known, everything held): time; hello, push, pull p99 | {:.2} s, {:.0} syncs/s; {:.0}, {:.0}, {:.0} ms |",
        again.time.as_secs_f64(),
        per_s(devices, again.time),
        ms(again.hello[again.hello.len() * 99 / 100]),
        ms(again.push[again.push.len() * 99 / 100]),
        ms(again.pull[again.pull.len() * 99 / 100]),
    );
    println!(
        "| server peak memory (VmHWM) during the load | **{:.0} MB** |",
        load.peak_kb as f64 / 1024.0
    );
    println!(
        "| server resident memory before the load / 7 s after it / 7 s after a second flood | {:.0} MB / {:.0} MB / {:.0} MB |",
        load.rss_before_kb as f64 / 1024.0,
        load.rss_after_kb as f64 / 1024.0,
        load.rss_after_second_kb as f64 / 1024.0
    );
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn account(
    backend: &dyn Backend,
    name: &str,
    role: Role,
    areas: &[&str],
) -> anyhow::Result<String> {
    let token = token::generate()?;
    let scope = Scope {
        role,
        areas: areas.iter().map(|a| a.to_string()).collect(),
        dimension: None,
    };
    backend.add_account(name, &scope, &token::hash(&token), 1_800_000_000_000)?;
    Ok(token)
}

fn file_size(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len())
        })
        .sum()
}

/// The same change rows the server logs, inserted into a table of the same
/// shape, in transactions of one batch each.
fn raw_inserts(path: &Path, runs: &[PushInput]) -> anyhow::Result<Duration> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // As durable as the server's own commits.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute_batch(
        "CREATE TABLE changes (seq INTEGER PRIMARY KEY, wall_ms INTEGER NOT NULL, \
         counter INTEGER NOT NULL, device INTEGER NOT NULL, record INTEGER NOT NULL, \
         field INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (wall_ms, counter, device))",
    )?;
    let mut connection = connection;
    // Devices and records by number, as the store's change log keeps them.
    let mut numbers: std::collections::HashMap<DeviceId, i64> = std::collections::HashMap::new();
    let mut records: std::collections::HashMap<faenban_core::RecordKey, i64> =
        std::collections::HashMap::new();
    let mut fields: std::collections::HashMap<faenban_core::FieldName, i64> =
        std::collections::HashMap::new();
    let started = Instant::now();
    for run in runs {
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO changes (wall_ms, counter, device, record, field, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for change in &run.changes {
                insert.execute(params![
                    change.stamp.hlc.wall_ms as i64,
                    change.stamp.hlc.counter,
                    {
                        let next = numbers.len() as i64 + 1;
                        *numbers.entry(change.stamp.device).or_insert(next)
                    },
                    {
                        let next = records.len() as i64 + 1;
                        *records.entry(change.record.clone()).or_insert(next)
                    },
                    {
                        let next = fields.len() as i64 + 1;
                        *fields.entry(change.field.clone()).or_insert(next)
                    },
                    faenban_core::codec::encode_change_body(change),
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// What a new laptop's first sync of the whole province took: the pull
/// and its application to the laptop's store, as `faenban sync` does it.
struct FirstSync {
    changes: u64,
    time: Duration,
    file_bytes: u64,
}

/// A new laptop of the province account syncs for the first time, through
/// the client library's driver over HTTP.
fn first_sync(path: &Path, base: &str, token: &str) -> anyhow::Result<FirstSync> {
    let mut store = Store::open(path)?;
    store.init("new laptop", &DeviceKey::generate()?)?;
    let transport = faenban_client::http::HttpTransport::new(
        base,
        token,
        None,
        faenban_client::http::Retry {
            retries: 0,
            first_delay: Duration::from_millis(100),
        },
    )?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    };
    let started = Instant::now();
    faenban_client::login(&mut store, &transport, token)?;
    let summary = faenban_client::sync(
        &mut store,
        &transport,
        token,
        &mut faenban_client::Quiet,
        &now,
    )?;
    let time = started.elapsed();
    drop(store);
    Ok(FirstSync {
        changes: summary.pulled,
        time,
        file_bytes: file_size(path),
    })
}

struct Pulled {
    changes: usize,
    households: usize,
    pages: usize,
    wire_bytes: usize,
    json_bytes: usize,
    time: Duration,
}

/// Pulls every page as a client does, counting the gzip bytes on the wire.
fn pull_everything(base: &str, token: &str) -> anyhow::Result<Pulled> {
    // Decompress here, to count what crossed the wire.
    let client = reqwest::blocking::Client::builder().no_gzip().build()?;
    let mut pulled = Pulled {
        changes: 0,
        households: 0,
        pages: 0,
        wire_bytes: 0,
        json_bytes: 0,
        time: Duration::ZERO,
    };
    let mut households = std::collections::HashSet::new();
    let mut since = 0;
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("{base}/v1/changes?since={since}&limit=5000"))
            .bearer_auth(token)
            .header("accept-encoding", "gzip")
            .send()?
            .error_for_status()?;
        let gzipped = response.bytes()?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut json)?;
        let page: PullPage = serde_json::from_slice(&json)?;
        let changes = page.changes.decode()?;
        pulled.wire_bytes += gzipped.len();
        pulled.json_bytes += json.len();
        pulled.changes += changes.len();
        pulled.pages += 1;
        households.extend(
            changes
                .iter()
                .filter(|c| c.record.kind == RecordKind::Household)
                .map(|c| c.record.id),
        );
        since = page.next;
        if !page.more {
            break;
        }
    }
    pulled.time = started.elapsed();
    pulled.households = households.len();
    Ok(pulled)
}

struct Load {
    changes: usize,
    time: Duration,
    hello: Vec<Duration>,
    push: Vec<Duration>,
    pull: Vec<Duration>,
    /// The same devices syncing at once again: known, everything held.
    again: Flood,
    peak_kb: u64,
    rss_before_kb: u64,
    rss_after_kb: u64,
    rss_after_second_kb: u64,
}

/// A memory figure of a process from `/proc/PID/status`, in KiB.
fn process_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// `count` volunteers, each with a village of their own and ten households
/// of ten fields, sync at once: hello, push, pull.
fn load_test(scratch: &Path, count: usize) -> anyhow::Result<Load> {
    let data = scratch.join("load");
    let backend = SqliteBackend::open(&data)?;
    let devices = load_devices(&backend, count)?;
    drop(backend);
    let data = data.into_os_string();
    let mut loads = load_on(&[vec!["--data".into(), data]], &devices)?;
    Ok(loads.remove(0))
}

/// `count` volunteers, each with a village of their own and ten households
/// of ten fields: their accounts' tokens, their keys' seeds, their changes.
fn load_devices(backend: &dyn Backend, count: usize) -> anyhow::Result<Vec<LoadDevice>> {
    let mut devices = Vec::new();
    let areas = faenban_core::areas::Areas::builtin();
    let khon_kaen = faenban_core::codes::AreaCode::parse("40")?;
    let subdistricts = areas.subdistricts_of(&khon_kaen);
    for n in 0..count {
        let village = format!(
            "{}{:02}",
            subdistricts[n % subdistricts.len()].as_str(),
            1 + n / subdistricts.len()
        );
        let token = account(
            backend,
            &format!("volunteer {n}"),
            Role::Volunteer,
            &[&village],
        )?;
        let seed: [u8; 32] = ((0x1000 + n) as u128 * 7919)
            .to_le_bytes()
            .repeat(2)
            .try_into()
            .expect("32 bytes");
        let device = DeviceKey::from_seed(seed).device_id();
        let mut replica = Replica::new(device);
        let mut changes = Vec::new();
        for h in 0..10 {
            let key = RecordKey::new(
                RecordKind::Household,
                Uuid::from_u128((n as u128) << 32 | h),
            );
            changes.push(replica.set(1_800_000_000_000, &key, "village", json!(village)));
            for field in 0..9 {
                changes.push(replica.set(
                    1_800_000_000_000,
                    &key,
                    &format!("field_{field}"),
                    json!(format!("value {h} {field}")),
                ));
            }
        }
        devices.push((token, seed, changes));
    }
    Ok(devices)
}

/// One server process per entry of `stores` (its `serve` arguments), all
/// serving at once; the devices sync, spread over them in turn. Each
/// process's figures; the times and latencies are the whole flood's.
fn load_on(
    stores: &[Vec<std::ffi::OsString>],
    devices: &[LoadDevice],
) -> anyhow::Result<Vec<Load>> {
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for store in stores {
        let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_faenban-server"))
            .arg("serve")
            .args(store)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().expect("piped")),
            &mut line,
        )?;
        bases.push(
            line.trim()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
        servers.push(server);
    }
    let pids: Vec<u32> = servers.iter().map(std::process::Child::id).collect();
    let changes: usize = devices.iter().map(|(_, _, c)| c.len()).sum();
    let rss_before: Vec<u64> = pids.iter().map(|pid| process_kb(*pid, "VmRSS:")).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let first = flood(&runtime, &bases, devices)?;
    let peak: Vec<u64> = pids.iter().map(|pid| process_kb(*pid, "VmHWM:")).collect();
    // What the flood left held once the server has been quiet for a while
    // (it gives back its caches after 5 s without a call), and again after
    // a second flood of the same devices (syncing again, all duplicates).
    let quiet = Duration::from_secs(7);
    std::thread::sleep(quiet);
    let rss_after: Vec<u64> = pids.iter().map(|pid| process_kb(*pid, "VmRSS:")).collect();
    let again = flood(&runtime, &bases, devices)?;
    std::thread::sleep(quiet);
    let rss_after_second: Vec<u64> = pids.iter().map(|pid| process_kb(*pid, "VmRSS:")).collect();
    for mut server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    Ok((0..pids.len())
        .map(|n| Load {
            changes,
            time: first.time,
            hello: first.hello.clone(),
            push: first.push.clone(),
            pull: first.pull.clone(),
            again: again.clone(),
            peak_kb: peak[n],
            rss_before_kb: rss_before[n],
            rss_after_kb: rss_after[n],
            rss_after_second_kb: rss_after_second[n],
        })
        .collect())
}

/// What every device syncing at once took: the whole, and each request's
/// latencies, sorted.
#[derive(Clone)]
struct Flood {
    time: Duration,
    hello: Vec<Duration>,
    push: Vec<Duration>,
    pull: Vec<Duration>,
}

/// A device's requests, signed and written before the clock starts: in the
/// field each laptop signs and writes on its own processor, not on the
/// server's.
struct DeviceRequests {
    token: String,
    hello: String,
    push: String,
    changes: usize,
}

fn device_requests(devices: &[LoadDevice]) -> Vec<DeviceRequests> {
    devices
        .iter()
        .map(|(token, seed, changes)| {
            let key = DeviceKey::from_seed(*seed);
            let device = key.device_id();
            let hello = json!({
                "protocol": PROTOCOL_VERSION,
                "device": device,
                "name": "load",
                "public_key": key.public().to_string(),
                "proof": key.sign_hello(device, token).to_string(),
            });
            let push = json!({
                "protocol": PROTOCOL_VERSION,
                "schema": faenban_store::SCHEMA_VERSION,
                "device": device,
                "first_sequence": 1,
                "changes": ChangeSet::encode(changes),
                "signature": key.sign_run(device, 1, changes).to_string(),
            });
            DeviceRequests {
                token: token.clone(),
                hello: hello.to_string(),
                push: push.to_string(),
                changes: changes.len(),
            }
        })
        .collect()
}

/// Every device syncs at once, device `n` through `bases[n % len]`. What
/// each pulled is read and checked once all are done, as each laptop would
/// on its own processor.
fn flood(
    runtime: &tokio::runtime::Runtime,
    bases: &[String],
    devices: &[LoadDevice],
) -> anyhow::Result<Flood> {
    let requests = std::sync::Arc::new(device_requests(devices));
    runtime.block_on(async {
        let client = reqwest::Client::builder().build()?;
        let started = Instant::now();
        let tasks: Vec<_> = (0..requests.len())
            .map(|n| {
                let client = client.clone();
                let base = bases[n % bases.len()].clone();
                let requests = requests.clone();
                tokio::spawn(async move { one_device(&client, &base, &requests[n]).await })
            })
            .collect();
        let mut hello = Vec::new();
        let mut push = Vec::new();
        let mut pull = Vec::new();
        let mut pulled = Vec::new();
        for task in tasks {
            let ([h, p, q], page) = task.await??;
            hello.push(h);
            push.push(p);
            pull.push(q);
            pulled.push(page);
        }
        let time = started.elapsed();
        for (page, device) in pulled.iter().zip(requests.iter()) {
            let page: PullPage = serde_json::from_slice(page)?;
            anyhow::ensure!(
                page.changes.len() == device.changes,
                "a device pulled {} of its {} changes",
                page.changes.len(),
                device.changes
            );
        }
        hello.sort();
        push.sort();
        pull.sort();
        anyhow::Ok(Flood {
            time,
            hello,
            push,
            pull,
        })
    })
}

/// One device's hello, push and pull of its village: each request's
/// latency, and the page it pulled.
async fn one_device(
    client: &reqwest::Client,
    base: &str,
    device: &DeviceRequests,
) -> anyhow::Result<([Duration; 3], Vec<u8>)> {
    let token = &device.token;
    let started = Instant::now();
    retrying(|| {
        client
            .post(format!("{base}/v1/hello"))
            .bearer_auth(token)
            .body(device.hello.clone())
    })
    .await?;
    let greeted = started.elapsed();
    let started = Instant::now();
    retrying(|| {
        client
            .post(format!("{base}/v1/push"))
            .bearer_auth(token)
            .body(device.push.clone())
    })
    .await?;
    let pushed = started.elapsed();
    let started = Instant::now();
    let page = retrying(|| {
        client
            .get(format!("{base}/v1/changes?since=0&limit=1000"))
            .bearer_auth(token)
    })
    .await?
    .bytes()
    .await?;
    Ok(([greeted, pushed, started.elapsed()], page.to_vec()))
}

/// Sends a request as the `faenban` client's transport does: a network
/// failure or a server trouble (5xx) is retried after a wait that doubles,
/// up to five times; a latency measured around it is what a laptop waits.
async fn retrying(
    request: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        let failure = match request().send().await {
            Ok(response) if response.status().is_server_error() => {
                anyhow::anyhow!("the server answered {}", response.status())
            }
            Ok(response) => return Ok(response.error_for_status()?),
            Err(error) => error.into(),
        };
        if attempt == 5 {
            return Err(failure);
        }
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

/// The time to push the same amount of work with every record in scope,
/// and with every other household outside it (held back).
struct HeldBackCost {
    changes: usize,
    all_in: Duration,
    half_out: Duration,
}

/// What keeping the report's household digests current costs a merge.
struct DigestCost {
    households: usize,
    changes: usize,
    kept: Duration,
    not_kept: Duration,
}

/// The same fully recorded households pushed into two servers, one that
/// keeps the report's digests and one that does not.
fn report_digest_cost(scratch: &Path, keys: &mut Keys) -> anyhow::Result<DigestCost> {
    const HOUSEHOLDS: usize = 2_000;
    let mut laptop = Store::open_in_memory()?;
    populate(&mut laptop, &Spec::khon_kaen(2569, HOUSEHOLDS))?;
    let device = keys.remember(laptop.device_key()?.expect("populate makes a device"));
    let outbox = laptop.outbox()?;
    let runs: Vec<PushInput> = outbox
        .chunks(BATCH)
        .map(|chunk| {
            let changes: Vec<Change> = chunk.iter().map(|(_, change)| change.clone()).collect();
            keys.signed(device, chunk[0].0, changes)
        })
        .collect();
    let mut times = Vec::new();
    for keep in [true, false] {
        let backend = SqliteBackend::open(&scratch.join(format!("digests-{keep}")))?;
        backend.keep_report_digests(keep);
        let token = account(&backend, "province", Role::Province, &[])?;
        let province = backend
            .account_by_token(&token::hash(&token))?
            .expect("account just made");
        backend.hello(
            &province,
            device,
            "bench",
            &keys.key(device).public(),
            1_800_000_000_000,
        )?;
        let pushed = runs.clone();
        let started = Instant::now();
        for run in pushed {
            backend.push(&province, run, 1_800_000_000_000)?;
        }
        times.push(started.elapsed());
    }
    Ok(DigestCost {
        households: HOUSEHOLDS,
        changes: outbox.len(),
        kept: times[0],
        not_kept: times[1],
    })
}

fn held_back_cost(scratch: &Path, keys: &mut Keys) -> anyhow::Result<HeldBackCost> {
    const HOUSEHOLDS: usize = 8_000;
    let areas = faenban_core::areas::Areas::builtin();
    let villages = |district: &str| -> anyhow::Result<Vec<String>> {
        Ok(areas
            .subdistricts_of(&faenban_core::codes::AreaCode::parse(district)?)
            .iter()
            .map(|subdistrict| format!("{}01", subdistrict.as_str()))
            .collect())
    };
    let (inside, outside) = (villages("4001")?, villages("4002")?);
    let mut times = Vec::new();
    let mut changes_pushed = 0;
    for (run, mixed) in [(0u8, false), (1, true)] {
        let backend = SqliteBackend::open(&scratch.join(format!("held-{run}")))?;
        let token = account(&backend, "team", Role::Team, &["4001"])?;
        let team = backend
            .account_by_token(&token::hash(&token))?
            .expect("account just made");
        let device = keys.remember(DeviceKey::from_seed([0x40 + run; 32]));
        backend.hello(
            &team,
            device,
            "bench",
            &keys.key(device).public(),
            1_800_000_000_000,
        )?;
        let mut replica = Replica::new(device);
        let mut changes = Vec::with_capacity(HOUSEHOLDS * 5);
        for n in 0..HOUSEHOLDS {
            let key = RecordKey::new(
                RecordKind::Household,
                Uuid::from_u128(0x4e1d << 64 | n as u128),
            );
            let village = if mixed && n % 2 == 1 {
                &outside[n % outside.len()]
            } else {
                &inside[n % inside.len()]
            };
            changes.push(replica.set(1_800_000_000_000, &key, "village", json!(village)));
            for field in ["address", "house_code", "entry", "notes"] {
                changes.push(replica.set(
                    1_800_000_000_000,
                    &key,
                    field,
                    json!(format!("{field} {n}")),
                ));
            }
        }
        changes_pushed = changes.len();
        let runs: Vec<PushInput> = changes
            .chunks(BATCH)
            .enumerate()
            .map(|(n, chunk)| keys.signed(device, (n * BATCH) as u64 + 1, chunk.to_vec()))
            .collect();
        let started = Instant::now();
        for run in runs {
            let outcome = backend.push(&team, run, 1_800_000_000_000)?;
            assert_eq!(outcome.held_back.is_empty(), !mixed);
        }
        times.push(started.elapsed());
    }
    Ok(HeldBackCost {
        changes: changes_pushed,
        all_in: times[0],
        half_out: times[1],
    })
}

/// The keys of the bench's devices, to sign their pushes with.
#[derive(Default)]
struct Keys(std::collections::HashMap<DeviceId, String>);

impl Keys {
    fn remember(&mut self, key: DeviceKey) -> DeviceId {
        let device = key.device_id();
        self.0.insert(device, key.seed_hex());
        device
    }

    fn key(&self, device: DeviceId) -> DeviceKey {
        DeviceKey::from_seed_hex(&self.0[&device]).expect("a remembered key")
    }

    /// A push of `device`'s outbox, signed with its key.
    fn signed(&self, device: DeviceId, first_sequence: u64, changes: Vec<Change>) -> PushInput {
        let signature = self.key(device).sign_run(device, first_sequence, &changes);
        PushInput {
            device,
            relay: false,
            first_sequence,
            changes,
            signature,
            public_key: None,
        }
    }
}
