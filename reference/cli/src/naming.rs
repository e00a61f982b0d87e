//! Sandbox names the CLI makes up when `--name` is not given.
//!
//! A generated name is `sb-` and 8 random hex digits: a DNS-1123 label (lower-case
//! alphanumerics and `-`, starting and ending with an alphanumeric, at most 63 characters), which
//! every gateway accepts as a sandbox name.

/// A fresh random sandbox name such as `sb-3f09a1c2`.
pub fn generate_name() -> String {
    format!("sb-{:08x}", rand::random::<u32>())
}

/// True when `name` is a DNS-1123 label.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_dns1123_labels_with_the_sb_prefix() {
        for _ in 0..100 {
            let name = generate_name();
            assert!(is_dns1123_label(&name), "{name}");
            assert_eq!(name.len(), 11, "{name}");
            assert!(name.starts_with("sb-"), "{name}");
        }
    }

    #[test]
    fn generated_names_differ() {
        let names: std::collections::HashSet<_> = (0..50).map(|_| generate_name()).collect();
        assert!(names.len() > 45);
    }

    #[test]
    fn dns1123_check_rejects_upper_case_edges_and_long_names() {
        assert!(is_dns1123_label("a"));
        assert!(is_dns1123_label("my-box-1"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label("My-box"));
        assert!(!is_dns1123_label("-box"));
        assert!(!is_dns1123_label("box-"));
        assert!(!is_dns1123_label("box_1"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_label(&"a".repeat(63)));
    }
}
