//! `faenban-fixtures`: writes a seeded synthetic Khon Kaen dataset into a
//! faenban database file, shows what it holds per TPMAP dimension, and
//! optionally writes a TPMAP-style list to `import`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use faenban_core::codes::AreaCode;
use faenban_core::model::{assess_visit, decode, latest_visits, Household};
use faenban_core::{Catalogues, Dimension, RecordKind};
use faenban_fixtures::{populate, target_list_csv, Detail, Spec};
use faenban_store::Store;

/// Writes synthetic households (real Khon Kaen area codes, made-up people)
/// into a faenban database.
#[derive(Debug, Parser)]
#[command(name = "faenban-fixtures")]
struct Args {
    /// The database file to fill (created and set up as a device if new).
    #[arg(long)]
    db: PathBuf,
    /// The seed: the same seed gives the same data.
    #[arg(long, default_value_t = 2568)]
    seed: u64,
    /// How many households.
    #[arg(long, default_value_t = 200)]
    households: usize,
    /// Households and heads only (about ten changes each), for benchmarks.
    #[arg(long)]
    minimal: bool,
    /// Survey every household a second time a year later (before/after).
    #[arg(long)]
    second_visit: bool,
    /// The province (2 digits; Khon Kaen 40, Kalasin 46, Sisaket 33).
    #[arg(long, default_value = "40")]
    province: String,
    /// Also write a target list of this many households to --csv.
    #[arg(long, requires = "csv", default_value_t = 0)]
    csv_rows: usize,
    /// Add to a file that already holds records.
    #[arg(long)]
    append: bool,
    /// Where to write the target list.
    #[arg(long)]
    csv: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let spec = Spec {
        seed: args.seed,
        households: args.households,
        detail: if args.minimal {
            Detail::Minimal
        } else {
            Detail::Full
        },
        province: AreaCode::parse(&args.province)?,
        second_visit: args.second_visit,
    };
    let mut store = Store::open(&args.db)?;
    let held = store.status()?.records;
    if held > 0 && !args.append {
        anyhow::bail!(
            "{} already holds {held} records; give a new file, or --append to add more",
            args.db.display()
        );
    }
    let summary = populate(&mut store, &spec)?;
    println!(
        "{}: {} households, {} members, {} visits, {} assistance, {} officials, {} pairings, {} changes",
        args.db.display(),
        summary.households,
        summary.members,
        summary.visits,
        summary.assistance,
        summary.officials,
        summary.pairings,
        summary.changes
    );
    print_summary(&store)?;
    if let Some(path) = &args.csv {
        std::fs::write(path, target_list_csv(args.seed, args.csv_rows))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}: {} rows", path.display(), args.csv_rows);
    }
    Ok(())
}

/// How many households the file's latest surveys find deprived in each
/// dimension, and how many are target poor: the figure a district reports.
fn print_summary(store: &Store) -> anyhow::Result<()> {
    let catalogues = Catalogues::builtin();
    let mut welfare = std::collections::HashMap::new();
    for (key, state) in store.records(&RecordKind::Household)? {
        if let Ok(household) = decode::<Household>(&key, &state) {
            welfare.insert(key.id, household.value.welfare_card);
        }
    }
    let latest = latest_visits(store.records(&RecordKind::Visit)?);
    let mut deprived = [0usize; 5];
    let mut target_poor = 0;
    for (household, (visit, state)) in &latest {
        let welfare_card = welfare.get(household).copied().unwrap_or(false);
        let assessment = assess_visit(&catalogues, visit, state, welfare_card)?;
        for (n, dimension) in Dimension::ALL.iter().enumerate() {
            if assessment.is_deprived_in(*dimension) {
                deprived[n] += 1;
            }
        }
        target_poor += usize::from(assessment.target_poor);
    }
    println!(
        "surveyed households: {}; deprived per TPMAP dimension:",
        latest.len()
    );
    for (n, dimension) in Dimension::ALL.iter().enumerate() {
        println!(
            "  {:<26} {:>6}  {}",
            dimension.name_en(),
            deprived[n],
            dimension.name_th()
        );
    }
    println!("  {:<26} {target_poor:>6}  คนจนเป้าหมาย", "target poor");
    Ok(())
}
