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

/// `faenban check`.
pub fn check(context: &mut Context) -> Result<()> {
    let damage = match context.store.damage(false) {
        Ok(damage) => damage,
        Err(error) => vec![error.to_string()],
    };
    if context.json {
        print_json(&json!({ "sound": damage.is_empty(), "problems": damage }))?;
    } else if damage.is_empty() {
        say!(
            "{}",
            context.lang.pick(
                "ไฟล์ฐานข้อมูลปกติ ไม่พบความเสียหาย",
                "the database file is sound: no damage found"
            )
        );
        return Ok(());
    }
    if damage.is_empty() {
        return Ok(());
    }
    Err(damaged_failure(context, &damage).into())
}

/// Refuses to go on from a damaged file (SQLite's quick check): a sync, a
/// bundle or an import from it would spread what is broken.
pub(crate) fn refuse_damaged(context: &Context) -> Result<()> {
    let damage = match context.store.damage(true) {
        Ok(damage) => damage,
        Err(error) => vec![error.to_string()],
    };
    if damage.is_empty() {
        Ok(())
    } else {
        Err(damaged_failure(context, &damage).into())
    }
}

/// What to do with a damaged file, in words: what can still be saved, and
/// where the copy on the server stands.
pub(super) fn damaged_failure(context: &Context, damage: &[String]) -> crate::failure::Failure {
    let unpushed = context.store.status().map(|status| status.unpushed).ok();
    let waiting = unpushed.map_or_else(String::new, |n| n.to_string());
    crate::failure::Failure::new(
        crate::failure::Kind::Storage,
        context.lang,
        format!(
            "ไฟล์ฐานข้อมูลเสียหาย ({} จุด เช่น {}) อย่าบันทึกเพิ่มและอย่า sync จากไฟล์นี้ 1) ทำสำเนาไฟล์เก็บไว้ 2) ส่งออกสิ่งที่ยังอ่านได้: faenban export --output สำรอง.json 3) ข้อมูลที่ sync แล้วยังอยู่บนเซิร์ฟเวอร์ ตั้งเครื่องใหม่ (faenban init กับไฟล์ใหม่ แล้ว login และ sync) จะได้ข้อมูลนั้นกลับมา ส่วนที่ยังไม่ได้ส่ง ({waiting} รายการ) ให้แจ้งอำเภอพร้อมไฟล์สำเนา",
            damage.len(),
            damage[0]
        ),
        format!(
            "the database file is damaged ({} problems, such as: {}); do not record more or sync from it. 1) keep a copy of the file; 2) export what can still be read: faenban export --output backup.json; 3) what was synced is still on the server: set up a new file (faenban init with another --db, then login and sync) to get it back; the changes not yet sent ({waiting}) are in the copy: take it to the district office",
            damage.len(),
            damage[0]
        ),
    )
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
