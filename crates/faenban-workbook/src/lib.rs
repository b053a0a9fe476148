//! The office's report as an Excel workbook: the figures the core's report
//! layer computed (`faenban_core::report`), a sheet per section, for the
//! CLI and the server to hand out alike.

use faenban_core::report::{AreaFigures, Report};
use faenban_core::Dimension;
pub use rust_xlsxwriter::XlsxError;

/// The dimensions the report holds, in TPMAP order.
fn in_tpmap_order(report: &Report) -> Vec<Dimension> {
    Dimension::ALL
        .into_iter()
        .filter(|dimension| report.total.dimensions.contains_key(dimension.key()))
        .collect()
}

/// The report as a workbook: a sheet per section, Thai headers, the header
/// row frozen, counts and baht as numbers, percentages as percentages, area
/// codes as text.
pub fn workbook(report: &Report) -> Result<Vec<u8>, XlsxError> {
    use rust_xlsxwriter::{Format, Workbook, Worksheet};
    let header = Format::new().set_bold();
    let baht = Format::new().set_num_format("#,##0.00");
    let percent = Format::new().set_num_format("0.00%");
    let mut book = Workbook::new();
    let areas: Vec<&AreaFigures> = std::iter::once(&report.total)
        .chain(&report.areas)
        .collect();
    let name = |area: &AreaFigures| {
        if area.code.is_empty() {
            "ทุกพื้นที่".to_owned()
        } else {
            area.name_th.clone()
        }
    };
    let decimal = |text: &str| text.parse::<f64>().ok();
    let headings = |sheet: &mut Worksheet, titles: &[&str], wide: u16| -> Result<(), XlsxError> {
        for (col, text) in titles.iter().enumerate() {
            let col = col as u16;
            sheet.write_string_with_format(0, col, *text, &header)?;
            sheet.set_column_width(col, if col == wide { 40 } else { 18 })?;
        }
        sheet.set_freeze_panes(1, 0)?;
        Ok(())
    };

    let sheet = book.add_worksheet();
    sheet.set_name("สรุป")?;
    headings(
        sheet,
        &[
            "รหัสพื้นที่",
            "ระดับ",
            "พื้นที่",
            "ครัวเรือน",
            "คนจนเป้าหมาย",
            "ต้องสงเคราะห์",
            "พัฒนาได้",
            "ยังไม่จัดกลุ่ม",
            "มีเจ้าหน้าที่ดูแล",
            "ยังไม่มีเจ้าหน้าที่",
            "ยังไม่สำรวจ",
            "สำรวจค้างไว้",
            "ไม่มีหัวหน้าครัวเรือน",
            "ข้อขัดแย้งรอตรวจ",
        ],
        2,
    )?;
    for (row, area) in areas.iter().enumerate() {
        let row = row as u32 + 1;
        sheet.write_string(row, 0, &area.code)?;
        sheet.write_string(row, 1, &area.level)?;
        sheet.write_string(row, 2, name(area))?;
        let counts = [
            area.households,
            area.target_poor,
            area.classification.needs_welfare,
            area.classification.can_develop,
            area.classification.unclassified,
            area.pairing.with_official,
            area.pairing.without_official,
            area.gaps.never_surveyed,
            area.gaps.unfinished_surveys,
            area.gaps.no_head,
            area.conflicts,
        ];
        for (offset, count) in counts.into_iter().enumerate() {
            sheet.write_number(row, 3 + offset as u16, count as f64)?;
        }
    }

    let sheet = book.add_worksheet();
    sheet.set_name("รายด้าน")?;
    headings(
        sheet,
        &[
            "รหัสพื้นที่",
            "พื้นที่",
            "ด้าน",
            "สำรวจ",
            "ขาดแคลน",
            "ได้รับช่วยเหลือ",
            "ร้อยละที่ได้รับช่วยเหลือ",
            "ช่วยทั้งที่ไม่ขาด",
            "อยู่รอด",
            "พอเพียง",
            "ยั่งยืน",
            "พ้นความขาดแคลน",
            "ตกเป็นขาดแคลน",
        ],
        1,
    )?;
    let mut row = 1;
    for area in &areas {
        for dimension in in_tpmap_order(report) {
            let Some(d) = area.dimensions.get(dimension.key()) else {
                continue;
            };
            sheet.write_string(row, 0, &area.code)?;
            sheet.write_string(row, 1, name(area))?;
            sheet.write_string(row, 2, dimension.name_th())?;
            for (col, count) in [(3, d.surveyed), (4, d.deprived), (5, d.helped)] {
                sheet.write_number(row, col, count as f64)?;
            }
            if let Some(share) = d.percent_helped.as_deref().and_then(decimal) {
                sheet.write_number_with_format(row, 6, share / 100.0, &percent)?;
            }
            let counts = [
                d.helped_not_deprived,
                d.stage.survive,
                d.stage.sufficient,
                d.stage.sustainable,
                d.left_deprivation,
                d.fell_into_deprivation,
            ];
            for (offset, count) in counts.into_iter().enumerate() {
                sheet.write_number(row, 7 + offset as u16, count as f64)?;
            }
            row += 1;
        }
    }

    let sheet = book.add_worksheet();
    sheet.set_name("รายได้ก่อนหลัง")?;
    headings(
        sheet,
        &[
            "รหัสพื้นที่",
            "พื้นที่",
            "สำรวจสองครั้งขึ้นไป",
            "มีรายได้ทั้งสองครั้ง",
            "รายได้เฉลี่ยต่อเดือน ครั้งแรก (บาท)",
            "รายได้เฉลี่ยต่อเดือน ล่าสุด (บาท)",
            "ร้อยละที่เปลี่ยน",
        ],
        1,
    )?;
    for (row, area) in areas.iter().enumerate() {
        let row = row as u32 + 1;
        let income = &area.income;
        sheet.write_string(row, 0, &area.code)?;
        sheet.write_string(row, 1, name(area))?;
        sheet.write_number(row, 2, income.households_revisited as f64)?;
        sheet.write_number(row, 3, income.households_with_income as f64)?;
        for (col, amount) in [
            (4, income.first_mean_monthly),
            (5, income.latest_mean_monthly),
        ] {
            if let Some(amount) = amount {
                sheet.write_number_with_format(row, col, amount.satang() as f64 / 100.0, &baht)?;
            }
        }
        if let Some(change) = income.percent_change.as_deref().and_then(decimal) {
            sheet.write_number_with_format(row, 6, change / 100.0, &percent)?;
        }
    }

    totals_sheet(
        &mut book,
        "ภาคส่วน",
        &areas,
        &name,
        &headings,
        &baht,
        |area| &area.sectors,
    )?;
    totals_sheet(
        &mut book,
        "หน่วยงาน",
        &areas,
        &name,
        &headings,
        &baht,
        |area| &area.agencies,
    )?;
    book.save_to_buffer()
}

/// A sheet of assistance totals per area, by `pick` (its sectors, its agencies).
fn totals_sheet(
    book: &mut rust_xlsxwriter::Workbook,
    title: &str,
    areas: &[&AreaFigures],
    name: &impl Fn(&AreaFigures) -> String,
    headings: &impl Fn(&mut rust_xlsxwriter::Worksheet, &[&str], u16) -> Result<(), XlsxError>,
    baht: &rust_xlsxwriter::Format,
    pick: impl Fn(
        &AreaFigures,
    ) -> &std::collections::BTreeMap<String, faenban_core::report::AssistanceTotals>,
) -> Result<(), XlsxError> {
    let sheet = book.add_worksheet();
    sheet.set_name(title)?;
    headings(
        sheet,
        &[
            "รหัสพื้นที่",
            "พื้นที่",
            title,
            "รายการ",
            "ครัวเรือน",
            "จำนวนเงิน (บาท)",
            "วางแผนไว้",
            "กำลังดำเนินการ",
            "เสร็จแล้ว",
        ],
        1,
    )?;
    let mut row = 1;
    for area in areas {
        for (group, totals) in pick(area) {
            sheet.write_string(row, 0, &area.code)?;
            sheet.write_string(row, 1, name(area))?;
            sheet.write_string(row, 2, group)?;
            sheet.write_number(row, 3, totals.records as f64)?;
            sheet.write_number(row, 4, totals.households as f64)?;
            sheet.write_number_with_format(row, 5, totals.baht.satang() as f64 / 100.0, baht)?;
            sheet.write_number(row, 6, totals.planned as f64)?;
            sheet.write_number(row, 7, totals.in_progress as f64)?;
            sheet.write_number(row, 8, totals.done as f64)?;
            row += 1;
        }
    }
    Ok(())
}
