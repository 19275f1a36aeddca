//! The message model shared by the API, the store and the dispatcher.

use std::fmt;

/// The front door a message came in by: it decides the form its status
/// reports take (Pigeon's JSON webhook, Twilio's status callback, or an
/// SMPP delivery receipt to the ESME's binds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    /// `POST /v1/messages` (and Pigeon's own automatic replies).
    #[default]
    Api,
    /// The Twilio-compatible Messages API.
    Twilio,
    /// An SMPP `submit_sm`.
    Smpp,
}

impl Origin {
    pub const ALL: [Origin; 3] = [Self::Api, Self::Twilio, Self::Smpp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Twilio => "twilio",
            Self::Smpp => "smpp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Why a message is sent; decides dispatch priority (lower is sooner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Otp,
    Transactional,
    Marketing,
}

impl MessageType {
    pub const ALL: [MessageType; 3] = [Self::Otp, Self::Transactional, Self::Marketing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::Transactional => "transactional",
            Self::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Dispatch priority: OTPs go before alerts, alerts before campaigns.
    pub fn priority(self) -> i64 {
        match self {
            Self::Otp => 0,
            Self::Transactional => 1,
            Self::Marketing => 2,
        }
    }
}

/// The state of a message or of one of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Scheduled,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Rejected,
    Expired,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Self::Queued,
        Self::Scheduled,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
        Self::Rejected,
        Self::Expired,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Self::Queued | Self::Scheduled | Self::Sending | Self::Sent
        )
    }

    /// Whether Pigeon may still need the message's body: a part in this
    /// state may yet be encoded and submitted. Once every part is `sent` or
    /// final, none can go back to the queue, so retention may redact it.
    pub fn needs_body(self) -> bool {
        matches!(self, Self::Queued | Self::Scheduled | Self::Sending)
    }

    /// How far along the way to the handset a state is; used to aggregate
    /// parts into one message state and to refuse regressions.
    fn progress(self) -> u8 {
        match self {
            Self::Queued | Self::Scheduled => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            _ => 3,
        }
    }

    /// Among final states, how bad an outcome is (the message takes the worst).
    fn badness(self) -> u8 {
        match self {
            Self::Delivered => 0,
            Self::Canceled => 1,
            Self::Undelivered => 2,
            Self::Expired => 3,
            Self::Rejected => 4,
            Self::Failed => 5,
            _ => 0,
        }
    }

    /// Whether a part in state `self` may move to `next`. Final states stay
    /// final, and a late or duplicated report never moves a part backwards,
    /// except that a retry puts a `sending` part back in the queue.
    pub fn may_become(self, next: Status) -> bool {
        if self.is_final() || self == next {
            return false;
        }
        next.progress() >= self.progress() || (self == Self::Sending && next == Self::Queued)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a message, from the states of its parts: while any part is
/// under way the message is as far along as its slowest part (but `sending`
/// once any part has left the queue); once all are final it is `delivered`
/// only if every part is, else the worst outcome.
pub fn aggregate_status(parts: impl IntoIterator<Item = Status>) -> Option<Status> {
    let mut slowest_open: Option<Status> = None;
    let mut worst_final: Option<Status> = None;
    let mut any_started = false;
    for status in parts {
        any_started |= status.progress() > 0;
        if status.is_final() {
            if worst_final.is_none_or(|w| status.badness() > w.badness()) {
                worst_final = Some(status);
            }
        } else if slowest_open.is_none_or(|s| status.progress() < s.progress()) {
            slowest_open = Some(status);
        }
    }
    match slowest_open {
        Some(open) if open.progress() == 0 && any_started => Some(Status::Sending),
        Some(open) => Some(open),
        None => worst_final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_takes_the_slowest_open_part_then_the_worst_final_one() {
        use Status::*;
        assert_eq!(aggregate_status([Sent, Sending]), Some(Sending));
        assert_eq!(aggregate_status([Delivered, Sent]), Some(Sent));
        assert_eq!(aggregate_status([Delivered, Delivered]), Some(Delivered));
        assert_eq!(
            aggregate_status([Delivered, Undelivered]),
            Some(Undelivered)
        );
        assert_eq!(aggregate_status([Failed, Undelivered]), Some(Failed));
        assert_eq!(aggregate_status([Scheduled]), Some(Scheduled));
        assert_eq!(aggregate_status([Sent, Queued]), Some(Sending));
        assert_eq!(aggregate_status([Delivered, Queued]), Some(Sending));
        assert_eq!(aggregate_status([Queued, Queued]), Some(Queued));
        assert_eq!(aggregate_status([]), None);
    }

    #[test]
    fn only_parts_still_to_be_sent_need_the_body() {
        use Status::*;
        for status in [Queued, Scheduled, Sending] {
            assert!(status.needs_body(), "{status}");
        }
        for status in [
            Sent,
            Delivered,
            Undelivered,
            Failed,
            Rejected,
            Expired,
            Canceled,
        ] {
            assert!(!status.needs_body(), "{status}");
            // None of them goes back to the queue.
            assert!(!status.may_become(Queued), "{status}");
        }
    }

    #[test]
    fn final_states_never_regress() {
        use Status::*;
        assert!(Sending.may_become(Sent));
        assert!(Sent.may_become(Delivered));
        assert!(Sending.may_become(Queued), "a retry requeues");
        assert!(!Sent.may_become(Sending));
        assert!(!Delivered.may_become(Undelivered));
        assert!(!Undelivered.may_become(Delivered));
        assert!(!Sent.may_become(Sent));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Some(t));
        }
    }
}

/// Twilio's names for Pigeon's things, shared by the Twilio-compatible
/// door and the outbox that writes its callbacks.
pub mod twilio {
    use super::Status;

    /// The one API version the door speaks.
    pub const API_VERSION: &str = "2010-04-01";

    /// A Twilio SID for a Pigeon id: `prefix` (`SM`, `MG`) and the id's
    /// 128-bit body in hex, so each maps to the other without a table.
    pub fn sid(prefix: &str, id: &str) -> String {
        match crate::ids::body_hex(id) {
            Some(hex) => format!("{prefix}{hex}"),
            None => id.to_owned(),
        }
    }

    /// The Pigeon id (`id_prefix`) a SID (`sid_prefix` + 32 hex) names.
    pub fn id(sid: &str, sid_prefix: &str, id_prefix: &str) -> Option<String> {
        crate::ids::from_body_hex(id_prefix, sid.strip_prefix(sid_prefix)?)
    }

    /// Twilio's status for a Pigeon status. Twilio has no `rejected` or
    /// `expired`: a message refused or not sent in its validity period
    /// `failed`.
    pub fn status(status: Status) -> &'static str {
        match status {
            Status::Queued => "queued",
            Status::Scheduled => "scheduled",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Failed | Status::Rejected | Status::Expired => "failed",
            Status::Canceled => "canceled",
        }
    }

    /// Twilio's error code for a message that ended so: 30003 unreachable
    /// handset, 30007 filtered, 30001 not sent in time (Twilio's queue
    /// overflow), 30008 unknown.
    pub fn error_code(status: Status) -> Option<u32> {
        match status {
            Status::Undelivered => Some(30003),
            Status::Rejected => Some(30007),
            Status::Expired => Some(30001),
            Status::Failed => Some(30008),
            _ => None,
        }
    }
}
