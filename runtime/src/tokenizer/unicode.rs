//! Codepoint classification exactly as llama.cpp's `unicode_cpt_flags_from_cpt` does it:
//! one category flag per codepoint (from `unicode_tables.rs`), plus llama.cpp's explicit
//! whitespace set (Unicode White_Space). An out-of-text position has *no* flags (0), which
//! the splitters use to stop at piece boundaries; an unassigned codepoint is UNDEFINED (non-zero).

use super::unicode_tables::CATEGORY_RANGES;

pub(crate) const UNDEFINED: u16 = 0x0001;
pub(crate) const NUMBER: u16 = 0x0002;
pub(crate) const LETTER: u16 = 0x0004;
#[allow(dead_code)]
pub(crate) const SEPARATOR: u16 = 0x0008;
pub(crate) const MARK: u16 = 0x0010;
pub(crate) const PUNCTUATION: u16 = 0x0020;
#[allow(dead_code)]
pub(crate) const SYMBOL: u16 = 0x0040;
#[allow(dead_code)]
pub(crate) const CONTROL: u16 = 0x0080;
pub(crate) const WHITESPACE: u16 = 0x0100;

/// Flags of one codepoint; `Flags(0)` means "outside the piece".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Flags(pub u16);

impl Flags {
    #[inline]
    pub fn any(self) -> bool {
        self.0 != 0
    }
    #[inline]
    pub fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    #[inline]
    pub fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    #[inline]
    pub fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    #[inline]
    pub fn is_mark(self) -> bool {
        self.0 & MARK != 0
    }
    #[inline]
    pub fn is_punctuation(self) -> bool {
        self.0 & PUNCTUATION != 0
    }
}

/// llama.cpp's whitespace table (gen-unicode-data.py `table_whitespace`).
#[inline]
pub(crate) fn is_whitespace_cp(cp: u32) -> bool {
    matches!(cp, 0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000)
}

fn category(cp: u32) -> u16 {
    if cp >= 0x110000 {
        return UNDEFINED;
    }
    // Last range whose start <= cp.
    let i = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
    CATEGORY_RANGES[i - 1].1 as u16
}

static ASCII_FLAGS: std::sync::OnceLock<[u16; 128]> = std::sync::OnceLock::new();

/// Flags of a codepoint (never 0).
#[inline]
pub(crate) fn flags(cp: u32) -> Flags {
    if cp < 128 {
        let t = ASCII_FLAGS.get_or_init(|| {
            let mut t = [0u16; 128];
            for (c, v) in t.iter_mut().enumerate() {
                *v = category(c as u32) | if is_whitespace_cp(c as u32) { WHITESPACE } else { 0 };
            }
            t
        });
        return Flags(t[cp as usize]);
    }
    Flags(category(cp) | if is_whitespace_cp(cp) { WHITESPACE } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('Z' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags('²' as u32).is_number()); // No
        assert!(flags('Ⅻ' as u32).is_number()); // Nl: a number, not a letter
        assert!(!flags('Ⅻ' as u32).is_letter());
        assert!(flags(0x301).is_mark()); // combining acute: not a letter
        assert!(!flags(0x301).is_letter());
        assert!(flags('中' as u32).is_letter());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags('\n' as u32).is_whitespace());
        assert!(flags(0x3000).is_whitespace());
        assert!(!flags(0x200B).is_whitespace()); // zero width space is Cf, not White_Space
        assert!(flags('!' as u32).is_punctuation());
        assert!(!flags('$' as u32).is_punctuation()); // Sc
        assert_eq!(flags(0x378).0, UNDEFINED); // unassigned
        assert!(flags(0x10FFFF).any());
    }
}
