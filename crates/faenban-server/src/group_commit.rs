//! Group commit, for either store: pushes that arrive while a commit is
//! under way wait in a queue, and the next free writer applies all of them
//! in one transaction and answers each after one commit (one `fsync` for
//! the group).

use std::sync::{mpsc, Mutex};
use std::time::Duration;

use faenban_store::server::{Account, PushInput, PushOutcome};

use crate::backend::{BackendError, Result};

/// A push waiting for a writer, with where its answer goes.
#[derive(Debug)]
struct WaitingPush {
    account: Account,
    input: PushInput,
    answer: mpsc::Sender<Result<PushOutcome>>,
}

/// The pushes waiting for a writer.
#[derive(Debug, Default)]
pub(crate) struct PushQueue {
    waiting: Mutex<Vec<WaitingPush>>,
}

/// How a group went: an answer for each push, in the order given, or one
/// failure for all of them (nothing of the group was committed).
pub(crate) type GroupOutcome = Result<Vec<Result<PushOutcome>>>;

impl PushQueue {
    /// Queues a push and waits for its answer. While it waits, it tries to
    /// become a writer: `lead` gives a writer when one is free, and `apply`
    /// applies, with it, every push queued by then. A push that finds its
    /// answer already sent was applied by another writer's group.
    pub(crate) fn push<W>(
        &self,
        account: &Account,
        input: PushInput,
        lead: impl Fn() -> Option<W>,
        apply: impl Fn(W, Vec<(Account, PushInput)>) -> GroupOutcome,
    ) -> Result<PushOutcome> {
        let (answer, answered) = mpsc::channel();
        self.queue().push(WaitingPush {
            account: account.clone(),
            input,
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
                        "a push was dropped without an answer".into(),
                    ))
                }
            }
        }
    }

    /// Applies every push queued so far as one group and answers each.
    fn apply_queued<W>(
        &self,
        writer: W,
        apply: &impl Fn(W, Vec<(Account, PushInput)>) -> GroupOutcome,
    ) {
        let group = std::mem::take(&mut *self.queue());
        if group.is_empty() {
            return;
        }
        let (pushes, answers): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|waiting| ((waiting.account, waiting.input), waiting.answer))
            .unzip();
        let count = answers.len();
        match apply(writer, pushes) {
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

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<WaitingPush>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
