//! The store's error type.

/// Everything that can go wrong with the local database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file was written by a newer faenban; it is left untouched.
    #[error(
        "the database was written by a newer faenban (schema version {found}; this version reads up to {supported}); update faenban, the file was not changed"
    )]
    NewerSchema {
        /// The file's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// Another program holds the database.
    #[error("the database is in use by another faenban process; close it and try again")]
    Locked,
    /// The file cannot be written.
    #[error("the database file cannot be written (read-only file or folder)")]
    ReadOnly,
    /// The file needs upgrading to be read, and cannot be written.
    #[error(
        "the database was written by an older faenban and must be upgraded, but the file is read-only; make it writable once and run faenban again"
    )]
    OlderReadOnly,
    /// The file is not a faenban database, or is damaged.
    #[error("the database file is damaged or is not a faenban database ({0})")]
    Corrupt(String),
    /// The program failed, not the file: a bug caught, no randomness for a
    /// key, a thread that could not start. Nothing of the command was kept.
    #[error("faenban failed inside ({0}); nothing of this command was saved")]
    Internal(String),
    /// The disk is full.
    #[error("the disk is full; nothing was saved from this command")]
    DiskFull,
    /// `init` has not been run on this file.
    #[error("this database has no device yet; run `faenban init` first")]
    NotInitialized,
    /// `init` was run twice.
    #[error("this database already belongs to device `{0}`")]
    AlreadyInitialized(String),
    /// A record that should exist does not.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// The record kind.
        kind: String,
        /// The id asked for.
        id: String,
    },
    /// A sync request was refused; nothing of it was stored.
    #[error("{message}")]
    Refused {
        /// Why, as a stable code.
        code: faenban_core::RefusalCode,
        /// What is wrong and what to do.
        message: String,
    },
    /// Changes of some records were refused for what they say (scope, a
    /// value, a limit): a push sets those records' changes aside, answers
    /// them as held back, and takes the rest of the batch.
    #[error("{}", .0.first().map_or("refused", |refusal| refusal.message.as_str()))]
    RefusedRecords(Vec<RecordRefusal>),
    /// A record the account this laptop syncs with may never send; nothing
    /// of the command was saved.
    #[error("the account this laptop syncs with may not record this ({})", .0.refusal.describe())]
    NotForThisAccount(Box<crate::NotForThisAccount>),
    /// The core refused a value or a record.
    #[error(transparent)]
    Core(#[from] faenban_core::Error),
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// Stored JSON could not be read back.
    #[error("stored data could not be read: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        use rusqlite::ffi::ErrorCode;
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Locked,
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                Error::ReadOnly
            }
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                Error::Corrupt(error.to_string())
            }
            Some(ErrorCode::DiskFull) => Error::DiskFull,
            _ => Error::Sqlite(error),
        }
    }
}

impl From<faenban_core::InvalidValue> for Error {
    fn from(invalid: faenban_core::InvalidValue) -> Error {
        Error::Core(invalid.into())
    }
}

pub use faenban_core::push::RecordRefusal;

impl From<faenban_core::push::PushError<Error>> for Error {
    fn from(error: faenban_core::push::PushError<Error>) -> Error {
        use faenban_core::push::PushError;
        match error {
            PushError::Batch { code, message } => Error::Refused { code, message },
            PushError::Records(refusals) => Error::RefusedRecords(refusals),
            PushError::Store(error) => error,
        }
    }
}

/// A refusal with this code and message.
pub(crate) fn refused(code: faenban_core::RefusalCode, message: impl Into<String>) -> Error {
    Error::Refused {
        code,
        message: message.into(),
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
