//! Canonical JSON: object keys sorted, no insignificant whitespace in the compact form and a
//! fixed layout in the pretty one, so that equal values always give equal bytes whatever
//! features other crates switch on in serde_json.

use serde_json::Value;

/// Compact canonical JSON, the form that is hashed into keys.
pub fn to_compact(value: &Value) -> String {
    let mut out = String::new();
    write(value, None, 0, &mut out);
    out
}

/// Pretty canonical JSON (two-space indent, trailing newline), the form of manifests.
pub fn to_pretty(value: &Value) -> String {
    let mut out = String::new();
    write(value, Some(2), 0, &mut out);
    out.push('\n');
    out
}

fn write(value: &Value, indent: Option<usize>, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(step) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', step * depth));
        }
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write(&map[key], indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        // Scalars and empty containers have one spelling in serde_json already
        // (numbers through ryu/itoa, strings escaped the same way every time).
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [1.5, "x"], "y": null}, "c": []});
        assert_eq!(
            to_compact(&v),
            r#"{"a":{"y":null,"z":[1.5,"x"]},"b":1,"c":[]}"#
        );
        assert_eq!(
            to_pretty(&v),
            "{\n  \"a\": {\n    \"y\": null,\n    \"z\": [\n      1.5,\n      \"x\"\n    ]\n  },\n  \"b\": 1,\n  \"c\": []\n}\n"
        );
    }

    #[test]
    fn floats_have_one_spelling() {
        assert_eq!(to_compact(&json!(0.1f64 + 0.2f64)), "0.30000000000000004");
        assert_eq!(
            to_compact(&json!(57.12f32 as f64)),
            to_compact(&json!(57.12f32 as f64))
        );
        assert_eq!(to_compact(&json!(1.0f64)), "1.0");
    }
}
