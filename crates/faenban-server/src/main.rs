//! `faenban-server`: serves the sync protocol, and manages accounts on the
//! machine it runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use faenban_core::sync::{Role, Scope};
use faenban_core::Dimension;
use faenban_server::backend::{Backend, SqliteBackend};
use faenban_server::postgres::PostgresBackend;
use faenban_server::token;

#[derive(Debug, Parser)]
#[command(name = "faenban-server", version, about = "faenban's sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server's data is: a folder with its SQLite database, or a
/// PostgreSQL database.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct StoreArgs {
    /// The folder that holds the server's SQLite database.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A PostgreSQL database, as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// (or from FAENBAN_POSTGRES, which keeps a password out of the process list).
    #[arg(long, env = "FAENBAN_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
}

impl StoreArgs {
    /// Opens the store the arguments name.
    fn open(&self) -> anyhow::Result<Arc<dyn Backend>> {
        match (&self.data, &self.postgres) {
            (Some(data), _) => Ok(Arc::new(SqliteBackend::open(data).with_context(|| {
                format!("opening the server's store in {}", data.display())
            })?)),
            (None, Some(url)) => Ok(Arc::new(
                PostgresBackend::open(url).context("opening the server's PostgreSQL database")?,
            )),
            (None, None) => anyhow::bail!("give --data DIR or --postgres URL"),
        }
    }

    /// Where the store is, for the log (never a password).
    fn describe(&self) -> String {
        match (&self.data, &self.postgres) {
            (Some(data), _) => data
                .join(faenban_server::backend::DATABASE_FILE)
                .display()
                .to_string(),
            (None, Some(url)) => match url.parse::<postgres::Config>() {
                Ok(config) => format!(
                    "PostgreSQL database {} on {:?}",
                    config.get_dbname().unwrap_or("(default)"),
                    config.get_hosts()
                ),
                Err(_) => "PostgreSQL".to_owned(),
            },
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the sync protocol until Ctrl-C or SIGTERM.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address and port to listen on, such as 127.0.0.1:8080 (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// With --postgres: a streaming replica of that database to read the
        /// office's reports from, as postgres://… (or from
        /// FAENBAN_POSTGRES_REPLICA). Read from the primary while it is out of reach.
        #[arg(long, env = "FAENBAN_POSTGRES_REPLICA", hide_env_values = true)]
        report_replica: Option<String>,
    },
    /// Adds, lists and revokes accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Lists devices and enrolls a device under an account.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Moves a server's data from its SQLite folder into an empty
    /// PostgreSQL database; its laptops' logins, cursors and outboxes stay
    /// valid. Stop the SQLite server first.
    Migrate {
        /// The folder of the SQLite server.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database, as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
        #[arg(long, env = "FAENBAN_POSTGRES", hide_env_values = true)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Lists the devices bound to accounts.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only the devices of this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Releases a device from its account: its next login, under any
    /// account's token, binds it again. Its outbox is kept, on the laptop
    /// and in what the server holds of it.
    Release {
        #[command(flatten)]
        store: StoreArgs,
        /// The device id (as `faenban status` shows it).
        #[arg(long)]
        device: uuid::Uuid,
    },
    /// Binds a device to an account (a laptop handed to another person, or
    /// one of a revoked account); its next hello under that account binds
    /// the key it proves.
    Enroll {
        #[command(flatten)]
        store: StoreArgs,
        /// The device id (as `faenban status` shows it).
        #[arg(long)]
        device: uuid::Uuid,
        /// The account's name.
        #[arg(long)]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Adds an account and prints its token, once.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// A unique name, such as the person's or team's.
        #[arg(long)]
        name: String,
        /// volunteer, team, dimension, province or admin.
        #[arg(long)]
        role: String,
        /// Area codes it covers (village, subdistrict, district or province), separated by commas or spaces.
        #[arg(long, default_value = "")]
        area: String,
        /// For a working group: health, living, education, income or accessibility.
        #[arg(long)]
        dimension: Option<String>,
    },
    /// Adds every account of a CSV file (columns name, role, areas,
    /// dimension; UTF-8 with a header row), all or none, and writes each
    /// account's token once to a new file readable only by its owner.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The accounts, one per row.
        #[arg(long)]
        file: PathBuf,
        /// Where to write `name,token` for each account (a new file, mode 0600).
        #[arg(long)]
        tokens: PathBuf,
    },
    /// Lists the accounts (never their tokens).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Changes an account's role, areas or dimension (what is not given stays).
    Edit {
        #[command(flatten)]
        store: StoreArgs,
        /// The account's name.
        #[arg(long)]
        name: String,
        /// volunteer, team, dimension, province or admin.
        #[arg(long)]
        role: Option<String>,
        /// Area codes it covers, separated by commas or spaces.
        #[arg(long)]
        area: Option<String>,
        /// For a working group: health, living, education, income or accessibility.
        #[arg(long)]
        dimension: Option<String>,
    },
    /// Revokes an account: its token stops working at once.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The account's name.
        #[arg(long)]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faenban-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            store,
            listen,
            report_replica,
        } => serve(&store, listen, report_replica.as_deref()),
        Command::Account(command) => account(command),
        Command::Device(command) => device(command),
        Command::Migrate { from, to } => {
            let moved =
                faenban_server::postgres::migrate::migrate(&from, &to).with_context(|| {
                    format!("moving {} to PostgreSQL; nothing was moved", from.display())
                })?;
            println!(
                "moved {} accounts, {} devices, {} records, {} changes and {} feed entries; serve it with: faenban-server serve --postgres URL",
                moved.accounts, moved.devices, moved.records, moved.changes, moved.feed
            );
            Ok(())
        }
    }
}

fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::List { store, account } => {
            let backend = store.open()?;
            println!("{:<38} {:<24} {:<8} name", "device", "account", "key");
            let devices = backend.devices()?.into_iter().filter(|device| {
                account
                    .as_deref()
                    .is_none_or(|account| device.account == account)
            });
            for device in devices {
                println!(
                    "{:<38} {:<24} {:<8} {}",
                    device.device.to_string(),
                    device.account,
                    if device.has_key { "bound" } else { "pending" },
                    device.name
                );
            }
            Ok(())
        }
        DeviceCommand::Release { store, device } => {
            let backend = store.open()?;
            backend.release_device(faenban_core::DeviceId(device))?;
            println!(
                "device {device} released; its next login binds it again, under that login's account"
            );
            Ok(())
        }
        DeviceCommand::Enroll {
            store,
            device,
            account,
        } => {
            let backend = store.open()?;
            backend.enroll_device(faenban_core::DeviceId(device), &account)?;
            println!(
                "device {device} enrolled under `{account}`; its next sync under that account binds its key"
            );
            Ok(())
        }
    }
}

fn serve(
    store: &StoreArgs,
    listen: SocketAddr,
    report_replica: Option<&str>,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let backend = match (report_replica, &store.postgres) {
        (Some(replica), Some(url)) => Arc::new(
            PostgresBackend::open(url)
                .context("opening the server's PostgreSQL database")?
                .read_reports_from(replica)
                .context("opening the replica the office's reports are read from")?,
        ),
        (Some(_), None) => anyhow::bail!(
            "--report-replica names a replica of a PostgreSQL database: give --postgres URL too"
        ),
        (None, _) => store.open()?,
    };
    let database = store.describe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            faenban_server::listen(listen).with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        // The first line on stdout is the address alone, for a script
        // (with --listen …:0) to read; the sentence is for a person.
        println!("http://{address}");
        eprintln!("faenban-server listening on http://{address}");
        tracing::info!(%address, %database, "serving");
        faenban_server::run(listener, backend, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Add {
            store,
            name,
            role,
            area,
            dimension,
        } => {
            let role = parse_role(&role)?;
            let dimension = dimension.as_deref().map(parse_dimension).transpose()?;
            let areas = parse_areas(&area)?;
            let backend = store.open()?;
            let token = token::generate().context("making a token")?;
            let scope = Scope {
                role,
                areas,
                dimension,
            };
            let account = backend.add_account(&name, &scope, &token::hash(&token), now_ms())?;
            eprintln!(
                "account `{}` ({}) added; its token is shown only this once:",
                account.name,
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        AccountCommand::Edit {
            store,
            name,
            role,
            area,
            dimension,
        } => {
            let backend = store.open()?;
            let Some(account) = backend
                .accounts()?
                .into_iter()
                .find(|account| account.name == name)
            else {
                anyhow::bail!("no account named `{name}`");
            };
            let role = role
                .as_deref()
                .map(parse_role)
                .transpose()?
                .unwrap_or(account.scope.role);
            let scope = Scope {
                role,
                areas: match area {
                    Some(area) => parse_areas(&area)?,
                    None => account.scope.areas,
                },
                dimension: match dimension {
                    Some(key) => Some(parse_dimension(&key)?),
                    // A role that is not a working group's has no dimension.
                    None if role == Role::Dimension => account.scope.dimension,
                    None => None,
                },
            };
            let account = backend.edit_account(&name, &scope)?;
            println!(
                "account `{}` now {} {}{}",
                account.name,
                account.scope.role.as_str(),
                account.scope.areas.join(" "),
                account
                    .scope
                    .dimension
                    .map_or(String::new(), |dimension| format!(" ({})", dimension.key()))
            );
            Ok(())
        }
        AccountCommand::Import {
            store,
            file,
            tokens,
        } => import_accounts(&store, &file, &tokens),
        AccountCommand::List { store } => {
            let backend = store.open()?;
            println!(
                "{:<24} {:<10} {:<14} {:<8} areas",
                "name", "role", "dimension", "state"
            );
            for account in backend.accounts()? {
                println!(
                    "{:<24} {:<10} {:<14} {:<8} {}",
                    account.name,
                    account.scope.role.as_str(),
                    account.scope.dimension.map_or("-", Dimension::key),
                    if account.revoked_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    if account.scope.is_everything() {
                        "(all)".to_owned()
                    } else {
                        account.scope.areas.join(" ")
                    }
                );
            }
            Ok(())
        }
        AccountCommand::Revoke { store, name } => {
            let backend = store.open()?;
            let account = backend.revoke_account(&name, now_ms())?;
            println!("account `{}` revoked", account.name);
            Ok(())
        }
    }
}

/// Area codes from `--area`: each must be a valid province, district,
/// subdistrict or village code.
/// `account import`: every row checked first, then the tokens written to a
/// file only its owner reads, then all accounts added in one transaction.
fn import_accounts(
    store: &StoreArgs,
    file: &std::path::Path,
    tokens: &std::path::Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading {} (a UTF-8 CSV file)", file.display()))?;
    let rows = faenban_core::csv::parse(text.trim_start_matches('\u{feff}')).map_err(|broken| {
        anyhow::anyhow!(
            "{} line {}: {}",
            file.display(),
            broken.line,
            broken.problem
        )
    })?;
    let Some((header, rows)) = rows.split_first() else {
        anyhow::bail!("{} holds no header row", file.display());
    };
    let column = |names: &[&str]| {
        header
            .fields
            .iter()
            .position(|field| names.contains(&field.trim().to_lowercase().as_str()))
    };
    let name_at = column(&["name", "ชื่อ", "ชื่อบัญชี"]).context("no `name` column")?;
    let role_at = column(&["role", "บทบาท"]).context("no `role` column")?;
    let areas_at = column(&["areas", "area", "พื้นที่"]);
    let dimension_at = column(&["dimension", "ด้าน"]);
    let mut accounts = Vec::with_capacity(rows.len());
    let mut issued = Vec::with_capacity(rows.len());
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let cell = |at: Option<usize>| {
            at.and_then(|at| row.fields.get(at))
                .map(|value| value.trim().to_owned())
                .unwrap_or_default()
        };
        if row.fields.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        let name = cell(Some(name_at));
        let line = row.line;
        if !seen.insert(name.clone()) {
            anyhow::bail!("line {line}: the account `{name}` appears twice; nothing was added");
        }
        let role = parse_role(&cell(Some(role_at))).with_context(|| format!("line {line}"))?;
        let dimension = Some(cell(dimension_at))
            .filter(|key| !key.is_empty())
            .map(|key| parse_dimension(&key))
            .transpose()
            .with_context(|| format!("line {line}"))?;
        let areas = parse_areas(&cell(areas_at)).with_context(|| format!("line {line}"))?;
        let token = token::generate().context("making a token")?;
        accounts.push((
            name.clone(),
            Scope {
                role,
                areas,
                dimension,
            },
            token::hash(&token),
        ));
        issued.push((name, token));
    }
    // The token file first, so that no account exists whose token was lost.
    let mut out = String::from("name,token\n");
    for (name, token) in &issued {
        out.push_str(&format!("{},{token}\n", faenban_core::csv::cell(name)));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut written = options
        .open(tokens)
        .with_context(|| format!("creating {} (it must not exist yet)", tokens.display()))?;
    std::io::Write::write_all(&mut written, out.as_bytes())
        .and_then(|()| written.sync_all())
        .with_context(|| format!("writing {}", tokens.display()))?;
    let backend = store.open()?;
    match backend.add_accounts(&accounts, now_ms()) {
        Ok(added) => {
            eprintln!(
                "{} accounts added; their tokens are in {} (readable only by you: hand each its own, then delete the file)",
                added.len(),
                tokens.display()
            );
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_file(tokens);
            Err(anyhow::Error::new(error).context("nothing was added"))
        }
    }
}

fn parse_role(text: &str) -> anyhow::Result<Role> {
    Role::from_name(text).with_context(|| {
        format!("unknown role `{text}`; use volunteer, team, dimension, province or admin")
    })
}

fn parse_dimension(key: &str) -> anyhow::Result<Dimension> {
    Dimension::from_key(key).with_context(|| {
        format!("unknown dimension `{key}`; use health, living, education, income or accessibility")
    })
}

fn parse_areas(text: &str) -> anyhow::Result<Vec<String>> {
    text.split([',', ' '])
        .filter(|code| !code.is_empty())
        .map(|code| {
            faenban_core::codes::AreaCode::parse(code)
                .map(|code| code.as_str().to_owned())
                .map_err(|invalid| anyhow::anyhow!("area `{code}`: {invalid}"))
        })
        .collect()
}
