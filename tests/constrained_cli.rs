//! `ember run` with a constraint, end to end on the real SmolLM2 file (a BPE
//! vocabulary; the runtime's own tests use a SentencePiece one): JSON schema,
//! any JSON object, regex and the GBNF files of `examples/grammars` (written
//! in the style of llama.cpp's `grammars/` folder). Each output is checked by
//! hand-written code here, not by the library that produced it. Also the
//! errors: bad schema, bad grammar, two constraints, a missing file, and
//! `ember bench --json-schema`.

mod common;

use std::path::PathBuf;

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (stdout without the final newline, the stop reason from the stats line).
fn constrained(args: &[&str]) -> (String, String) {
    let smol = smollm2();
    let mut all = vec!["run", "-m", smol.to_str().unwrap(), "-t", "2"];
    all.extend_from_slice(args);
    let out = run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stop = stderr.split("stop: ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
    let mut text = String::from_utf8(out.stdout).unwrap();
    if text.ends_with('\n') {
        text.pop();
    }
    (text, stop)
}

#[test]
fn json_schema_output_validates() {
    let dir = std::env::temp_dir().join(format!("ember-constrained-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("person.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","properties":{
            "name":{"type":"string","minLength":1,"maxLength":20},
            "age":{"type":"integer","minimum":18,"maximum":99},
            "languages":{"type":"array","items":{"enum":["en","fr","de"]},"minItems":1,"maxItems":3},
            "email":{"type":"string","pattern":"^[a-z]+@[a-z]+\\.com$"}},
          "required":["name","age","languages"],"additionalProperties":false}"#,
    )
    .unwrap();
    for (temp, seed) in [("0", "1"), ("0.9", "7"), ("1.2", "11")] {
        let (text, stop) = constrained(&[
            "--json-schema",
            schema.to_str().unwrap(),
            "-n",
            "120",
            "--temp",
            temp,
            "--seed",
            seed,
            "Give me a person as JSON:",
        ]);
        assert_eq!(stop, "eog", "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let o = v.as_object().unwrap();
        let name = o["name"].as_str().unwrap();
        assert!((1..=20).contains(&name.chars().count()), "{text}");
        let age = o["age"].as_i64().unwrap();
        assert!((18..=99).contains(&age), "{text}");
        let langs = o["languages"].as_array().unwrap();
        assert!((1..=3).contains(&langs.len()) && langs.iter().all(|l| ["en", "fr", "de"].contains(&l.as_str().unwrap())), "{text}");
        if let Some(e) = o.get("email") {
            let e = e.as_str().unwrap();
            let (user, host) = e.split_once('@').unwrap();
            let host = host.strip_suffix(".com").unwrap();
            assert!(!user.is_empty() && !host.is_empty(), "{text}");
            assert!(user.bytes().chain(host.bytes()).all(|b| b.is_ascii_lowercase()), "{text}");
        }
        assert!(o.keys().all(|k| ["name", "age", "languages", "email"].contains(&k.as_str())), "{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn json_object_and_regex() {
    let (text, stop) = constrained(&["--json", "-n", "150", "--temp", "0", "Describe a cat in JSON:"]);
    if stop == "eog" {
        assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap().is_object(), "{text}");
    } else {
        assert!(text.starts_with('{'), "{text}");
    }
    let (text, stop) = constrained(&["--regex", "(Yes|No), because [a-z ]{5,40}\\.", "-n", "60", "Is the sky blue?"]);
    assert_eq!(stop, "eog", "{text}");
    let rest = text.strip_prefix("Yes, because ").or_else(|| text.strip_prefix("No, because ")).unwrap_or_else(|| panic!("{text:?}"));
    let body = rest.strip_suffix('.').unwrap();
    assert!((5..=40).contains(&body.len()) && body.bytes().all(|b| b.is_ascii_lowercase() || b == b' '), "{text:?}");
}

/// A recognizer for examples/grammars/arithmetic.gbnf's language, on whole
/// lines: `expr = ws term` with `term := ident | num | ( expr )`.
fn arithmetic_line(line: &str) -> bool {
    fn ws(s: &[u8], i: &mut usize) {
        while *i < s.len() && b" \t\n".contains(&s[*i]) {
            *i += 1;
        }
    }
    fn term(s: &[u8], i: &mut usize) -> bool {
        match s.get(*i) {
            Some(c) if c.is_ascii_lowercase() => {
                while *i < s.len() && (s[*i].is_ascii_lowercase() || s[*i].is_ascii_digit() || s[*i] == b'_') {
                    *i += 1;
                }
                ws(s, i);
                true
            }
            Some(c) if c.is_ascii_digit() => {
                while *i < s.len() && s[*i].is_ascii_digit() {
                    *i += 1;
                }
                ws(s, i);
                true
            }
            Some(b'(') => {
                *i += 1;
                ws(s, i);
                if !expr(s, i) || s.get(*i) != Some(&b')') {
                    return false;
                }
                *i += 1;
                ws(s, i);
                true
            }
            _ => false,
        }
    }
    fn expr(s: &[u8], i: &mut usize) -> bool {
        if !term(s, i) {
            return false;
        }
        while *i < s.len() && b"-+*/".contains(&s[*i]) {
            *i += 1;
            if !term(s, i) {
                return false;
            }
        }
        true
    }
    let s = line.as_bytes();
    let mut i = 0;
    if !expr(s, &mut i) || s.get(i) != Some(&b'=') {
        return false;
    }
    i += 1;
    ws(s, &mut i);
    term(s, &mut i) && i == s.len()
}

#[test]
fn gbnf_files_from_the_examples_work() {
    let g = |name: &str| repo().join("examples/grammars").join(name).to_str().unwrap().to_string();
    // JSON: an object, whole or cut by the budget.
    let (text, stop) = constrained(&["--grammar", &g("json.gbnf"), "-n", "100", "--temp", "0", "A JSON object with a name:"]);
    if stop == "eog" {
        assert!(serde_json::from_str::<serde_json::Value>(text.trim_end()).unwrap().is_object(), "{text:?}");
    } else {
        assert!(text.starts_with('{'), "{text:?}");
    }
    // A list: 1 to 8 lines "- item".
    let (text, stop) = constrained(&["--grammar", &g("list.gbnf"), "-n", "100", "--temp", "0.7", "--seed", "3", "Three fruits:"]);
    let lines: Vec<&str> = text.split('\n').collect();
    let complete = if stop == "eog" { &lines[..] } else { &lines[..lines.len() - 1] };
    assert!(stop != "eog" || (1..=8).contains(&complete.len()), "{text:?}");
    for l in complete {
        assert!(l.len() > 2 && l.starts_with("- "), "{l:?} in {text:?}");
    }
    // Arithmetic: every complete line is in the language.
    for (temp, seed) in [("0", "1"), ("0.8", "5")] {
        let (text, stop) = constrained(&["--grammar", &g("arithmetic.gbnf"), "-n", "60", "--temp", temp, "--seed", seed, "Sums:\n1+2=3\n"]);
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        if stop != "eog" {
            lines.pop();
        }
        // ws may span lines, so re-join the complete part and check line by line after the "=" term.
        let joined: String = lines.concat();
        for line in joined.split_terminator('\n').filter(|l| l.contains('=')) {
            assert!(arithmetic_line(line), "{line:?} in {text:?}");
        }
    }
}

#[test]
fn bad_constraints_fail_clearly_before_the_prompt() {
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("ember-constrained-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_schema = dir.join("bad.json");
    std::fs::write(&bad_schema, "{\"type\": \"object\", \"properties\": ").unwrap();
    let bad_gbnf = dir.join("bad.gbnf");
    std::fs::write(&bad_gbnf, "root ::= item+\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--json-schema", bad_schema.to_str().unwrap()], "JSON schema"),
        (vec!["--grammar", bad_gbnf.to_str().unwrap()], "undefined rule 'item'"),
        (vec!["--grammar", "/no/such/grammar.gbnf"], "/no/such/grammar.gbnf"),
        (vec!["--regex", "([a-z]"], "regex"),
        (vec!["--json", "--regex", "a+"], "cannot be used with"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["run", "-m", m, "-n", "5"];
        args.extend(flags.iter().copied());
        args.push("hello");
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} succeeded");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty(), "{flags:?}: nothing generated");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_reports_the_mask_cost() {
    let smol = smollm2();
    let schema = repo().join("examples/schemas/people.json");
    let out = run_ok(&[
        "bench",
        "-m",
        smol.to_str().unwrap(),
        "-p",
        "0",
        "-n",
        "16",
        "-r",
        "1",
        "--json",
        "--json-schema",
        schema.to_str().unwrap(),
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(j["tg_sampled_tps"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["tg_json_schema_tps"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["json_schema_tokens"].as_u64().unwrap(), 16, "{j}");
    assert!(j["json_schema_ratio"].as_f64().unwrap() > 0.0, "{j}");
}

/// Greedy on wgpu picks the id on the device; with a constraint the logits
/// come back and the mask applies (the same check as on the CPU).
#[test]
fn the_mask_applies_on_wgpu_greedy() {
    if !wgpu_available() {
        return;
    }
    let (text, stop) = constrained(&[
        "--backend",
        "wgpu",
        "--temp",
        "0",
        "-n",
        "40",
        "--regex",
        "(red|green|blue)(, (red|green|blue)){2}",
        "Name some colours:",
    ]);
    assert_eq!(stop, "eog", "{text:?}");
    let parts: Vec<&str> = text.split(", ").collect();
    assert_eq!(parts.len(), 3, "{text:?}");
    assert!(parts.iter().all(|p| ["red", "green", "blue"].contains(p)), "{text:?}");
}
