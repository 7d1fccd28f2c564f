//! Threshold counting: how many consecutive check results flip a server's verdict (HAProxy's
//! `rise` / `fall`, pingora's `Health::observe_health`). Fed with results, no I/O, no clock.

/// A verdict change decided by [`Threshold::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `checks` consecutive failed checks.
    Down { checks: u32 },
    /// `checks` consecutive passed checks.
    Up { checks: u32 },
}

/// The verdict of one server's active check and the streak of results against it.
#[derive(Debug, Clone)]
pub struct Threshold {
    healthy: bool,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::new()
    }
}

impl Threshold {
    /// A server starts up, as nginx starts a new server.
    pub fn new() -> Threshold {
        Threshold {
            healthy: true,
            streak: 0,
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Consecutive results so far that disagree with the verdict.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Feeds one check result: `fails` consecutive failures take an up server down, `passes`
    /// consecutive successes bring a down one up (0 acts as 1).
    pub fn observe(&mut self, ok: bool, fails: u32, passes: u32) -> Option<Transition> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { passes } else { fails }.max(1);
        if self.streak < needed {
            return None;
        }
        let checks = self.streak;
        self.streak = 0;
        self.healthy = ok;
        Some(if ok {
            Transition::Up { checks }
        } else {
            Transition::Down { checks }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_fails_consecutive_failures() {
        let mut t = Threshold::new();
        assert_eq!(t.observe(false, 2, 2), None);
        assert!(t.healthy());
        assert_eq!(t.streak(), 1);
        assert_eq!(t.observe(false, 2, 2), Some(Transition::Down { checks: 2 }));
        assert!(!t.healthy());
        // Further failures change nothing.
        assert_eq!(t.observe(false, 2, 2), None);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let mut t = Threshold::new();
        for ok in [false, true, false, true, false] {
            assert_eq!(t.observe(ok, 2, 2), None);
        }
        assert!(t.healthy());
    }

    #[test]
    fn up_after_passes_consecutive_successes() {
        let mut t = Threshold::new();
        assert_eq!(t.observe(false, 1, 3), Some(Transition::Down { checks: 1 }));
        for ok in [true, true, false, true, true] {
            assert_eq!(t.observe(ok, 1, 3), None);
        }
        assert_eq!(t.observe(true, 1, 3), Some(Transition::Up { checks: 3 }));
        assert!(t.healthy());
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut t = Threshold::new();
        assert_eq!(t.observe(false, 0, 0), Some(Transition::Down { checks: 1 }));
        assert_eq!(t.observe(true, 0, 0), Some(Transition::Up { checks: 1 }));
    }
}
