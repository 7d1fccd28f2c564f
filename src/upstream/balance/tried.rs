//! The servers already tried for one request (nginx's `tried` bitmap).

/// Reused across the requests of a connection; the first 64 servers live inline, so only an
/// upstream of more than 64 servers ever allocates.
#[derive(Debug, Default)]
pub struct Tried {
    first: u64,
    rest: Vec<u64>,
}

impl Tried {
    pub fn reset(&mut self, peers: usize) {
        self.first = 0;
        if peers > 64 {
            self.rest.clear();
            self.rest.resize((peers - 64).div_ceil(64), 0);
        } else if !self.rest.is_empty() {
            self.rest.clear();
        }
    }

    pub fn has(&self, i: usize) -> bool {
        if i < 64 {
            return self.first & (1 << i) != 0;
        }
        self.rest
            .get((i - 64) / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn set(&mut self, i: usize) {
        if i < 64 {
            self.first |= 1 << i;
        } else if let Some(w) = self.rest.get_mut((i - 64) / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn count(&self) -> usize {
        self.first.count_ones() as usize
            + self
                .rest
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }
}
