//! What goes wrong in a definition file (a record kind, a metric): the file, the line, why.

/// A definition file that cannot be used: the file, the line where known, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DefinitionError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}
