//! `faenban login` and `faenban sync`: push the outbox in batches, hand the
//! server the sealed letters carried in from bundles (keeping its sealed
//! replies to take back), pull what others recorded since the cursor, and
//! correct the laptop's clock by the server's.
//!
//! Each step commits on its own, so a sync killed at any point is simply
//! run again: pushes the server holds are recognized, and the pull resumes
//! from the last page kept.

use std::time::Duration;

use anyhow::Context as _;
use faenban_core::sync::{
    ChangeSet, HelloRequest, PushRequest, RelayRequest, MAX_BATCH_BYTES, MAX_BATCH_CHANGES,
    PROTOCOL_VERSION,
};
use faenban_core::RefusalCode;
use faenban_keys::DeviceKey;
use faenban_store::bundle::SealedBytes;
use faenban_store::sync::{OutboxRun, SyncSettings};
use faenban_store::SCHEMA_VERSION;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{now_ms, Context};

use crate::client::{Client, ClientError, Retry};
use crate::failure::{Failure, Kind};

/// How the last sync ended, when it did not go through whole: `refused`
/// (the server refused a request) or `held_back` (it refused some changes).
pub(super) const LAST_SYNC_PROBLEM: &str = "last_sync_problem";

/// Where a custom certificate authority is kept in the database's settings.
const CA_KEY: &str = "server_ca_pem";

/// `faenban login`: checks the token with the server and stores both.
pub fn login(
    context: &mut Context,
    server: &str,
    token: Option<String>,
    ca: Option<&std::path::Path>,
    retries: u32,
) -> anyhow::Result<()> {
    let device = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let token = match token {
        Some(token) => token,
        None => read_token(context)?,
    };
    let ca_pem = ca
        .map(|path| {
            std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))
        })
        .transpose()?;
    let client = Client::new(server, token.trim(), ca_pem.as_deref(), retry(retries))
        .map_err(|error| network_failure(context, error))?;
    let key = device_key(context)?;
    let hello = say_hello(&client, &device, &key, token.trim())
        .map_err(|error| network_failure(context, error))?;
    context.store.set_server_key(&hello.server_key)?;
    context.store.set_account_scope(Some(&scope_of(&hello)))?;
    context.store.set_sync_settings(&SyncSettings {
        server: server.trim_end_matches('/').to_owned(),
        token: token.trim().to_owned(),
    })?;
    context.store.set_setting(
        CA_KEY,
        ca_pem.as_deref().map(String::from_utf8_lossy).as_deref(),
    )?;
    if server.starts_with("http://") && !is_loopback(server) {
        eprintln!(
            "{}",
            context.lang.pick(
                "คำเตือน: เชื่อมต่อแบบ http:// ไม่เข้ารหัส ใช้ได้เฉพาะในเครือข่ายที่ไว้ใจได้",
                "warning: http:// is not encrypted; use it only on a network you trust",
            )
        );
    }
    if context.json {
        say!(
            "{}",
            serde_json::json!({
                "server": server,
                "account": hello.account,
                "role": hello.role,
                "areas": hello.areas,
            })
        );
    } else {
        say!(
            "{} {} ({}) @ {}",
            context.lang.pick("เข้าสู่ระบบแล้ว:", "logged in:"),
            hello.account,
            hello.role.as_str(),
            server
        );
    }
    Ok(())
}

fn is_loopback(server: &str) -> bool {
    let host = server
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn read_token(context: &Context) -> anyhow::Result<String> {
    eprint!(
        "{} ",
        context.lang.pick(
            "วางโทเคนที่ได้จากผู้ดูแลระบบ:",
            "paste the token from the administrator:"
        )
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the token")?;
    if line.trim().is_empty() {
        return Err(Failure::new(
            Kind::BadInput,
            context.lang,
            "ไม่ได้ใส่โทเคน",
            "no token was given",
        )
        .into());
    }
    Ok(line)
}

fn retry(retries: u32) -> Retry {
    Retry {
        retries,
        first_delay: Duration::from_millis(500),
    }
}

/// What one sync did, for the summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    pushed: u64,
    already_on_server: u64,
    letters_passed_on: u64,
    letters_dropped: u64,
    held_back_now: u64,
    held_back: u64,
    restamped_by_server: u64,
    pulled: u64,
    pulled_already_held: u64,
    new_conflicts: u64,
    clock_moved_ms: i64,
    restamped_here: u64,
    unpushed: u64,
}

/// `faenban sync`.
pub fn sync(context: &mut Context, retries: u32) -> anyhow::Result<()> {
    super::refuse_damaged(context)?;
    let device = context
        .store
        .device()?
        .ok_or(faenban_store::Error::NotInitialized)?;
    let Some(settings) = context.store.sync_settings()? else {
        return Err(Failure::new(
            Kind::BadInput,
            context.lang,
            "ยังไม่ได้เข้าสู่ระบบเซิร์ฟเวอร์ ให้รัน `faenban login --server URL` ก่อน",
            "this laptop has no server yet; run `faenban login --server URL` first",
        )
        .into());
    };
    let ca = context.store.setting(CA_KEY)?;
    let client = Client::new(
        &settings.server,
        &settings.token,
        ca.as_deref().map(str::as_bytes),
        retry(retries),
    )
    .map_err(|error| network_failure(context, error))?;
    let mut summary = Summary::default();
    let conflicts_before = context.store.status()?.conflicts;

    // Hello: the server's time (to correct our clock) and how much of our
    // outbox it already holds (an answer lost last time).
    let key = device_key(context)?;
    let asked_at = now_ms();
    let hello = say_hello(&client, &device, &key, &settings.token)
        .map_err(|error| network_failure(context, error))?;
    let answered_at = now_ms();
    let local_midpoint = asked_at + answered_at.saturating_sub(asked_at) / 2;
    context.store.set_server_key(&hello.server_key)?;
    // What the account may record, for the laptop to say so as it is typed.
    context.store.set_account_scope(Some(&scope_of(&hello)))?;
    let correction = context
        .store
        .correct_clock(hello.server_time_ms, local_midpoint)?;
    summary.clock_moved_ms = correction.moved_ms;
    summary.restamped_here = correction.restamped;

    // A refused push does not stop the sync: what others recorded is still
    // pulled, and the refusal is reported at the end.
    let mut refusal: Option<Failure> = None;
    let unpushed = context.store.status()?.unpushed;
    let bar = progress(unpushed, context.lang.pick("ส่ง", "push"));
    let mut realigned = std::collections::HashSet::new();
    // Our own outbox. The server recognizes what it already holds (an
    // answer lost last time), so the outbox is sent from its start.
    while let Some(run) = context.store.outbox_run(MAX_BATCH_CHANGES)? {
        let run = run.fit(MAX_BATCH_CHANGES, MAX_BATCH_BYTES);
        let last = run.last_sequence();
        context.store.mark_shared(last)?;
        let response = match push_run(&client, &run, &key) {
            Ok(response) => response,
            Err(ClientError::Refused { code, .. })
                if matches!(
                    RefusalCode::from_name(&code),
                    Some(RefusalCode::SequenceReused | RefusalCode::SequenceGap)
                ) && realigned.insert(code.clone()) =>
            {
                // The outbox's numbering disagrees with the server's, each
                // way at most once per sync. `sequence_reused`: this file
                // reuses numbers the server holds for other changes (it was
                // restored from a backup, or copied), so the outbox moves
                // after them. `sequence_gap`: the server lost changes it had
                // acknowledged (it was restored from a backup), so everything
                // this laptop ever recorded goes again; the server applies
                // once what it lacks.
                let held = say_hello(&client, &device, &key, &settings.token)
                    .map_err(|error| network_failure(context, error))?
                    .held_through;
                let (count, th, en) = if RefusalCode::from_name(&code)
                    == Some(RefusalCode::SequenceReused)
                {
                    (
                        context.store.renumber_outbox_after(held)?,
                        "ไฟล์นี้ใช้เลขลำดับที่เซิร์ฟเวอร์มีอยู่แล้ว (อาจกู้คืนจากสำเนา) จัดเลขใหม่ให้การแก้ไขที่รอส่ง:",
                        "this file reuses sequence numbers the server already holds (restored from a backup?); renumbered waiting changes:",
                    )
                } else {
                    (
                        context.store.requeue_own_changes_after(held)?,
                        "เซิร์ฟเวอร์ขาดข้อมูลที่เคยรับไปแล้ว (อาจกู้คืนจากสำเนา) ส่งการแก้ไขทั้งหมดของเครื่องนี้ใหม่:",
                        "the server lacks changes it had acknowledged (restored from a backup?); sending all of this laptop's changes again:",
                    )
                };
                eprintln!("{} {count}", context.lang.pick(th, en));
                continue;
            }
            Err(error @ ClientError::Refused { .. }) => {
                refusal = Some(network_failure(context, error));
                break;
            }
            Err(error) => return Err(network_failure(context, error).into()),
        };
        summary.pushed += u64::from(response.applied);
        summary.already_on_server += u64::from(response.duplicates);
        summary.restamped_by_server += u64::from(response.restamped);
        bar.inc(run.changes.len() as u64);
        // Only what this batch covered: the server's highest held sequence
        // may be above it (a file restored from a backup), and changes
        // beyond this batch have not been compared with what it holds.
        let held_through = response.held_through.min(last);
        summary.held_back_now += response
            .held_back
            .iter()
            .filter(|held| held.sequence <= held_through)
            .count() as u64;
        context
            .store
            .acknowledge(now_ms(), held_through, None, &response.held_back)?;
        if response.held_through < last {
            return Err(anyhow::anyhow!(
                "the server kept this laptop's outbox only through {}, not {last}",
                response.held_through
            ));
        }
    }
    bar.finish_and_clear();
    // Letters other laptops sealed to the server, carried here in bundles.
    // An answered letter goes, and its sealed reply is kept to take back.
    for carried in context.store.carried_letters()? {
        let device = carried.item.device;
        let request = RelayRequest {
            protocol: PROTOCOL_VERSION,
            device,
            letter: faenban_keys::hex(&carried.item.body),
        };
        match client.relay(&request) {
            Ok(response) => {
                let body = faenban_keys::unhex_vec(&response.reply)
                    .filter(|_| response.device == device)
                    .ok_or_else(|| {
                        network_failure(
                            context,
                            ClientError::BadAnswer("a relay's reply is not sealed bytes".into()),
                        )
                    })?;
                context.store.letter_answered(
                    now_ms(),
                    carried.id,
                    Some(SealedBytes { device, body }),
                )?;
                summary.letters_passed_on += 1;
            }
            // Refused for this account (its token), not for the letter:
            // the letter stays, to try again.
            Err(error @ ClientError::Refused { status: 401, .. }) => {
                refusal.get_or_insert(network_failure(context, error));
                break;
            }
            Err(ClientError::Refused { code, .. }) => {
                // The server will never take this letter (damaged, or of a
                // laptop it does not know). Nothing is lost: that laptop
                // keeps its outbox until a reply says the server holds it.
                context.store.letter_answered(now_ms(), carried.id, None)?;
                summary.letters_dropped += 1;
                eprintln!(
                    "{} {device} ({code})",
                    context.lang.pick(
                        "เซิร์ฟเวอร์ไม่รับจดหมายที่ฝากมาจากเครื่อง (ข้อมูลยังอยู่ที่เครื่องนั้น ให้ส่งมาใหม่):",
                        "the server will not take a letter carried for laptop (its data is still on that laptop; it can send it again):"
                    )
                );
            }
            Err(error) => return Err(network_failure(context, error).into()),
        }
    }

    // Pull: each page is applied with its cursor in one transaction.
    let spinner = progress(0, context.lang.pick("รับ", "pull"));
    let mut cursor = context.store.pull_cursor()?;
    let mut check = context.store.pull_check()?;
    loop {
        let page = match client.pull(cursor, check.as_deref(), 1000) {
            Ok(page) => page,
            Err(ClientError::Refused { code, .. })
                if RefusalCode::from_name(&code) == Some(RefusalCode::CursorAhead)
                    && cursor > 0 =>
            {
                // The server was restored from a backup: pull everything
                // again; what is already here counts as duplicates.
                cursor = 0;
                check = None;
                continue;
            }
            Err(error) => return Err(network_failure(context, error).into()),
        };
        let changes = page
            .changes
            .decode()
            .map_err(|error| network_failure(context, ClientError::BadAnswer(error.to_string())))?;
        let count = changes.len() as u64;
        context.store.remember_devices(&page.devices)?;
        let received =
            context
                .store
                .apply_pulled(now_ms(), changes, page.next, page.check.as_deref())?;
        summary.pulled += received.new;
        summary.pulled_already_held += received.duplicates;
        spinner.inc(count);
        cursor = page.next;
        check = page.check;
        if !page.more {
            break;
        }
    }
    spinner.finish_and_clear();
    context.store.finish_sync(now_ms())?;
    let status = context.store.status()?;
    summary.new_conflicts = status.conflicts.saturating_sub(conflicts_before);
    summary.unpushed = status.unpushed;
    summary.held_back = status.held_back;
    // `status` tells a sync that went through from one that did not.
    let problem = if refusal.is_some() {
        Some("refused")
    } else if summary.held_back_now > 0 {
        Some("held_back")
    } else {
        None
    };
    context.store.set_setting(LAST_SYNC_PROBLEM, problem)?;
    print_summary(context, &summary);
    if let Some(refusal) = refusal {
        return Err(refusal.into());
    }
    if summary.held_back_now > 0 {
        return Err(held_back_failure(context, summary.held_back_now)?.into());
    }
    Ok(())
}

/// The account's scope, as a hello answers it.
fn scope_of(hello: &faenban_core::sync::HelloResponse) -> faenban_core::sync::Scope {
    faenban_core::sync::Scope {
        role: hello.role,
        areas: hello.areas.clone(),
        dimension: hello.dimension,
    }
}

/// This laptop's signing key.
pub(super) fn device_key(context: &Context) -> anyhow::Result<DeviceKey> {
    Ok(context
        .store
        .device_key()?
        .ok_or(faenban_store::Error::NotInitialized)?)
}

/// Introduces this laptop to the server, proving that it holds its key.
fn say_hello(
    client: &Client,
    device: &faenban_store::DeviceInfo,
    key: &DeviceKey,
    token: &str,
) -> Result<faenban_core::sync::HelloResponse, ClientError> {
    client.hello(&HelloRequest {
        protocol: PROTOCOL_VERSION,
        device: device.id,
        name: device.name.clone(),
        public_key: key.public().to_string(),
        proof: key.sign_hello(device.id, token).to_string(),
    })
}

/// Pushes a run of this laptop's outbox, signed here with `key`.
fn push_run(
    client: &Client,
    run: &OutboxRun,
    key: &DeviceKey,
) -> Result<faenban_core::sync::PushResponse, ClientError> {
    client.push(&PushRequest {
        protocol: PROTOCOL_VERSION,
        schema: SCHEMA_VERSION,
        device: run.device,
        relay: false,
        first_sequence: run.first_sequence,
        changes: ChangeSet::encode(&run.changes),
        signature: key
            .sign_run(run.device, run.first_sequence, &run.changes)
            .to_string(),
        public_key: None,
    })
}

fn progress(length: u64, label: &str) -> ProgressBar {
    let bar = if length > 0 {
        ProgressBar::new(length)
    } else {
        ProgressBar::new_spinner()
    };
    let template = if length > 0 {
        "{prefix} [{bar:30}] {pos}/{len}"
    } else {
        "{prefix} {spinner} {pos}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}

fn print_summary(context: &Context, summary: &Summary) {
    if context.json {
        say!(
            "{}",
            serde_json::to_string(summary).unwrap_or_else(|_| "{}".into())
        );
        return;
    }
    let lang = context.lang;
    say!(
        "{} {} ({} {})",
        lang.pick("ส่งแล้ว:", "pushed:"),
        summary.pushed,
        summary.already_on_server,
        lang.pick("มีบนเซิร์ฟเวอร์อยู่แล้ว", "already on the server")
    );
    if summary.letters_passed_on > 0 {
        say!(
            "{} {}",
            lang.pick(
                "ส่งจดหมายที่ฝากมาจากเครื่องอื่นแล้ว (คำตอบรอส่งกลับในไฟล์ชุดข้อมูล):",
                "letters passed on for other laptops (their replies go back in a bundle):"
            ),
            summary.letters_passed_on
        );
    }
    say!(
        "{} {} ({} {})",
        lang.pick("รับมา:", "pulled:"),
        summary.pulled,
        summary.pulled_already_held,
        lang.pick("มีอยู่แล้ว", "already here")
    );
    say!(
        "{} {}",
        lang.pick("ข้อมูลขัดแย้งใหม่:", "new conflicts:"),
        summary.new_conflicts
    );
    say!(
        "{} {}",
        lang.pick("ปรับนาฬิกาเครื่อง (มิลลิวินาที):", "clock corrected by (ms):"),
        summary.clock_moved_ms
    );
    if summary.restamped_here + summary.restamped_by_server > 0 {
        say!(
            "{} {}",
            lang.pick(
                "การแก้ไขที่เวลาเครื่องล้ำอนาคต ถูกประทับเวลาใหม่:",
                "changes stamped in the future, re-stamped:"
            ),
            summary.restamped_here + summary.restamped_by_server
        );
    }
    if summary.unpushed > 0 {
        say!(
            "{} {}",
            lang.pick("ยังไม่ได้ส่ง:", "still unpushed:"),
            summary.unpushed
        );
    }
    if summary.held_back > 0 {
        say!(
            "{} {} ({})",
            lang.pick(
                "เซิร์ฟเวอร์ไม่รับ พักไว้ในเครื่อง:",
                "refused by the server, set aside here:"
            ),
            summary.held_back,
            lang.pick("ดูด้วย faenban outbox list", "see faenban outbox list")
        );
    }
}

/// The failure a sync ends with when the server refused some changes (the
/// rest went): how many, why, and what to do.
fn held_back_failure(context: &Context, new: u64) -> anyhow::Result<Failure> {
    let held = context.store.held_back()?;
    let mut reasons: Vec<&str> = held.iter().map(|held| held.code.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let th: Vec<&str> = reasons.iter().map(|code| refusal_th(code)).collect();
    Ok(Failure::new(
        Kind::Refused,
        context.lang,
        format!(
            "เซิร์ฟเวอร์ไม่รับการแก้ไข {new} รายการ ({}) จึงพักไว้ในเครื่อง การแก้ไขอื่นส่งครบแล้ว ดูรายการด้วย `faenban outbox list` เมื่อแก้ที่สาเหตุแล้ว (เช่น อำเภอเพิ่มพื้นที่ให้บัญชี) ให้รัน `faenban outbox retry` แล้ว sync อีกครั้ง",
            th.join("; ")
        ),
        format!(
            "the server refused {new} changes ({}); they are set aside on this laptop and everything else was sent; see them with `faenban outbox list`, and once the cause is fixed (the office widened the account, say) run `faenban outbox retry` and sync again",
            reasons.join(", ")
        ),
    ))
}

/// A client failure as a message the user can act on, with its exit code.
fn network_failure(context: &Context, error: ClientError) -> Failure {
    let lang = context.lang;
    match &error {
        ClientError::Network(_) => Failure::new(
            Kind::Network,
            lang,
            format!("ติดต่อเซิร์ฟเวอร์ไม่ได้ ข้อมูลในเครื่องยังอยู่ครบ ลองใหม่เมื่อมีสัญญาณ ({error})"),
            format!("{error}; everything recorded is still on this laptop, sync again when online"),
        ),
        ClientError::Refused { code, .. } => {
            let th = refusal_th(code);
            Failure::new(
                Kind::Refused,
                lang,
                format!("{th} ({error}) ข้อมูลในเครื่องยังอยู่ครบ"),
                format!("{error}; everything recorded is still on this laptop"),
            )
        }
        ClientError::BadAddress { th, en } => Failure::new(Kind::BadInput, lang, th, en),
        ClientError::Setup(_) => Failure::new(
            Kind::Network,
            lang,
            format!("ตั้งค่าการเชื่อมต่อที่ปลอดภัย (HTTPS) กับเซิร์ฟเวอร์ไม่ได้ ({error})"),
            format!("{error}"),
        ),
        ClientError::BadAnswer(_) => Failure::new(
            Kind::Network,
            lang,
            format!("อ่านคำตอบของเซิร์ฟเวอร์ไม่ได้ ข้อมูลในเครื่องยังอยู่ครบ ({error})"),
            format!("{error}"),
        ),
    }
}

/// What a refusal code of the server means, in Thai.
pub(super) fn refusal_th(code: &str) -> &'static str {
    use RefusalCode as C;
    match RefusalCode::from_name(code) {
        Some(C::BadToken | C::MissingToken) => {
            "เซิร์ฟเวอร์ไม่รู้จักโทเคนนี้ ตรวจโทเคนแล้วรัน faenban login ใหม่"
        }
        Some(C::Revoked) => "บัญชีนี้ถูกยกเลิกแล้ว ติดต่อผู้ดูแลระบบเพื่อขอโทเคนใหม่",
        Some(C::OutOfScope) => "การแก้ไขอยู่นอกพื้นที่หรือนอกหน้าที่ที่บัญชีนี้รับผิดชอบ",
        Some(C::WrongDevice) => "เครื่องนี้ผูกกับบัญชีอื่นบนเซิร์ฟเวอร์แล้ว",
        Some(C::WrongKey | C::BadSignature) => {
            "เซิร์ฟเวอร์ยืนยันกุญแจของเครื่องนี้ไม่ได้ (รหัสเครื่องผูกกับกุญแจอื่น หรือข้อมูลถูกแก้ระหว่างทาง)"
        }
        Some(C::LimitExceeded | C::BadValue) => "มีการแก้ไขที่ค่าใหญ่เกินหรือรูปแบบไม่ถูกต้อง เซิร์ฟเวอร์ไม่รับทั้งชุด",
        Some(C::StampReused) => "เซิร์ฟเวอร์มีการแก้ไขอื่นภายใต้ตราเวลาเดียวกันอยู่แล้ว",
        Some(C::ProtocolVersion | C::SchemaVersion) => {
            "โปรแกรม faenban ในเครื่องนี้หรือบนเซิร์ฟเวอร์เก่าเกินไป ให้อัปเดต"
        }
        Some(C::Busy | C::ShuttingDown) => "เซิร์ฟเวอร์ไม่ว่างหรือกำลังปิด ลอง sync ใหม่อีกสักครู่",
        Some(C::DiskFull | C::ReadOnly | C::Storage | C::Internal) => {
            "เซิร์ฟเวอร์มีปัญหาภายใน ไม่ได้เก็บอะไรจากคำขอนี้ ลอง sync ใหม่ภายหลัง"
        }
        Some(C::UnknownDevice) => "เซิร์ฟเวอร์ยังไม่รู้จักเครื่องนี้ ให้ sync ใหม่ตั้งแต่ต้น",
        _ => "เซิร์ฟเวอร์ไม่รับคำขอ",
    }
}
