use super::*;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A Gemma-style template: bos_token, raise_exception, namespace-free role mapping,
/// `.strip()` (a Python method, through pycompat) and `| trim`.
const GEMMA_LIKE: &str = "{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'].strip() + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = \"\" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = \"model\" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}
    {{- message['content'] | trim -}}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}";

fn smol() -> ChatTemplate {
    ChatTemplate::new("smollm2", SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap()
}

#[test]
fn smollm2_default_system_prompt_and_generation_prompt() {
    let out = smol().render(&[ChatMessage::user("Hi!")], true).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_explicit_system_multi_turn_no_generation_prompt() {
    let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("2+2?"), ChatMessage::assistant("4"), ChatMessage::user("And 3+3?")];
    let out = smol().render(&msgs, false).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n"
    );
}

#[test]
fn gemma_like_template_with_system_and_python_methods() {
    let t = ChatTemplate::new("gemma", GEMMA_LIKE, "<bos>", "<eos>").unwrap();
    let msgs = [ChatMessage::system("  Be brief.  "), ChatMessage::user("Hello "), ChatMessage::assistant("Hi."), ChatMessage::user("Bye")];
    let out = t.render(&msgs, true).unwrap();
    assert_eq!(
        out,
        "<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi.<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn raise_exception_becomes_a_clear_error() {
    let t = ChatTemplate::new("gemma", GEMMA_LIKE, "<bos>", "<eos>").unwrap();
    let err = t.render(&[ChatMessage::assistant("x")], true).unwrap_err().to_string();
    assert!(err.contains("Conversation roles must alternate"), "{err}");
}

#[test]
fn builtin_templates_by_name() {
    let t = ChatTemplate::builtin("chatml", "", "").unwrap();
    assert_eq!(t.render(&[ChatMessage::user("a")], true).unwrap(), "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n");
    let g = ChatTemplate::builtin("gemma", "<bos>", "<eos>").unwrap();
    assert_eq!(
        g.render(&[ChatMessage::user(" a "), ChatMessage::assistant("b")], false).unwrap(),
        "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n"
    );
    assert_eq!(
        g.render(&[ChatMessage::system("S "), ChatMessage::user("a")], true).unwrap(),
        "<bos><start_of_turn>user\nS\n\na<end_of_turn>\n<start_of_turn>model\n",
        "the system message joins the first user turn"
    );
    let err = ChatTemplate::builtin("nope", "", "").unwrap_err().to_string();
    assert!(err.contains("chatml"), "{err}");
}

#[test]
fn broken_template_is_an_error_not_a_panic() {
    let err = ChatTemplate::new("bad", "{% for %}", "", "").unwrap_err().to_string();
    assert!(err.contains("does not compile"), "{err}");
}

#[test]
fn a_runaway_loop_stops_with_a_clear_error() {
    let t = ChatTemplate::new("loop", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "", "").unwrap();
    let t0 = std::time::Instant::now();
    let err = t.render(&[ChatMessage::user("a")], true).unwrap_err().to_string();
    assert!(err.contains("runaway loop"), "{err}");
    assert!(t0.elapsed().as_secs() < 10, "{:?}", t0.elapsed());
}

#[test]
fn output_past_the_limit_is_an_error() {
    let t = ChatTemplate::new("big", "{% set s = 'a' * 10000000 %}{% for i in range(100) %}{{ s }}{% endfor %}", "", "").unwrap();
    let err = t.render(&[ChatMessage::user("a")], true).unwrap_err().to_string();
    assert!(err.contains("rendered more than 32 MiB"), "{err}");
}

#[test]
fn unbounded_macro_recursion_is_an_error() {
    let t = ChatTemplate::new("rec", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "", "").unwrap();
    // On a 2 MiB thread, like a server worker: an error, not a stack overflow.
    let r =
        std::thread::Builder::new().stack_size(2 << 20).spawn(move || t.render(&[ChatMessage::user("a")], true)).unwrap().join().unwrap();
    assert!(r.is_err());
}
