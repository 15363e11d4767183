//! IAM-style policy documents (key, bucket, role policies): built as JSON and normalized so that
//! a document compares equal however the service reformats it on the way back.

use serde_json::{Map, Value, json};

pub fn document(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

pub fn allow(actions: &[&str], resources: &[String]) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
}

/// A trust policy letting `service` assume a role.
pub fn trust(service: &str) -> Value {
    document(vec![json!({
        "Effect": "Allow",
        "Principal": { "Service": service },
        "Action": "sts:AssumeRole"
    })])
}

/// Parses a policy as returned by an API; IAM returns documents URL-encoded.
pub fn parse(text: &str) -> Value {
    let decoded;
    let text = if text.trim_start().starts_with('%') {
        decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned();
        &decoded
    } else {
        text
    };
    normalize(&serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
}

/// One-element lists and single strings compare alike; list order of actions, resources and
/// principals does not matter; a lone statement object is a one-element list.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                let nv = match k.as_str() {
                    "Action" | "NotAction" | "Resource" | "NotResource" => sorted_list(val),
                    "Statement" => match val {
                        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
                        other => Value::Array(vec![normalize(other)]),
                    },
                    "Principal" | "NotPrincipal" => match val {
                        Value::Object(p) => Value::Object(p.iter().map(|(k, v)| (k.clone(), sorted_list(v))).collect()),
                        other => other.clone(),
                    },
                    "Condition" => match val {
                        Value::Object(ops) => Value::Object(
                            ops.iter()
                                .map(|(op, kv)| {
                                    let kv = match kv {
                                        Value::Object(m) => {
                                            Value::Object(m.iter().map(|(k, v)| (k.clone(), sorted_list(v))).collect())
                                        }
                                        other => other.clone(),
                                    };
                                    (op.clone(), kv)
                                })
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    _ => normalize(val),
                };
                out.insert(k.clone(), nv);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn sorted_list(v: &Value) -> Value {
    let mut items: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    items.sort_by_key(|x| x.to_string());
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_strings_and_lists_compare_alike() {
        let a = json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":["b","a"],"Principal":{"Service":"x"}}});
        let b = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["a","b"],"Principal":{"Service":["x"]}}]});
        assert_eq!(normalize(&a), normalize(&b));
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse(encoded), json!({"Version":"2012-10-17"}));
    }
}
