//! A leader proposal of which one is in flight at a time (an eviction, a
//! check assignment): the next is decided from the state the last one
//! left, so it waits until that one applied, or leadership ended.

#[derive(Debug, Default)]
pub(crate) struct OneInFlight(Option<u64>);

impl OneInFlight {
    pub(crate) fn is_pending(&self) -> bool {
        self.0.is_some()
    }

    /// Proposed at `index` (None: the proposal was refused).
    pub(crate) fn proposed(&mut self, index: Option<u64>) {
        self.0 = index;
    }

    /// An entry applied: the one in flight, if it was that one, is done.
    pub(crate) fn applied(&mut self, index: u64) {
        if self.0 == Some(index) {
            self.0 = None;
        }
    }

    /// Leadership ended: what was in flight is the next leader's to see.
    pub(crate) fn stepped_down(&mut self) {
        self.0 = None;
    }
}
