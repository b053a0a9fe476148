//! Hybrid logical clocks, stamps and device identity.
//!
//! A [`Stamp`] orders every change in faenban: a hybrid logical clock reading
//! (wall milliseconds plus a counter) and the id of the device that made it.
//! The core never reads a clock itself; callers pass the current wall time in.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How far ahead of the receiver's own time a stamp may be before the server
/// re-stamps it (five minutes).
pub const MAX_FUTURE_DRIFT_MS: u64 = 5 * 60 * 1000;

/// The id of one installation of faenban (a laptop, a server), made once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub Uuid);

impl DeviceId {
    /// A device id from its 128-bit value.
    pub const fn from_u128(value: u128) -> DeviceId {
        DeviceId(Uuid::from_u128(value))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// One reading of a hybrid logical clock: physical milliseconds since the Unix
/// epoch, and a counter that orders readings within the same millisecond.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since 1970-01-01T00:00:00Z, as the clock believed.
    pub wall_ms: u64,
    /// Orders readings that share a millisecond.
    pub counter: u32,
}

impl Hlc {
    /// A reading at `wall_ms` with counter zero.
    pub const fn at(wall_ms: u64) -> Hlc {
        Hlc {
            wall_ms,
            counter: 0,
        }
    }
}

/// The identity and order of a change: a clock reading and the device that
/// made it. Stamps are totally ordered (clock first, then device), and no two
/// changes ever share one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The clock reading.
    pub hlc: Hlc,
    /// The device whose clock it was.
    pub device: DeviceId,
}

impl Stamp {
    /// A stamp from its parts.
    pub const fn new(hlc: Hlc, device: DeviceId) -> Stamp {
        Stamp { hlc, device }
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            self.hlc.wall_ms,
            self.hlc.counter,
            &self.device.0.simple().to_string()[..8]
        )
    }
}

/// A device's hybrid logical clock.
///
/// It never runs backwards through [`Clock::tick`] or [`Clock::observe`], and
/// it refuses to be dragged into the future by a remote stamp that is more
/// than [`MAX_FUTURE_DRIFT_MS`] ahead. The state is small and meant to be
/// persisted after every use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// The latest reading handed out or observed.
    pub last: Hlc,
    /// Correction added to the local wall clock, learned from the server.
    pub offset_ms: i64,
}

impl Clock {
    /// A clock that has handed out nothing yet.
    pub const fn new() -> Clock {
        Clock {
            last: Hlc {
                wall_ms: 0,
                counter: 0,
            },
            offset_ms: 0,
        }
    }

    /// The local wall time corrected by the learned offset.
    pub fn corrected(&self, local_wall_ms: u64) -> u64 {
        local_wall_ms.saturating_add_signed(self.offset_ms)
    }

    /// The next reading, strictly after every earlier one.
    pub fn tick(&mut self, local_wall_ms: u64) -> Hlc {
        let physical = self.corrected(local_wall_ms);
        self.last = if physical > self.last.wall_ms {
            Hlc::at(physical)
        } else {
            self.next_after_last()
        };
        self.last
    }

    /// Takes in a reading seen on another device's change, so that the next
    /// local reading is after it. A reading further ahead than
    /// [`MAX_FUTURE_DRIFT_MS`] of our own corrected time is not followed:
    /// a clock that says 2035 must not drag every other clock with it.
    pub fn observe(&mut self, remote: Hlc, local_wall_ms: u64) {
        let physical = self.corrected(local_wall_ms);
        if remote.wall_ms > physical.saturating_add(MAX_FUTURE_DRIFT_MS) {
            return;
        }
        if remote > self.last {
            self.last = remote;
        }
    }

    /// Learns the server's time at a sync and corrects the local clock by the
    /// difference.
    ///
    /// If the clock had run ahead of the server by more than the allowed
    /// drift, its last reading is brought back to the server's time plus the
    /// drift. This is the one place a clock may go back, and it is safe: the
    /// server re-stamps every change pushed with a reading beyond that, the
    /// changes not yet pushed are re-stamped by
    /// [`crate::Outbox::restamp_future`], and every reading the server did not
    /// re-stamp was at most that high, so no stamp is ever handed out twice.
    /// Returns the correction applied, in milliseconds.
    pub fn correct_to_server(&mut self, server_wall_ms: u64, local_wall_ms: u64) -> i64 {
        let offset = clamp_to_i64(i128::from(server_wall_ms) - i128::from(local_wall_ms));
        let change = offset - self.offset_ms;
        self.offset_ms = offset;
        let highest_trusted = server_wall_ms.saturating_add(MAX_FUTURE_DRIFT_MS);
        if self.last.wall_ms > highest_trusted {
            // The whole millisecond counts as handed out: the next reading is
            // in the millisecond after, above anything the server kept.
            self.last = Hlc {
                wall_ms: highest_trusted,
                counter: u32::MAX,
            };
        }
        change
    }

    fn next_after_last(&self) -> Hlc {
        match self.last.counter.checked_add(1) {
            Some(counter) => Hlc {
                wall_ms: self.last.wall_ms,
                counter,
            },
            // Four billion readings within one millisecond: borrow the next one.
            None => Hlc::at(self.last.wall_ms.saturating_add(1)),
        }
    }
}

fn clamp_to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// True when `stamp` is further ahead of `now_ms` than the allowed drift.
pub fn is_from_the_future(stamp: &Stamp, now_ms: u64) -> bool {
    stamp.hlc.wall_ms > now_ms.saturating_add(MAX_FUTURE_DRIFT_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_never_goes_backwards_when_the_wall_clock_does() {
        let mut clock = Clock::new();
        let a = clock.tick(10_000);
        let b = clock.tick(5_000);
        let c = clock.tick(5_000);
        assert!(a < b && b < c);
        assert_eq!(b.wall_ms, 10_000);
    }

    #[test]
    fn observe_moves_the_clock_past_a_plausible_remote_reading() {
        let mut clock = Clock::new();
        clock.tick(1_000);
        clock.observe(
            Hlc {
                wall_ms: 2_000,
                counter: 7,
            },
            1_500,
        );
        assert!(
            clock.tick(1_500)
                > Hlc {
                    wall_ms: 2_000,
                    counter: 7
                }
        );
    }

    #[test]
    fn observe_ignores_a_reading_from_the_far_future() {
        let mut clock = Clock::new();
        let now = 1_700_000_000_000;
        clock.observe(Hlc::at(now + MAX_FUTURE_DRIFT_MS + 1), now);
        assert_eq!(clock.tick(now), Hlc::at(now));
    }

    #[test]
    fn correction_moves_a_slow_clock_forward_and_a_fast_one_back() {
        let mut slow = Clock::new();
        assert_eq!(slow.correct_to_server(2_000_000, 1_000_000), 1_000_000);
        assert_eq!(slow.tick(1_000_000).wall_ms, 2_000_000);

        let mut fast = Clock::new();
        fast.tick(10_000_000_000);
        fast.correct_to_server(1_000_000, 10_000_000_000);
        let next = fast.tick(10_000_000_000);
        // Back to just above the highest reading the server accepts as it is.
        assert_eq!(next, Hlc::at(1_000_000 + MAX_FUTURE_DRIFT_MS + 1));
        // Once real time passes that, the clock follows real time again.
        let later = fast.tick(10_000_000_000 + MAX_FUTURE_DRIFT_MS + 2);
        assert_eq!(later, Hlc::at(1_000_000 + MAX_FUTURE_DRIFT_MS + 2));
    }

    #[test]
    fn a_clock_brought_back_never_repeats_a_reading_the_server_kept() {
        let server_now = 1_700_000_000_000;
        let mut clock = Clock::new();
        // Exactly at the edge of the drift: the server keeps these stamps.
        clock.tick(server_now + MAX_FUTURE_DRIFT_MS);
        let kept = clock.tick(server_now + MAX_FUTURE_DRIFT_MS);
        // Then the clock jumps to the far future, and a sync corrects it.
        clock.tick(server_now + 10 * MAX_FUTURE_DRIFT_MS);
        clock.correct_to_server(server_now, server_now + 10 * MAX_FUTURE_DRIFT_MS);
        assert!(clock.tick(server_now + 10 * MAX_FUTURE_DRIFT_MS) > kept);
    }

    #[test]
    fn counter_overflow_borrows_the_next_millisecond() {
        let mut clock = Clock {
            last: Hlc {
                wall_ms: 5,
                counter: u32::MAX,
            },
            offset_ms: 0,
        };
        assert_eq!(clock.tick(0), Hlc::at(6));
    }
}
