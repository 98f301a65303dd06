//! Bytes from a miner on the Stratum port, through one real session
//! (`p2pool::stratum::session::fuzzing::drive`: line splitting and limits, JSON parsing,
//! every method's parameter parsing and validation, submissions verified against a real
//! job), then a new job and an extranonce renewal.
//!
//! Invariants: everything the session writes is whole `\n`-terminated lines, each a JSON
//! object of the Stratum shape (a response with `id`, `result` and `error`, or a
//! notification with `id: null`, `method` and array `params`); every difficulty the session
//! holds or sends is finite and positive.

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pool::stratum::session::fuzzing::drive;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let outcome = drive(data);
    assert!(outcome.output.is_empty() || outcome.output.ends_with(b"\n"));
    for line in outcome
        .output
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let value: Value = serde_json::from_slice(line).expect("each line written is JSON");
        let object = value.as_object().expect("each line written is an object");
        assert!(object.contains_key("id"));
        if object.contains_key("method") {
            assert_eq!(object["id"], Value::Null);
            assert!(object["params"].is_array());
        } else {
            assert!(object.contains_key("result") && object.contains_key("error"));
        }
    }
    for d in outcome.difficulties {
        assert!(d.is_finite() && d > 0.0, "difficulty {d}");
    }
});
