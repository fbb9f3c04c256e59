//! The mask on a random-weight model: whatever the weights say, the output
//! must match the constraint (a model that ignores the mask would print
//! garbage here), across seeds and sampler settings.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::sampling::SamplingParams;
use crate::session::GenerateParams;
use crate::{Engine, EngineConfig, StopReason};

fn tiny() -> Arc<Engine> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(256), ..Default::default() }).unwrap()
}

fn generate(e: &Arc<Engine>, c: Constraint, sampling: SamplingParams, n: usize) -> (String, StopReason) {
    let ids = e.tokenizer().unwrap().encode("Hello", true, false).unwrap();
    let params = GenerateParams { sampling, max_tokens: n, stop: vec![], constraint: Some(c) };
    let mut out = String::new();
    let st = e
        .new_session()
        .generate(&ids, &params, &mut |t| {
            out.push_str(t);
            true
        })
        .unwrap();
    (out, st.stop_reason)
}

fn samplers() -> Vec<SamplingParams> {
    let mut v = vec![SamplingParams::greedy()];
    for seed in 1..=4 {
        v.push(SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..SamplingParams::default() });
        v.push(SamplingParams { temperature: 0.7, top_k: 5, top_p: 0.9, repeat_penalty: 1.3, seed, ..SamplingParams::default() });
    }
    v
}

#[test]
fn json_schema_output_parses_and_has_its_fields() {
    let e = tiny();
    let schema = r#"{"type":"object","properties":{
        "n":{"type":"integer","minimum":3,"maximum":9},
        "ok":{"type":"boolean"},
        "tag":{"enum":["red","green"]}},
      "required":["n","ok","tag"],"additionalProperties":false}"#;
    for s in samplers() {
        let (out, reason) = generate(&e, Constraint::JsonSchema(schema.into()), s.clone(), 200);
        assert_eq!(reason, StopReason::Eog, "{out:?} with {s:?}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|err| panic!("{out:?}: {err}"));
        let n = v["n"].as_i64().unwrap();
        assert!((3..=9).contains(&n), "{out}");
        assert!(v["ok"].is_boolean(), "{out}");
        assert!(["red", "green"].contains(&v["tag"].as_str().unwrap()), "{out}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{out}");
    }
}

#[test]
fn any_json_object() {
    let e = tiny();
    for s in samplers() {
        let (out, reason) = generate(&e, Constraint::JsonObject, s, 200);
        if reason == StopReason::Eog {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|err| panic!("{out:?}: {err}"));
            assert!(v.is_object(), "{out}");
        } else {
            // Out of tokens mid-object: what there is must still be a JSON prefix.
            assert_eq!(reason, StopReason::Length);
            assert!(out.starts_with('{'), "{out}");
        }
    }
}

#[test]
fn regex_output_matches() {
    let e = tiny();
    for s in samplers() {
        let (out, reason) = generate(&e, Constraint::Regex("(ab|cd){2,4}-[0-9]{3}".into()), s, 100);
        assert_eq!(reason, StopReason::Eog, "{out:?}");
        let (pairs, digits) = out.split_once('-').unwrap_or_else(|| panic!("{out:?}"));
        assert!(pairs.len() % 2 == 0 && (4..=8).contains(&pairs.len()), "{out:?}");
        assert!(pairs.as_bytes().chunks(2).all(|p| p == b"ab" || p == b"cd"), "{out:?}");
        assert!(digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()), "{out:?}");
    }
}

#[test]
fn gbnf_and_lark_grammars_give_their_language() {
    let e = tiny();
    let gbnf = "root ::= \"[\" item (\", \" item){0,3} \"]\"\nitem ::= [a-c]+ | num\nnum ::= [1-9] [0-9]?\n";
    let lark = "start: \"[\" item (\", \" item){0,3} \"]\"\nitem: /[a-c]+/ | NUM\nNUM: /[1-9][0-9]?/\n";
    for g in [gbnf, lark] {
        for s in samplers() {
            let (out, reason) = generate(&e, Constraint::Grammar(g.into()), s, 120);
            if reason == StopReason::Length {
                assert!(out.starts_with('['), "{out:?}");
                continue;
            }
            assert_eq!(reason, StopReason::Eog, "{out:?}");
            let inner = out.strip_prefix('[').and_then(|o| o.strip_suffix(']')).unwrap_or_else(|| panic!("{out:?}"));
            let items: Vec<&str> = inner.split(", ").collect();
            assert!((1..=4).contains(&items.len()), "{out:?}");
            for it in items {
                let letters = !it.is_empty() && it.bytes().all(|b| (b'a'..=b'c').contains(&b));
                let num = it.parse::<u32>().is_ok_and(|n| (1..=99).contains(&n)) && !it.starts_with('0');
                assert!(letters || num, "{it:?} in {out:?}");
            }
        }
    }
}

#[test]
fn a_short_budget_ends_with_length() {
    let e = tiny();
    let (out, reason) = generate(&e, Constraint::Regex("x{50}".into()), SamplingParams::greedy(), 5);
    assert_eq!(reason, StopReason::Length);
    assert!(out.chars().all(|c| c == 'x'), "{out:?}");
}

#[test]
fn bad_constraints_are_typed_errors_naming_the_problem() {
    let e = tiny();
    let cases: [(Constraint, &str); 6] = [
        (Constraint::JsonSchema("{not json".into()), "not JSON"),
        (Constraint::JsonSchema("[1]".into()), "object or a boolean"),
        (Constraint::JsonSchema(r#"{"type":"no-such-type"}"#.into()), "json_schema"),
        (Constraint::Regex("(unclosed".into()), "regex"),
        (Constraint::Grammar("root ::= missing\n".into()), "undefined rule 'missing'"),
        (Constraint::Grammar("start: ???".into()), "lark"),
    ];
    for (c, needle) in cases {
        match e.constraint_mask(&c) {
            Err(crate::Error::InvalidConstraint(m)) => assert!(m.contains(needle), "{c:?}: {m}"),
            Err(other) => panic!("{c:?}: wrong error {other}"),
            Ok(_) => panic!("{c:?} accepted"),
        }
    }
}

#[test]
fn a_bad_constraint_leaves_the_session_as_it_was() {
    let e = tiny();
    let mut s = e.new_session();
    let ids = e.tokenizer().unwrap().encode("Hello there", true, false).unwrap();
    let ok = GenerateParams { sampling: SamplingParams::greedy(), max_tokens: 3, stop: vec![], constraint: None };
    s.generate(&ids, &ok, &mut |_| true).unwrap();
    let before = s.tokens().to_vec();
    let bad = GenerateParams { constraint: Some(Constraint::Regex("(".into())), ..ok };
    // A different conversation would trim the cache to the shared prefix; the bad
    // constraint must fail before that.
    let other = e.tokenizer().unwrap().encode("Goodbye", true, false).unwrap();
    assert!(matches!(s.generate_from(&other, &bad, &mut |_| true), Err(crate::Error::InvalidConstraint(_))));
    assert_eq!(s.tokens(), &before[..]);
}
