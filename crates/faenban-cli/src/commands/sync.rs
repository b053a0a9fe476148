//! `faenban login` and `faenban sync`, as a person sees them: the sync
//! itself is `faenban_client`'s driver; this renders its progress and its
//! summary in Thai or English, and turns its failures into messages and
//! exit codes.

use std::time::Duration;

use anyhow::Context as _;
use faenban_client::http::{HttpTransport, Retry};
use faenban_client::{Observer, Realigned, TransportError};
use faenban_core::{DeviceId, RefusalCode};
use faenban_keys::DeviceKey;
use faenban_store::sync::SyncSettings;
use indicatif::{ProgressBar, ProgressStyle};

use super::{now_ms, Context};

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
    context
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
    let transport = HttpTransport::new(server, token.trim(), ca_pem.as_deref(), retry(retries))
        .map_err(|error| network_failure(context, error))?;
    let hello = faenban_client::login(&mut context.store, &transport, token.trim())
        .map_err(|error| sync_failure(context, error))?;
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

/// `faenban sync`.
pub fn sync(context: &mut Context, retries: u32) -> anyhow::Result<()> {
    super::refuse_damaged(context)?;
    context
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
    let transport = HttpTransport::new(
        &settings.server,
        &settings.token,
        ca.as_deref().map(str::as_bytes),
        retry(retries),
    )
    .map_err(|error| network_failure(context, error))?;
    let mut shown = Shown {
        lang: context.lang,
        bar: None,
    };
    let summary = faenban_client::sync(
        &mut context.store,
        &transport,
        &settings.token,
        &mut shown,
        &now_ms,
    )
    .map_err(|error| sync_failure(context, error))?;
    // `status` tells a sync that went through from one that did not.
    let problem = if summary.refusal.is_some() {
        Some("refused")
    } else if summary.held_back_now > 0 {
        Some("held_back")
    } else {
        None
    };
    context.store.set_setting(LAST_SYNC_PROBLEM, problem)?;
    print_summary(context, &summary);
    if let Some(refusal) = summary.refusal {
        return Err(network_failure(context, refusal).into());
    }
    if summary.held_back_now > 0 {
        return Err(held_back_failure(context, summary.held_back_now)?.into());
    }
    Ok(())
}

/// A sync's progress, as bars on the terminal and lines about what it did
/// to the outbox.
struct Shown {
    lang: crate::lang::Lang,
    bar: Option<ProgressBar>,
}

impl Observer for Shown {
    fn pushing(&mut self, waiting: u64) {
        self.bar = Some(progress(waiting, self.lang.pick("ส่ง", "push")));
    }

    fn pushed(&mut self, changes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(changes);
        }
    }

    fn realigned(&mut self, how: Realigned, count: u64) {
        let (th, en) = match how {
            Realigned::Renumbered => (
                "ไฟล์นี้ใช้เลขลำดับที่เซิร์ฟเวอร์มีอยู่แล้ว (อาจกู้คืนจากสำเนา) จัดเลขใหม่ให้การแก้ไขที่รอส่ง:",
                "this file reuses sequence numbers the server already holds (restored from a backup?); renumbered waiting changes:",
            ),
            Realigned::Requeued => (
                "เซิร์ฟเวอร์ขาดข้อมูลที่เคยรับไปแล้ว (อาจกู้คืนจากสำเนา) ส่งการแก้ไขทั้งหมดของเครื่องนี้ใหม่:",
                "the server lacks changes it had acknowledged (restored from a backup?); sending all of this laptop's changes again:",
            ),
        };
        eprintln!("{} {count}", self.lang.pick(th, en));
    }

    fn pushes_done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.bar = Some(progress(0, self.lang.pick("รับ", "pull")));
    }

    fn letter_dropped(&mut self, device: DeviceId, code: &str) {
        eprintln!(
            "{} {device} ({code})",
            self.lang.pick(
                "เซิร์ฟเวอร์ไม่รับจดหมายที่ฝากมาจากเครื่อง (ข้อมูลยังอยู่ที่เครื่องนั้น ให้ส่งมาใหม่):",
                "the server will not take a letter carried for laptop (its data is still on that laptop; it can send it again):"
            )
        );
    }

    fn pulled(&mut self, changes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(changes);
        }
    }

    fn pulls_done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// This laptop's signing key.
pub(super) fn device_key(context: &Context) -> anyhow::Result<DeviceKey> {
    Ok(context
        .store
        .device_key()?
        .ok_or(faenban_store::Error::NotInitialized)?)
}

/// A sync's failure as a message the user can act on.
fn sync_failure(context: &Context, error: faenban_client::SyncError) -> anyhow::Error {
    match error {
        faenban_client::SyncError::Transport(error) => network_failure(context, error).into(),
        faenban_client::SyncError::Store(error) => error.into(),
        faenban_client::SyncError::Protocol(what) => anyhow::anyhow!(what),
    }
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

fn print_summary(context: &Context, summary: &faenban_client::Summary) {
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
fn network_failure(context: &Context, error: TransportError) -> Failure {
    let lang = context.lang;
    match &error {
        TransportError::Network(_) => Failure::new(
            Kind::Network,
            lang,
            format!("ติดต่อเซิร์ฟเวอร์ไม่ได้ ข้อมูลในเครื่องยังอยู่ครบ ลองใหม่เมื่อมีสัญญาณ ({error})"),
            format!("{error}; everything recorded is still on this laptop, sync again when online"),
        ),
        TransportError::Refused { code, .. } => {
            let th = refusal_th(code);
            Failure::new(
                Kind::Refused,
                lang,
                format!("{th} ({error}) ข้อมูลในเครื่องยังอยู่ครบ"),
                format!("{error}; everything recorded is still on this laptop"),
            )
        }
        TransportError::BadAddress { th, en } => Failure::new(Kind::BadInput, lang, th, en),
        TransportError::Setup(_) => Failure::new(
            Kind::Network,
            lang,
            format!("ตั้งค่าการเชื่อมต่อที่ปลอดภัย (HTTPS) กับเซิร์ฟเวอร์ไม่ได้ ({error})"),
            format!("{error}"),
        ),
        TransportError::BadAnswer(_) => Failure::new(
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
