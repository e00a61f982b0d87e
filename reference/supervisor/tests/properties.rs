//! Property tests (bounded case counts, so they run in CI) for the policy parser: arbitrary
//! text and schema-shaped documents with random fields and values never panic; every error names
//! the file, and the line wherever the YAML parser knows it.

use std::path::Path;

use openshell_supervisor::policy::{self, PolicyError};
use proptest::prelude::*;

const PATH: &str = "/etc/openshell/policy.yaml";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// A YAML scalar: plain words, numbers, quoted text, odd characters.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        "-?[0-9]{1,4}",
        Just("1".to_string()),
        Just("/tmp".to_string()),
        Just("sandbox".to_string()),
        "\"[ -~]{0,12}\"",
        any::<String>().prop_map(|s| format!("{s:?}")),
        Just("[".to_string()),
        Just("{a: b".to_string()),
        Just("&anchor x".to_string()),
        Just("*nowhere".to_string()),
    ]
}

/// A key of the schema or not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "version",
            "filesystem_policy",
            "include_workdir",
            "read_only",
            "read_write",
            "landlock",
            "compatibility",
            "process",
            "run_as_user",
            "run_as_group",
            "network_policies",
            "network_middlewares",
            "endpoints",
            "binaries",
            "name",
            "inference",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
    ]
}

/// A schema-shaped document of up to three levels, with random keys, values and indentation.
fn document() -> impl Strategy<Value = String> {
    let line = (
        0usize..3,
        key(),
        prop_oneof![
            scalar(),
            Just(String::new()),
            scalar().prop_map(|s| format!("[{s}]")),
            scalar().prop_map(|s| format!("\n      - {s}"))
        ],
    );
    prop::collection::vec(line, 0..14).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(depth, key, value)| format!("{}{key}: {value}\n", "  ".repeat(depth)))
            .collect()
    })
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match policy::parse(Path::new(PATH), text) {
        Ok(p) => prop_assert_eq!(p.version, 1, "only version 1 is accepted"),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with(PATH), "names the file: {message}");
            match &e {
                PolicyError::Parse { .. } => {
                    let known = serde_yaml_ng::from_str::<policy::Policy>(text)
                        .err()
                        .and_then(|e| e.location());
                    if let Some(at) = known {
                        prop_assert!(
                            message.contains(&format!("line {}", at.line())),
                            "names line {}: {message}",
                            at.line()
                        );
                    }
                }
                PolicyError::Invalid { line, .. } => {
                    prop_assert!(*line >= 1, "{message}");
                    prop_assert!(message.contains(&format!("line {line}")), "{message}");
                }
                PolicyError::Read { .. } => prop_assert!(false, "parse never reads: {message}"),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_the_file(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn schema_shaped_documents_never_panic_and_errors_name_file_and_line(doc in document()) {
        check(&doc)?;
    }

    #[test]
    fn valid_documents_with_a_broken_line_name_that_file(
        user in "[a-z][a-z0-9]{0,8}",
        junk in prop_oneof![scalar(), key().prop_map(|k| format!("{k}: [unclosed"))],
    ) {
        let doc = format!("version: 1\nprocess:\n  run_as_user: {user}\n{junk}\n");
        check(&doc)?;
    }
}
