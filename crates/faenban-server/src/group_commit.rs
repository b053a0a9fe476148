//! Group commit, for either store: writes (pushes, and on SQLite the
//! hellos that bind a device) that arrive while a commit is under way wait
//! in a queue, and the next free writer applies all of them in one
//! transaction and answers each after one commit (one `fsync` for the
//! group).

use std::sync::{mpsc, Mutex};
use std::time::Duration;

use faenban_store::server::{Account, PushInput, PushOutcome};

use crate::backend::{BackendError, Result};

/// A write waiting for a writer, with where its answer goes.
#[derive(Debug)]
struct Waiting<W, A> {
    account: Account,
    write: W,
    answer: mpsc::Sender<Result<A>>,
}

/// The writes of one kind waiting for a writer: each as the store takes
/// it (`W`: a `PushInput`, the SQLite store's `SignedPush` or `Hello`),
/// each answered with an `A`.
#[derive(Debug)]
pub(crate) struct WriteQueue<W = PushInput, A = PushOutcome> {
    waiting: Mutex<Vec<Waiting<W, A>>>,
}

impl<W, A> Default for WriteQueue<W, A> {
    fn default() -> Self {
        WriteQueue {
            waiting: Mutex::new(Vec::new()),
        }
    }
}

/// How a group went: an answer for each write, in the order given, or one
/// failure for all of them (nothing of the group was committed).
pub(crate) type GroupOutcome<A = PushOutcome> = Result<Vec<Result<A>>>;

impl<W, A> WriteQueue<W, A> {
    /// Queues a write and waits for its answer. While it waits, it tries
    /// to become a writer: `lead` gives a writer when one is free, and
    /// `apply` applies, with it, every write queued by then. A write that
    /// finds its answer already sent was applied by another writer's group.
    pub(crate) fn write<L>(
        &self,
        account: &Account,
        write: W,
        lead: impl Fn() -> Option<L>,
        apply: impl Fn(L, Vec<(Account, W)>) -> GroupOutcome<A>,
    ) -> Result<A> {
        let (answer, answered) = mpsc::channel();
        self.queue().push(Waiting {
            account: account.clone(),
            write,
            answer,
        });
        loop {
            if let Some(writer) = lead() {
                self.apply_queued(writer, &apply);
            }
            // The others wait for their answer, not for a writer (which may
            // go on to other work once it has answered).
            match answered.recv_timeout(Duration::from_millis(2)) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(BackendError::Internal(
                        "a write was dropped without an answer".into(),
                    ))
                }
            }
        }
    }

    /// Applies every write queued so far as one group and answers each.
    fn apply_queued<L>(&self, writer: L, apply: &impl Fn(L, Vec<(Account, W)>) -> GroupOutcome<A>) {
        let group = std::mem::take(&mut *self.queue());
        if group.is_empty() {
            return;
        }
        let (writes, answers): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|waiting| ((waiting.account, waiting.write), waiting.answer))
            .unzip();
        let count = answers.len();
        match apply(writer, writes) {
            Ok(results) if results.len() == count => {
                for (result, answer) in results.into_iter().zip(answers) {
                    let _ = answer.send(result);
                }
            }
            Ok(_) => {
                let error = BackendError::Internal("a group was answered in part".into());
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Waiting<W, A>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
