//! `faenban report`: the programme's figures per area, from the records on
//! this laptop (a province's or a team's pulled scope, or a volunteer's own
//! file), as the core's report layer computes them; shown as a table, or
//! written as JSON or CSV.

use std::path::Path;

use anyhow::Result;
use faenban_core::codes::AreaCode;
use faenban_core::report::{self, AreaFigures, Report, ReportOptions};
use faenban_core::Dimension;

use super::{area_code, bad_input, builtin_areas, pad, write_atomically, write_stdout, Context};
use crate::cli::ReportFormat;
use crate::lang::Lang;

/// What `faenban report` was asked.
#[derive(Debug)]
pub struct ReportArgs<'a> {
    pub area: Option<&'a str>,
    pub level: Option<&'a str>,
    pub dimension: Option<&'a str>,
    pub fiscal_year: Option<i32>,
    pub format: ReportFormat,
    pub output: Option<&'a Path>,
}

/// `faenban report`.
pub fn report(context: &mut Context, args: ReportArgs<'_>) -> Result<()> {
    let lang = context.lang;
    let options = options(lang, &args)?;
    // From the households' digests, which the store keeps current with
    // every write: one small row per household, not every record.
    let report = context.store.report(builtin_areas(), &options)?;
    let bytes = match (args.format, context.json) {
        (ReportFormat::Xlsx, _) => faenban_workbook::workbook(&report)?,
        (ReportFormat::Json, _) | (_, true) => {
            (serde_json::to_string_pretty(&report)? + "\n").into_bytes()
        }
        (ReportFormat::Csv, _) => csv(&report).into_bytes(),
        (ReportFormat::Table, _) => table(lang, &report).into_bytes(),
    };
    let write = |out: &mut dyn std::io::Write| -> Result<()> { Ok(out.write_all(&bytes)?) };
    match args.output {
        Some(path) => write_atomically(path, write),
        None => write_stdout(write),
    }
}

fn options(lang: Lang, args: &ReportArgs<'_>) -> Result<ReportOptions> {
    if args.format == ReportFormat::Xlsx && args.output.is_none() {
        return Err(bad_input(
            lang,
            "ไฟล์ Excel (xlsx) แสดงบนจอไม่ได้ ให้ระบุไฟล์ด้วย --output เช่น --output รายงาน.xlsx",
            "a workbook (xlsx) cannot be shown on a screen; name a file with --output, e.g. --output report.xlsx",
        ));
    }
    let area: Option<AreaCode> = args.area.map(|a| area_code(lang, a, false)).transpose()?;
    let level = match args.level {
        None => None,
        Some(key) => Some(report::level_from_key(key).ok_or_else(|| {
            bad_input(
                lang,
                format!("ระดับพื้นที่ `{key}` ไม่รู้จัก ใช้ province, district, subdistrict หรือ village"),
                format!("unknown level `{key}`; use province, district, subdistrict or village"),
            )
        })?),
    };
    let dimension = match args.dimension {
        None => None,
        Some(key) => Some(Dimension::from_key(key).ok_or_else(|| {
            bad_input(
                lang,
                format!("ไม่รู้จักด้าน `{key}` ใช้ health, living, education, income หรือ accessibility"),
                format!("unknown dimension `{key}`; use health, living, education, income or accessibility"),
            )
        })?),
    };
    if let Some(year) = args.fiscal_year {
        if year < 2400 {
            return Err(bad_input(
                lang,
                format!("ปีงบประมาณเป็น พ.ศ.: {year} น่าจะหมายถึง {}", year + 543),
                format!(
                    "the fiscal year is in the Buddhist Era: {year} probably means {}",
                    year + 543
                ),
            ));
        }
    }
    Ok(ReportOptions {
        area,
        level,
        dimension,
        fiscal_year: args.fiscal_year,
    })
}

/// The dimensions the report holds, in TPMAP order.
fn in_tpmap_order(report: &Report) -> Vec<&'static str> {
    Dimension::ALL
        .map(Dimension::key)
        .into_iter()
        .filter(|key| report.total.dimensions.contains_key(*key))
        .collect()
}

/// A table cell: `text` padded to `width` columns of the terminal, and
/// always at least one space before the next.
fn column(text: &str, width: usize) -> String {
    let padded = pad(text, width);
    if padded.len() == text.len() {
        format!("{text} ")
    } else {
        padded
    }
}

fn grouped(n: u64) -> String {
    faenban_core::money::group_thousands(n)
}

fn dimension_label(lang: Lang, key: &str) -> &'static str {
    let dimension = Dimension::from_key(key);
    match (lang, dimension) {
        (Lang::Th, Some(d)) => d.name_th(),
        (Lang::En, Some(d)) => d.name_en(),
        _ => "",
    }
}

/// The report as a person reads it: the total, in full, then a line per area.
fn table(lang: Lang, report: &Report) -> String {
    let mut out = String::new();
    block(&mut out, lang, &report.total);
    if !report.areas.is_empty() {
        let keys = in_tpmap_order(report);
        out.push('\n');
        out.push_str(&column(lang.pick("พื้นที่", "area"), 40));
        out.push_str(&column(lang.pick("ครัวเรือน", "households"), 12));
        for key in &keys {
            out.push_str(&column(dimension_label(lang, key), 24));
        }
        out.push('\n');
        for area in &report.areas {
            out.push_str(&column(&format!("{} {}", area.code, area.name_th), 40));
            out.push_str(&column(&grouped(area.households), 12));
            for key in &keys {
                let cell = area.dimensions.get(*key).map_or(String::new(), |d| {
                    format!(
                        "{}/{} {}",
                        grouped(d.helped),
                        grouped(d.deprived),
                        d.percent_helped
                            .as_deref()
                            .map_or("-".to_owned(), |p| format!("{p}%"))
                    )
                });
                out.push_str(&column(&cell, 24));
            }
            out.push('\n');
        }
        out.push_str(lang.pick(
            "(ต่อด้าน: ได้รับช่วยเหลือ/ขาดแคลน ร้อยละ)\n",
            "(per dimension: helped/deprived, percent)\n",
        ));
    }
    out
}

fn block(out: &mut String, lang: Lang, area: &AreaFigures) {
    let name = if area.code.is_empty() {
        lang.pick("ทุกพื้นที่ในไฟล์นี้", "every area in this file")
            .to_owned()
    } else {
        format!("{} {}", area.code, area.name_th)
    };
    out.push_str(&format!(
        "{name}\n{} {}  {} {}\n",
        lang.pick("ครัวเรือน:", "households:"),
        grouped(area.households),
        lang.pick("คนจนเป้าหมาย:", "target poor:"),
        grouped(area.target_poor)
    ));
    out.push_str(&format!(
        "{} {} {}, {} {}, {} {}\n",
        lang.pick("กลุ่ม:", "classification:"),
        lang.pick("ต้องสงเคราะห์", "needs welfare"),
        grouped(area.classification.needs_welfare),
        lang.pick("พัฒนาได้", "can develop"),
        grouped(area.classification.can_develop),
        lang.pick("ยังไม่จัดกลุ่ม", "not classified"),
        grouped(area.classification.unclassified)
    ));
    out.push('\n');
    out.push_str(&column(lang.pick("ด้าน", "dimension"), 28));
    for heading in [
        lang.pick("สำรวจ", "surveyed"),
        lang.pick("ขาดแคลน", "deprived"),
        lang.pick("ได้รับช่วยเหลือ", "helped"),
        lang.pick("ร้อยละ", "percent"),
        lang.pick("ช่วยทั้งที่ไม่ขาด", "helped, not deprived"),
    ] {
        out.push_str(&column(heading, 18));
    }
    out.push('\n');
    for key in Dimension::ALL.map(Dimension::key) {
        let Some(d) = area.dimensions.get(key) else {
            continue;
        };
        out.push_str(&column(dimension_label(lang, key), 28));
        for cell in [
            grouped(d.surveyed),
            grouped(d.deprived),
            grouped(d.helped),
            d.percent_helped.clone().unwrap_or_else(|| "-".into()),
            grouped(d.helped_not_deprived),
        ] {
            out.push_str(&column(&cell, 18));
        }
        out.push('\n');
    }
    let income = &area.income;
    out.push('\n');
    match (&income.first_mean_monthly, &income.latest_mean_monthly) {
        (Some(first), Some(latest)) => out.push_str(&format!(
            "{} {} → {} {} ({}%, {} {})\n",
            lang.pick(
                "รายได้เฉลี่ยต่อเดือน ครั้งแรก → ล่าสุด:",
                "mean monthly income, first → latest visit:"
            ),
            first.grouped(),
            latest.grouped(),
            lang.pick("บาท", "baht"),
            income.percent_change.as_deref().unwrap_or("-"),
            grouped(income.households_with_income),
            lang.pick("ครัวเรือน", "households")
        )),
        _ => out.push_str(lang.pick(
            "รายได้ก่อน/หลัง: ยังไม่มีครัวเรือนที่สำรวจสองครั้ง\n",
            "income before/after: no household surveyed twice yet\n",
        )),
    }
    out.push_str(&format!(
        "{} {}, {} {} ({} {})\n",
        lang.pick("มีเจ้าหน้าที่ดูแล:", "with an official:"),
        grouped(area.pairing.with_official),
        lang.pick("ยังไม่มี:", "without:"),
        grouped(area.pairing.without_official),
        lang.pick("เจ้าหน้าที่", "officials"),
        grouped(area.pairing.officials)
    ));
    out.push_str(&format!(
        "{} {} {}, {} {}, {} {}; {} {}\n",
        lang.pick("ข้อมูลที่ขาด:", "gaps:"),
        lang.pick("ยังไม่สำรวจ", "never surveyed"),
        grouped(area.gaps.never_surveyed),
        lang.pick("สำรวจค้างไว้", "survey unfinished"),
        grouped(area.gaps.unfinished_surveys),
        lang.pick("ไม่มีหัวหน้าครัวเรือน", "no head"),
        grouped(area.gaps.no_head),
        lang.pick("ข้อขัดแย้งรอตรวจ:", "conflicts to review:"),
        grouped(area.conflicts)
    ));
}

/// One row per area (the total first), for Excel: UTF-8 with a byte-order mark.
fn csv(report: &Report) -> String {
    let keys = in_tpmap_order(report);
    let mut header = vec![
        "code",
        "level",
        "name_th",
        "households",
        "target_poor",
        "needs_welfare",
        "can_develop",
        "unclassified",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    for key in &keys {
        for figure in [
            "surveyed",
            "deprived",
            "helped",
            "percent_helped",
            "helped_not_deprived",
        ] {
            header.push(format!("{key}_{figure}"));
        }
    }
    header.extend(
        [
            "income_first_mean_monthly",
            "income_latest_mean_monthly",
            "income_percent_change",
            "with_official",
            "without_official",
            "never_surveyed",
            "unfinished_surveys",
            "no_head",
            "conflicts",
        ]
        .map(str::to_owned),
    );
    let mut out = format!("\u{feff}{}\n", header.join(","));
    for area in std::iter::once(&report.total).chain(&report.areas) {
        let mut row = vec![
            area.code.clone(),
            area.level.clone(),
            area.name_th.clone(),
            area.households.to_string(),
            area.target_poor.to_string(),
            area.classification.needs_welfare.to_string(),
            area.classification.can_develop.to_string(),
            area.classification.unclassified.to_string(),
        ];
        for key in &keys {
            let d = area.dimensions.get(*key).cloned().unwrap_or_default();
            row.extend([
                d.surveyed.to_string(),
                d.deprived.to_string(),
                d.helped.to_string(),
                d.percent_helped.unwrap_or_default(),
                d.helped_not_deprived.to_string(),
            ]);
        }
        row.extend([
            area.income
                .first_mean_monthly
                .map(|b| b.to_string())
                .unwrap_or_default(),
            area.income
                .latest_mean_monthly
                .map(|b| b.to_string())
                .unwrap_or_default(),
            area.income.percent_change.clone().unwrap_or_default(),
            area.pairing.with_official.to_string(),
            area.pairing.without_official.to_string(),
            area.gaps.never_surveyed.to_string(),
            area.gaps.unfinished_surveys.to_string(),
            area.gaps.no_head.to_string(),
            area.conflicts.to_string(),
        ]);
        let cells: Vec<_> = row.iter().map(|c| faenban_core::csv::cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
