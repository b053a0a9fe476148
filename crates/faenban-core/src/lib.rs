//! faenban-core: the household model, indicator catalogues and the
//! conflict-free merge that the faenban CLI and server share.
//!
//! Nothing here does I/O: no files, network, environment, wall clock or
//! random numbers. Time, device ids and new record ids are passed in, and
//! merging is a pure function of a state and the changes applied to it.
//!
//! * [`codes`], [`money`], [`dates`]: validated values (area codes, house
//!   codes, national IDs, baht, Buddhist Era dates); [`areas`]: which area
//!   codes exist.
//! * [`model`]: households, members, visits, assistance, officials, pairings.
//! * [`catalogue`]: BMN indicator catalogues as data; deprivation per TPMAP
//!   dimension.
//! * [`clock`], [`change`], [`merge`], [`replica`]: hybrid logical clocks,
//!   per-field changes, the merge and its conflicts, and making changes;
//!   [`codec`]: their compact stored form.
//! * [`sync`]: the sync protocol's messages, wire form and scope rules;
//!   [`refusal`]: the stable code of every refusal; [`push`]: what a push
//!   does, decided for every server backend.

pub mod areas;
pub mod catalogue;
pub mod change;
pub mod clock;
pub mod codec;
pub mod codes;
pub mod csv;
pub mod dates;
pub mod error;
pub mod limits;
pub mod merge;
pub mod model;
pub mod money;
pub mod push;
pub mod refusal;
pub mod replica;
pub mod report;
pub mod sync;

pub use catalogue::{Answer, Assessment, Catalogue, Catalogues, Dimension};
pub use change::{Change, FieldName, RecordId, RecordKey, RecordKind, ARCHIVED_FIELD};
pub use clock::{Clock, DeviceId, Hlc, Stamp, MAX_FUTURE_DRIFT_MS};
pub use error::{Error, InvalidValue, Result};
pub use merge::{Conflict, Entry, FieldState, Outcome, RecordState, State};
pub use money::Baht;
pub use refusal::RefusalCode;
pub use replica::{normalize_arrival, Arrival, Outbox, OutboxEntry, Replica};
