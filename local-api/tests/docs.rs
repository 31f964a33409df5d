//! The checked-in documents match the code.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use tokenim_api::{ApiDoc, ErrorCode};

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
