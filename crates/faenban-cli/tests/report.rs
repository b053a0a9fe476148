//! `faenban report` through the real binary: its JSON against
//! `schema/report.schema.json`, its figures against the core's report of
//! the same file, its table in Thai, and its refusals.

mod support;

use faenban_fixtures::{populate, Spec};
use faenban_store::Store;
use serde_json::Value;
use support::Laptop;

/// A laptop holding a generated province of `households`.
fn province(households: usize) -> Laptop {
    let laptop = Laptop::new();
    let mut store = Store::open(&laptop.db).unwrap();
    populate(&mut store, &Spec::khon_kaen(2568, households)).unwrap();
    laptop
}

/// The checks of JSON Schema that `schema/report.schema.json` uses: `$ref`,
/// `type`, `const`, `enum`, `minimum`, `pattern` (the decimal one),
/// `required`, `properties`, `additionalProperties` and `items`.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/$defs/");
        return validate(root, &root["$defs"][name], value, at, errors);
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.contains(&kind) {
        errors.push(format!("{at}: a {kind}, not {types:?}"));
        return;
    }
    if let Some(expected) = schema.get("const") {
        if expected != value {
            errors.push(format!("{at}: {value}, not {expected}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(minimum), Some(n)) = (schema["minimum"].as_i64(), value.as_i64()) {
        if n < minimum {
            errors.push(format!("{at}: {n} < {minimum}"));
        }
    }
    if let (Some(_), Some(text)) = (schema["pattern"].as_str(), value.as_str()) {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let decimal = digits.split_once('.').is_some_and(|(whole, cents)| {
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && cents.len() == 2
                && cents.bytes().all(|b| b.is_ascii_digit())
        });
        if !decimal {
            errors.push(format!("{at}: `{text}` is not a decimal with two places"));
        }
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !fields.contains_key(name) {
                errors.push(format!("{at}: no `{name}`"));
            }
        }
        for (name, field) in fields {
            let place = format!("{at}.{name}");
            match schema["properties"].get(name) {
                Some(property) => validate(root, property, field, &place, errors),
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => errors.push(format!("{place}: not in the schema")),
                    Value::Object(_) => {
                        validate(root, &schema["additionalProperties"], field, &place, errors)
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (n, element) in items.iter().enumerate() {
            validate(root, item, element, &format!("{at}[{n}]"), errors);
        }
    }
}

#[test]
fn the_json_report_follows_its_schema_and_the_cores_figures() {
    let laptop = province(300);
    let report = laptop.json(&["report", "--format", "json", "--level", "district"]);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    validate(&schema, &schema, &report, "report", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // The check does catch what is off: a missing count, a count as text.
    let mut broken = report.clone();
    broken["total"]
        .as_object_mut()
        .unwrap()
        .remove("households");
    broken["total"]["target_poor"] = Value::from("12");
    let mut errors = Vec::new();
    validate(&schema, &schema, &broken, "report", &mut errors);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    // The rows add up to the total.
    let total = report["total"]["households"].as_u64().unwrap();
    assert_eq!(total, 300);
    let rows: u64 = report["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|area| area["households"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, total);
    for key in ["health", "living", "education", "income", "accessibility"] {
        let dimension = &report["total"]["dimensions"][key];
        let deprived = dimension["deprived"].as_u64().unwrap();
        let helped = dimension["helped"].as_u64().unwrap();
        assert!(helped <= deprived, "{key}: {dimension}");
        let across: u64 = report["areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|area| area["dimensions"][key]["deprived"].as_u64().unwrap())
            .sum();
        assert_eq!(across, deprived, "{key}");
    }
    // The same file's report from the core, directly, is the same report.
    let store = Store::open(&laptop.db).unwrap();
    let mut records = Vec::new();
    for kind in faenban_core::RecordKind::KNOWN {
        records.extend(store.records(&kind).unwrap());
    }
    let direct = faenban_core::report::build(
        records,
        &faenban_core::catalogue::Catalogues::builtin(),
        &faenban_core::areas::Areas::builtin(),
        &faenban_core::report::ReportOptions {
            level: Some(faenban_core::codes::AreaLevel::District),
            ..Default::default()
        },
    );
    assert_eq!(report, serde_json::to_value(&direct).unwrap());
    // The CSV carries the same numbers, a row per area after the total.
    let csv = laptop.ok(&["report", "--format", "csv", "--level", "district"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("\u{feff}code,level,name_th,households"));
    assert_eq!(lines.len(), 2 + report["areas"].as_array().unwrap().len());
    assert!(lines[1].starts_with(",all,,300,"), "{}", lines[1]);
}

#[test]
fn the_table_is_thai_and_bad_requests_are_refused_with_the_reason() {
    let laptop = province(40);
    let table = laptop.ok(&["--lang", "th", "report", "--area", "4001"]);
    assert!(
        table.contains("ครัวเรือน:") && table.contains("ด้านสุขภาพ"),
        "{table}"
    );
    assert!(table.contains("อ.เมืองขอนแก่น"), "{table}");
    let (code, stderr) = laptop.fails(&["--lang", "th", "report", "--fiscal-year", "2025"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("2568"), "{stderr}");
    let (code, _) = laptop.fails(&["report", "--level", "region"]);
    assert_eq!(code, 3);
    let (code, _) = laptop.fails(&["report", "--dimension", "wealth"]);
    assert_eq!(code, 3);
    let (code, _) = laptop.fails(&["report", "--area", "4099"]);
    assert_eq!(code, 3);
}

#[test]
fn the_workbook_holds_the_json_reports_figures_cell_by_cell() {
    use calamine::{open_workbook, Data, Reader, Xlsx};
    let laptop = province(120);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("รายงาน.xlsx");
    laptop.ok(&[
        "report",
        "--level",
        "district",
        "--format",
        "xlsx",
        "--output",
        path.to_str().unwrap(),
    ]);
    let report = laptop.json(&["report", "--format", "json", "--level", "district"]);
    let mut book: Xlsx<_> = open_workbook(&path).unwrap();
    assert_eq!(
        book.sheet_names(),
        ["สรุป", "รายด้าน", "รายได้ก่อนหลัง", "ภาคส่วน", "หน่วยงาน"]
    );
    let areas: Vec<&Value> = std::iter::once(&report["total"])
        .chain(report["areas"].as_array().unwrap())
        .collect();
    let summary = book.worksheet_range("สรุป").unwrap();
    assert_eq!(summary.get((0, 3)), Some(&Data::String("ครัวเรือน".into())));
    for (n, area) in areas.iter().enumerate() {
        let row = n + 1;
        // Area codes stay text (a leading zero would not be lost); the
        // total has none.
        let code = area["code"].as_str().unwrap();
        let cell = summary.get((row, 0));
        if code.is_empty() {
            assert!(
                matches!(cell, Some(Data::Empty) | None),
                "row {row}: {cell:?}"
            );
        } else {
            assert_eq!(cell, Some(&Data::String(code.into())), "row {row}");
        }
        let number = |col: usize| match summary.get((row, col)) {
            Some(Data::Float(value)) => *value as u64,
            other => panic!("row {row} col {col}: {other:?}"),
        };
        assert_eq!(number(3), area["households"].as_u64().unwrap());
        assert_eq!(number(4), area["target_poor"].as_u64().unwrap());
        assert_eq!(
            number(5),
            area["classification"]["needs_welfare"].as_u64().unwrap()
        );
        assert_eq!(number(13), area["conflicts"].as_u64().unwrap());
    }
    // Per dimension, in TPMAP order, percentages as fractions.
    let dimensions = book.worksheet_range("รายด้าน").unwrap();
    let keys = ["health", "living", "education", "income", "accessibility"];
    let mut row = 1;
    for area in &areas {
        for key in keys {
            let d = &area["dimensions"][key];
            let float = |col: usize| match dimensions.get((row, col)) {
                Some(Data::Float(value)) => Some(*value),
                Some(Data::Empty) | None => None,
                other => panic!("row {row} col {col}: {other:?}"),
            };
            assert_eq!(
                float(4).map(|v| v as u64),
                d["deprived"].as_u64(),
                "{key} row {row}"
            );
            assert_eq!(
                float(5).map(|v| v as u64),
                d["helped"].as_u64(),
                "{key} row {row}"
            );
            let percent = d["percent_helped"]
                .as_str()
                .map(|p| p.parse::<f64>().unwrap() / 100.0);
            match (float(6), percent) {
                (Some(cell), Some(expected)) => assert!((cell - expected).abs() < 1e-12),
                (cell, expected) => assert_eq!(cell, expected, "{key} row {row}"),
            }
            row += 1;
        }
    }
    // Baht with two decimals, as numbers.
    let sectors = book.worksheet_range("ภาคส่วน").unwrap();
    let mut row = 1;
    for area in &areas {
        for (_, totals) in area["sectors"].as_object().unwrap() {
            let expected: f64 = totals["baht"].as_str().unwrap().parse().unwrap();
            assert_eq!(sectors.get((row, 5)), Some(&Data::Float(expected)));
            row += 1;
        }
    }
    // Asked for the screen, a workbook is refused.
    let (code, stderr) = laptop.fails(&["--lang", "en", "report", "--format", "xlsx"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("--output"), "{stderr}");
}

/// LibreOffice (headless, Debian's `libreoffice-calc-nogui`; `.ci/run`
/// installs it) opens the workbook and reads back the summary's figures
/// as the JSON report gives them: the file is one a spreadsheet program
/// other than the library that wrote it can read.
#[test]
fn libreoffice_opens_the_workbook_and_reads_its_figures() {
    let soffice = std::path::Path::new("/usr/bin/soffice");
    assert!(
        soffice.exists(),
        "/usr/bin/soffice is missing: install Debian's `libreoffice-calc-nogui` \
         (`.ci/run` does) to run this test"
    );
    let laptop = province(60);
    let dir = tempfile::tempdir().unwrap();
    let workbook = dir.path().join("report.xlsx");
    laptop.ok(&[
        "report",
        "--level",
        "district",
        "--format",
        "xlsx",
        "--output",
        workbook.to_str().unwrap(),
    ]);
    let report = laptop.json(&["report", "--format", "json", "--level", "district"]);
    let output = std::process::Command::new(soffice)
        .arg(format!(
            "-env:UserInstallation=file://{}",
            dir.path().join("profile").display()
        ))
        .args([
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76",
        ])
        .arg("--outdir")
        .arg(dir.path())
        .arg(&workbook)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // The first sheet, สรุป: a header row, the total, then a row per district.
    let csv = std::fs::read_to_string(dir.path().join("report.csv")).unwrap();
    let rows: Vec<Vec<String>> = faenban_core::csv::parse(&csv)
        .unwrap()
        .into_iter()
        .map(|row| row.fields)
        .collect();
    assert_eq!(rows[0][3], "ครัวเรือน", "{csv}");
    let areas: Vec<&Value> = std::iter::once(&report["total"])
        .chain(report["areas"].as_array().unwrap())
        .collect();
    assert_eq!(rows.len(), areas.len() + 1, "{csv}");
    for (row, area) in rows[1..].iter().zip(areas) {
        assert_eq!(row[0], area["code"].as_str().unwrap(), "{csv}");
        assert_eq!(row[3], area["households"].to_string(), "{csv}");
        assert_eq!(row[4], area["target_poor"].to_string(), "{csv}");
    }
}
