//! The language of messages (Thai or English), chosen by `--lang` or the locale.

use clap::ValueEnum;

/// A language faenban speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// ภาษาไทย
    Th,
    /// English
    En,
}

impl Lang {
    /// Thai unless the locale names another language (`LC_ALL`,
    /// `LC_MESSAGES`, `LANG`, the first one set): `en_US.UTF-8` gives
    /// English; `th_TH.UTF-8`, a locale that names no language (`C`,
    /// `C.UTF-8`, `POSIX`) or none at all gives Thai, the language of the
    /// people faenban is for.
    pub fn from_locale() -> Lang {
        for variable in ["LC_ALL", "LC_MESSAGES", "LANG"] {
            if let Ok(value) = std::env::var(variable) {
                if value.is_empty() {
                    continue;
                }
                let value = value.to_lowercase();
                let names_no_language = value == "c" || value.starts_with("c.") || value == "posix";
                return if value.starts_with("th") || names_no_language {
                    Lang::Th
                } else {
                    Lang::En
                };
            }
        }
        Lang::Th
    }

    /// Picks the Thai or the English text.
    pub fn pick<'a>(self, th: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Th => th,
            Lang::En => en,
        }
    }
}

/// The Thai name of a field, for messages.
pub fn field_name_th(field: &str) -> &str {
    match field {
        "national_id" => "เลขประจำตัวประชาชน",
        "house_code" => "รหัสประจำบ้าน",
        "village" | "village_code" => "รหัสหมู่บ้าน",
        "area_code" => "รหัสพื้นที่",
        "address" => "ที่อยู่",
        "location" => "พิกัด",
        "notes" => "หมายเหตุ",
        "archived" => "ปิดแฟ้ม",
        "value" => "ข้อมูลที่ใส่",
        "date" => "วันที่",
        "birth_date" => "วันเกิด",
        "amount" => "จำนวนเงิน",
        "income_per_year" => "รายได้ต่อปี",
        "first_name" => "ชื่อ",
        "last_name" => "นามสกุล",
        "surveyor" => "ผู้สำรวจ",
        "members" => "จำนวนสมาชิก",
        "item" => "รายการช่วยเหลือ",
        "agency" => "หน่วยงาน",
        "name" => "ชื่อ",
        "status" => "สถานะ",
        "position" => "ตำแหน่ง",
        "sex" => "เพศ",
        "relation" => "ความสัมพันธ์กับหัวหน้าครัวเรือน",
        "education" => "การศึกษา",
        "title" => "คำนำหน้า",
        "entry" => "ที่มาของครัวเรือน",
        "classification" => "กลุ่มครัวเรือน",
        "livelihood" => "อาชีพหลัก",
        "dimension" => "มิติ",
        "sector" => "ภาคส่วน",
        "stage" => "ระยะการช่วยเหลือ",
        "edition" => "ชุดตัวชี้วัด",
        _ => field,
    }
}

/// The Thai word for a kind of record, for messages.
/// A stored value of a field as a Thai reader knows it (`needs_welfare` →
/// ต้องสงเคราะห์); `None` for a value that is not a code (a name, a number).
pub fn value_th(field: &str, value: &str) -> Option<&'static str> {
    Some(match (field, value) {
        ("entry", "tpmap_target") => "รายชื่อเป้าหมายจาก TPMAP",
        ("entry", "exclusion_error") => "ตกหล่น พบเพิ่มในพื้นที่",
        ("entry", "vulnerable_group") => "กลุ่มเปราะบาง",
        ("classification", "needs_welfare") => "ต้องสงเคราะห์",
        ("classification", "can_develop") => "พัฒนาได้",
        ("livelihood", "farmer") => "เกษตรกร",
        ("livelihood", "entrepreneur") => "ผู้ประกอบการ ค้าขาย",
        ("livelihood", "labourer") => "รับจ้าง",
        ("livelihood", "disadvantaged") => "ผู้ด้อยโอกาส",
        ("status", "active") => "อยู่อาศัย",
        ("status", "moved") => "ย้ายออก",
        ("status", "archived") | ("archived", "true") => "ปิดแฟ้มแล้ว",
        ("archived", "false") => "เปิดแฟ้มอยู่",
        (_, "true") => "ใช่",
        (_, "false") => "ไม่ใช่",
        _ => return None,
    })
}

pub fn kind_th(kind: &str) -> &str {
    match kind {
        "household" => "ครัวเรือน",
        "member" => "สมาชิก",
        "visit" => "การสำรวจ",
        "assistance" => "การช่วยเหลือ",
        "official" => "เจ้าหน้าที่",
        "pairing" => "การจับคู่",
        other => other,
    }
}

/// A member's relation to the head, in Thai.
pub fn relation_th(relation: &str) -> &str {
    match relation {
        "head" => "หัวหน้าครัวเรือน",
        "spouse" => "คู่สมรส",
        "child" => "บุตร",
        "parent" => "บิดา/มารดา",
        "grandchild" => "หลาน",
        "relative" => "ญาติ",
        "other" => "ผู้อาศัย",
        other => other,
    }
}

/// What a valid value of a field looks like, in Thai.
pub fn expected_th(field: &str) -> Option<&'static str> {
    Some(match field {
        "national_id" => "เลข 13 หลัก ขึ้นต้นด้วย 1-8 และหลักสุดท้ายตรงกับเลขตรวจสอบ เช่น 1-2345-67890-12-1",
        "house_code" => "รหัสประจำบ้าน 11 หลัก เช่น 1234-567890-1",
        "village" | "village_code" => "รหัสหมู่บ้าน 8 หลัก เช่น 40010101",
        "area_code" => "รหัสพื้นที่ 2 (จังหวัด) 4 (อำเภอ) 6 (ตำบล) หรือ 8 (หมู่บ้าน) หลัก",
        "date" | "birth_date" => "วันที่แบบ ปปปป-ดด-วว หรือ วว/ดด/ปปปป (ค.ศ. หรือ พ.ศ.) เช่น 15/01/2568",
        "amount" | "income_per_year" => "จำนวนเงินบาท ไม่ติดลบ เช่น 1500 หรือ 1,500.50",
        "location" => "ละติจูด,ลองจิจูด เช่น 16.44,102.83",
        "members" => "จำนวนคนในครัวเรือน ตั้งแต่ 1 คนขึ้นไป",
        "first_name" | "last_name" | "name" | "address" | "item" | "agency" | "surveyor" => {
            "ข้อความที่ไม่ว่าง"
        }
        "status" => "active (อยู่) หรือ moved (ย้ายออก) ถ้าจะปิดแฟ้มให้ใช้ household archive",
        _ => return None,
    })
}
