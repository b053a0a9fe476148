//! The stable codes of every refusal: what the server answers a request
//! with, what a push holds a change back for, what a client decides on.
//!
//! One enum, shared by the core's rules, the stores, the server and the
//! client, so that a code is matched exhaustively wherever it is decided
//! on; on the wire a code is its snake_case name, and a client keeps a
//! name it does not know (from a newer server) as text.

use std::fmt;

macro_rules! refusal_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a request, or some of a push's changes, were refused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RefusalCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl RefusalCode {
            /// Every code.
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant,)*];

            /// The code's name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RefusalCode::$variant => $name,)*
                }
            }

            /// The code with this name, if this version knows it.
            pub fn from_name(name: &str) -> Option<RefusalCode> {
                match name {
                    $($name => Some(RefusalCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

refusal_codes! {
    /// The body is not the JSON the endpoint takes.
    Malformed = "malformed",
    /// The body could not be read (cut short, not UTF-8).
    UnreadableBody = "unreadable_body",
    /// The client speaks another protocol version.
    ProtocolVersion = "protocol_version",
    /// The client's schema is one the server does not read.
    SchemaVersion = "schema_version",
    /// Outbox sequences start at 1.
    BadSequence = "bad_sequence",
    /// A query parameter is not one the endpoint takes.
    BadQuery = "bad_query",
    /// No bearer token.
    MissingToken = "missing_token",
    /// A token the server does not know.
    BadToken = "bad_token",
    /// The account, or the device's account, was revoked.
    Revoked = "revoked",
    /// The device belongs to another account, or is the server's own.
    WrongDevice = "wrong_device",
    /// A change carries a stamp of another device than the outbox's.
    WrongAuthor = "wrong_author",
    /// The device id is bound to another key.
    WrongKey = "wrong_key",
    /// The run or hello is not signed by the device's key.
    BadSignature = "bad_signature",
    /// A stamp the server already holds for another change.
    StampReused = "stamp_reused",
    /// A value scope is decided by is not well formed.
    BadValue = "bad_value",
    /// A change or merged record passes the bounds on size.
    LimitExceeded = "limit_exceeded",
    /// The body did not arrive in time.
    BodyTimeout = "body_timeout",
    /// The server's store cannot be written at the moment.
    ReadOnly = "read_only",
    /// Outside the account's areas, dimension or role.
    OutOfScope = "out_of_scope",
    /// No such endpoint.
    NotFound = "not_found",
    /// A run that does not follow on from what the server holds.
    SequenceGap = "sequence_gap",
    /// A different change under a sequence the server holds.
    SequenceReused = "sequence_reused",
    /// A device the server does not know, or whose key is not bound yet.
    UnknownDevice = "unknown_device",
    /// The body is larger than the server takes.
    TooLarge = "too_large",
    /// A run has more changes than the server takes at once.
    TooManyChanges = "too_many_changes",
    /// The wire form's type table is not the one it must be.
    WrongTypes = "wrong_types",
    /// The wire form refers to a table entry that does not exist.
    BadIndex = "bad_index",
    /// The server could not use its store.
    Storage = "storage",
    /// The request failed inside the server.
    Internal = "internal",
    /// The server is busy; try again shortly.
    Busy = "busy",
    /// The server is stopping.
    ShuttingDown = "shutting_down",
    /// The server's disk is full.
    DiskFull = "disk_full",
    /// A pull cursor past the end of this server's feed, or naming another
    /// entry than the client was given (a restored server).
    CursorAhead = "cursor_ahead",
    /// A sealed bundle letter that cannot be opened or read.
    BadLetter = "bad_letter",
    /// The account may not read reports (a volunteer's).
    NoReport = "no_report",
    /// The server found no randomness for a session.
    NoRandomness = "no_randomness",
    /// An account that cannot be made as asked (administration only; never
    /// sent over HTTP).
    BadAccount = "bad_account",
}

impl RefusalCode {
    /// A refusal that no retry of the same request can get past: the
    /// client must change what it sends, or a person must act.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RefusalCode::Busy
                | RefusalCode::ShuttingDown
                | RefusalCode::ReadOnly
                | RefusalCode::DiskFull
                | RefusalCode::Storage
                | RefusalCode::Internal
                | RefusalCode::BodyTimeout
                | RefusalCode::NoRandomness
        )
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RefusalCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RefusalCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        RefusalCode::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown refusal code `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_code_and_no_two_share_one() {
        let mut names = std::collections::HashSet::new();
        for code in RefusalCode::ALL {
            assert_eq!(RefusalCode::from_name(code.as_str()), Some(*code));
            assert!(names.insert(code.as_str()), "{code} twice");
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(serde_json::from_str::<RefusalCode>(&json).unwrap(), *code);
        }
        assert_eq!(RefusalCode::from_name("out_of_scope_v2"), None);
        assert!(serde_json::from_str::<RefusalCode>("\"nonsense\"").is_err());
    }
}
