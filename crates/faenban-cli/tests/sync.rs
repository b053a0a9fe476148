//! End to end: real `faenban` laptops syncing through a real
//! `faenban-server` on loopback, including a server killed mid-push, lying
//! clocks, refused accounts and bundles carried by hand; each on both of the
//! server's stores (SQLite, and a real PostgreSQL).

mod support;

use std::time::Duration;

use faenban_store::Store;
use serde_json::Value;
use support::{Backing, Laptop, ServerProcess};

const VILLAGE: &str = "40010101";

fn laptop(name: &str) -> Laptop {
    let laptop = Laptop::new();
    laptop.ok(&["init", "--name", name]);
    laptop
}

fn edit(laptop: &Laptop, field: &str, value: &str) {
    laptop.ok(&["household", "edit", "4001-012345-6", field, value]);
}

fn conflicts(laptop: &Laptop) -> Value {
    laptop.json(&["conflicts", "list"])
}

on_both_stores! {
fn three_laptops_and_the_province_converge_whatever_the_order(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let volunteer = laptop("อสม. มาลี");
    let neighbour = laptop("อสม. สมศรี");
    let team = laptop("ทีมอำเภอ");
    let province = laptop("สำนักงานจังหวัด");
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    neighbour.login(&server, &server.account("สมศรี", "volunteer", VILLAGE));
    team.login(&server, &server.account("ทีมอำเภอเมือง", "team", "4001"));
    province.login(&server, &server.account("จังหวัด", "province", ""));

    volunteer.add_household();
    volunteer.add_member("มาลี", "female", "head");
    let pushed = volunteer.sync();
    assert!(pushed["pushed"].as_u64().unwrap() > 5, "{pushed}");
    assert_eq!(volunteer.unpushed(), 0);
    neighbour.sync();
    team.sync();

    // Offline, all three change the address; each also changes another field.
    edit(&volunteer, "--address", "12/1 หมู่ 1");
    edit(&neighbour, "--address", "12 หมู่ 1 ซอย 3");
    edit(&team, "--address", "12 หมู่ 1 (ริมถนน)");
    edit(&volunteer, "--notes", "ไม่มีน้ำประปา");
    edit(&neighbour, "--welfare-card", "no");
    team.add_member("สมชาย", "male", "spouse");

    // In different orders, and more than once.
    for laptop in [
        &team, &volunteer, &neighbour, &team, &neighbour, &volunteer, &team,
    ] {
        laptop.sync();
    }
    province.sync();

    let expected = province.ok(&["export", "--format", "json"]);
    for laptop in [&volunteer, &neighbour, &team] {
        assert!(
            laptop.ok(&["export", "--format", "json"]) == expected,
            "an export differs from the province's"
        );
        assert_eq!(conflicts(laptop), conflicts(&province));
    }
    let conflicts = conflicts(&province);
    assert!(
        conflicts.to_string().contains("address"),
        "the address conflict is recorded: {conflicts}"
    );
    for text in ["ไม่มีน้ำประปา", "สมชาย"] {
        assert!(expected.contains(text), "{text} is in the merged data");
    }
    // Nothing is left to push, and a sync with nothing new moves nothing.
    let quiet = team.sync();
    assert_eq!(
        (quiet["pushed"].as_u64(), quiet["pulled"].as_u64()),
        (Some(0), Some(0))
    );
}
}

/// A laptop holding a generated district of `households` households.
fn busy_laptop(households: usize) -> Laptop {
    let laptop = laptop("generated");
    let mut store = Store::open(&laptop.db).unwrap();
    faenban_fixtures::populate(
        &mut store,
        &faenban_fixtures::Spec::khon_kaen(3, households),
    )
    .unwrap();
    laptop
}

on_both_stores! {
fn a_server_killed_mid_push_loses_no_acknowledged_change_and_applies_none_twice(backing: Backing) {
    let mut server = ServerProcess::start_on(backing);
    let laptop = busy_laptop(400);
    let total = laptop.unpushed();
    laptop.login(&server, &server.account("จังหวัด", "province", ""));

    // Kill the server while the laptop is pushing.
    let mut sync = laptop.cmd(&["sync", "--retries", "0"]);
    sync.timeout(Duration::from_secs(120));
    let handle = std::thread::spawn(move || sync.output().unwrap());
    // Wait until part of the outbox has arrived, then kill.
    for _ in 0..2000 {
        // Runs, not changes: any will do.
        let arrived = server.count("SELECT COUNT(*) FROM arrivals");
        if arrived > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let output = handle.join().unwrap();
    let left = laptop.unpushed();
    let (arrived, _, twice) = server.counts();
    assert_eq!(twice, 0);
    // What the laptop dropped, the server holds.
    assert!(
        total - left <= arrived as u64,
        "the laptop dropped {} changes but the server holds {arrived}",
        total - left
    );
    if !output.status.success() {
        assert_eq!(output.status.code(), Some(7), "network failure exit code");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("still on this laptop"), "{stderr}");
    }

    server.restart();
    laptop.sync();
    assert_eq!(laptop.unpushed(), 0);
    let (arrived, announced, twice) = server.counts();
    assert_eq!(arrived as u64, total);
    assert_eq!(announced as u64, total);
    assert_eq!(twice, 0);
    let province = self::laptop("จังหวัด");
    province.login(&server, &server.account("จังหวัด 2", "province", ""));
    province.sync();
    assert!(province.ok(&["export"]) == laptop.ok(&["export"]));
}
}

/// Starts `faenban sync` and SIGKILLs it after each delay in turn.
fn kill_syncs(laptop: &Laptop, delays_ms: &[u64]) {
    for delay_ms in delays_ms {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("faenban"))
            .arg("--db")
            .arg(&laptop.db)
            .args(["sync", "--retries", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
    }
}

on_both_stores! {
fn a_sync_killed_at_any_point_resumes(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let laptop = busy_laptop(300);
    let total = laptop.unpushed();
    // A district team's account, scoped: every batch must place each new
    // record it carries, so batches end between records.
    laptop.login(&server, &server.account("ทีมจังหวัด", "team", "40"));
    kill_syncs(&laptop, &[30, 120, 400]);
    laptop.sync();
    assert_eq!(laptop.unpushed(), 0);
    let (arrived, _, twice) = server.counts();
    assert_eq!((arrived as u64, twice), (total, 0));
    // A second laptop that pulled while being killed also ends complete.
    let other = self::laptop("ทีม");
    other.login(&server, &server.account("ทีม", "province", ""));
    kill_syncs(&other, &[50, 200]);
    other.sync();
    assert!(other.ok(&["export"]) == laptop.ok(&["export"]));
}
}

const YEARS_9_MS: i64 = 9 * 365 * 24 * 3600 * 1000;
const YEARS_11_MS: i64 = 11 * 365 * 24 * 3600 * 1000;

on_both_stores! {
fn laptops_whose_clocks_say_2035_and_2015_still_converge_and_do_not_win_forever(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let ahead = laptop("เครื่องเวลาเดินหน้า");
    let behind = laptop("เครื่องเวลาถอยหลัง");
    let office = laptop("สำนักงาน");
    ahead.login(&server, &server.account("ahead", "volunteer", VILLAGE));
    behind.login(&server, &server.account("behind", "volunteer", VILLAGE));
    office.login(&server, &server.account("office", "team", "4001"));
    let skewed = |laptop: &Laptop, skew: i64, args: &[&str]| {
        let output = laptop
            .cmd(args)
            .env("FAENBAN_CLOCK_SKEW_MS", skew.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    // The 2035 laptop records a household, and writes it into a bundle
    // before it ever syncs: that copy can no longer be re-stamped locally,
    // so the server re-stamps it.
    skewed(
        &ahead,
        YEARS_9_MS,
        &[
            "household",
            "add",
            "--house-code",
            "4001-012345-6",
            "--village",
            VILLAGE,
            "--address",
            "2035",
            "--welfare-card",
            "yes",
        ],
    );
    let bundle = tempfile::tempdir().unwrap();
    let file = bundle.path().join("ahead.bundle");
    skewed(
        &ahead,
        YEARS_9_MS,
        &["bundle", "export", file.to_str().unwrap()],
    );
    let summary: Value =
        serde_json::from_str(&skewed(&ahead, YEARS_9_MS, &["--json", "sync"])).unwrap();
    assert!(
        summary["clock_moved_ms"].as_i64().unwrap() < -YEARS_9_MS / 2,
        "{summary}"
    );
    assert!(
        summary["restamped_by_server"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // The 2015 laptop gets the household, then edits it offline with its
    // old clock.
    behind.sync();
    skewed(
        &behind,
        -YEARS_11_MS,
        &["household", "edit", "4001-012345-6", "--notes", "2015"],
    );
    let summary: Value =
        serde_json::from_str(&skewed(&behind, -YEARS_11_MS, &["--json", "sync"])).unwrap();
    assert!(
        summary["clock_moved_ms"].as_i64().unwrap() > YEARS_11_MS / 2,
        "{summary}"
    );
    office.sync();
    // The office, with a correct clock, edits the address afterwards: its
    // value shows, although the first value was stamped nine years ahead.
    edit(&office, "--address", "12 หมู่ 1");
    office.sync();
    skewed(&ahead, YEARS_9_MS, &["sync"]);
    skewed(&behind, -YEARS_11_MS, &["sync"]);
    let expected = office.ok(&["export"]);
    assert!(expected.contains("12 หมู่ 1") && expected.contains("2015"));
    assert!(ahead.ok(&["export"]) == expected, "the 2035 laptop differs");
    assert!(
        behind.ok(&["export"]) == expected,
        "the 2015 laptop differs"
    );
    // After correction, the 2035 laptop's new edits carry today's time.
    skewed(
        &ahead,
        YEARS_9_MS,
        &["household", "edit", "4001-012345-6", "--notes", "later"],
    );
    let store = Store::open(&ahead.db).unwrap();
    let (_, change) = store.outbox().unwrap().pop().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        change.stamp.hlc.wall_ms < now + 10 * 60 * 1000,
        "{change:?}"
    );
}
}

on_both_stores! {
fn what_the_account_may_never_send_is_refused_as_it_is_typed(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let volunteer = laptop("อสม.");
    volunteer.login(&server, &server.account("มาลี", "volunteer", "40010203"));
    // A household in another village: refused at once, nothing saved.
    let (code, stderr) = volunteer.fails(&[
        "--lang",
        "th",
        "household",
        "add",
        "--house-code",
        "4001-012345-6",
        "--village",
        "40010101",
        "--address",
        "1 หมู่ 1",
    ]);
    assert_eq!(code, 8);
    assert!(stderr.contains("ไม่อยู่ในพื้นที่ของบัญชีนี้"), "{stderr}");
    assert!(stderr.contains("ไม่ได้บันทึกอะไรเลย"), "{stderr}");
    // A volunteer does not keep the list of officials: the team does.
    let (code, stderr) = volunteer.fails(&[
        "--lang",
        "th",
        "official",
        "add",
        "--name",
        "นายสมชาย ตัวอย่าง",
        "--position",
        "นักวิชาการเกษตร",
        "--agency",
        "สำนักงานเกษตรอำเภอ",
    ]);
    assert_eq!(code, 8);
    assert!(stderr.contains("ทีมอำเภอหรือตำบลเป็นผู้บันทึก"), "{stderr}");
    assert_eq!(volunteer.unpushed(), 0);
    // The team records the official; the volunteer pairs it with a
    // household of its own village after a sync.
    let team = laptop("ทีมตำบล");
    team.login(&server, &server.account("ทีม", "team", "400102"));
    team.ok(&[
        "official",
        "add",
        "--name",
        "นายสมชาย ตัวอย่าง",
        "--position",
        "นักวิชาการเกษตร",
        "--agency",
        "สำนักงานเกษตรอำเภอ",
    ]);
    team.sync();
    volunteer.ok(&[
        "household",
        "add",
        "--house-code",
        "4001-000456-7",
        "--village",
        "40010203",
        "--address",
        "9 หมู่ 3",
    ]);
    volunteer.sync();
    volunteer.ok(&["pair", "นายสมชาย ตัวอย่าง", "4001-000456-7"]);
    let synced = volunteer.sync();
    assert_eq!(synced["held_back"].as_u64(), Some(0), "{synced}");
    assert_eq!(volunteer.unpushed(), 0);
}
}

on_both_stores! {
fn a_change_the_server_refuses_is_set_aside_and_the_rest_still_reaches_the_office(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let office = laptop("จังหวัด");
    office.login(&server, &server.account("จังหวัด", "province", ""));
    office.ok(&[
        "household",
        "add",
        "--house-code",
        "4001-000123-4",
        "--village",
        "40010203",
        "--address",
        "5 หมู่ 3",
    ]);
    office.sync();
    let volunteer = laptop("อสม.");
    volunteer.login(
        &server,
        &server.account("มาลี", "volunteer", "40010203,40010101"),
    );
    // A household in village 40010101; then the office narrows the
    // account before the laptop syncs: it is no longer this account's.
    volunteer.add_household();
    server.admin("account", "edit", &["--name", "มาลี", "--area", "40010203"]);
    // Work in its own village, recorded after the household now refused.
    volunteer.ok(&[
        "household",
        "add",
        "--house-code",
        "4001-000456-7",
        "--village",
        "40010203",
        "--address",
        "9 หมู่ 3",
    ]);
    let (code, stderr) = volunteer.fails(&["--lang", "en", "sync", "--retries", "0"]);
    assert_eq!(code, 8);
    assert!(stderr.contains("set aside"), "{stderr}");
    assert!(stderr.contains("outbox list"), "{stderr}");
    assert_eq!(volunteer.unpushed(), 0, "everything else went");
    // The refusal did not stop the pull: the office's household is here.
    assert!(volunteer.ok(&["export"]).contains("40010001234"));
    office.sync();
    let at_office = office.ok(&["export"]);
    assert!(
        at_office.contains("40010004567"),
        "the in-scope household arrived"
    );
    assert!(!at_office.contains("40010123456"));

    // The laptop shows what is held back, and why, in Thai.
    let status = volunteer.json(&["status"]);
    let held = status["held_back_changes"].as_u64().unwrap();
    assert!(held > 0, "{status}");
    assert_eq!(status["last_sync_problem"].as_str(), Some("held_back"));
    let listed = volunteer.ok(&["--lang", "th", "outbox", "list"]);
    assert!(listed.contains("นอกพื้นที่"), "{listed}");
    assert!(
        listed.contains(&format!("#1–{held}  ")),
        "one line per record: {listed}"
    );
    assert!(listed.contains("ครัวเรือน"), "{listed}");
    let shown = volunteer.json(&["outbox", "list"]);
    let first = shown["held_back"][0]["sequence"].as_u64().unwrap();
    assert!(volunteer
        .ok(&["--lang", "en", "outbox", "show", &first.to_string()])
        .contains("outside this account's scope"));
    // Syncing again sends nothing new and does not fail for what is already set aside.
    volunteer.ok(&["sync", "--retries", "0"]);

    // The office widens the account; the volunteer sends them again.
    server.admin(
        "account",
        "edit",
        &["--name", "มาลี", "--area", "40010203,40010101"],
    );
    let queued = volunteer.json(&["outbox", "retry"]);
    assert_eq!(queued["queued"].as_u64(), Some(held));
    let synced = volunteer.sync();
    assert_eq!(synced["held_back"].as_u64(), Some(0), "{synced}");
    assert_eq!(volunteer.unpushed(), 0);
    office.sync();
    assert!(office.ok(&["export"]).contains("40010123456"));
    let status = volunteer.json(&["status"]);
    assert_eq!(status["last_sync_problem"], Value::Null, "{status}");

    // A forged token: login refuses it, and keeps no settings.
    let stranger = laptop("ไม่รู้จัก");
    let forged = format!("fbn_{}", "ab".repeat(32));
    let (code, stderr) = stranger.fails(&[
        "--lang",
        "en",
        "login",
        "--server",
        &server.url(),
        "--token",
        &forged,
        "--retries",
        "0",
    ]);
    assert_eq!(code, 8);
    assert!(stderr.contains("bad_token"), "{stderr}");
    let (code, _) = stranger.fails(&["sync"]);
    assert_eq!(code, 3, "no server set");

    // A revoked account: sync refuses, and the laptop keeps its outbox.
    let team = laptop("ทีม");
    team.login(&server, &server.account("ทีม", "team", "4001"));
    team.add_household();
    server.revoke("ทีม");
    let (code, stderr) = team.fails(&["--lang", "en", "sync", "--retries", "0"]);
    assert_eq!(code, 8);
    assert!(stderr.contains("revoked"), "{stderr}");
    assert!(team.unpushed() > 0);
}
}

on_both_stores! {
fn a_dead_server_is_reported_and_the_outbox_kept(backing: Backing) {
    let mut server = ServerProcess::start_on(backing);
    let volunteer = laptop("อสม.");
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    volunteer.add_household();
    server.kill();
    let before = volunteer.unpushed();
    let (code, stderr) = volunteer.fails(&["--lang", "en", "sync", "--retries", "1"]);
    assert_eq!(code, 7);
    assert!(stderr.contains("could not be reached"), "{stderr}");
    assert!(stderr.contains("tried 2 times"), "{stderr}");
    assert_eq!(volunteer.unpushed(), before);
}
}

on_both_stores! {
fn a_bundle_carries_an_offline_laptops_work_to_the_server_and_the_answer_back(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let offline = laptop("อสม. บนดอย");
    let online = laptop("ทีมตำบล");
    let province = laptop("จังหวัด");
    online.login(&server, &server.account("ทีมตำบล", "team", "400101"));
    province.login(&server, &server.account("จังหวัด", "province", ""));
    // Set up at the office once (its key bound, the server's key learned),
    // then offline for good.
    offline.login(&server, &server.account("อสม. บนดอย", "volunteer", VILLAGE));
    // The province has something for the village already.
    province.ok(&[
        "household",
        "add",
        "--house-code",
        "4001-000123-4",
        "--village",
        VILLAGE,
        "--address",
        "5 หมู่ 1",
    ]);
    province.sync();

    offline.add_household();
    edit(&offline, "--notes", "บันทึกบนดอย");
    let pending = offline.unpushed();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("to-office.bundle");
    let back = dir.path().join("to-village.bundle");
    let exported = offline.json(&["bundle", "export", out.to_str().unwrap()]);
    assert_eq!(
        exported["outbox_changes"].as_u64(),
        Some(pending),
        "{exported}"
    );
    // Nothing in the file can be read: not the note, not the house code.
    let mut unpacked = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap()),
        &mut unpacked,
    )
    .unwrap();
    assert!(unpacked.contains("faenban-sealed-bundle"));
    assert!(!unpacked.contains("บันทึกบนดอย") && !unpacked.contains("40010001234"));
    assert!(!unpacked.contains(VILLAGE));
    let imported = online.json(&["bundle", "import", out.to_str().unwrap()]);
    assert_eq!(
        imported["letters_to_pass_on"].as_u64(),
        Some(1),
        "{imported}"
    );
    assert_eq!(imported["new"].as_u64(), Some(0), "{imported}");
    // The carrier holds the letter but cannot read it.
    assert!(!online.ok(&["export"]).contains("บันทึกบนดอย"));
    let synced = online.sync();
    assert_eq!(synced["letters_passed_on"].as_u64(), Some(1), "{synced}");
    online.ok(&["bundle", "export", back.to_str().unwrap()]);
    let taken = offline.json(&["bundle", "import", back.to_str().unwrap()]);
    assert_eq!(
        taken["acknowledged_through"].as_u64(),
        Some(pending),
        "{taken}"
    );
    assert!(taken["new"].as_u64().unwrap() > 0, "{taken}");

    assert_eq!(
        offline.unpushed(),
        0,
        "the server's acknowledgement came back"
    );
    province.sync();
    let expected = province.ok(&["export"]);
    assert!(expected.contains("บันทึกบนดอย") && expected.contains("40010001234"));
    assert!(offline.ok(&["export"]) == expected);
    assert!(online.ok(&["export"]) == expected);

    // A damaged bundle is refused whole.
    let bytes = std::fs::read(&out).unwrap();
    let cut = dir.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, stderr) = online.fails(&["--lang", "en", "bundle", "import", cut.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(stderr.contains("nothing was imported"), "{stderr}");
}
}

on_both_stores! {
fn a_laptop_restored_from_a_backup_renumbers_its_outbox_and_loses_nothing(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let volunteer = laptop("อสม.");
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    volunteer.add_household();
    volunteer.sync();
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("backup.db");
    // A backup with the household not yet acknowledged, as the file was
    // before the first sync: copy it through SQLite so the copy is whole.
    edit(&volunteer, "--notes", "ก่อนสำรอง");
    {
        let connection = rusqlite::Connection::open(&volunteer.db).unwrap();
        connection
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
    }
    volunteer.sync();
    edit(&volunteer, "--notes", "หลังสำรอง");
    volunteer.sync();
    // The laptop is restored from the backup, and work goes on.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", volunteer.db.display()));
    }
    std::fs::copy(&copy, &volunteer.db).unwrap();
    edit(&volunteer, "--address", "หลังกู้คืน");
    edit(&volunteer, "--livelihood", "labourer");
    let output = volunteer.cmd(&["--lang", "en", "sync"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("renumbered"));
    assert_eq!(volunteer.unpushed(), 0);
    let province = laptop("จังหวัด");
    province.login(&server, &server.account("จังหวัด", "province", ""));
    province.sync();
    let merged = province.ok(&["export"]);
    for text in ["หลังกู้คืน", "labourer"] {
        assert!(merged.contains(text), "{text} reached the server");
    }
    volunteer.sync();
    assert!(volunteer.ok(&["export"]) == merged);
}
}

/// A TLS server whose certificate no public authority signed: `openssl
/// s_server` with a fresh self-signed certificate for 127.0.0.1.
struct SelfSignedServer {
    child: std::process::Child,
    port: u16,
    certificate: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SelfSignedServer {
    fn start() -> SelfSignedServer {
        let dir = tempfile::tempdir().unwrap();
        let certificate = dir.path().join("office-ca.pem");
        let key = dir.path().join("key.pem");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .output()
            .expect("openssl is needed for the TLS test (Debian package openssl)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("openssl")
            // With nothing on its input, s_server completes each handshake
            // and hangs up: enough to tell a refused certificate from an
            // accepted one.
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&certificate)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        SelfSignedServer {
            child,
            port,
            certificate,
            _dir: dir,
        }
    }
}

impl Drop for SelfSignedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_untrusted_certificate_is_refused_and_an_office_ca_can_be_trusted() {
    let tls = SelfSignedServer::start();
    let volunteer = laptop("อสม.");
    let url = format!("https://127.0.0.1:{}", tls.port);
    let token = format!("fbn_{}", "ab".repeat(32));
    let (code, stderr) = volunteer.fails(&[
        "--lang",
        "en",
        "login",
        "--server",
        &url,
        "--token",
        &token,
        "--retries",
        "0",
    ]);
    assert_eq!(code, 7);
    assert!(stderr.contains("certificate is not trusted"), "{stderr}");
    assert!(stderr.contains("--ca"), "{stderr}");
    // Trusting the office's certificate gets past TLS; the server behind it
    // hangs up, and that is what is reported now.
    let (code, stderr) = volunteer.fails(&[
        "--lang",
        "en",
        "login",
        "--server",
        &url,
        "--token",
        &token,
        "--retries",
        "0",
        "--ca",
        tls.certificate.to_str().unwrap(),
    ]);
    assert_eq!(code, 7);
    assert!(!stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("could not be reached"), "{stderr}");
    let (code, _) = volunteer.fails(&["sync"]);
    assert_eq!(code, 3, "a failed login keeps no server");
}

#[test]
fn a_server_restored_from_a_backup_is_pulled_again_from_the_start() {
    let mut server = ServerProcess::start();
    let province = laptop("จังหวัด");
    province.login(&server, &server.account("จังหวัด", "province", ""));
    province.sync();
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("server.db");
    rusqlite::Connection::open(server.database())
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let volunteer = laptop("อสม.");
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    volunteer.add_household();
    for note in ["หนึ่ง", "สอง", "สาม", "สี่", "ห้า", "หก", "เจ็ด"]
    {
        edit(&volunteer, "--notes", note);
    }
    volunteer.sync();
    province.sync();
    // The server's disk is replaced by the backup, from before all that.
    server.kill();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", server.database().display()));
    }
    std::fs::copy(&copy, server.database()).unwrap();
    server.restart();
    // The province's cursor is beyond the restored feed. New work arrives
    // under the numbers it has already passed...
    let fresh = laptop("ทีม");
    fresh.login(&server, &server.account("ทีม", "team", "4001"));
    fresh.ok(&[
        "household",
        "add",
        "--house-code",
        "4001-000123-4",
        "--village",
        VILLAGE,
        "--address",
        "5 หมู่ 1",
    ]);
    fresh.sync();
    // ...and still reaches the province, which pulls again from the start.
    province.sync();
    assert!(province.ok(&["export"]).contains("40010001234"));
    // The volunteer's household was acknowledged, then lost with the
    // restore (the account too, made after the backup: it is made again).
    // Its next sync sends everything again, and it arrives.
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    edit(&volunteer, "--notes", "หลังกู้คืนเซิร์ฟเวอร์");
    let output = volunteer.cmd(&["--lang", "en", "sync"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("sending all of this laptop's changes again"));
    assert_eq!(volunteer.unpushed(), 0);
    province.sync();
    let merged = province.ok(&["export"]);
    assert!(merged.contains("40010123456") && merged.contains("หลังกู้คืนเซิร์ฟเวอร์"));
    volunteer.sync();
    assert!(volunteer.ok(&["export"]) == merged);
}

on_both_stores! {
fn a_released_device_logs_in_under_a_team_account_and_its_outbox_arrives_whole(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let laptop = laptop("เครื่องของอำเภอ");
    laptop.login(&server, &server.account("มาลี", "volunteer", "40010101"));
    laptop.add_household();
    laptop.sync();
    // Later work, not yet sent when the laptop is handed to the team.
    edit(&laptop, "--notes", "ก่อนส่งต่อ");
    let waiting = laptop.unpushed();
    assert!(waiting > 0);
    let team = server.account("ทีมอำเภอ", "team", "4001");
    // Bound to the volunteer's account: the team's token is refused.
    let (code, stderr) = laptop.fails(&[
        "--lang",
        "en",
        "login",
        "--server",
        &server.url(),
        "--token",
        &team,
        "--retries",
        "0",
    ]);
    assert_eq!(code, 8);
    assert!(stderr.contains("wrong_device"), "{stderr}");
    // The administrator releases it; the team logs in and its outbox goes.
    let device = laptop.json(&["status"])["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.admin("device", "release", &["--device", &device]);
    laptop.login(&server, &team);
    let synced = laptop.sync();
    assert_eq!(synced["pushed"].as_u64(), Some(waiting), "{synced}");
    assert_eq!(laptop.unpushed(), 0);
    let listed = server.admin("device", "list", &["--account", "ทีมอำเภอ"]);
    assert!(listed.contains(&device), "{listed}");
}
}

on_both_stores! {
fn an_office_sets_up_a_programme_of_accounts_from_one_list(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("accounts.csv");
    let mut csv = String::from("\u{feff}name,role,areas,dimension\n");
    for n in 0..200 {
        csv.push_str(&format!("อสม. {n},volunteer,4001{:04},\n", 101 + n % 3));
    }
    csv.push_str("คณะทำงานด้านรายได้,dimension,40,income\n");
    std::fs::write(&list, &csv).unwrap();
    let tokens = dir.path().join("tokens.csv");
    server.admin(
        "account",
        "import",
        &[
            "--file",
            list.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
        ],
    );
    let written = std::fs::read_to_string(&tokens).unwrap();
    assert_eq!(
        written.lines().count(),
        202,
        "a header and one line per account"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&tokens).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Each token is that account's.
    let line = written
        .lines()
        .find(|line| line.starts_with("อสม. 7,"))
        .unwrap();
    let token = line.split(',').nth(1).unwrap();
    let laptop = laptop("อสม. 7");
    laptop.login(&server, token);
    assert_eq!(laptop.json(&["status"])["device_name"], "อสม. 7");
    // A list with a bad row adds nothing and writes no tokens.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "name,role,areas\nก,volunteer,40010101\nข,chief,40010101\n",
    )
    .unwrap();
    let again = dir.path().join("again.csv");
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("faenban-server"))
        .args(["account", "import", "--data"])
        .arg(server.data.path())
        .args([
            "--file",
            bad.to_str().unwrap(),
            "--tokens",
            again.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 3"));
    assert!(!again.exists());
    let listed = server.admin("account", "list", &[]);
    assert!(!listed.contains("\nก "), "{listed}");
}
}

on_both_stores! {
fn conflicts_and_history_name_the_other_laptop_and_its_account(backing: Backing) {
    let server = ServerProcess::start_on(backing);
    let malee = laptop("เครื่องบ้านโนนสูง");
    let somsri = laptop("เครื่องบ้านโคก");
    malee.login(&server, &server.account("อสม. มาลี", "volunteer", VILLAGE));
    somsri.login(&server, &server.account("อสม. สมศรี", "volunteer", VILLAGE));
    malee.add_household();
    malee.sync();
    somsri.sync();
    edit(&malee, "--address", "12 หมู่ 1 (หน้าวัด)");
    edit(&somsri, "--address", "12/1 หมู่ 1");
    somsri.sync();
    malee.sync();
    let shown = malee.ok(&["--lang", "th", "conflicts", "show", "4001-012345-6"]);
    assert!(shown.contains("เครื่องบ้านโคก (อสม. สมศรี)"), "{shown}");
    assert!(shown.contains("เครื่องนี้"), "{shown}");
    let history = malee.ok(&["--lang", "th", "history", "4001-012345-6"]);
    assert!(
        history.contains("เครื่องบ้านโคก (อสม. สมศรี)  ที่อยู่ = 12/1 หมู่ 1"),
        "{history}"
    );
}
}

#[test]
fn a_server_moved_from_sqlite_to_postgresql_keeps_its_laptops_logins_cursors_and_outboxes() {
    let mut server = ServerProcess::start();
    let volunteer = laptop("อสม. มาลี");
    let province = laptop("สำนักงานจังหวัด");
    volunteer.login(&server, &server.account("มาลี", "volunteer", VILLAGE));
    province.login(&server, &server.account("จังหวัด", "province", ""));
    volunteer.add_household();
    volunteer.add_member("มาลี", "female", "head");
    let pushed = volunteer.sync();
    assert!(pushed["pushed"].as_u64().unwrap() > 5, "{pushed}");
    let first = province.sync();
    let pulled_before = first["pulled"].as_u64().unwrap();
    assert!(pulled_before > 5, "{first}");
    // Recorded offline while the office moves the server.
    edit(&volunteer, "--notes", "ย้ายเครื่องแม่ข่ายแล้ว");
    volunteer.add_member("สมชาย", "male", "spouse");
    let waiting = volunteer.unpushed();
    assert!(waiting >= 2);

    let said = server.move_to_postgres();
    assert!(said.contains("moved 2 accounts"), "{said}");

    // The same logins push what waited, and the province pulls only what
    // is new: its cursor still holds on the moved feed.
    let after = volunteer.sync();
    assert_eq!(after["pushed"].as_u64(), Some(waiting), "{after}");
    assert_eq!(volunteer.unpushed(), 0);
    let second = province.sync();
    assert_eq!(second["pulled"].as_u64(), Some(waiting), "{second}");
    assert!(
        province.ok(&["export", "--format", "json"])
            == volunteer.ok(&["export", "--format", "json"]),
        "the province's export differs from the volunteer's"
    );
    // A laptop new to the moved server pulls everything, the same.
    let office = laptop("สำนักงานจังหวัด 2");
    office.login(&server, &server.account("จังหวัด 2", "province", ""));
    let whole = office.sync();
    assert_eq!(
        whole["pulled"].as_u64(),
        Some(pulled_before + waiting),
        "{whole}"
    );
    assert!(
        office.ok(&["export", "--format", "json"]) == province.ok(&["export", "--format", "json"])
    );
}
