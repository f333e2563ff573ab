//! The relay state of one agent's profile (RECONCILE.md, Inputs), classified
//! from what the relay gave.

use super::content::ProfileContent;
use super::model::RelayObservation;
use super::plan::SkipReason;

/// The relay state of one agent (RECONCILE.md, Inputs), classified from what
/// the relay gave.
#[derive(Debug, Clone)]
pub enum ProfileState<'a> {
    /// The relay answered and holds no kind:0.
    Missing,
    /// The newest kind:0's content is a JSON object.
    Present {
        /// The event as read.
        event: &'a super::model::ExistingEvent,
        /// Its parsed content.
        content: ProfileContent<'a>,
    },
    /// The newest kind:0's content is not a JSON object.
    Malformed {
        /// The event as read.
        event: &'a super::model::ExistingEvent,
    },
    /// The relay could not be read.
    Unknown {
        /// Why, for people.
        reason: &'a str,
        /// The skip reason it gives: `relay_unreachable`, or
        /// `relay_auth_refused` when the relay demanded an authentication
        /// no identity passed.
        skip: SkipReason,
    },
}

impl<'a> ProfileState<'a> {
    /// Classifies a relay observation.
    pub fn classify(observation: &'a RelayObservation) -> Self {
        match observation {
            RelayObservation::NoProfile => ProfileState::Missing,
            RelayObservation::Unreadable(reason) => ProfileState::Unknown {
                reason,
                skip: SkipReason::RelayUnreachable,
            },
            RelayObservation::AuthRefused(reason) => ProfileState::Unknown {
                reason,
                skip: SkipReason::RelayAuthRefused,
            },
            RelayObservation::Newest(event) => match ProfileContent::parse(&event.content) {
                Some(content) => ProfileState::Present { event, content },
                None => ProfileState::Malformed { event },
            },
        }
    }

    pub(super) fn event(&self) -> Option<&'a super::model::ExistingEvent> {
        match self {
            ProfileState::Present { event, .. } | ProfileState::Malformed { event } => Some(event),
            _ => None,
        }
    }
}
