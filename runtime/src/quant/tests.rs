//! Cross-format tests: block sizes, hand-built blocks, integer-dot parity.
