//! `init` and `status`: who this laptop is and what it holds.

use anyhow::Result;
use faenban_core::dates::format_buddhist_short;
use serde_json::json;

use super::{print_json, Context, THAI_OFFSET_MS};

/// `faenban init`.
pub fn init(context: &mut Context, name: &str) -> Result<()> {
    let key = faenban_keys::DeviceKey::generate()
        .map_err(|error| anyhow::anyhow!("making this laptop's key: {error}"))?;
    let info = context.store.init(name, &key)?;
    if context.json {
        return print_json(&json!({ "device_id": info.id, "name": info.name }));
    }
    let lang = context.lang;
    say!(
        "{} {} ({})",
        lang.pick("ตั้งค่าเครื่องแล้ว:", "device set up:"),
        info.name,
        info.id
    );
    Ok(())
}

/// `faenban status`.
pub fn status(context: &mut Context) -> Result<()> {
    let status = context.store.status()?;
    let problem = context.store.setting(super::sync::LAST_SYNC_PROBLEM)?;
    let lang = context.lang;
    if context.json {
        return print_json(&json!({
            "device_id": status.device.as_ref().map(|d| d.id),
            "device_name": status.device.as_ref().map(|d| d.name.clone()),
            "unpushed_changes": status.unpushed,
            "held_back_changes": status.held_back,
            "last_sync_ms": status.last_sync_ms,
            "last_sync_problem": problem,
            "records": status.records,
            "conflicts": status.conflicts,
        }));
    }
    match &status.device {
        Some(device) => say!(
            "{} {} ({})",
            lang.pick("เครื่อง:", "device:"),
            device.name,
            device.id
        ),
        None => say!(
            "{}",
            lang.pick(
                "ยังไม่ได้ตั้งค่าเครื่อง (faenban init)",
                "no device yet (faenban init)"
            )
        ),
    }
    say!(
        "{} {}",
        lang.pick("รายการที่ยังไม่ได้ส่ง:", "unpushed changes:"),
        status.unpushed
    );
    if status.held_back > 0 {
        say!(
            "{} {} ({})",
            lang.pick(
                "เซิร์ฟเวอร์ไม่รับ พักไว้ในเครื่อง:",
                "refused by the server, set aside:"
            ),
            status.held_back,
            lang.pick("ดูด้วย faenban outbox list", "see faenban outbox list")
        );
    }
    let last_sync = status
        .last_sync_ms
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64 + THAI_OFFSET_MS))
        .map(|t| format_buddhist_short(t.date_naive()));
    let outcome = match problem.as_deref() {
        Some("refused") => lang.pick(
            " (ไม่สำเร็จ: เซิร์ฟเวอร์ไม่รับคำขอ ดูข้อความเมื่อ sync อีกครั้ง)",
            " (did not go through: the server refused; sync again to see why)",
        ),
        Some(_) => lang.pick(
            " (ส่งได้บางส่วน: เซิร์ฟเวอร์ไม่รับบางรายการ)",
            " (partly: the server refused some changes)",
        ),
        None => "",
    };
    say!(
        "{} {}{outcome}",
        lang.pick("ซิงค์ล่าสุด:", "last sync:"),
        last_sync.unwrap_or_else(|| lang.pick("ยังไม่เคย", "never").to_owned())
    );
    say!(
        "{} {}",
        lang.pick("ระเบียนทั้งหมด:", "records:"),
        status.records
    );
    say!(
        "{} {}",
        lang.pick("ข้อขัดแย้งที่ยังเปิดอยู่:", "open conflicts:"),
        status.conflicts
    );
    Ok(())
}
