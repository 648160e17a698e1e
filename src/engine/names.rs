//! The queue-name rule of changes.md §1.

use super::error::EngineError;

/// Longest queue name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// 1 to 255 bytes of UTF-8, not blank, no control characters, no `/`, no leading `_`.
/// Names that pass round-trip through every route, percent-encoded in paths.
/// Requirements: API-0006
pub fn validate_queue_name(name: &str) -> Result<(), EngineError> {
    let bad = |why: &str| Err(EngineError::InvalidQueueName(format!("{why}: {name:?}")));
    if name.trim().is_empty() {
        return bad("name is empty or blank");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(EngineError::InvalidQueueName(format!(
            "name is {} bytes long; at most {MAX_NAME_BYTES} allowed",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return bad("name contains a control character");
    }
    if name.contains('/') {
        return bad("name contains '/'");
    }
    if name.starts_with('_') {
        return bad("name starts with '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0006
    #[test]
    fn accepts_ordinary_and_unicode_names() {
        for n in ["orders", "a", "émoji-🚀", "with space", &"x".repeat(255)] {
            assert!(validate_queue_name(n).is_ok(), "{n}");
        }
    }

    // Verifies: API-0006
    #[test]
    fn rejects_names_outside_the_rule() {
        for n in ["", "   ", "a/b", "_dlq", "tab\there", &"x".repeat(256)] {
            assert!(validate_queue_name(n).is_err(), "{n:?}");
        }
    }
}
