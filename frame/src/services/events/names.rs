//! The event-name grammar: names are `{shard}.{entity}.{action}`, patterns match them part by
//! part. The events service owns it; manifests and grants use it to check what they declare.

pub(crate) fn is_name_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Checks an event name: exactly three parts `{shard}.{entity}.{action}`.
pub fn validate_event_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_name_part(p)) {
        return Err(format!(
            "`{name}` is not an event name; event names are `{{shard}}.{{entity}}.{{action}}` in lowercase letters, digits, `_` and `-`"
        ));
    }
    Ok(())
}

/// Checks an event pattern: up to three parts, each a name part or `*`.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    let parts: Vec<&str> = pattern.split('.').collect();
    let ok = !parts.is_empty()
        && parts.len() <= 3
        && parts.iter().all(|p| *p == "*" || is_name_part(p))
        && (parts.len() == 3 || parts.last() == Some(&"*"));
    if !ok {
        return Err(format!(
            "has `{pattern}`, which is not an event pattern; write a full name (`shard.entity.action`) with `*` for a whole part, or end with `*` for any rest (`documents.*`)"
        ));
    }
    Ok(())
}

/// Whether `name` matches `pattern`: `*` matches one part, and a trailing `*` any rest.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let name: Vec<&str> = name.split('.').collect();
    for (i, p) in pattern.iter().enumerate() {
        let last = i + 1 == pattern.len();
        match name.get(i) {
            None => return false,
            Some(_) if *p == "*" && last => return true,
            Some(n) if *p == "*" || p == n => {}
            Some(_) => return false,
        }
    }
    pattern.len() == name.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert!(pattern_matches("packets.*", "packets.packet.created"));
        assert!(pattern_matches(
            "packets.*.created",
            "packets.packet.created"
        ));
        assert!(!pattern_matches(
            "packets.*.created",
            "packets.packet.updated"
        ));
        assert!(pattern_matches("*", "anything.at.all"));
        assert!(!pattern_matches("packets.packet.created", "packets.packet"));
        assert!(!pattern_matches("packets.packet", "packets.packet.created"));
        assert!(validate_pattern("packets.packet").is_err());
        assert!(validate_pattern("packets.*").is_ok());
        assert!(validate_event_name("packets.packet.created").is_ok());
        assert!(validate_event_name("packets.packet").is_err());
        assert!(validate_event_name("Packets.packet.created").is_err());
    }
}
