//! `faenban`: the volunteer's command-line tool. Parses arguments, opens the
//! database, runs one command, and reports failures with a documented exit code.

mod cli;
mod commands;
mod failure;
mod help_th;
mod lang;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use faenban_store::Store;

use crate::cli::{Cli, Command};
use crate::commands::Context;
use crate::failure::Failure;
use crate::lang::Lang;

fn main() -> ExitCode {
    // The language is needed before the arguments are understood: their
    // help and their errors are in it.
    let lang = lang_in_args().unwrap_or_else(Lang::from_locale);
    let mut command = Cli::command();
    if lang == Lang::Th {
        command = help_th::in_thai(command);
    }
    let parsed = command
        .try_get_matches_from(std::env::args_os())
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if lang == Lang::Th
                && !matches!(
                    error.kind(),
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                )
            {
                eprint!("{}", help_th::error_th(&error));
                return ExitCode::from(2);
            }
            error.exit();
        }
    };
    let lang = cli.lang.unwrap_or(lang);
    match run(cli, lang) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => Failure::from_error(lang, error).report(lang),
    }
}

/// The `--lang` given on the command line, if any.
fn lang_in_args() -> Option<Lang> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--lang=") {
            Some(value) => value.to_owned(),
            None if arg == "--lang" => args.next()?,
            None => continue,
        };
        return match value.as_str() {
            "th" => Some(Lang::Th),
            "en" => Some(Lang::En),
            _ => None,
        };
    }
    None
}

/// Where the database lives when `--db` and `FAENBAN_DB` are not given.
fn default_db_path() -> PathBuf {
    let data_dir = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("APPDATA").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data_dir.join("faenban").join("faenban.db")
}

fn run(cli: Cli, lang: Lang) -> anyhow::Result<()> {
    let path = cli.db.clone().unwrap_or_else(default_db_path);
    // Only `init` makes a new file: a mistyped --db must not leave an empty
    // database behind and report "not found".
    if !matches!(cli.command, Command::Init { .. }) && !path.exists() {
        return Err(failure::Failure::new(
            failure::Kind::Storage,
            lang,
            format!(
                "ไม่มีฐานข้อมูลที่ {} (ตั้งค่าเครื่องด้วย faenban init หรือตรวจ --db)",
                path.display()
            ),
            format!(
                "there is no database at {} (set this laptop up with faenban init, or check --db)",
                path.display()
            ),
        )
        .into());
    }
    if path.is_dir() {
        return Err(failure::Failure::new(
            failure::Kind::Storage,
            lang,
            format!(
                "{} เป็นโฟลเดอร์ ไม่ใช่ไฟล์ฐานข้อมูล ให้ --db ชี้ไปที่ไฟล์ เช่น {}",
                path.display(),
                path.join("faenban.db").display()
            ),
            format!(
                "{} is a folder, not a database file; give --db a file, such as {}",
                path.display(),
                path.join("faenban.db").display()
            ),
        )
        .into());
    }
    // An empty file is what a full disk or a cut-off copy leaves: it is not
    // a new laptop, and taking it for one would hide that the data is gone.
    if !matches!(cli.command, Command::Init { .. })
        && std::fs::metadata(&path).is_ok_and(|metadata| metadata.len() == 0)
    {
        return Err(failure::Failure::new(
            failure::Kind::Storage,
            lang,
            format!(
                "ไฟล์ฐานข้อมูล {} ว่างเปล่า (0 ไบต์) ไม่ใช่ฐานข้อมูลของ faenban อาจถูกตัดเพราะดิสก์เต็มหรือคัดลอกไม่ครบ ให้กู้คืนจากสำเนา ข้อมูลที่ sync แล้วยังอยู่บนเซิร์ฟเวอร์",
                path.display()
            ),
            format!(
                "the database file {} is empty (0 bytes), not a faenban database: a full disk or a cut-off copy leaves this; restore it from a backup (what was synced is still on the server)",
                path.display()
            ),
        )
        .into());
    }
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating the folder {}", folder.display()))?;
    }
    let store = Store::open(&path)?;
    let mut context = Context {
        store,
        lang,
        json: cli.json,
    };
    match cli.command {
        Command::Init { name } => commands::init(&mut context, &name),
        Command::Status => commands::status(&mut context),
        Command::Household(command) => commands::household(&mut context, command),
        Command::Member(command) => commands::member(&mut context, command),
        Command::Survey(args) => commands::survey(&mut context, args),
        Command::Assist(command) => commands::assist(&mut context, command),
        Command::Official(command) => commands::official(&mut context, command),
        Command::Pair {
            official,
            households,
            end,
        } => commands::pair(&mut context, &official, &households, end),
        Command::Pairs { official } => commands::pairs(&mut context, official.as_deref()),
        Command::History { id } => commands::history(&mut context, &id),
        Command::Conflicts(command) => commands::conflicts(&mut context, command),
        Command::Import {
            file,
            dry_run,
            rejects,
        } => commands::import(&mut context, &file, dry_run, rejects.as_deref()),
        Command::Export { format, output } => {
            commands::export(&mut context, format, output.as_deref())
        }
        Command::Login {
            server,
            token,
            ca,
            retries,
        } => commands::login(&mut context, &server, token, ca.as_deref(), retries),
        Command::Sync { retries } => commands::sync(&mut context, retries),
        Command::Bundle(cli::BundleCommand::Export { file }) => {
            commands::bundles::export(&mut context, &file)
        }
        Command::Bundle(cli::BundleCommand::Import { file }) => {
            commands::bundles::import(&mut context, &file)
        }
        Command::Outbox(command) => commands::outbox(&mut context, command),
        Command::Check => commands::check(&mut context),
        Command::Report {
            area,
            level,
            dimension,
            fiscal_year,
            format,
            output,
        } => commands::report(
            &mut context,
            commands::ReportArgs {
                area: area.as_deref(),
                level: level.as_deref(),
                dimension: dimension.as_deref(),
                fiscal_year,
                format,
                output: output.as_deref(),
            },
        ),
    }
}
