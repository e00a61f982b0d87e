//! Property tests (bounded case counts, so they run in CI) for what the gateway takes from
//! outside: message hygiene, the last-output filter, label selectors and create admission.
//! None may panic; hygiene output is always at most 4096 bytes with no raw control character but
//! `\n` and `\t`; an admitted request is within every limit; a refused one is InvalidArgument.

use std::collections::HashMap;
use std::sync::Arc;

use openshell_gateway::error::GatewayError;
use openshell_gateway::request::{self, limits};
use openshell_gateway::{auth, hygiene, last_output};
use openshell_proto::v1::{CreateSandboxRequest, SandboxLogLine, SandboxSpec, SandboxTemplate};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Text with a good share of control characters, multi-byte characters and hex.
fn nasty_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        prop::sample::select(vec![
            "\u{1b}[31m",
            "\u{9b}2J",
            "\u{7}",
            "\u{7f}",
            "\n",
            "\t",
            "\r",
            "\0",
            "é",
            "€",
            "😀",
            "=",
            ",",
            " ",
        ])
        .prop_map(str::to_string),
        "[0-9a-f]{30,70}",
    ];
    prop::collection::vec(piece, 0..max).prop_map(|p| p.concat())
}

fn no_raw_control(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hygiene_is_bounded_and_free_of_control_characters(text in nasty_text(400), pad in 0usize..6000) {
        let text = format!("{text}{}", "\u{1b}".repeat(pad));
        let clean = hygiene::sanitize(&text);
        prop_assert!(clean.len() <= hygiene::MAX_MESSAGE_BYTES, "{} bytes", clean.len());
        prop_assert!(no_raw_control(&clean));
        if text.len() <= hygiene::MAX_MESSAGE_BYTES && no_raw_control(&text) {
            prop_assert_eq!(clean, text);
        }
    }

    #[test]
    fn the_last_output_holds_no_token_and_no_long_hex(lines in prop::collection::vec(nasty_text(40), 0..40), at in 0usize..40) {
        let token = auth::new_token();
        let mut lines = lines;
        let at = at.min(lines.len());
        lines.insert(at, format!("TOKEN={token}"));
        let lines: Vec<Arc<SandboxLogLine>> = lines
            .into_iter()
            .map(|message| Arc::new(SandboxLogLine { message: hygiene::sanitize(&message), ..Default::default() }))
            .collect();
        let out = last_output::for_message(&lines, &auth::hash_token(&token));
        prop_assert!(!out.contains(&token));
        prop_assert!(out.len() <= last_output::BYTES + '…'.len_utf8());
        let longest = out.split(|c: char| !c.is_ascii_hexdigit()).map(str::len).max().unwrap_or(0);
        prop_assert!(longest < last_output::LONG_HEX, "{longest}");
    }

    #[test]
    fn selectors_parse_or_fail_as_invalid_argument(selector in nasty_text(60)) {
        match request::parse_selector(&selector) {
            Ok(pairs) => prop_assert!(pairs.iter().all(|(k, _)| !k.is_empty())),
            Err(e) => prop_assert!(matches!(e, GatewayError::InvalidArgument(_)), "{e:?}"),
        }
    }

    #[test]
    fn admission_never_panics_and_admits_only_what_fits(
        name in prop_oneof![Just(String::new()), "[a-z0-9-]{1,70}", nasty_text(20)],
        image in prop_oneof![Just("openshell-fixture/good:0123456789ab".to_string()), nasty_text(10), "x{500,520}"],
        labels in prop::collection::hash_map(prop_oneof!["[a-z./_-]{1,10}", nasty_text(5)], prop_oneof!["[a-z0-9]{0,10}", nasty_text(5), "v{250,260}"], 0..70),
        env in prop::collection::hash_map(prop_oneof!["[A-Z_][A-Z0-9_]{0,8}", nasty_text(5), Just("OPENSHELL_SANDBOX_TOKEN".to_string())], nasty_text(5), 0..8),
        command in prop::collection::vec(nasty_text(8), 0..6),
        runtime in prop_oneof![Just(String::new()), Just("runsc".to_string()), nasty_text(6)],
    ) {
        let request = CreateSandboxRequest {
            name,
            labels: labels.clone(),
            spec: Some(SandboxSpec {
                environment: env.clone(),
                command: command.clone(),
                template: Some(SandboxTemplate {
                    image: image.clone(),
                    runtime_class_name: runtime,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        match request::admit(request, "http://127.0.0.1:1", "gw-test") {
            Ok(admitted) => {
                let meta = admitted.sandbox.metadata.as_ref().unwrap();
                prop_assert!(!meta.name.is_empty() && meta.name.len() <= limits::NAME_BYTES);
                prop_assert!(labels.len() <= limits::LABELS);
                prop_assert!(labels.iter().all(|(k, v)| k.len() <= limits::LABEL_KEY_BYTES && v.len() <= limits::LABEL_VALUE_BYTES && !v.contains(',') && !v.contains('=')));
                prop_assert!(!image.trim().is_empty() && image.len() <= limits::IMAGE_BYTES);
                prop_assert!(!env.contains_key("OPENSHELL_SANDBOX_TOKEN"));
                prop_assert!(command.iter().all(|a| !a.contains('\0')));
                let selectable: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let parsed: HashMap<String, String> = request::parse_selector(&selectable.join(",")).unwrap().into_iter().collect();
                prop_assert_eq!(parsed, labels, "every admitted label can be selected");
            }
            Err(e) => prop_assert!(matches!(e, GatewayError::InvalidArgument(_)), "{e:?}"),
        }
    }
}
