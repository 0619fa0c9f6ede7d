//! Instrumentation: every store operation emits an [`Event`].
//!
//! Subscribers are closures registered on the store. The built-in one logs
//! each event through `log` at debug level under the target `stored_session`:
//!
//! ```text
//! [StoredSession] Session Read in 1.2ms (sid: "2::350c…")
//! ```
//!
//! Events carry the hashed id only; the cookie id never reaches them.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::id::StoredId;
use crate::metadata::ClientChange;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A session was looked up (`rows` is 1 if found, 0 if not).
    Read,
    /// A session was inserted or its data updated.
    Write,
    /// An unchanged session's idle clock was refreshed.
    Touch,
    /// A session moved to a new id (the old row is gone).
    Renew,
    /// A session was deleted.
    Delete,
    /// One trim run deleted expired sessions.
    Trim,
    /// A presented cookie did not yield its session; see [`RejectReason`].
    Rejected,
    /// A loaded session's client is on another network than the one
    /// recorded, perhaps in another country; see [`ClientChange`] in
    /// [`Event::client_change`] and
    /// [`Session::client_change`](crate::Session::client_change). Emitted
    /// by [`SessionStore::save`](crate::SessionStore::save) after the
    /// session (with its client's new network and location) was saved;
    /// `sid` is the session's id after the save (a renewed one's new id).
    /// Takes no time of its own and affects no rows.
    ClientChanged,
}

impl EventKind {
    /// The event's name, e.g. `session_read.stored_session`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Read => "session_read.stored_session",
            EventKind::Write => "session_write.stored_session",
            EventKind::Touch => "session_touch.stored_session",
            EventKind::Renew => "session_renew.stored_session",
            EventKind::Delete => "session_delete.stored_session",
            EventKind::Trim => "session_trim.stored_session",
            EventKind::Rejected => "session_rejected.stored_session",
            EventKind::ClientChanged => "session_client_changed.stored_session",
        }
    }

    fn label(self) -> &'static str {
        match self {
            EventKind::Read => "Session Read",
            EventKind::Write => "Session Write",
            EventKind::Touch => "Session Touch",
            EventKind::Renew => "Session Renew",
            EventKind::Delete => "Session Delete",
            EventKind::Trim => "Session Trim",
            EventKind::Rejected => "Session Rejected",
            EventKind::ClientChanged => "Session Client Changed",
        }
    }
}

/// Why a presented cookie did not yield its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The cookie value is not a well-formed id (no query was made).
    Malformed,
    /// No live row has this id: never issued, deleted, or idle/absolutely expired.
    NotFound,
    /// The row's envelope failed to open under a key on the keyring:
    /// tampered, truncated, moved from another row, or its plain
    /// `created_at` column disagrees with the authenticated one.
    Tampered,
    /// The row's envelope names a key that is not on the store's keyring: a
    /// configuration problem (the keys were changed, or the key that sealed
    /// it was dropped from the ring too early), not tampering. The row and
    /// the browser's cookie are left alone, so the session opens again once
    /// that key is back on the ring; the request gets a fresh session (see
    /// [`SessionStore::load`](crate::SessionStore::load)). Logged at error
    /// level (target `stored_session`) with the hashed id and the key id.
    /// An envelope whose key id bytes were altered lands here too: without
    /// the key there is no telling the two apart.
    UnknownKey,
    /// The envelope opened but its content could not be decoded.
    Undecodable,
    /// The authenticated creation time is past the absolute lifetime.
    Expired,
}

/// One store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The hashed id of the session concerned, when there is one. For
    /// [`EventKind::Renew`] this is the new id.
    pub sid: Option<StoredId>,
    /// For [`EventKind::Renew`], the id that was replaced.
    pub previous_sid: Option<StoredId>,
    /// Wall time the operation took, database round trips included.
    pub duration: Duration,
    /// Rows the statement affected (found, for a read).
    pub rows: u64,
    /// For [`EventKind::Rejected`], why.
    pub reason: Option<RejectReason>,
    /// For [`EventKind::ClientChanged`], how the client moved.
    pub client_change: Option<ClientChange>,
}

impl Event {
    /// An event of `kind` that took `duration` and affected `rows` rows,
    /// about the session `sid` if any; no previous id, no reason.
    pub(crate) fn new(
        kind: EventKind,
        sid: Option<StoredId>,
        duration: Duration,
        rows: u64,
    ) -> Event {
        Event {
            kind,
            sid,
            previous_sid: None,
            duration,
            rows,
            reason: None,
            client_change: None,
        }
    }

    /// The event's name, e.g. `session_write.stored_session`.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.duration.as_secs_f64() * 1000.0;
        write!(f, "[StoredSession] {} in {ms:.1}ms", self.kind.label())?;
        let mut extra = Vec::new();
        if let Some(sid) = &self.sid {
            extra.push(format!("sid: \"{sid}\""));
        }
        if let Some(prev) = &self.previous_sid {
            extra.push(format!("previous: \"{prev}\""));
        }
        if let Some(reason) = &self.reason {
            extra.push(format!("reason: {reason:?}"));
        }
        if let Some(change) = &self.client_change {
            extra.push(format!("change: {change:?}"));
        }
        if !matches!(
            self.kind,
            EventKind::Read | EventKind::Rejected | EventKind::ClientChanged
        ) {
            extra.push(format!("rows: {}", self.rows));
        }
        if !extra.is_empty() {
            write!(f, " ({})", extra.join(", "))?;
        }
        Ok(())
    }
}

/// Handle returned by [`SessionStore::subscribe`](crate::SessionStore::subscribe),
/// used to remove the subscriber again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// The store's subscriber list.
pub(crate) struct Events {
    subscribers: RwLock<Vec<(SubscriptionId, Subscriber)>>,
    /// How many subscribers the list holds, readable without its lock.
    count: AtomicUsize,
    next: AtomicU64,
    log: AtomicBool,
}

/// Times one operation for its event, reading the clock only when someone
/// will see the event (a subscriber, or the `log` subscriber with debug
/// enabled): an unobserved operation costs no clock reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// Time since the start; zero when nobody was listening at the start.
    pub fn elapsed(self) -> Duration {
        self.0.map(|t| t.elapsed()).unwrap_or_default()
    }
}

impl Events {
    pub fn new(log: bool) -> Self {
        Events {
            subscribers: RwLock::new(Vec::new()),
            count: AtomicUsize::new(0),
            next: AtomicU64::new(1),
            log: AtomicBool::new(log),
        }
    }

    pub fn subscribe(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> SubscriptionId {
        let id = SubscriptionId(self.next.fetch_add(1, Ordering::Relaxed));
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, Arc::new(f)));
        self.count.fetch_add(1, Ordering::Relaxed);
        id
    }

    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut list = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        self.count.store(list.len(), Ordering::Relaxed);
        list.len() != before
    }

    pub fn set_log(&self, on: bool) {
        self.log.store(on, Ordering::Relaxed);
    }

    /// Whether the built-in `log` subscriber would write an event.
    fn logging(&self) -> bool {
        self.log.load(Ordering::Relaxed)
            && log::log_enabled!(target: "stored_session", log::Level::Debug)
    }

    /// Starts timing an operation (see [`Stopwatch`]).
    pub fn stopwatch(&self) -> Stopwatch {
        let observed = self.count.load(Ordering::Relaxed) > 0 || self.logging();
        Stopwatch(observed.then(Instant::now))
    }

    pub fn emit(&self, event: Event) {
        if self.logging() {
            log::debug!(target: "stored_session", "{event}");
        }
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let list = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        for (_, f) in list.iter() {
            f(&event);
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.subscribers.read().map(|l| l.len()).unwrap_or(0);
        f.debug_struct("Events")
            .field("subscribers", &n)
            .field("log", &self.log.load(Ordering::Relaxed))
            .finish()
    }
}
