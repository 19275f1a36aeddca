//! Who last sent to each number, kept in memory for the messages carriers
//! took recently, so an inbound message (a reply) can be filed under the
//! right account without an index on recipients (which would cost the
//! accept path dearly). Two generations: when the newer one is full, the
//! older is dropped, so memory stays bounded.

use std::collections::HashMap;
use std::sync::Mutex;

/// Numbers per generation (two are kept).
const GENERATION: usize = 250_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSent {
    pub account_id: String,
    pub message_id: String,
}

#[derive(Default)]
pub struct RecentRecipients {
    generations: Mutex<[HashMap<String, LastSent>; 2]>,
}

impl RecentRecipients {
    pub fn remember(&self, number: &str, sent: LastSent) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if generations[0].len() >= GENERATION {
            generations.swap(0, 1);
            generations[0] = HashMap::new();
        }
        generations[0].insert(number.to_owned(), sent);
    }

    pub fn last_sent_to(&self, number: &str) -> Option<LastSent> {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations
            .iter()
            .find_map(|generation| generation.get(number))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(id: &str) -> LastSent {
        LastSent {
            account_id: "acc".into(),
            message_id: id.into(),
        }
    }

    #[test]
    fn the_latest_wins_and_old_generations_go() {
        let recent = RecentRecipients::default();
        recent.remember("+1", sent("m1"));
        recent.remember("+1", sent("m2"));
        assert_eq!(recent.last_sent_to("+1"), Some(sent("m2")));
        for i in 0..GENERATION * 2 {
            recent.remember(&format!("n{i}"), sent("x"));
        }
        assert_eq!(recent.last_sent_to("+1"), None);
        assert!(
            recent
                .last_sent_to(&format!("n{}", GENERATION * 2 - 1))
                .is_some()
        );
    }
}
