//! What went wrong, in the user's language, and the exit code that says so.

use std::process::ExitCode;

use faenban_core::InvalidValue;

use crate::lang::{expected_th, field_name_th, Lang};

/// The documented exit codes (see `docs/cli.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 1: anything else.
    Other,
    /// 3: the input was wrong (a value, a file's contents).
    BadInput,
    /// 4: an id or code matches no record.
    NotFound,
    /// 5: the command conflicts with the state (e.g. resolving what is not in conflict).
    Conflict,
    /// 6: the database cannot be used (locked, read-only, damaged, newer, disk full).
    Storage,
    /// 7: the server could not be reached, or its answer could not be read.
    Network,
    /// 8: the server refused (token, scope, device).
    Refused,
}

impl Kind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::BadInput => 3,
            Kind::NotFound => 4,
            Kind::Conflict => 5,
            Kind::Storage => 6,
            Kind::Network => 7,
            Kind::Refused => 8,
        }
    }
}

/// A failure to report to the user.
#[derive(Debug)]
pub struct Failure {
    /// What kind, for the exit code.
    pub kind: Kind,
    /// The message in the user's language.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with a message in Thai and English.
    pub fn new(kind: Kind, lang: Lang, th: impl AsRef<str>, en: impl AsRef<str>) -> Failure {
        Failure {
            kind,
            message: lang.pick(th.as_ref(), en.as_ref()).to_owned(),
        }
    }

    /// A value the user gave that failed validation.
    pub fn invalid(lang: Lang, invalid: &InvalidValue) -> Failure {
        Failure::new(
            Kind::BadInput,
            lang,
            format!(
                "{} ไม่ถูกต้อง: {} — ที่ถูกต้องคือ {}",
                field_name_th(invalid.field),
                invalid.problem_th.as_deref().unwrap_or(&invalid.problem),
                invalid
                    .expected_th
                    .or_else(|| expected_th(invalid.field))
                    .unwrap_or(invalid.expected)
            ),
            invalid.to_string(),
        )
    }

    /// Sorts any error into a failure the user can act on.
    pub fn from_error(lang: Lang, error: anyhow::Error) -> Failure {
        if let Some(failure) = error.downcast_ref::<Failure>() {
            return Failure {
                kind: failure.kind,
                message: failure.message.clone(),
            };
        }
        if let Some(store) = error.downcast_ref::<faenban_store::Error>() {
            return from_store(lang, store);
        }
        if let Some(core) = error.downcast_ref::<faenban_core::Error>() {
            return from_core(lang, core);
        }
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        // A file that cannot be opened or written: said in words, with the
        // file named, in the user's language.
        if let Some(io) = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        {
            use std::io::ErrorKind as K;
            let (kind, th) = match io.kind() {
                K::NotFound => (Kind::BadInput, "ไม่พบไฟล์หรือโฟลเดอร์นี้"),
                K::PermissionDenied => (Kind::BadInput, "ไม่มีสิทธิ์เปิดหรือเขียนไฟล์นี้"),
                K::AlreadyExists => (Kind::BadInput, "มีไฟล์นี้อยู่แล้ว"),
                K::IsADirectory => (Kind::BadInput, "เป็นโฟลเดอร์ ไม่ใช่ไฟล์"),
                K::InvalidData => (Kind::BadInput, "เนื้อหาในไฟล์อ่านไม่ได้"),
                K::StorageFull => (Kind::Storage, "พื้นที่ดิสก์เต็ม"),
                K::ReadOnlyFilesystem => (Kind::Storage, "ดิสก์นี้เขียนไม่ได้ (อ่านอย่างเดียว)"),
                _ => (Kind::Other, "ใช้ไฟล์ไม่ได้"),
            };
            let what: Vec<String> = chain
                .iter()
                .take(chain.len().saturating_sub(1))
                .map(|step| doing_th(step))
                .collect();
            let th = if what.is_empty() {
                th.to_owned()
            } else {
                format!("{}: {th}", what.join(": "))
            };
            return Failure::new(kind, lang, th, chain.join(": "));
        }
        Failure::new(Kind::Other, lang, chain.join(": "), chain.join(": "))
    }

    /// Prints the message to stderr and gives the exit code.
    pub fn report(&self, lang: Lang) -> ExitCode {
        eprintln!("{}: {}", lang.pick("ผิดพลาด", "error"), self.message);
        ExitCode::from(self.kind.code())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

fn from_core(lang: Lang, error: &faenban_core::Error) -> Failure {
    use faenban_core::Error as E;
    match error {
        E::Invalid(invalid) => Failure::invalid(lang, invalid),
        E::UnknownIndicator { code, edition } => Failure::new(
            Kind::BadInput,
            lang,
            format!("ไม่มีตัวชี้วัด {code} ในชุด {edition}"),
            error.to_string(),
        ),
        E::UnknownEdition { edition, .. } => Failure::new(
            Kind::BadInput,
            lang,
            format!("ไม่รู้จักชุดตัวชี้วัด {edition}"),
            error.to_string(),
        ),
        E::InvalidField { field, message } => Failure::new(
            Kind::BadInput,
            lang,
            format!("{} ไม่ถูกต้อง: {message}", crate::lang::field_name_th(field)),
            error.to_string(),
        ),
        other => Failure::new(Kind::BadInput, lang, other.to_string(), other.to_string()),
    }
}

fn from_store(lang: Lang, error: &faenban_store::Error) -> Failure {
    use faenban_store::Error as E;
    let storage = |th: &str| Failure::new(Kind::Storage, lang, th, error.to_string());
    match error {
        E::NewerSchema { .. } => {
            storage("ฐานข้อมูลนี้สร้างด้วย faenban รุ่นใหม่กว่า กรุณาปรับรุ่นโปรแกรม (ไฟล์ไม่ถูกแก้ไข)")
        }
        E::Locked => storage("ฐานข้อมูลกำลังถูกใช้โดยโปรแกรม faenban อื่น ปิดโปรแกรมนั้นแล้วลองใหม่"),
        E::OlderReadOnly => storage(
            "ไฟล์ฐานข้อมูลนี้มาจาก faenban รุ่นเก่า ต้องปรับรุ่นไฟล์ก่อนจึงจะอ่านได้ แต่ไฟล์เป็นแบบอ่านอย่างเดียว ให้เปิดสิทธิ์เขียนหนึ่งครั้งแล้วรันใหม่",
        ),
        E::ReadOnly => storage("เขียนไฟล์ฐานข้อมูลไม่ได้ (ไฟล์หรือโฟลเดอร์เป็นแบบอ่านอย่างเดียว)"),
        E::Corrupt(_) => storage("ไฟล์ฐานข้อมูลเสียหาย หรือไม่ใช่ฐานข้อมูลของ faenban"),
        E::DiskFull => storage("พื้นที่ดิสก์เต็ม คำสั่งนี้ไม่ได้บันทึกอะไรเลย"),
        // The program failed, not the file: the file is not called damaged.
        E::Internal(_) => Failure::new(
            Kind::Other,
            lang,
            "โปรแกรม faenban ทำงานผิดพลาดภายใน คำสั่งนี้ไม่ได้บันทึกอะไรเลย ไฟล์ข้อมูลไม่เสียหาย ลองใหม่อีกครั้ง ถ้ายังเป็นอยู่ให้แจ้งผู้ดูแลระบบ",
            error.to_string(),
        ),
        E::NotInitialized => Failure::new(
            Kind::Storage,
            lang,
            "ฐานข้อมูลนี้ยังไม่ได้ตั้งค่าเครื่อง ให้รัน `faenban init` ก่อน",
            error.to_string(),
        ),
        E::AlreadyInitialized(name) => Failure::new(
            Kind::Conflict,
            lang,
            format!("ฐานข้อมูลนี้เป็นของเครื่อง `{name}` อยู่แล้ว"),
            error.to_string(),
        ),
        E::NotFound { kind, id } => Failure::new(
            Kind::NotFound,
            lang,
            format!("ไม่พบ{} รหัส {id}", crate::lang::kind_th(kind)),
            error.to_string(),
        ),
        E::Core(core) => from_core(lang, core),
        E::NotForThisAccount(refused) => not_for_this_account(lang, refused),
        E::Refused { .. } | E::RefusedRecords(_) => {
            Failure::new(Kind::Refused, lang, error.to_string(), error.to_string())
        }
        E::Sqlite(_) | E::Json(_) => storage("ฐานข้อมูลมีปัญหา"),
    }
}

/// A record the account may never send, said as it is typed: who may
/// record it instead, or what the office can change.
fn not_for_this_account(lang: Lang, refused: &faenban_store::NotForThisAccount) -> Failure {
    use faenban_core::sync::{Refusal, Role};
    use faenban_core::RecordKind;
    let scope = &refused.scope;
    let areas = scope.areas.join(", ");
    let village = refused.village.as_deref().unwrap_or("-");
    let kind_th = crate::lang::kind_th(refused.kind.as_str());
    let (th, en) = match (&refused.refusal, &refused.kind, scope.role) {
        (Refusal::KindNotAllowed, RecordKind::Official, _) => (
            "บัญชีนี้ไม่ได้บันทึกรายชื่อเจ้าหน้าที่ ทีมอำเภอหรือตำบลเป็นผู้บันทึก เมื่อ sync แล้วรายชื่อจะมาถึงเครื่องนี้ และจับคู่กับครัวเรือนในหมู่บ้านของเราได้ (faenban pair)".to_owned(),
            "this account does not keep the list of officials: the district or subdistrict team records them; after a sync they reach this laptop, and you pair them with your households (faenban pair)".to_owned(),
        ),
        (Refusal::KindNotAllowed, _, Role::Dimension) => (
            format!("คณะทำงานรายด้านบันทึกได้เฉพาะการช่วยเหลือ ไม่ได้บันทึก{kind_th} ให้อาสาสมัครหรือทีมในพื้นที่เป็นผู้บันทึก"),
            format!("a working group records assistance only, not a {}; the area's volunteer or team records it", refused.kind),
        ),
        (Refusal::OtherDimension, _, _) => (
            format!(
                "คณะทำงานนี้บันทึกการช่วยเหลือได้เฉพาะด้าน{}",
                scope.dimension.map_or("", |d| d.name_th())
            ),
            format!(
                "this working group records assistance in its own dimension only ({})",
                scope.dimension.map_or("", |d| d.key())
            ),
        ),
        (Refusal::OutsideAreas, _, _) => (
            format!("หมู่บ้าน {village} ไม่อยู่ในพื้นที่ของบัญชีนี้ ({areas}) เซิร์ฟเวอร์จะไม่รับ ให้อำเภอเพิ่มหมู่บ้านนี้ให้บัญชีก่อน หรือให้ผู้ที่รับผิดชอบหมู่บ้านนั้นเป็นผู้บันทึก"),
            format!("village {village} is outside this account's areas ({areas}), so the server would refuse it; ask the district to add the village to the account, or let whoever covers that village record it"),
        ),
        (other, _, _) => (
            format!("บัญชีนี้บันทึก{kind_th}นี้ไม่ได้"),
            format!("this account may not record this {} ({})", refused.kind, other.describe()),
        ),
    };
    Failure::new(
        Kind::Refused,
        lang,
        format!("{th} (ไม่ได้บันทึกอะไรเลย)"),
        format!("{en}; nothing was saved"),
    )
}

/// What the program was doing, as its error context says it, in Thai (the
/// file's name kept as it is).
fn doing_th(step: &str) -> String {
    const DOING: &[(&str, &str)] = &[
        ("opening the bundle ", "เปิดไฟล์ชุดข้อมูล "),
        ("writing the bundle ", "เขียนไฟล์ชุดข้อมูล "),
        ("reading answers file ", "อ่านไฟล์คำตอบ "),
        ("reading ", "อ่านไฟล์ "),
        ("writing ", "เขียนไฟล์ "),
        ("creating the folder ", "สร้างโฟลเดอร์ "),
        ("creating ", "สร้างไฟล์ "),
        ("replacing ", "เขียนทับไฟล์ "),
        ("opening ", "เปิดไฟล์ "),
    ];
    for (en, th) in DOING {
        if let Some(rest) = step.strip_prefix(en) {
            return format!("{th}{rest}");
        }
    }
    step.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_inside_the_program_does_not_call_the_file_damaged() {
        let error = faenban_store::Error::Internal("the server failed on this batch".into());
        for lang in [Lang::Th, Lang::En] {
            let failure = from_store(lang, &error);
            assert_eq!(failure.kind.code(), 1);
            assert!(
                !failure.message.contains("is damaged"),
                "{}",
                failure.message
            );
            assert!(
                failure
                    .message
                    .contains("nothing of this command was saved")
                    || failure.message.contains("ไม่ได้บันทึกอะไรเลย"),
                "{}",
                failure.message
            );
        }
        let damaged = from_store(Lang::En, &faenban_store::Error::Corrupt("x".into()));
        assert_eq!(damaged.kind.code(), 6);
    }
}
