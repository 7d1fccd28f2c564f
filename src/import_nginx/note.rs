//! What the import reports about a directive it could not carry over.

use std::fmt;

/// One directive not carried over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `file:line` of the directive.
    pub at: String,
    /// The directive as written.
    pub directive: String,
    pub why: String,
}

/// `file:line: directive: why`.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.directive, self.why)
    }
}
