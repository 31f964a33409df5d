//! The checked-in documents match the code.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{DocAuth, documented_operations};
use tokenim_api::{ApiDoc, ErrorCode, Scope};

fn manifest_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Fails when `openapi.json` is stale; `TOKENIM_UPDATE_OPENAPI=1` rewrites it.
#[test]
fn openapi_json_is_up_to_date() {
    let generated = ApiDoc::openapi_json().unwrap();
    let path = manifest_file("openapi.json");
    if std::env::var_os("TOKENIM_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "local-api/openapi.json is stale: run `TOKENIM_UPDATE_OPENAPI=1 cargo test -p tokenim-api --test docs`"
    );
}

#[test]
fn openapi_lists_every_error_code() {
    let doc: serde_json::Value = serde_json::from_str(&ApiDoc::openapi_json().unwrap()).unwrap();
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all);
}

/// ERRORS.md has one table row `| `code` | status | ... |` per code, and no others.
#[test]
fn errors_md_documents_every_code() {
    let text = std::fs::read_to_string(manifest_file("ERRORS.md")).unwrap();
    let rows: Vec<(String, u16)> = text
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.get(2)?.parse().ok()?;
            Some((code.to_owned(), status))
        })
        .collect();
    let expected: Vec<(String, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.status().as_u16()))
        .collect();
    assert_eq!(rows, expected);
}

/// The error codes a response description names: in each `;`-separated clause, the
/// backquoted words before any `:`, outside parentheses (which hold notes such as
/// "(needs `send`)").
fn described_codes(description: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for clause in description.split(';') {
        let head = clause.split(':').next().unwrap_or_default();
        let mut depth = 0usize;
        let mut outside = String::new();
        for ch in head.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => outside.push(ch),
                _ => {}
            }
        }
        codes.extend(outside.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    codes
}

/// Every error response of every operation names at least one code; each is an `ErrorCode`
/// whose status is the response's, and has its row in ERRORS.md.
#[test]
fn documented_error_codes_are_real_and_in_errors_md() {
    let errors_md = std::fs::read_to_string(manifest_file("ERRORS.md")).unwrap();
    for op in documented_operations() {
        for (status, response) in &op.responses {
            let status: u16 = status.parse().unwrap();
            if status < 400 {
                continue;
            }
            let text = response["description"].as_str().unwrap();
            let codes = described_codes(text);
            assert!(
                !codes.is_empty(),
                "{} {status}: names no error code: {text:?}",
                op.name()
            );
            for code in codes {
                let known = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| {
                        panic!("{} {status}: `{code}` is not an error code", op.name())
                    });
                assert_eq!(
                    known.status().as_u16(),
                    status,
                    "{} documents `{code}` under the wrong status",
                    op.name()
                );
                assert!(
                    errors_md.contains(&format!("| `{code}` | {status} |")),
                    "`{code}` ({} {status}) has no row in ERRORS.md",
                    op.name()
                );
            }
        }
    }
}

/// The scope table of ERRORS.md lists every operation once, with the scope its security
/// requirement in the OpenAPI document names (`tests/api.rs` checks the router enforces it).
#[test]
fn errors_md_scope_table_matches_the_document() {
    let text = std::fs::read_to_string(manifest_file("ERRORS.md")).unwrap();
    let table = &text[text.find("## Scopes").unwrap()..];
    let mut listed: BTreeMap<String, DocAuth> = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let auth = match cells[1] {
            "scope" => continue,
            c if c.starts_with('-') => continue,
            "none" => DocAuth::Public,
            "any valid token" => DocAuth::AnyToken,
            c => {
                let name = c.trim_matches('`');
                DocAuth::Scope(
                    serde_json::from_value(serde_json::json!(name))
                        .unwrap_or_else(|_| panic!("unknown scope {c} in ERRORS.md")),
                )
            }
        };
        for route in cells[2].split('`').skip(1).step_by(2) {
            assert!(
                listed.insert(route.to_owned(), auth).is_none(),
                "{route} is listed twice in ERRORS.md"
            );
        }
    }
    let documented: BTreeMap<String, DocAuth> = documented_operations()
        .into_iter()
        .map(|op| (op.name(), op.auth))
        .collect();
    assert_eq!(listed, documented);
    // Every scope has routes, so a scope that stopped being checked shows up here too.
    for scope in Scope::ALL {
        assert!(
            documented.values().any(|a| *a == DocAuth::Scope(scope)),
            "no route needs {scope}"
        );
    }
}
