//! The core's error type: what was wrong with a value, a catalogue or a record.

use std::fmt;

/// A value that failed validation: which field, what is wrong with it, and
/// what was expected. The value itself is not repeated, because it may be
/// personal data (a national ID, a name) and errors end up in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    /// The field, as the user knows it (`national_id`, `house_code`…).
    pub field: &'static str,
    /// What is wrong with the value given.
    pub problem: String,
    /// What is wrong, in Thai, when the check has the words for it.
    pub problem_th: Option<String>,
    /// What a valid value looks like.
    pub expected: &'static str,
    /// The same in Thai, when it is not simply what the field always takes.
    pub expected_th: Option<&'static str>,
}

impl InvalidValue {
    pub(crate) fn new(
        field: &'static str,
        problem: impl Into<String>,
        expected: &'static str,
    ) -> Self {
        InvalidValue {
            field,
            problem: problem.into(),
            problem_th: None,
            expected,
            expected_th: None,
        }
    }

    /// The same problem in Thai, for the people who type the values.
    pub(crate) fn th(mut self, problem: impl Into<String>) -> Self {
        self.problem_th = Some(problem.into());
        self
    }

    /// What a valid value looks like, in Thai, for this particular problem.
    pub(crate) fn th_expected(mut self, expected: &'static str) -> Self {
        self.expected_th = Some(expected);
        self
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; expected {}",
            self.field, self.problem, self.expected
        )
    }
}

impl std::error::Error for InvalidValue {}

/// Everything that can go wrong in the core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field's value failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// An indicator catalogue could not be read.
    #[error("indicator catalogue, line {line}: {message}")]
    Catalogue {
        /// The line of the catalogue text, counting from 1.
        line: usize,
        /// What is wrong there.
        message: String,
    },
    /// An area list could not be read.
    #[error("area list, line {line}: {message}")]
    AreaList {
        /// The line of the list, counting from 1.
        line: usize,
        /// What is wrong there.
        message: String,
    },
    /// A visit was recorded with a catalogue edition this installation lacks.
    #[error("unknown indicator catalogue edition `{edition}`; known: {known}")]
    UnknownEdition {
        /// The edition asked for.
        edition: String,
        /// The editions available, comma-separated.
        known: String,
    },
    /// An answer names an indicator the visit's edition does not have.
    #[error("indicator `{code}` is not in catalogue edition `{edition}`")]
    UnknownIndicator {
        /// The indicator code given.
        code: String,
        /// The edition searched.
        edition: String,
    },
    /// A value given for one field does not fit the record.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field.
        field: String,
        /// What is wrong, with the values it accepts.
        message: String,
    },
    /// A record's merged fields do not (yet) make a whole record, e.g. when a
    /// later edit arrived before the change that created it.
    #[error("{kind} {id} is incomplete or invalid: {message}")]
    IncompleteRecord {
        /// The record kind.
        kind: String,
        /// The record id.
        id: String,
        /// What is missing or wrong.
        message: String,
    },
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
