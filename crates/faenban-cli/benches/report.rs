//! The office's report at a province's scale: a server's file of generated
//! households (members, two visits each, assistance, pairings), then in
//! one run:
//!
//! 1. `faenban report` on that file as a new process (the province's
//!    figures; the village-level table), wall time and peak memory;
//! 2. the XLSX workbook of every village, written by the CLI: time, peak
//!    memory, size;
//! 3. `GET /v1/report` for the province, the first time and once warm;
//! 4. the War Room's province view, the first time and once warm;
//! 5. `GET /v1/report.xlsx` of every village.
//!
//! `cargo bench -p faenban-cli --bench report -- --households N` (200,000
//! by default; `--data DIR` keeps the generated server folder there and
//! reuses it on the next run; `--scale-digests N` measures again on a
//! file of N households' digests copied from those, for a province larger
//! than the disk can hold whole). What keeping the report current costs a
//! push is in `cargo bench -p faenban-server --bench sync`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faenban_core::sync::{Role, Scope};
use faenban_fixtures::{populate, Spec};
use faenban_server::backend::{Backend, SqliteBackend, DATABASE_FILE};
use faenban_server::token;
use faenban_store::Store;

fn main() -> anyhow::Result<()> {
    let mut households = 200_000;
    let mut data: Option<PathBuf> = None;
    let mut scale_to: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--households" => households = args.next().unwrap_or_default().parse()?,
            "--data" => data = args.next().map(PathBuf::from),
            "--scale-digests" => scale_to = Some(args.next().unwrap_or_default().parse()?),
            _ => {} // cargo bench passes --bench
        }
    }
    let scratch = tempfile::tempdir()?;
    let data = data.unwrap_or_else(|| scratch.path().join("server"));
    let database = data.join(DATABASE_FILE);
    let token_file = data.join("province.token");

    if !token_file.exists() {
        let started = Instant::now();
        let token = province_account(&data)?;
        let mut store = Store::open(&database)?.without_search_index();
        let spec = Spec {
            second_visit: true,
            ..Spec::khon_kaen(2569, households)
        };
        let summary = populate(&mut store, &spec)?;
        drop(store);
        std::fs::write(&token_file, &token)?;
        eprintln!(
            "generated {} households, {} members, {} visits, {} assistance records in {:.0?}",
            summary.households,
            summary.members,
            summary.visits,
            summary.assistance,
            started.elapsed()
        );
    }
    let token = std::fs::read_to_string(&token_file)?;
    let file_bytes = std::fs::metadata(&database)?.len();
    let digests = Store::open(&database)?.report_digests()?.len();
    let real = measure(scratch.path(), &data, &token)?;
    println!();
    println!(
        "{digests} households in a {:.1} GB server file",
        file_bytes as f64 / 1e9
    );
    print_figures(&real);

    if let Some(target) = scale_to {
        let scaled = scaled_copy(scratch.path(), &database, target)?;
        let figures = measure(
            scratch.path(),
            &scaled,
            &std::fs::read_to_string(scaled.join("province.token"))?,
        )?;
        println!();
        println!(
            "{target} households' digests (the {digests} above, copied with new ids) in a server file holding nothing else",
        );
        print_figures(&figures);
    }
    Ok(())
}

/// A new server folder with a province account; its token.
fn province_account(data: &Path) -> anyhow::Result<String> {
    let backend = SqliteBackend::open(data)?;
    let token = token::generate()?;
    let scope = Scope {
        role: Role::Province,
        areas: Vec::new(),
        dimension: None,
    };
    backend.add_account("province", &scope, &token::hash(&token), 1_800_000_000_000)?;
    Ok(token)
}

/// A server folder whose file holds only `target` households' digests,
/// copies (with new ids) of those in `source`: what a report reads of a
/// province that size, where generating the whole province would not fit
/// on this disk.
fn scaled_copy(scratch: &Path, source: &Path, target: usize) -> anyhow::Result<PathBuf> {
    let data = scratch.join(format!("scaled-{target}"));
    let token = province_account(&data)?;
    std::fs::write(data.join("province.token"), &token)?;
    let connection = rusqlite::Connection::open(data.join(DATABASE_FILE))?;
    connection.execute("ATTACH DATABASE ?1 AS source", [source.to_string_lossy()])?;
    let mut copy = 0u32;
    loop {
        let held: i64 =
            connection.query_row("SELECT COUNT(*) FROM report_digests", [], |row| row.get(0))?;
        if held as usize >= target {
            break;
        }
        // A new id per copy: the first group of the id names the copy.
        let params = rusqlite::params![copy + 0x7000_0000, target as i64 - held];
        connection.execute(
            "INSERT INTO record_numbers (kind, id) \
             SELECT 'household', printf('%08x', ?1) || substr(h.id, 9) \
             FROM source.report_digests d JOIN source.record_numbers h ON h.n = d.household \
             ORDER BY d.household LIMIT ?2",
            params,
        )?;
        connection.execute(
            "INSERT INTO report_digests (household, village, digest) \
             SELECT n.n, d.village, json_set(d.digest, '$.i', n.id) \
             FROM source.report_digests d JOIN source.record_numbers h ON h.n = d.household \
             JOIN record_numbers n ON n.kind = 'household' \
             AND n.id = printf('%08x', ?1) || substr(h.id, 9) \
             ORDER BY d.household LIMIT ?2",
            params,
        )?;
        copy += 1;
    }
    Ok(data)
}

/// Everything the benchmark measures, for one server folder.
fn measure(scratch: &Path, data: &Path, token: &str) -> anyhow::Result<Figures> {
    let database = data.join(DATABASE_FILE);
    let token = token.to_owned();
    // 1. The CLI as a new process, three times each.
    let cli = env!("CARGO_BIN_EXE_faenban");
    let province_json = scratch.join("report.json");
    let province = median_run(|| {
        measured(
            Command::new(cli)
                .arg("--db")
                .arg(&database)
                .args(["report", "--format", "json", "--output"])
                .arg(&province_json),
        )
    })?;
    let villages = median_run(|| {
        measured(
            Command::new(cli)
                .arg("--db")
                .arg(&database)
                .args([
                    "report", "--level", "village", "--format", "csv", "--output",
                ])
                .arg(scratch.join("villages.csv")),
        )
    })?;
    // 2. The workbook of every village.
    let workbook = scratch.join("villages.xlsx");
    let xlsx = measured(
        Command::new(cli)
            .arg("--db")
            .arg(&database)
            .args([
                "report", "--level", "village", "--format", "xlsx", "--output",
            ])
            .arg(&workbook),
    )?;
    let xlsx_bytes = std::fs::metadata(&workbook)?.len();

    // 3–5. The server.
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::open(data)?);
    let runtime = tokio::runtime::Runtime::new()?;
    let server = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(faenban_server::run(listener, backend, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let get = |path: String, cookie: Option<String>| {
            let client = client.clone();
            let token = token.clone();
            async move {
                let mut request = client.get(path);
                request = match cookie {
                    Some(cookie) => request.header("cookie", cookie),
                    None => request.bearer_auth(token),
                };
                let started = Instant::now();
                let response = request.send().await?;
                anyhow::ensure!(response.status().is_success(), "{}", response.status());
                let bytes = response.bytes().await?;
                anyhow::Ok((started.elapsed(), bytes.len()))
            }
        };
        let report_url = format!("{base}/v1/report?level=district");
        let (report_first, _) = get(report_url.clone(), None).await?;
        let mut warm = Vec::new();
        for _ in 0..10 {
            warm.push(get(report_url.clone(), None).await?.0);
        }
        let report_warm = median(&mut warm);

        let signed_in = client
            .post(format!("{base}/war-room/sign-in"))
            .form(&[("token", token.as_str()), ("lang", "th")])
            .send()
            .await?;
        let cookie = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
        let page_url = format!("{base}/war-room?fiscal_year=2569");
        let (page_first, page_bytes) = get(page_url.clone(), Some(cookie.clone())).await?;
        let mut warm = Vec::new();
        for _ in 0..10 {
            warm.push(get(page_url.clone(), Some(cookie.clone())).await?.0);
        }
        let page_warm = median(&mut warm);
        let (workbook_time, workbook_bytes) =
            get(format!("{base}/v1/report.xlsx?level=village"), None).await?;
        let _ = stop.send(());
        serving.await??;
        anyhow::Ok(Served {
            report_first,
            report_warm,
            page_first,
            page_warm,
            page_bytes,
            workbook_time,
            workbook_bytes,
        })
    })?;

    Ok(Figures {
        province,
        villages,
        xlsx,
        xlsx_bytes,
        server,
    })
}

struct Figures {
    province: (Duration, u64),
    villages: (Duration, u64),
    xlsx: (Duration, u64),
    xlsx_bytes: u64,
    server: Served,
}

fn print_figures(figures: &Figures) {
    let Figures {
        province,
        villages,
        xlsx,
        xlsx_bytes,
        server,
    } = figures;
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| `faenban report --format json` (the province), a new process | **{:.2} s**, {:.0} MB peak |",
        province.0.as_secs_f64(),
        province.1 as f64 / 1024.0
    );
    println!(
        "| `faenban report --level village --format csv`, a new process | {:.2} s, {:.0} MB peak |",
        villages.0.as_secs_f64(),
        villages.1 as f64 / 1024.0
    );
    println!(
        "| `faenban report --level village --format xlsx` | {:.2} s, {:.0} MB peak, {:.1} MB workbook |",
        xlsx.0.as_secs_f64(),
        xlsx.1 as f64 / 1024.0,
        *xlsx_bytes as f64 / 1e6
    );
    println!(
        "| `GET /v1/report?level=district` (the province): first / warm (median of 10) | {:.0} ms / **{:.1} ms** |",
        ms(server.report_first),
        ms(server.report_warm)
    );
    println!(
        "| War Room, the province's view (`/war-room?fiscal_year=2569`): first / warm | {:.0} ms / **{:.1} ms** ({:.0} KB page) |",
        ms(server.page_first),
        ms(server.page_warm),
        server.page_bytes as f64 / 1024.0
    );
    println!(
        "| `GET /v1/report.xlsx?level=village` | {:.2} s, {:.1} MB |",
        server.workbook_time.as_secs_f64(),
        server.workbook_bytes as f64 / 1e6
    );
}

struct Served {
    report_first: Duration,
    report_warm: Duration,
    page_first: Duration,
    page_warm: Duration,
    page_bytes: usize,
    workbook_time: Duration,
    workbook_bytes: usize,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The run with the median time of three, and its peak memory.
fn median_run(
    mut run: impl FnMut() -> anyhow::Result<(Duration, u64)>,
) -> anyhow::Result<(Duration, u64)> {
    let mut runs = [run()?, run()?, run()?];
    runs.sort_by_key(|(time, _)| *time);
    Ok(runs[1])
}

/// Runs a command to its end: its wall time and its peak resident memory
/// in KiB (through GNU time when the machine has it, else 0).
fn measured(command: &mut Command) -> anyhow::Result<(Duration, u64)> {
    let gnu_time = Path::new("/usr/bin/time");
    let report = tempfile::NamedTempFile::new()?;
    let mut command = if gnu_time.exists() {
        let mut wrapped = Command::new(gnu_time);
        wrapped
            .args(["-f", "%M", "-o"])
            .arg(report.path())
            .arg(command.get_program())
            .args(command.get_args());
        wrapped
    } else {
        std::mem::replace(command, Command::new("true"))
    };
    let started = Instant::now();
    let output = command.output()?;
    let time = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_kb = std::fs::read_to_string(report.path())
        .ok()
        .and_then(|text| text.trim().lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Ok((time, peak_kb))
}
