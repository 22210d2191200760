//! The earlier versions a slot keeps for rollback: oldest first, at most [`HISTORY_LEN`].

/// Previous versions kept for rollback.
const HISTORY_LEN: usize = 8;

/// A bounded stack of replaced versions.
#[derive(Debug)]
pub(super) struct History<T> {
    versions: Vec<T>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        Self {
            versions: Vec::new(),
        }
    }
}

impl<T> History<T> {
    /// Keeps `replaced` as the newest entry, dropping the oldest past [`HISTORY_LEN`].
    pub(super) fn push(&mut self, replaced: T) {
        self.versions.push(replaced);
        if self.versions.len() > HISTORY_LEN {
            self.versions.remove(0);
        }
    }

    /// Removes and returns the newest entry.
    pub(super) fn pop(&mut self) -> Option<T> {
        self.versions.pop()
    }

    /// The entries, newest first.
    pub(super) fn newest_first(&self) -> impl Iterator<Item = &T> {
        self.versions.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_and_pops_newest_first() {
        let mut history = History::default();
        for v in 0..HISTORY_LEN + 3 {
            history.push(v);
        }
        let kept: Vec<usize> = history.newest_first().copied().collect();
        assert_eq!(kept.len(), HISTORY_LEN);
        assert_eq!(kept[0], HISTORY_LEN + 2);
        assert_eq!(kept[HISTORY_LEN - 1], 3);
        assert_eq!(history.pop(), Some(HISTORY_LEN + 2));
        assert_eq!(history.newest_first().next(), Some(&(HISTORY_LEN + 1)));
    }

    #[test]
    fn empty_history_has_nothing_to_pop() {
        let mut history: History<u8> = History::default();
        assert_eq!(history.pop(), None);
    }
}
