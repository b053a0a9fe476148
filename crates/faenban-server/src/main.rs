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
use faenban_server::token;

#[derive(Debug, Parser)]
#[command(name = "faenban-server", version, about = "faenban's sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the sync protocol until Ctrl-C or SIGTERM.
    Serve {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
        /// Address and port to listen on, such as 127.0.0.1:8080 (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Adds, lists and revokes accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Lists devices and enrolls a device under an account.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Lists the devices bound to accounts.
    List {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
        /// Only the devices of this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Releases a device from its account: its next login, under any
    /// account's token, binds it again. Its outbox is kept, on the laptop
    /// and in what the server holds of it.
    Release {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
        /// The device id (as `faenban status` shows it).
        #[arg(long)]
        device: uuid::Uuid,
    },
    /// Binds a device to an account (a laptop handed to another person, or
    /// one of a revoked account); its next hello under that account binds
    /// the key it proves.
    Enroll {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
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
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
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
    /// Lists the accounts (never their tokens).
    List {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
    },
    /// Changes an account's role, areas or dimension (what is not given stays).
    Edit {
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
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
        /// The folder that holds the server's database.
        #[arg(long)]
        data: PathBuf,
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
        Command::Serve { data, listen } => serve(data, listen),
        Command::Account(command) => account(command),
        Command::Device(command) => device(command),
    }
}

fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::List { data, account } => {
            let backend = SqliteBackend::open(&data)?;
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
        DeviceCommand::Release { data, device } => {
            let backend = SqliteBackend::open(&data)?;
            backend.release_device(faenban_core::DeviceId(device))?;
            println!(
                "device {device} released; its next login binds it again, under that login's account"
            );
            Ok(())
        }
        DeviceCommand::Enroll {
            data,
            device,
            account,
        } => {
            let backend = SqliteBackend::open(&data)?;
            backend.enroll_device(faenban_core::DeviceId(device), &account)?;
            println!(
                "device {device} enrolled under `{account}`; its next sync under that account binds its key"
            );
            Ok(())
        }
    }
}

fn serve(data: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let backend = SqliteBackend::open(&data)
        .with_context(|| format!("opening the server's store in {}", data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        // Tests and scripts read this line to learn the port.
        println!("faenban-server listening on http://{address}");
        tracing::info!(%address, database = %backend.path().display(), "serving");
        let backend: Arc<dyn Backend> = Arc::new(backend);
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
            data,
            name,
            role,
            area,
            dimension,
        } => {
            let role = parse_role(&role)?;
            let dimension = dimension.as_deref().map(parse_dimension).transpose()?;
            let areas = parse_areas(&area)?;
            let backend = SqliteBackend::open(&data)?;
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
            data,
            name,
            role,
            area,
            dimension,
        } => {
            let backend = SqliteBackend::open(&data)?;
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
        AccountCommand::List { data } => {
            let backend = SqliteBackend::open(&data)?;
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
        AccountCommand::Revoke { data, name } => {
            let backend = SqliteBackend::open(&data)?;
            let account = backend.revoke_account(&name, now_ms())?;
            println!("account `{}` revoked", account.name);
            Ok(())
        }
    }
}

/// Area codes from `--area`: each must be a valid province, district,
/// subdistrict or village code.
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
