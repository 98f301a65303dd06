//! A JSON-RPC POST body from an API client, as the HTTP handler receives it (at most
//! `MAX_REQUEST_BYTES`, UTF-8: axum refuses anything else before the handler), answered by
//! `p2pool::api::answer_json_rpc`: jsonrpsee's dispatch against the node's API module over
//! a small real chain.
//!
//! Invariants: the answer is one JSON-RPC 2.0 response object: `jsonrpc: "2.0"`, an `id`,
//! and exactly one of `result` or `error` (with an integer `code` and a string `message`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pool::api::{answer_json_rpc, MAX_REQUEST_BYTES};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_REQUEST_BYTES {
        return;
    }
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let api = p2pool_fuzz::api();
    let answer = api.runtime.block_on(answer_json_rpc(&api.module, body));
    let value: Value = serde_json::from_str(&answer).expect("the answer is JSON");
    let object = value.as_object().expect("the answer is an object");
    assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")), "{answer}");
    assert!(object.contains_key("id"), "{answer}");
    match (object.get("result"), object.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            assert!(error["code"].is_i64(), "{answer}");
            assert!(error["message"].is_string(), "{answer}");
        }
        _ => panic!("not exactly one of result and error: {answer}"),
    }
});
