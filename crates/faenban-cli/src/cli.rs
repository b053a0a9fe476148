//! The command line: every command, flag and argument of `faenban`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::lang::Lang;

/// faenban (แฟ้มบ้าน): record households, members, BMN surveys and assistance
/// offline, on this laptop.
#[derive(Debug, Parser)]
#[command(name = "faenban", version, about)]
pub struct Cli {
    /// The database file (default: faenban.db in your data folder).
    #[arg(long, global = true, env = "FAENBAN_DB")]
    pub db: Option<PathBuf>,
    /// Print data as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Language of messages (default: from the locale).
    #[arg(long, global = true, value_enum)]
    pub lang: Option<Lang>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up this laptop (once): names the device and makes its id.
    Init {
        /// A name for this laptop, e.g. "อสม. มาลี บ้านโนนสูง".
        #[arg(long)]
        name: String,
    },
    /// Show the device, unpushed changes and the last sync.
    Status,
    /// Households: add, edit, show, list, search, archive, restore.
    #[command(subcommand)]
    Household(HouseholdCommand),
    /// Members of a household: add, edit, remove.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Record a BMN survey visit for a household.
    Survey(SurveyArgs),
    /// Assistance given to households.
    #[command(subcommand)]
    Assist(AssistCommand),
    /// Officials who follow households (e.g. Khon Kaen's คู่เสี่ยว).
    #[command(subcommand)]
    Official(OfficialCommand),
    /// Pair an official with households (คู่เสี่ยว: one official, two households),
    /// or end a pairing with --end.
    Pair {
        /// The official (id, last 6+ characters of it, or exact name).
        official: String,
        /// The households (id, last 6+ characters of it, or house code).
        #[arg(required = true)]
        households: Vec<String>,
        /// End these pairings instead.
        #[arg(long)]
        end: bool,
    },
    /// Officials and their paired households; households with no official.
    Pairs {
        /// Only this official.
        #[arg(long)]
        official: Option<String>,
    },
    /// Every change to a record: who, what, when, from which device.
    History {
        /// The record's id (or its last 6+ characters, or a house code).
        id: String,
    },
    /// Conflicts: values that people changed without seeing each other.
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
    /// Import households (and their heads) from a CSV file, e.g. a TPMAP
    /// target list. Bad rows are reported and skipped; good rows go in.
    Import {
        /// The CSV file (UTF-8 or TIS-620), with a header row.
        file: PathBuf,
        /// Check every row and report, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write the rejected rows, with the reason, to this CSV file.
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Export the merged data.
    Export {
        /// json (the whole merged state, stable) or csv (households).
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Write to this file instead of the screen.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Connect this laptop to a sync server (once): checks the token and keeps it.
    Login {
        /// The server's address, e.g. https://faenban.example.go.th
        #[arg(long)]
        server: String,
        /// The token from the administrator (asked for when not given).
        #[arg(long, env = "FAENBAN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Also trust this certificate authority (PEM), for an office's own certificates.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// How many times to retry when the network fails.
        #[arg(long, default_value_t = 5)]
        retries: u32,
    },
    /// Push what was recorded here and pull what others recorded.
    Sync {
        /// How many times to retry when the network fails.
        #[arg(long, default_value_t = 5)]
        retries: u32,
    },
    /// Carry a sync as a file, for a laptop with no connection.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Changes waiting for the server, and those it refused (set aside with its reason).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Check the database file for damage, and say what to do if it is damaged.
    Check,
    /// The programme's figures per area: deprivation and help per TPMAP
    /// dimension, classification, income before and after, pairing, gaps.
    Report {
        /// Only this area (village, subdistrict, district or province code).
        #[arg(long)]
        area: Option<String>,
        /// Also a row per area at this level: province, district, subdistrict or village.
        #[arg(long)]
        level: Option<String>,
        /// Only this dimension: health, living, education, income or accessibility.
        #[arg(long)]
        dimension: Option<String>,
        /// Only visits and assistance of this fiscal year (BE, 1 October to 30 September).
        #[arg(long)]
        fiscal_year: Option<i32>,
        /// table (to read), json, csv or xlsx (an Excel workbook; needs --output).
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// Write to this file instead of the screen.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// To read on the screen.
    Table,
    /// Every figure, versioned (docs/report.md).
    Json,
    /// One row per area, for Excel.
    Csv,
    /// An Excel workbook, a sheet per section (needs --output).
    Xlsx,
}

/// `faenban outbox …`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// How many changes wait, and every change the server refused, with why.
    List,
    /// One refused change: the record, the field, the value and the server's reason.
    Show {
        /// Its number, as `outbox list` shows it.
        sequence: u64,
    },
    /// Queue refused changes again (all, or the numbers given), to go at the next sync.
    Retry {
        /// Their numbers, as `outbox list` shows them; none means all.
        sequences: Vec<u64>,
    },
}

/// `faenban bundle …`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write everything this laptop knows, and what waits for the server, to a file.
    Export {
        /// The bundle file to write.
        file: PathBuf,
    },
    /// Take in a bundle from another laptop; its outbox goes to the server at the next sync.
    Import {
        /// The bundle file to read.
        file: PathBuf,
    },
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The whole merged state, in a stable order.
    Json,
    /// One row per household, for Excel.
    Csv,
}

/// The fields of a household that can be given on the command line.
#[derive(Debug, Args, Default)]
pub struct HouseholdFields {
    /// House code (รหัสประจำบ้าน), 11 digits: 1234-567890-1.
    #[arg(long)]
    pub house_code: Option<String>,
    /// Village code, 8 digits.
    #[arg(long)]
    pub village: Option<String>,
    /// Address.
    #[arg(long)]
    pub address: Option<String>,
    /// How it entered: tpmap_target, exclusion_error or vulnerable_group.
    #[arg(long)]
    pub entry: Option<String>,
    /// needs_welfare or can_develop.
    #[arg(long)]
    pub classification: Option<String>,
    /// farmer, entrepreneur, labourer or disadvantaged.
    #[arg(long)]
    pub livelihood: Option<String>,
    /// Holds a state welfare card: yes or no.
    #[arg(long)]
    pub welfare_card: Option<String>,
    /// active or moved.
    #[arg(long)]
    pub status: Option<String>,
    /// GPS point as LAT,LON, e.g. 16.44,102.83.
    #[arg(long)]
    pub location: Option<String>,
    /// Notes.
    #[arg(long)]
    pub notes: Option<String>,
}

/// Household commands.
#[derive(Debug, Subcommand)]
pub enum HouseholdCommand {
    /// Add a household.
    Add(HouseholdFields),
    /// Change fields of a household.
    Edit {
        /// The household (id, last 6+ characters of it, or house code).
        id: String,
        /// The fields to change.
        #[command(flatten)]
        fields: HouseholdFields,
    },
    /// Show a household with its members, last survey and assistance.
    Show {
        /// The household (id, last 6+ characters of it, or house code).
        id: String,
    },
    /// List households.
    List {
        /// Only this area (village, subdistrict, district or province code).
        #[arg(long)]
        area: Option<String>,
        /// Include archived households.
        #[arg(long)]
        archived: bool,
    },
    /// Find households by house code, village, a member's name or national ID.
    Search {
        /// What to look for.
        text: String,
    },
    /// Archive a household (it can be restored).
    Archive {
        /// The household.
        id: String,
    },
    /// Restore an archived household.
    Restore {
        /// The household.
        id: String,
    },
}

/// The fields of a member that can be given on the command line.
#[derive(Debug, Args, Default)]
pub struct MemberFields {
    /// National ID, 13 digits.
    #[arg(long)]
    pub national_id: Option<String>,
    /// Title (นาย, นาง, นางสาว, ด.ช., ด.ญ.).
    #[arg(long)]
    pub title: Option<String>,
    /// Given name.
    #[arg(long)]
    pub first_name: Option<String>,
    /// Family name.
    #[arg(long)]
    pub last_name: Option<String>,
    /// male or female.
    #[arg(long)]
    pub sex: Option<String>,
    /// Date of birth (YYYY-MM-DD or DD/MM/YYYY, ค.ศ. or พ.ศ.).
    #[arg(long)]
    pub birth_date: Option<String>,
    /// head, spouse, child, parent, grandchild, relative or other.
    #[arg(long)]
    pub relation: Option<String>,
    /// none, preschool, primary, lower_secondary, upper_secondary, vocational, bachelor, postgraduate.
    #[arg(long)]
    pub education: Option<String>,
    /// Occupation.
    #[arg(long)]
    pub occupation: Option<String>,
    /// Own income per year, in baht.
    #[arg(long, allow_hyphen_values = true)]
    pub income: Option<String>,
    /// Has a disability: yes or no.
    #[arg(long)]
    pub disability: Option<String>,
    /// Has a chronic illness: yes or no.
    #[arg(long)]
    pub chronic_illness: Option<String>,
    /// Holds a state welfare card: yes or no.
    #[arg(long)]
    pub welfare_card: Option<String>,
}

/// Member commands.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member to a household.
    Add {
        /// The household.
        #[arg(long)]
        household: String,
        /// The member's fields.
        #[command(flatten)]
        fields: MemberFields,
    },
    /// Change fields of a member.
    Edit {
        /// The member (id or its last 6+ characters).
        id: String,
        /// The fields to change.
        #[command(flatten)]
        fields: MemberFields,
    },
    /// Remove a member (archived: history is kept).
    Remove {
        /// The member.
        id: String,
    },
}

/// A survey visit. With no --answer or --answers-file, the survey is guided:
/// one question at a time, each answer saved at once; `q` (or Ctrl-C)
/// pauses it and the same command resumes it.
#[derive(Debug, Args)]
pub struct SurveyArgs {
    /// The household.
    pub household: String,
    /// Day of the visit (default: today).
    #[arg(long)]
    pub date: Option<String>,
    /// Who surveyed (default: the device name).
    #[arg(long)]
    pub surveyor: Option<String>,
    /// Catalogue edition.
    #[arg(long, default_value = "bmn-2560-2564")]
    pub edition: String,
    /// Household income per year, in baht.
    #[arg(long, allow_hyphen_values = true)]
    pub income: Option<String>,
    /// Number of people in the household (default: its active members).
    #[arg(long)]
    pub members: Option<u32>,
    /// An answer: CODE=pass|fail|na (repeat for each indicator).
    #[arg(long = "answer", value_name = "CODE=ANSWER")]
    pub answers: Vec<String>,
    /// A JSON file of answers: {"4": "pass", "8": "fail", ...}.
    #[arg(long)]
    pub answers_file: Option<PathBuf>,
    /// Set aside an unfinished guided survey of this household and start anew.
    #[arg(long)]
    pub new: bool,
}

/// Assistance commands.
#[derive(Debug, Subcommand)]
pub enum AssistCommand {
    /// Record assistance for a household.
    Add {
        /// The household.
        #[arg(long)]
        household: String,
        /// health, living, education, income or accessibility.
        #[arg(long)]
        dimension: String,
        /// A menu item code (e.g. house_repair) or free text.
        #[arg(long)]
        item: String,
        /// The agency that gave it.
        #[arg(long)]
        agency: String,
        /// public, private, academic, religious, media, civil_society or people.
        #[arg(long, default_value = "public")]
        sector: String,
        /// Amount in baht.
        #[arg(long, allow_hyphen_values = true)]
        amount: Option<String>,
        /// Day given (default: today).
        #[arg(long)]
        date: Option<String>,
        /// survive, sufficient or sustainable.
        #[arg(long, default_value = "survive")]
        stage: String,
        /// planned, in_progress or done.
        #[arg(long, default_value = "done")]
        status: String,
        /// What came of it.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Update an assistance record.
    Update {
        /// The assistance record.
        id: String,
        /// planned, in_progress or done.
        #[arg(long)]
        status: Option<String>,
        /// What came of it.
        #[arg(long)]
        outcome: Option<String>,
        /// Amount in baht.
        #[arg(long, allow_hyphen_values = true)]
        amount: Option<String>,
        /// survive, sufficient or sustainable.
        #[arg(long)]
        stage: Option<String>,
    },
    /// List assistance, for one household or all.
    List {
        /// Only this household.
        #[arg(long)]
        household: Option<String>,
    },
}

/// Official commands.
#[derive(Debug, Subcommand)]
pub enum OfficialCommand {
    /// Add an official.
    Add {
        /// Full name, e.g. "นายสมชาย ใจดี".
        #[arg(long)]
        name: String,
        /// Position, e.g. "นักวิชาการเกษตร".
        #[arg(long)]
        position: String,
        /// Agency, e.g. "สำนักงานเกษตรอำเภอเมืองขอนแก่น".
        #[arg(long)]
        agency: String,
    },
    /// List officials.
    List,
}

/// Conflict commands.
#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// List open conflicts.
    List,
    /// Show the values in conflict on a record, and who wrote them.
    Show {
        /// The record.
        id: String,
    },
    /// Settle a conflict.
    Resolve {
        /// The record.
        id: String,
        /// The field in conflict.
        #[arg(long)]
        field: Option<String>,
        /// Keep the value with this number (as shown by `conflicts show`).
        #[arg(long, conflicts_with = "value")]
        keep: Option<usize>,
        /// Or write this value instead (JSON, or plain text).
        #[arg(long)]
        value: Option<String>,
        /// For an archive conflict: archive the record after all.
        #[arg(long, conflicts_with = "keep_active")]
        archive: bool,
        /// For an archive conflict: keep the record active.
        #[arg(long)]
        keep_active: bool,
    },
}
