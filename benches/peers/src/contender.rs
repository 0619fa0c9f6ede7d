//! What every contender can do: prepare a set of stored sessions, then run
//! one of the measured operations with some number of workers for a time
//! budget.

use crate::drive::{Cell, Stop};

/// The user id every benchmark session holds.
pub const USER_ID: u64 = 4_242_424_242;

/// The measured operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read a stored session by its cookie (id).
    Load,
    /// Change the CSRF token of a loaded session and write it back.
    Update,
    /// A new session holding the three values, written for the first time.
    Create,
    /// Delete a stored session (consumes what `Create` made).
    Delete,
    /// A request that writes: load a stored session by its id, change its
    /// CSRF token, write it back (the 8-worker throughput of the headline).
    Pair,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Load, Op::Update, Op::Create, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::Update => "update",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Pair => "pair",
        }
    }
}

/// The session a cell works with.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Length of the free-text value (900 bytes for the ~1 KiB session).
    pub note_len: usize,
    /// Length of the floor's blob: the size of stored-session's envelope
    /// for the same session.
    pub blob_len: usize,
}

/// Two CSRF tokens that updates alternate between, so every update changes
/// the session (an unchanged stored-session is not written at all).
pub fn tokens() -> [String; 2] {
    [
        "tok-A-0123456789abcdefghijklmnopqrstuvwxyz0".to_owned(),
        "tok-B-0123456789abcdefghijklmnopqrstuvwxyz0".to_owned(),
    ]
}

/// The free-text value of a session of `shape`.
pub fn note(shape: Shape) -> String {
    "x".repeat(shape.note_len)
}

pub trait Contender {
    /// Replaces the set of sessions that `Load` and `Update` use with `n`
    /// fresh ones of `shape`.
    fn prepare(&mut self, n: usize, shape: Shape);

    /// Runs `op` on `workers` concurrent workers until `stop`.
    fn run(&mut self, op: Op, workers: usize, stop: Stop) -> Cell;
}
