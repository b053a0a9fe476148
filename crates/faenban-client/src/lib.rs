//! faenban-client: how a device syncs its store with a faenban server,
//! whatever shows it to a person.
//!
//! * [`Transport`]: the protocol's four requests; [`http::HttpTransport`]
//!   is JSON over HTTPS with gzip, retries and verified certificates.
//! * [`sync`] and [`login`]: the sync driver, with its recovery policy for
//!   a laptop or a server restored from a backup, reporting to an
//!   [`Observer`] and answering with a [`Summary`].
//!
//! The `faenban` CLI renders this (progress bars, Thai and English); a
//! field app can render it otherwise, or bring its own transport.

mod driver;
pub mod http;
mod transport;

pub use driver::{login, sync, Observer, Quiet, Realigned, Summary, SyncError};
pub use transport::{Transport, TransportError};
