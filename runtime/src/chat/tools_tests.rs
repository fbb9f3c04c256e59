use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::chat::ChatTemplate;
use crate::session::GenerateParams;
use crate::{Engine, EngineConfig, StopReason};

/// Qwen2.5-Coder-0.5B-Instruct's `tokenizer.chat_template`, verbatim (it handles tools).
const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// SmolLM2-135M-Instruct's (no tool support).
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn weather() -> Tool {
    Tool::new(
        "get_weather",
        Some("Weather in a city's center".into()),
        Some(json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),
    )
}

fn call(name: &str, args: &str) -> ToolCall {
    ToolCall { id: "call_1".into(), name: name.into(), arguments: args.into() }
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::user("Weather in Paris?"),
        ChatMessage::assistant_calls("", vec![call("get_weather", r#"{"city":"Paris"}"#)]),
        ChatMessage::tool("call_1", r#"{"temp": 21}"#),
        ChatMessage::tool("call_2", "sunny"),
    ]
}

#[test]
fn qwen_template_renders_tools_calls_and_results_like_transformers() {
    let t = ChatTemplate::new("qwen", QWEN25, "", "<|im_end|>").unwrap();
    assert!(t.supports_tools());
    let out = t.render_with_tools(&conversation(), &[weather()], true).unwrap();
    // What transformers' apply_chat_template renders (jinja2, tojson = json.dumps(ensure_ascii=False)).
    let expected = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n\
        You may call one or more functions to assist with the user query.\n\n\
        You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n\
        {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city's center\", \
        \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n\
        </tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
        <tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n\
        <|im_start|>user\nWeather in Paris?<|im_end|>\n\
        <|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n\
        <|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n\
        <|im_start|>assistant\n";
    assert_eq!(out, expected);
    // No tools: the template's plain branch, as `render` gives it.
    let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
    assert_eq!(
        t.render_with_tools(&msgs, &[], true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(t.render(&msgs, true).unwrap(), t.render_with_tools(&msgs, &[], true).unwrap());
}

#[test]
fn templates_without_tools_get_the_builtin_block_and_text_turns() {
    let t = ChatTemplate::new("smollm2", SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
    assert!(!t.supports_tools());
    let out = t.render_with_tools(&conversation(), &[weather()], true).unwrap();
    let expected = format!(
        "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n\
         <|im_start|>assistant\n<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"Paris\"}}}}\n</tool_call><|im_end|>\n\
         <|im_start|>user\n<tool_response>\n{{\"temp\": 21}}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n\
         <|im_start|>assistant\n",
        tools_system_prompt(&[weather()])
    );
    assert_eq!(out, expected);
    // A system message keeps its text, the block follows it.
    let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
    let out = t.render_with_tools(&msgs, &[weather()], true).unwrap();
    assert!(out.starts_with("<|im_start|>system\nBe brief.\n\n# Tools\n"), "{out}");
    assert_eq!(out.matches("<|im_start|>system").count(), 1, "{out}");
    // Nothing about tools: exactly `render`.
    assert_eq!(t.render_with_tools(&msgs, &[], true).unwrap(), t.render(&msgs, true).unwrap());
    // Gemma's built-in: the block joins the first user turn; turns still alternate.
    let g = ChatTemplate::builtin("gemma", "<bos>", "<eos>").unwrap();
    let out = g.render_with_tools(&conversation(), &[weather()], true).unwrap();
    assert!(out.starts_with("<bos><start_of_turn>user\n# Tools\n"), "{out}");
    assert!(out.contains("<start_of_turn>model\n<tool_call>\n{\"name\": \"get_weather\""), "{out}");
    assert!(out.contains("<start_of_turn>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><end_of_turn>\n<start_of_turn>model\n"), "{out}");
}

#[test]
fn tools_system_prompt_lists_functions_as_json() {
    let p = tools_system_prompt(&[weather(), Tool::new("now", None, None)]);
    assert!(
        p.contains(
            "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city's center\""
        ),
        "{p}"
    );
    assert!(p.contains("\n{\"type\": \"function\", \"function\": {\"name\": \"now\"}}\n</tools>"), "{p}");
    assert!(p.ends_with("<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"), "{p}");
}

#[test]
fn tojson_is_pythons_json_dumps() {
    let t = ChatTemplate::new("t", "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(sort_keys=true) }}", "", "").unwrap();
    let mut env_out = String::new();
    let tmpl = t.env.get_template("chat").unwrap();
    env_out.push_str(
        &tmpl.render(minijinja::context! { x => Value::from_serialize(json!({"b": [1, 2.5, "<it's & é>"], "a": {}, "c": null})) }).unwrap(),
    );
    assert_eq!(
        env_out,
        "{\"b\": [1, 2.5, \"<it's & é>\"], \"a\": {}, \"c\": null}|{\n  \"b\": [\n    1,\n    2.5,\n    \"<it's & é>\"\n  ],\n  \"a\": {},\n  \"c\": null\n}|{\"a\": {}, \"b\": [1, 2.5, \"<it's & é>\"], \"c\": null}"
    );
}

#[test]
fn parses_tagged_calls_text_and_bare_objects() {
    let tools = [weather()];
    let p = parse_tool_calls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", &tools);
    assert_eq!(p.content, None);
    assert_eq!(p.tool_calls.len(), 1);
    assert_eq!((p.tool_calls[0].name.as_str(), p.tool_calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Paris"}"#));
    assert!(p.tool_calls[0].id.starts_with("call_") && p.tool_calls[0].id.len() == 29);

    // Several calls, text around them, arguments as a string or as "parameters".
    let p = parse_tool_calls(
        "Let me check.\n<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>\n<tool_call>{\"name\": \"b\", \"parameters\": {}}</tool_call>",
        &[],
    );
    assert_eq!(p.content.as_deref(), Some("Let me check."));
    let got: Vec<(&str, &str)> = p.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
    assert_eq!(got, [("a", "{\"x\": 1}"), ("b", "{}")]);
    assert_ne!(p.tool_calls[0].id, p.tool_calls[1].id);

    // A block that is not a call stays text; an unclosed whole call is a call.
    let p = parse_tool_calls("<tool_call>oops</tool_call> done", &tools);
    assert_eq!((p.content.as_deref(), p.tool_calls.len()), (Some("<tool_call>oops</tool_call> done"), 0));
    let p = parse_tool_calls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n", &tools);
    assert_eq!(p.tool_calls.len(), 1);
    let p = parse_tool_calls("<tool_call>\n{\"name\": \"get_weather\", \"argu", &tools);
    assert_eq!((p.content.as_deref(), p.tool_calls.len()), (Some("<tool_call>\n{\"name\": \"get_weather\", \"argu"), 0));

    // A bare call object: only when it names one of the tools.
    let p = parse_tool_calls(" {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n", &tools);
    assert_eq!((p.content, p.tool_calls[0].arguments.as_str()), (None, r#"{"city":"Rome"}"#));
    let p = parse_tool_calls("```json\n{\"name\": \"get_weather\", \"arguments\": {}}\n```", &tools);
    assert_eq!(p.tool_calls.len(), 1);
    let text = "{\"name\": \"Bob\", \"arguments\": {}}";
    assert_eq!(parse_tool_calls(text, &tools), ParsedOutput { content: Some(text.into()), tool_calls: vec![] });
    assert_eq!(parse_tool_calls("{\"name\": \"get_weather\"}", &tools).tool_calls.len(), 0, "no arguments: not a call");
    // Plain text is untouched, whitespace included.
    assert_eq!(parse_tool_calls("  Hello <tool ", &tools).content.as_deref(), Some("  Hello <tool "));
    assert_eq!(parse_tool_calls("", &tools), ParsedOutput::default());
}

/// Streams `text` in pieces of `n` bytes (on char boundaries).
fn stream(text: &str, n: usize, tools: &[Tool]) -> (String, Vec<ToolCall>, Vec<StreamItem>) {
    let mut s = ToolCallStream::new(tools);
    let mut items = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let mut j = (i + n).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        items.extend(s.push(&text[i..j]));
        i = j;
    }
    items.extend(s.finish());
    let mut content = String::new();
    let mut calls = Vec::new();
    for it in &items {
        match it {
            StreamItem::Text(t) => content.push_str(t),
            StreamItem::Call(c) => calls.push(c.clone()),
        }
    }
    (content, calls, items)
}

#[test]
fn the_stream_parser_agrees_with_the_whole_parser() {
    let tools = [weather()];
    let outputs = [
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        "I'll look. <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>\n<tool_call>{\"name\": \"x\", \"arguments\": {}}</tool_call>\n",
        "Plain answer with a <toolbox> and < tool_call > and é ü.",
        "  leading and trailing spaces  \n",
        "<tool_call>bad</tool_call> after",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}",
        "{\"not\": \"a call\"}",
        "text then <tool_call>{\"name\": \"get_weather\", \"arguments\": {}}",
        "ends with a partial tag <tool_c",
        "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\n    \"city\": \"Paris\"\n  }\n}\n```",
        "```python\nprint({1: 2})\n```",
        "```\n{\"a\": 1}\n```",
        "`x` and ``` fences",
    ];
    for text in outputs {
        let whole = parse_tool_calls(text, &tools);
        for n in [1, 2, 3, 7, 1000] {
            let (content, calls, _) = stream(text, n, &tools);
            let names: Vec<(&str, &str)> = calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
            let want: Vec<(&str, &str)> = whole.tool_calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
            assert_eq!(names, want, "{text:?} in pieces of {n}");
            if calls.is_empty() {
                assert_eq!(content, text, "{text:?} in pieces of {n}: text without calls streams unchanged");
            } else {
                assert_eq!(content.trim(), whole.content.as_deref().unwrap_or(""), "{text:?} in pieces of {n}");
            }
        }
    }
    // Text before a call streams before the call closes; a possible tag is held.
    let mut s = ToolCallStream::new(&tools);
    assert_eq!(s.push("Sure <tool"), vec![StreamItem::Text("Sure ".into())]);
    assert_eq!(s.push("box>"), vec![StreamItem::Text("<toolbox>".into())]);
    assert_eq!(s.push(" <tool_call>{\"name\": \"get_weather\", "), vec![]);
    let items = s.push("\"arguments\": {}}</tool_call>");
    assert!(matches!(&items[..], [StreamItem::Call(c)] if c.name == "get_weather"), "{items:?}");
    assert_eq!(s.finish(), vec![]);
    assert_eq!(s.calls(), 1);
}

fn tiny() -> std::sync::Arc<Engine> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(512), ..Default::default() }).unwrap()
}

#[test]
fn forced_calls_parse_even_from_random_weights() {
    let e = tiny();
    let unit = Tool::new(
        "set_unit",
        None,
        Some(
            json!({"type": "object", "properties": {"unit": {"enum": ["c", "f"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["unit", "n"]}),
        ),
    );
    let tools = [weather(), unit, Tool::new("now", None, None)];
    let ids = e.tokenizer().unwrap().encode("Hello", true, false).unwrap();
    let choices = [ToolChoice::Required, ToolChoice::Function("set_unit".into()), ToolChoice::Function("now".into())];
    for choice in &choices {
        let c = tool_call_constraint(&tools, choice).unwrap().expect("a forced choice constrains");
        let mut whole = 0;
        for seed in 1..=3 {
            let sampling = crate::sampling::SamplingParams { temperature: 1.0, seed, ..Default::default() };
            let params = GenerateParams { sampling, max_tokens: 300, stop: vec![], constraint: Some(c.clone()) };
            let mut out = String::new();
            let st = e
                .new_session()
                .generate(&ids, &params, &mut |t| {
                    out.push_str(t);
                    true
                })
                .unwrap();
            if st.stop_reason == StopReason::Length {
                continue; // a random model may write a long city name
            }
            assert_eq!(st.stop_reason, StopReason::Eog, "{out:?}");
            let p = parse_tool_calls(&out, &tools);
            assert_eq!(p.tool_calls.len(), 1, "{choice:?}: {out:?}");
            assert_eq!(p.content, None, "{out:?}");
            let call = &p.tool_calls[0];
            if let ToolChoice::Function(name) = choice {
                assert_eq!(&call.name, name, "{out:?}");
            }
            let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
            match call.name.as_str() {
                "set_unit" => {
                    assert!(["c", "f"].contains(&args["unit"].as_str().unwrap()), "{out}");
                    assert!((0..=9).contains(&args["n"].as_i64().unwrap()), "{out}");
                    assert_eq!(args.as_object().unwrap().len(), 2, "no undeclared keys: {out}");
                }
                "get_weather" => assert!(args["city"].is_string(), "{out}"),
                "now" => assert_eq!(args, json!({}), "{out}"),
                other => panic!("unknown tool {other}: {out}"),
            }
            whole += 1;
        }
        assert!(whole > 0, "{choice:?}: every sample ran out of tokens");
    }
    assert_eq!(tool_call_constraint(&tools, &ToolChoice::Auto).unwrap(), None);
    assert_eq!(tool_call_constraint(&tools, &ToolChoice::None).unwrap(), None);
    let err = tool_call_constraint(&tools, &ToolChoice::Function("nope".into())).unwrap_err().to_string();
    assert!(err.contains("'nope'"), "{err}");
    assert!(tool_call_constraint(&[], &ToolChoice::Required).is_err());
    // A tool whose parameters are not a schema fails when compiled.
    let bad = Tool::new("bad", None, Some(json!({"type": "nonsense"})));
    let c = tool_call_constraint(&[bad], &ToolChoice::Required).unwrap().unwrap();
    assert!(matches!(e.constraint_mask(&c), Err(crate::Error::InvalidConstraint(_))));
}
