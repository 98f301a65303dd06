//! The JSON-RPC line protocol: one JSON object per `\n`-terminated line.
//!
//! Requests from miners are `{"id": …, "method": "…", "params": […]}`; the server answers
//! `{"id": …, "result": …, "error": null}` or `{"id": …, "result": null, "error":
//! [code, "message", null]}` (Stratum's error triple), and sends notifications with
//! `"id": null`. Lines are bounded by the session before they get here, and serde_json's
//! recursion limit bounds nesting, so parsing hostile input is cheap and cannot blow the
//! stack.

use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::{SessionError, StratumError};

/// A request from a miner.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Value,
}

impl Request {
    /// The params as an array (Stratum always uses positional params).
    pub fn params_array(&self) -> Result<&[Value], StratumError> {
        match &self.params {
            Value::Array(a) => Ok(a),
            Value::Null => Ok(&[]),
            _ => Err(StratumError::malformed("params", "expected an array")),
        }
    }

    /// Param `i` as a string.
    pub fn str_param(&self, i: usize, name: &'static str) -> Result<&str, StratumError> {
        self.params_array()?
            .get(i)
            .and_then(Value::as_str)
            .ok_or_else(|| StratumError::malformed(name, "missing or not a string"))
    }
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Request(Request),
    /// A response to something the server sent (the server sends no requests that need
    /// one, so these are ignored).
    Response,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Value,
}

/// Parses one line (without its newline). Garbage is a [`SessionError`]: a miner that
/// cannot speak JSON is not a miner.
pub fn parse_line(line: &[u8]) -> Result<Incoming, SessionError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| SessionError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(SessionError::NotARequest);
    }
    let raw: RawMessage = serde_json::from_value(value).map_err(|_| SessionError::NotARequest)?;
    match raw.method {
        Some(method) => Ok(Incoming::Request(Request {
            id: raw.id,
            method,
            params: raw.params,
        })),
        None => Ok(Incoming::Response),
    }
}

/// A successful response line.
pub fn response_ok(id: &Value, result: Value) -> Vec<u8> {
    line(json!({"id": id, "result": result, "error": null}))
}

/// An error response line: `[code, message, null]`.
pub fn response_err(id: &Value, error: &StratumError) -> Vec<u8> {
    line(json!({
        "id": id,
        "result": null,
        "error": [error.code(), error.to_string(), null],
    }))
}

/// A notification line (`"id": null`).
pub fn notification(method: &str, params: Value) -> Vec<u8> {
    line(json!({"id": null, "method": method, "params": params}))
}

/// `mining.set_difficulty`.
pub fn set_difficulty(difficulty: f64) -> Vec<u8> {
    notification("mining.set_difficulty", json!([difficulty]))
}

fn line(value: Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail (all keys are strings).
    let mut out = serde_json::to_vec(&value).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_responses() {
        let r =
            parse_line(br#"{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5"]}"#)
                .unwrap();
        let Incoming::Request(req) = r else {
            panic!("expected a request")
        };
        assert_eq!(req.id, json!(1));
        assert_eq!(req.method, "mining.subscribe");
        assert_eq!(req.str_param(0, "agent").unwrap(), "cpuminer/2.5");
        assert!(req.str_param(1, "session").is_err());

        let r = parse_line(br#"{"id":"abc","method":"mining.extranonce.subscribe"}"#).unwrap();
        let Incoming::Request(req) = r else {
            panic!("expected a request")
        };
        assert_eq!(req.params_array().unwrap().len(), 0);

        assert_eq!(
            parse_line(br#"{"id":3,"result":true,"error":null}"#).unwrap(),
            Incoming::Response
        );
    }

    #[test]
    fn garbage_is_a_session_error() {
        assert!(matches!(
            parse_line(b"{not json"),
            Err(SessionError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_line(b"[1,2,3]"),
            Err(SessionError::NotARequest)
        ));
        assert!(matches!(
            parse_line(br#"{"method": 5}"#),
            Err(SessionError::NotARequest)
        ));
        // Deep nesting hits serde_json's recursion limit instead of the stack.
        let deep = "[".repeat(10_000);
        assert!(parse_line(deep.as_bytes()).is_err());
    }

    #[test]
    fn non_array_params_are_refused_per_request() {
        let Incoming::Request(req) =
            parse_line(br#"{"id":1,"method":"mining.submit","params":{"a":1}}"#).unwrap()
        else {
            panic!("expected a request")
        };
        assert_eq!(req.params_array().unwrap_err().code(), 20);
    }

    #[test]
    fn responses_have_the_stratum_shape() {
        let ok: Value = serde_json::from_slice(&response_ok(&json!(7), json!(true))).unwrap();
        assert_eq!(ok, json!({"id": 7, "result": true, "error": null}));
        let err: Value =
            serde_json::from_slice(&response_err(&json!(8), &StratumError::Duplicate)).unwrap();
        assert_eq!(err["error"], json!([22, "duplicate share", null]));
        assert_eq!(err["result"], Value::Null);
        let n = set_difficulty(0.5);
        assert_eq!(n.last(), Some(&b'\n'));
        let n: Value = serde_json::from_slice(&n).unwrap();
        assert_eq!(n["method"], "mining.set_difficulty");
        assert_eq!(n["params"], json!([0.5]));
        assert_eq!(n["id"], Value::Null);
    }
}
