//! `faenban-fixtures`: writes a seeded synthetic Khon Kaen dataset into a
//! faenban database file, and optionally a TPMAP-style list to `import`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use faenban_core::codes::AreaCode;
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
    /// The province (2 digits; Khon Kaen 40, Kalasin 46, Sisaket 33).
    #[arg(long, default_value = "40")]
    province: String,
    /// Also write a target list of this many households to --csv.
    #[arg(long, requires = "csv", default_value_t = 0)]
    csv_rows: usize,
    /// Where to write the target list.
    #[arg(long)]
    csv: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = Spec {
        seed: args.seed,
        households: args.households,
        detail: if args.minimal {
            Detail::Minimal
        } else {
            Detail::Full
        },
        province: AreaCode::parse(&args.province)?,
    };
    let mut store = Store::open(&args.db)?;
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
    if let Some(path) = &args.csv {
        std::fs::write(path, target_list_csv(args.seed, args.csv_rows))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}: {} rows", path.display(), args.csv_rows);
    }
    Ok(())
}
