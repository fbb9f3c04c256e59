//! llama.cpp's GBNF grammars, translated into llguidance's Lark-like syntax.
//!
//! Users have GBNF files (llama.cpp's `grammars/` folder, tools that emit it);
//! llguidance reads Lark. The two describe the same thing, character-level
//! context-free grammars, so a translation is enough:
//!
//! - `name ::= body` becomes `name: body`; `root` becomes Lark's `start`.
//! - `"literal"` stays a string; `[a-z]`, `[^"\\]` and `.` become regexes.
//! - `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` keep their meaning (llguidance reads
//!   `x{m,n}`).
//! - A rule whose body uses only terminals (no rule that refers back to a
//!   grammar rule) becomes an upper-case Lark *token*: one lexeme that
//!   llguidance matches with a regex automaton instead of an Earley item per
//!   character, which is both faster and how Lark grammars are meant to be
//!   written. Recursive rules stay rules.
//!
//! Errors name the line and what was expected.

use std::collections::HashMap;
use std::fmt::Write;

/// One element of a rule body.
#[derive(Debug, Clone)]
enum Node {
    /// A literal string (its characters, unescaped).
    Literal(String),
    /// A regex for one character: a class `[...]` or `.` (already in regex syntax).
    Class(String),
    /// A reference to a rule by its GBNF name.
    Ref(String),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

struct Rule {
    name: String,
    body: Node,
}

/// Converts GBNF source to a Lark grammar for llguidance.
pub fn gbnf_to_lark(src: &str) -> Result<String, String> {
    let rules = Parser { s: src.as_bytes(), src, pos: 0 }.parse()?;
    emit(&rules)
}

/// Whether `src` looks like GBNF (`name ::= …`) rather than Lark (`name: …`).
pub fn looks_like_gbnf(src: &str) -> bool {
    src.lines().any(|l| {
        let l = l.trim_start();
        !l.starts_with('#') && !l.starts_with("//") && l.contains("::=")
    })
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        let line = self.src[..self.pos.min(self.src.len())].matches('\n').count() + 1;
        let rest: String = self.src.get(self.pos..).unwrap_or("").chars().take(20).collect();
        format!("GBNF line {line}: {what} (at {rest:?})")
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn is_word(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.peek().is_some_and(Self::is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("expected a rule name"));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn parse(mut self) -> Result<Vec<Rule>, String> {
        let mut rules: Vec<Rule> = Vec::new();
        self.skip_space(true);
        while self.peek().is_some() {
            let name = self.name()?;
            self.skip_space(false);
            if !self.s[self.pos..].starts_with(b"::=") {
                return Err(self.err("expected '::='"));
            }
            self.pos += 3;
            self.skip_space(true);
            let body = self.alternatives(false)?;
            match self.peek() {
                None | Some(b'\n') | Some(b'\r') => {}
                Some(_) => return Err(self.err("unexpected character")),
            }
            if let Some(r) = rules.iter_mut().find(|r| r.name == name) {
                // llama.cpp: a rule defined twice gets the later definition's
                // alternatives added to it.
                let old = std::mem::replace(&mut r.body, Node::Alt(Vec::new()));
                r.body = Node::Alt(vec![old, body]);
            } else {
                rules.push(Rule { name, body });
            }
            self.skip_space(true);
        }
        if rules.is_empty() {
            return Err("GBNF: the grammar has no rules".into());
        }
        Ok(rules)
    }

    /// `seq | seq | …`; inside parentheses (`nested`) newlines are spaces.
    fn alternatives(&mut self, nested: bool) -> Result<Node, String> {
        let mut alts = vec![self.sequence(nested)?];
        loop {
            self.skip_space(nested);
            if self.peek() != Some(b'|') {
                break;
            }
            self.pos += 1;
            self.skip_space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap_or(Node::Seq(Vec::new())) } else { Node::Alt(alts) })
    }

    fn sequence(&mut self, nested: bool) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                b'"' => self.literal()?,
                b'[' => self.class()?,
                b'(' => {
                    self.pos += 1;
                    self.skip_space(true);
                    let inner = self.alternatives(true)?;
                    self.skip_space(true);
                    if self.peek() != Some(b')') {
                        return Err(self.err("expected ')'"));
                    }
                    self.pos += 1;
                    inner
                }
                b'.' => {
                    self.pos += 1;
                    Node::Class("(?s:.)".into())
                }
                c if Self::is_word(c) => {
                    // A name followed by `::=` starts the next rule (rules may
                    // follow each other without a blank line only after a newline,
                    // which ends the sequence before we get here).
                    Node::Ref(self.name()?)
                }
                _ => break,
            };
            self.skip_space(nested);
            let item = self.repetition(item)?;
            items.push(item);
            self.skip_space(nested);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Node::Seq(Vec::new())) } else { Node::Seq(items) })
    }

    fn repetition(&mut self, node: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'?') => (0, Some(1)),
            Some(b'{') => {
                self.pos += 1;
                self.skip_space(true);
                let min = self.int()?;
                self.skip_space(true);
                let max = match self.peek() {
                    Some(b'}') => Some(min),
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_space(true);
                        let max = if self.peek().is_some_and(|c| c.is_ascii_digit()) { Some(self.int()?) } else { None };
                        self.skip_space(true);
                        if self.peek() != Some(b'}') {
                            return Err(self.err("expected '}'"));
                        }
                        max
                    }
                    _ => return Err(self.err("expected ',' or '}'")),
                };
                if max.is_some_and(|m| m < min) {
                    return Err(self.err("repetition maximum below its minimum"));
                }
                (min, max)
            }
            _ => return Ok(node),
        };
        self.pos += 1;
        Ok(Node::Repeat { node: Box::new(node), min, max })
    }

    fn int(&mut self) -> Result<u32, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.src[start..self.pos].parse().map_err(|_| self.err("expected a number"))
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, String> {
        let rest = self.src.get(self.pos..).ok_or_else(|| self.err("bad position"))?;
        let mut it = rest.chars();
        let c = it.next().ok_or_else(|| self.err("unexpected end of the grammar"))?;
        self.pos += c.len_utf8();
        if c != '\\' {
            return Ok(c);
        }
        let e = it.next().ok_or_else(|| self.err("unfinished escape"))?;
        self.pos += e.len_utf8();
        let hex = |p: &mut Self, n: usize| -> Result<char, String> {
            let h = p.src.get(p.pos..p.pos + n).ok_or_else(|| p.err("short hex escape"))?;
            let v = u32::from_str_radix(h, 16).map_err(|_| p.err("bad hex escape"))?;
            p.pos += n;
            char::from_u32(v).ok_or_else(|| p.err("escape is not a character"))
        };
        Ok(match e {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '\\' | '"' | '[' | ']' | '-' | '^' => e,
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            _ => return Err(self.err(&format!("unknown escape '\\{e}'"))),
        })
    }

    fn literal(&mut self) -> Result<Node, String> {
        self.pos += 1; // "
        let mut s = String::new();
        loop {
            if self.peek() == Some(b'"') {
                self.pos += 1;
                return Ok(Node::Literal(s));
            }
            if self.peek().is_none() || self.peek() == Some(b'\n') {
                return Err(self.err("unterminated string"));
            }
            s.push(self.char()?);
        }
    }

    /// `[...]` → a regex class; ranges and negation kept, every member escaped.
    fn class(&mut self) -> Result<Node, String> {
        self.pos += 1; // [
        let mut rx = String::from("[");
        if self.peek() == Some(b'^') {
            self.pos += 1;
            rx.push('^');
        }
        let mut empty = true;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("unterminated character class")),
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(b'-') if !empty && self.s.get(self.pos + 1) != Some(&b']') => {
                    self.pos += 1;
                    rx.push('-');
                }
                Some(_) => {
                    let c = self.char()?;
                    push_class_char(&mut rx, c);
                    empty = false;
                }
            }
        }
        if empty {
            return Err(self.err("empty character class"));
        }
        rx.push(']');
        Ok(Node::Class(rx))
    }
}

/// A character inside a regex class, escaped when the regex syntax needs it.
fn push_class_char(rx: &mut String, c: char) {
    match c {
        '\\' | ']' | '[' | '^' | '-' | '&' | '~' | '/' => {
            rx.push('\\');
            rx.push(c);
        }
        '\n' => rx.push_str("\\n"),
        '\r' => rx.push_str("\\r"),
        '\t' => rx.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(rx, "\\x{{{:x}}}", c as u32);
        }
        c => rx.push(c),
    }
}

fn emit(rules: &[Rule]) -> Result<String, String> {
    let index: HashMap<&str, usize> = rules.iter().enumerate().map(|(i, r)| (r.name.as_str(), i)).collect();
    if !index.contains_key("root") {
        return Err("GBNF: no 'root' rule".into());
    }
    for r in rules {
        let mut missing = None;
        visit_refs(&r.body, &mut |n| {
            if !index.contains_key(n) && missing.is_none() {
                missing = Some(n.to_string());
            }
        });
        if let Some(n) = missing {
            return Err(format!("GBNF: rule '{}' refers to undefined rule '{n}'", r.name));
        }
    }
    // A rule is a token when everything it refers to is a token (a fixpoint
    // from "nothing is": recursive rules never qualify). `root` stays a rule.
    let mut terminal = vec![false; rules.len()];
    loop {
        let mut changed = false;
        for (i, r) in rules.iter().enumerate() {
            if terminal[i] || r.name == "root" {
                continue;
            }
            let mut all = true;
            visit_refs(&r.body, &mut |n| all &= terminal[index[n]]);
            if all {
                terminal[i] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Lark names: rules lower case, tokens upper case, `-` → `_`; the
    // index keeps names distinct after the change of case.
    let names: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if r.name == "root" {
                return "start".to_string();
            }
            let base: String = r.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            if terminal[i] {
                format!("T{i}_{}", base.to_ascii_uppercase())
            } else {
                format!("r{i}_{}", base.to_ascii_lowercase())
            }
        })
        .collect();
    let mut out = String::from("%llguidance {}\n\n");
    for (i, r) in rules.iter().enumerate() {
        let _ = writeln!(out, "{}: {}", names[i], render(&r.body, &|n| names[index[n]].clone()));
    }
    Ok(out)
}

fn visit_refs(node: &Node, f: &mut dyn FnMut(&str)) {
    match node {
        Node::Ref(n) => f(n),
        Node::Seq(v) | Node::Alt(v) => v.iter().for_each(|n| visit_refs(n, f)),
        Node::Repeat { node, .. } => visit_refs(node, f),
        Node::Literal(_) | Node::Class(_) => {}
    }
}

fn render(node: &Node, name: &dyn Fn(&str) -> String) -> String {
    match node {
        Node::Literal(s) => {
            // A JSON string is a valid Lark string literal.
            serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
        }
        Node::Class(rx) => format!("/{rx}/"),
        Node::Ref(n) => name(n),
        Node::Seq(v) if v.is_empty() => "\"\"".into(),
        Node::Seq(v) => v.iter().map(|n| atom(n, name)).collect::<Vec<_>>().join(" "),
        Node::Alt(v) => v.iter().map(|n| render(n, name)).collect::<Vec<_>>().join(" | "),
        Node::Repeat { node, min, max } => {
            let inner = atom(node, name);
            match (min, max) {
                (0, None) => format!("{inner}*"),
                (1, None) => format!("{inner}+"),
                (0, Some(1)) => format!("{inner}?"),
                (m, None) => format!("{inner}{{{m},}}"),
                (m, Some(n)) if m == n => format!("{inner}{{{m}}}"),
                (m, Some(n)) => format!("{inner}{{{m},{n}}}"),
            }
        }
    }
}

/// `node` rendered so that a postfix operator or a neighbour applies to all of it.
fn atom(node: &Node, name: &dyn Fn(&str) -> String) -> String {
    match node {
        Node::Seq(v) if v.len() > 1 => format!("({})", render(node, name)),
        Node::Alt(_) => format!("({})", render(node, name)),
        _ => render(node, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_grammar_translates() {
        let g = r#"
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
"#;
        assert!(looks_like_gbnf(g));
        let lark = gbnf_to_lark(g).unwrap();
        // ws, num and ident use only terminals: tokens; expr/term recurse: rules.
        assert!(lark.contains("start: (r1_expr \"=\" T5_WS r2_term \"\\n\")+"), "{lark}");
        assert!(lark.contains("T5_WS: /[ \\t\\n]/*"), "{lark}");
        assert!(lark.contains("r2_term: T3_IDENT | T4_NUM | \"(\" T5_WS r1_expr \")\" T5_WS"), "{lark}");
        assert!(lark.contains("r1_expr: r2_term (/[\\-+*\\/]/ r2_term)*"), "{lark}");
    }

    #[test]
    fn escapes_classes_and_repeats() {
        let g = "root ::= \"a\\\"b\\x41\\u00e9\" [^\"\\\\] x{2,3} y{2} z{1,}\nx ::= \"x\"\ny ::= [\\]]\nz ::= .\n";
        let lark = gbnf_to_lark(g).unwrap();
        assert!(lark.contains(r#"start: "a\"bAé" /[^"\\]/ T1_X{2,3} T2_Y{2} T3_Z+"#), "{lark}");
        assert!(lark.contains(r"T2_Y: /[\]]/"), "{lark}");
        assert!(lark.contains("T3_Z: /(?s:.)/"), "{lark}");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(gbnf_to_lark("x ::= \"a\"\n").unwrap_err().contains("no 'root'"));
        assert!(gbnf_to_lark("root ::= foo\n").unwrap_err().contains("undefined rule 'foo'"));
        assert!(gbnf_to_lark("root ::= \"abc\n").unwrap_err().contains("unterminated string"));
        assert!(gbnf_to_lark("root ::= [a-z\n").unwrap_err().contains("line 1"));
        assert!(gbnf_to_lark("root = \"a\"\n").unwrap_err().contains("expected '::='"));
        assert!(gbnf_to_lark("root ::= \"a\"{3,1}\n").unwrap_err().contains("maximum"));
        assert!(!looks_like_gbnf("start: \"a\"\n// x ::= y\n"));
    }

    #[test]
    fn a_rule_defined_twice_gets_both_bodies() {
        let lark = gbnf_to_lark("root ::= \"a\"\nroot ::= \"b\"\n").unwrap();
        assert!(lark.contains("start: \"a\" | \"b\""), "{lark}");
    }
}
