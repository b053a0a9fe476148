//! `--help` and argument errors in Thai under `--lang th`: the commands'
//! and options' descriptions, the headings, and what clap says when the
//! command line is wrong. The English stays in `cli.rs`, as clap reads it.

use clap::error::{ContextKind, ErrorKind};
use clap::{Arg, ArgAction, Command};

const TEMPLATE: &str = "{about-with-newline}\nการใช้งาน: {usage}\n\n{all-args}{after-help}";

/// The command line, described in Thai.
pub fn in_thai(command: Command) -> Command {
    translate(command, "").disable_version_flag(true).arg(
        Arg::new("version")
            .short('V')
            .long("version")
            .action(ArgAction::Version)
            .help("แสดงรุ่นของโปรแกรม")
            .help_heading("ตัวเลือก"),
    )
}

fn translate(mut command: Command, parent: &str) -> Command {
    let path = if parent.is_empty() {
        String::new()
    } else if parent == "faenban" {
        command.get_name().to_owned()
    } else {
        format!("{parent} {}", command.get_name())
    };
    if let Some(about) = command_th(&path) {
        command = command.about(about).long_about(None);
    }
    let arguments: Vec<(String, bool)> = command
        .get_arguments()
        .map(|arg| (arg.get_id().to_string(), arg.is_positional()))
        .collect();
    for (id, positional) in arguments {
        let help = argument_th(&path, &id);
        command = command.mut_arg(&id, |arg| {
            let arg = arg.help_heading(if positional {
                "ค่าที่ต้องใส่"
            } else {
                "ตัวเลือก"
            });
            match help {
                Some(help) => arg.help(help).long_help(None),
                None => arg,
            }
        });
    }
    command = command
        .help_template(TEMPLATE)
        .subcommand_help_heading("คำสั่ง")
        .disable_help_subcommand(true)
        .disable_help_flag(true)
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("แสดงวิธีใช้")
                .help_heading("ตัวเลือก"),
        );
    let here = if path.is_empty() {
        "faenban"
    } else {
        path.as_str()
    }
    .to_owned();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| translate(sub, &here));
    }
    command
}

/// What a command does, by its path (`""` is faenban itself).
fn command_th(path: &str) -> Option<&'static str> {
    Some(match path {
        "" => "faenban (แฟ้มบ้าน): บันทึกครัวเรือน สมาชิก การสำรวจ จปฐ. และการช่วยเหลือ ในเครื่องนี้ แม้ไม่มีสัญญาณ",
        "init" => "ตั้งค่าเครื่องนี้ (ครั้งเดียว): ตั้งชื่อเครื่องและสร้างรหัสเครื่อง",
        "status" => "แสดงเครื่องนี้ การแก้ไขที่ยังไม่ได้ส่ง และการ sync ครั้งล่าสุด",
        "household" => "ครัวเรือน: เพิ่ม แก้ไข ดู รายการ ค้นหา ปิดแฟ้ม เปิดแฟ้มคืน",
        "household add" => "เพิ่มครัวเรือน",
        "household edit" => "แก้ไขข้อมูลครัวเรือน",
        "household show" => "ดูครัวเรือน พร้อมสมาชิก การสำรวจล่าสุด และการช่วยเหลือ",
        "household list" => "รายการครัวเรือน",
        "household search" => "ค้นหาครัวเรือนด้วยรหัสประจำบ้าน หมู่บ้าน ชื่อสมาชิก หรือเลขประจำตัวประชาชน",
        "household archive" => "ปิดแฟ้มครัวเรือน (เปิดคืนได้)",
        "household restore" => "เปิดแฟ้มครัวเรือนที่ปิดไว้คืน",
        "member" => "สมาชิกในครัวเรือน: เพิ่ม แก้ไข นำออก",
        "member add" => "เพิ่มสมาชิกในครัวเรือน",
        "member edit" => "แก้ไขข้อมูลสมาชิก",
        "member remove" => "นำสมาชิกออก (ประวัติยังอยู่)",
        "survey" => "บันทึกการสำรวจ จปฐ. ของครัวเรือน ถ้าไม่ใส่ --answer จะถามทีละข้อ ตอบแล้วบันทึกทันที พิมพ์ q เพื่อพักไว้ทำต่อ",
        "assist" => "การช่วยเหลือครัวเรือน",
        "assist add" => "บันทึกการช่วยเหลือครัวเรือน",
        "assist update" => "แก้ไขบันทึกการช่วยเหลือ",
        "assist list" => "รายการการช่วยเหลือ ของครัวเรือนเดียวหรือทั้งหมด",
        "official" => "เจ้าหน้าที่ที่ดูแลครัวเรือน (เช่น คู่เสี่ยว ของขอนแก่น) ทีมอำเภอหรือตำบลเป็นผู้บันทึก",
        "official add" => "เพิ่มเจ้าหน้าที่",
        "official list" => "รายชื่อเจ้าหน้าที่",
        "pair" => "จับคู่เจ้าหน้าที่กับครัวเรือน (คู่เสี่ยว: 1 คนต่อ 2 ครัวเรือน) หรือเลิกจับคู่ด้วย --end",
        "pairs" => "เจ้าหน้าที่และครัวเรือนที่ดูแล และครัวเรือนที่ยังไม่มีใครดูแล",
        "history" => "การแก้ไขทุกครั้งของระเบียน: ใคร อะไร เมื่อไร จากเครื่องไหน",
        "conflicts" => "ข้อขัดแย้ง: ค่าที่คนสองคนแก้โดยไม่เห็นของกันและกัน",
        "conflicts list" => "รายการข้อขัดแย้งที่ยังเปิดอยู่",
        "conflicts show" => "ดูค่าที่ขัดแย้งกันในระเบียน และใครเป็นผู้บันทึก",
        "conflicts resolve" => "ตัดสินข้อขัดแย้ง",
        "import" => "นำเข้าครัวเรือน (และหัวหน้าครัวเรือน) จากไฟล์ CSV เช่น รายชื่อเป้าหมาย TPMAP แถวที่ผิดจะแจ้งและข้าม แถวที่ถูกจะบันทึก",
        "export" => "ส่งออกข้อมูลที่รวมแล้ว",
        "login" => "เชื่อมเครื่องนี้กับเซิร์ฟเวอร์ (ครั้งเดียว): ตรวจโทเคนแล้วเก็บไว้",
        "sync" => "ส่งสิ่งที่บันทึกในเครื่องนี้ และรับสิ่งที่ผู้อื่นบันทึก",
        "bundle" => "sync ผ่านไฟล์ สำหรับเครื่องที่ไม่มีสัญญาณเลย",
        "bundle export" => "เขียนไฟล์ชุดข้อมูล (ปิดผนึก) ของการแก้ไขที่รอส่ง และที่ฝากส่งต่อ",
        "bundle import" => "นำเข้าไฟล์ชุดข้อมูลจากเครื่องอื่น จดหมายในไฟล์จะส่งต่อให้เซิร์ฟเวอร์เมื่อ sync",
        "outbox" => "การแก้ไขที่รอส่ง และที่เซิร์ฟเวอร์ไม่รับ (พักไว้พร้อมเหตุผล)",
        "outbox list" => "จำนวนที่รอส่ง และทุกรายการที่เซิร์ฟเวอร์ไม่รับ พร้อมเหตุผล",
        "outbox show" => "ดูรายการที่เซิร์ฟเวอร์ไม่รับ: ระเบียน ช่อง ค่า และเหตุผล",
        "outbox retry" => "นำรายการที่พักไว้กลับเข้าคิวส่ง (ทั้งหมด หรือตามหมายเลข) จะส่งเมื่อ sync",
        "check" => "ตรวจไฟล์ฐานข้อมูลว่าเสียหายหรือไม่ และบอกว่าต้องทำอย่างไร",
        "report" => "ตัวเลขของโครงการรายพื้นที่: ขาดแคลนและได้รับช่วยเหลือรายด้านของ TPMAP กลุ่มครัวเรือน รายได้ก่อน/หลัง การจับคู่ ข้อมูลที่ขาด",
        _ => return None,
    })
}

/// What an option or argument means, by the command's path and its id.
fn argument_th(path: &str, id: &str) -> Option<&'static str> {
    Some(match (path, id) {
        ("", "db") => "ไฟล์ฐานข้อมูล (ปกติ faenban.db ในโฟลเดอร์ข้อมูลของผู้ใช้)",
        ("", "json") => "แสดงข้อมูลเป็น JSON",
        ("", "lang") => "ภาษาของข้อความ: th หรือ en (ปกติตามภาษาของเครื่อง)",
        ("init", "name") => "ชื่อเครื่องนี้ เช่น \"อสม. มาลี บ้านโนนสูง\"",
        (_, "house_code") => "รหัสประจำบ้าน 11 หลัก เช่น 1234-567890-1",
        (_, "village") => "รหัสหมู่บ้าน 8 หลัก",
        (_, "address") => "ที่อยู่",
        (_, "entry") => "ที่มาของครัวเรือน: tpmap_target (รายชื่อ TPMAP), exclusion_error (ตกหล่น พบเพิ่ม) หรือ vulnerable_group (กลุ่มเปราะบาง)",
        (_, "classification") => "กลุ่มครัวเรือน: needs_welfare (ต้องสงเคราะห์) หรือ can_develop (พัฒนาได้)",
        (_, "livelihood") => "อาชีพหลัก: farmer, entrepreneur, labourer หรือ disadvantaged",
        (_, "welfare_card") => "มีบัตรสวัสดิการแห่งรัฐ: yes หรือ no",
        ("household add" | "household edit", "status") => "สถานะ: active (อยู่อาศัย) หรือ moved (ย้ายออก)",
        (_, "location") => "พิกัด GPS เขียนเป็น ละติจูด,ลองจิจูด เช่น 16.44,102.83",
        (_, "notes") => "หมายเหตุ",
        ("household list", "area") => "เฉพาะพื้นที่นี้ (รหัสหมู่บ้าน ตำบล อำเภอ หรือจังหวัด)",
        ("household list", "archived") => "รวมครัวเรือนที่ปิดแฟ้มแล้ว",
        ("household search", "text") => "สิ่งที่จะค้นหา",
        ("history", "id") => "ระเบียน (รหัส หรือ 6 ตัวท้ายของรหัส หรือรหัสประจำบ้าน)",
        ("member edit" | "member remove", "id") => "สมาชิก (รหัส หรือ 6 ตัวท้ายของรหัส)",
        ("conflicts show" | "conflicts resolve", "id") => "ระเบียน",
        ("assist update", "id") => "บันทึกการช่วยเหลือ",
        (_, "id") => "ครัวเรือน (รหัส หรือ 6 ตัวท้ายของรหัส หรือรหัสประจำบ้าน)",
        (_, "household") => "ครัวเรือน (รหัส หรือ 6 ตัวท้ายของรหัส หรือรหัสประจำบ้าน)",
        (_, "national_id") => "เลขประจำตัวประชาชน 13 หลัก",
        (_, "title") => "คำนำหน้า (นาย นาง นางสาว ด.ช. ด.ญ.)",
        (_, "first_name") => "ชื่อ",
        (_, "last_name") => "นามสกุล",
        (_, "sex") => "เพศ: male (ชาย) หรือ female (หญิง)",
        (_, "birth_date") => "วันเกิด (วว/ดด/ปปปป พ.ศ. หรือ ปปปป-ดด-วว)",
        (_, "relation") => "ความเกี่ยวข้องกับหัวหน้าครัวเรือน: head, spouse, child, parent, grandchild, relative หรือ other",
        (_, "education") => "การศึกษา: none, preschool, primary, lower_secondary, upper_secondary, vocational, bachelor, postgraduate",
        (_, "occupation") => "อาชีพ",
        ("survey", "income") => "รายได้ของครัวเรือนต่อปี (บาท)",
        (_, "income") => "รายได้ของตนเองต่อปี (บาท)",
        (_, "disability") => "มีความพิการ: yes หรือ no",
        (_, "chronic_illness") => "มีโรคเรื้อรัง: yes หรือ no",
        ("survey", "date") => "วันที่สำรวจ (ปกติวันนี้)",
        ("survey", "surveyor") => "ผู้สำรวจ (ปกติชื่อเครื่อง)",
        ("survey", "edition") => "ชุดตัวชี้วัด",
        ("survey", "members") => "จำนวนคนในครัวเรือน (ปกติจำนวนสมาชิกที่บันทึกไว้)",
        ("survey", "answers") => "คำตอบ: รหัส=pass|fail|na (ใส่ซ้ำได้ทีละตัวชี้วัด)",
        ("survey", "answers_file") => "ไฟล์ JSON ของคำตอบ เช่น {\"4\": \"pass\", \"8\": \"fail\"}",
        ("survey", "new") => "ยกเลิกการสำรวจที่ค้างไว้ของครัวเรือนนี้ แล้วเริ่มใหม่",
        (_, "dimension") => "ด้าน: health (สุขภาพ), living (ความเป็นอยู่), education (การศึกษา), income (รายได้) หรือ accessibility (การเข้าถึงบริการรัฐ)",
        (_, "item") => "รายการช่วยเหลือ (รหัสในเมนู เช่น house_repair หรือข้อความ)",
        ("official add", "agency") => "หน่วยงาน เช่น \"สำนักงานเกษตรอำเภอเมืองขอนแก่น\"",
        (_, "agency") => "หน่วยงานที่ให้การช่วยเหลือ",
        (_, "sector") => "ภาคส่วน: public (รัฐ), private (เอกชน), academic (วิชาการ), religious (ศาสนา), media (สื่อ), civil_society (ประชาสังคม) หรือ people (ประชาชน)",
        (_, "amount") => "จำนวนเงิน (บาท)",
        ("assist add", "date") => "วันที่ช่วยเหลือ (ปกติวันนี้)",
        (_, "stage") => "ระดับ: survive (อยู่รอด), sufficient (พอเพียง) หรือ sustainable (ยั่งยืน)",
        ("assist add" | "assist update", "status") => "ความคืบหน้า: planned (วางแผนไว้), in_progress (กำลังดำเนินการ) หรือ done (เสร็จแล้ว)",
        (_, "outcome") => "ผลที่เกิดขึ้น",
        ("official add", "name") => "ชื่อเต็ม เช่น \"นายสมชาย ใจดี\"",
        ("official add", "position") => "ตำแหน่ง เช่น \"นักวิชาการเกษตร\"",
        ("pair", "official") => "เจ้าหน้าที่ (รหัส 6 ตัวท้าย หรือชื่อเต็ม)",
        ("pair", "households") => "ครัวเรือน (รหัส 6 ตัวท้าย หรือรหัสประจำบ้าน)",
        ("pair", "end") => "เลิกจับคู่แทน",
        ("pairs", "official") => "เฉพาะเจ้าหน้าที่คนนี้",
        ("conflicts resolve", "field") => "ช่องที่ขัดแย้ง",
        ("conflicts resolve", "keep") => "เก็บค่าหมายเลขนี้ (ตามที่ conflicts show แสดง)",
        ("conflicts resolve", "value") => "ใส่ค่าใหม่แทนทุกค่า",
        ("conflicts resolve", "archive") => "ข้อขัดแย้งเรื่องปิดแฟ้ม: ปิดแฟ้มต่อไป",
        ("conflicts resolve", "keep_active") => "ข้อขัดแย้งเรื่องปิดแฟ้ม: เปิดแฟ้มไว้",
        ("import", "file") => "ไฟล์ CSV (UTF-8 หรือ TIS-620) ที่มีแถวหัวตาราง",
        ("import", "dry_run") => "ตรวจทุกแถวและรายงาน แต่ไม่บันทึกอะไร",
        ("import", "rejects") => "เขียนแถวที่ไม่ผ่าน พร้อมเหตุผล ลงไฟล์ CSV นี้ด้วย",
        ("export", "format") => "json (ข้อมูลที่รวมแล้วทั้งหมด) หรือ csv (ครัวเรือน สำหรับ Excel)",
        ("export", "output") => "เขียนลงไฟล์นี้แทนการแสดงบนจอ",
        ("login", "server") => "ที่อยู่เซิร์ฟเวอร์ เช่น https://faenban.example.go.th",
        ("login", "token") => "โทเคนจากผู้ดูแลระบบ (ถ้าไม่ใส่ จะถาม)",
        ("login", "ca") => "ไว้ใจใบรับรอง CA นี้ด้วย (PEM) สำหรับสำนักงานที่มีใบรับรองของตนเอง",
        (_, "retries") => "จำนวนครั้งที่ลองใหม่เมื่อเครือข่ายขัดข้อง",
        ("bundle export" | "bundle import", "file") => "ไฟล์ชุดข้อมูล",
        ("report", "area") => "เฉพาะพื้นที่นี้ (รหัสหมู่บ้าน ตำบล อำเภอ หรือจังหวัด)",
        ("report", "level") => "แสดงทีละพื้นที่ในระดับนี้ด้วย: province, district, subdistrict หรือ village",
        ("report", "fiscal_year") => "เฉพาะการสำรวจและการช่วยเหลือในปีงบประมาณนี้ (พ.ศ. 1 ต.ค. ถึง 30 ก.ย.)",
        ("report", "format") => "table (อ่านบนจอ), json, csv หรือ xlsx (ไฟล์ Excel ต้องใส่ --output)",
        ("report", "output") => "เขียนลงไฟล์นี้แทนการแสดงบนจอ",
        ("outbox show", "sequence") => "หมายเลข ตามที่ outbox list แสดง",
        ("outbox retry", "sequences") => "หมายเลข ตามที่ outbox list แสดง ถ้าไม่ใส่คือทั้งหมด",
        _ => return None,
    })
}

/// What clap says when the command line is wrong, in Thai.
pub fn error_th(error: &clap::Error) -> String {
    let get = |kind: ContextKind| {
        error
            .get(kind)
            .map(|value| value.to_string())
            .unwrap_or_default()
    };
    let problem = match error.kind() {
        ErrorKind::UnknownArgument => {
            format!("ไม่รู้จักตัวเลือก `{}`", get(ContextKind::InvalidArg))
        }
        ErrorKind::InvalidSubcommand => {
            format!("ไม่รู้จักคำสั่ง `{}`", get(ContextKind::InvalidSubcommand))
        }
        ErrorKind::InvalidValue => {
            let valid = get(ContextKind::ValidValue);
            let mut text = format!(
                "ค่า `{}` ใช้กับ {} ไม่ได้",
                get(ContextKind::InvalidValue),
                get(ContextKind::InvalidArg)
            );
            if !valid.is_empty() {
                text.push_str(&format!(" (ใช้ได้: {valid})"));
            }
            text
        }
        ErrorKind::ValueValidation => format!(
            "ค่า `{}` ของ {} ไม่ถูกต้อง",
            get(ContextKind::InvalidValue),
            get(ContextKind::InvalidArg)
        ),
        ErrorKind::MissingRequiredArgument => {
            format!("ยังขาด {}", get(ContextKind::InvalidArg))
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "ต้องบอกคำสั่งที่จะทำ".to_owned()
        }
        ErrorKind::ArgumentConflict => format!(
            "{} ใช้พร้อมกับ {} ไม่ได้",
            get(ContextKind::InvalidArg),
            get(ContextKind::PriorArg)
        ),
        ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("จำนวนค่าของ {} ไม่ถูกต้อง", get(ContextKind::InvalidArg))
        }
        _ => "คำสั่งไม่ถูกต้อง".to_owned(),
    };
    let usage = get(ContextKind::Usage);
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    if usage.is_empty() {
        format!("ผิดพลาด: {problem}\n\nดูวิธีใช้: faenban --help\n")
    } else {
        format!("ผิดพลาด: {problem}\n\nการใช้งาน: {usage}\n\nดูวิธีใช้: เติม --help ท้ายคำสั่ง\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command and every option has its Thai words: one added
    /// without them would show English under `--lang th`.
    #[test]
    fn every_command_and_option_is_described_in_thai() {
        fn walk(command: &Command, path: &str, missing: &mut Vec<String>) {
            if command_th(path).is_none() {
                missing.push(format!("command `{path}`"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_global_set() && !path.is_empty() {
                    continue;
                }
                if argument_th(path, id).is_none() {
                    missing.push(format!("`{path}` --{id}"));
                }
            }
            for sub in command.get_subcommands() {
                let child = if path.is_empty() {
                    sub.get_name().to_owned()
                } else {
                    format!("{path} {}", sub.get_name())
                };
                walk(sub, &child, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&crate::cli::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no Thai for: {missing:?}");
    }
}
