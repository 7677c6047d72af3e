//! A JSON scanner for the fast path: it walks a body once, validating as it goes, and hands out
//! strings as the raw text received (quotes and escapes included), so that nothing is decoded or
//! allocated unless it is used. It accepts a subset of what serde_json accepts: every call
//! returns `None` on anything serde_json would refuse, and also on some things it would take
//! (a lone surrogate escape anywhere, a key with escapes, numbers with an exponent, more than
//! `MAX_DEPTH` levels); the caller then leaves the body to the general path, which decides.
//! Tested against serde_json on generated and mutated documents (below).

/// Deeper documents are left to serde_json (whose own limit is 127 levels).
const MAX_DEPTH: u32 = 100;

/// A JSON string exactly as received, quotes included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RawStr<'a> {
    pub(super) raw: &'a str,
    /// Whether it has a backslash escape (else the text between the quotes is the value).
    pub(super) escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The text between the quotes, as received.
    pub(super) fn inner(self) -> &'a str {
        &self.raw[1..self.raw.len() - 1]
    }
}

/// The JSON type a value starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Null,
    /// A number, `true` or `false`.
    Other,
}

#[derive(Clone)]
pub(super) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Containers open around `pos`.
    depth: u32,
}

/// Each byte of `x` that is `byte` gets its high bit set in the result (exact for the lowest
/// such byte; bytes above it may be flagged falsely, which callers never look at).
#[inline(always)]
fn bytes_equal(x: u64, byte: u8) -> u64 {
    let y = x ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    y.wrapping_sub(0x0101_0101_0101_0101) & !y & 0x8080_8080_8080_8080
}

/// Like `bytes_equal`, for bytes below 0x20 (control characters, refused inside strings).
#[inline(always)]
fn bytes_control(x: u64) -> u64 {
    x.wrapping_sub(0x2020_2020_2020_2020) & !x & 0x8080_8080_8080_8080
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            depth: 0,
        }
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        self.text.as_bytes().get(at).copied()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.byte(self.pos) {
            self.pos += 1;
        }
    }

    /// The type of the next value, after whitespace; `None` at the end or on a byte that starts
    /// no value.
    #[inline]
    pub(super) fn peek(&mut self) -> Option<Kind> {
        self.skip_whitespace();
        Some(match self.byte(self.pos)? {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b'n' => Kind::Null,
            b't' | b'f' | b'-' | b'0'..=b'9' => Kind::Other,
            _ => return None,
        })
    }

    /// True when only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.text.len()
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.byte(self.pos)? == byte).then(|| self.pos += 1)
    }

    /// A string value.
    #[inline]
    pub(super) fn string(&mut self) -> Option<RawStr<'a>> {
        self.expect(b'"')?;
        let start = self.pos - 1;
        let escaped = self.rest_of_string()?;
        Some(RawStr {
            raw: &self.text[start..self.pos],
            escaped,
        })
    }

    /// A string or null (`None`); anything else declines.
    #[inline]
    pub(super) fn text_or_null(&mut self) -> Option<Option<RawStr<'a>>> {
        match self.peek()? {
            Kind::String => self.string().map(Some),
            Kind::Null => self.null().map(|()| None),
            _ => None,
        }
    }

    pub(super) fn null(&mut self) -> Option<()> {
        self.skip_whitespace();
        self.literal(b"null")
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.as_bytes().get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// From just after an opening quote to just after the closing one; whether the string had
    /// escapes.
    fn rest_of_string(&mut self) -> Option<bool> {
        let bytes = self.text.as_bytes();
        let mut at = self.pos;
        let mut escaped = false;
        loop {
            at = next_special(bytes, at)?;
            if bytes[at] == b'"' {
                self.pos = at + 1;
                return Some(escaped);
            }
            escaped = true;
            at = Self::escape_end(bytes, at + 1)?;
        }
    }

    /// Where the escape whose letter is at `at` ends. A `\u` escape must be a character:
    /// a high surrogate only with a low one after it, never a lone low surrogate (serde_json
    /// refuses those where it decodes, so they are left to it everywhere).
    fn escape_end(bytes: &[u8], at: usize) -> Option<usize> {
        match *bytes.get(at)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 1),
            b'u' => {
                let unit = hex4(bytes, at + 1)?;
                match unit {
                    0xD800..=0xDBFF => {
                        if bytes.get(at + 5..at + 7)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(bytes, at + 7)?;
                        (0xDC00..=0xDFFF).contains(&low).then_some(at + 11)
                    }
                    0xDC00..=0xDFFF => None,
                    _ => Some(at + 5),
                }
            }
            _ => None,
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)?`, with at most 100 digits. Exponents are
    /// declined: serde_json refuses one that overflows where it builds a value.
    fn number(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut at = start;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        let digits = |at: &mut usize| {
            let from = *at;
            while let Some(b'0'..=b'9') = bytes.get(*at) {
                *at += 1;
            }
            *at - from
        };
        match bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => {
                digits(&mut at);
            }
            _ => return None,
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at) == 0 {
                return None;
            }
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) || at - start > 100 {
            return None;
        }
        self.pos = at;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Walks an object, calling `value` with each key (as received, without quotes) when the
    /// scanner stands before its value; `value` must consume exactly that value. Keys with
    /// escapes decline (their meaning would need decoding).
    #[inline]
    pub(super) fn object(
        &mut self,
        mut value: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.container(b'{', b'}', |scanner| {
            let key = scanner.string()?;
            if key.escaped {
                return None;
            }
            scanner.expect(b':')?;
            value(scanner, key.inner())
        })
    }

    /// Walks an array, calling `item` when the scanner stands before each element; `item`
    /// must consume exactly that element.
    #[inline]
    pub(super) fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.container(b'[', b']', item)
    }

    /// `open`, then elements read by `element` separated by commas, then `close`.
    #[inline]
    fn container(
        &mut self,
        open: u8,
        close: u8,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.expect(open)?;
        self.enter()?;
        self.skip_whitespace();
        if self.byte(self.pos)? != close {
            loop {
                element(self)?;
                self.skip_whitespace();
                match self.byte(self.pos)? {
                    b',' => self.pos += 1,
                    byte if byte == close => break,
                    _ => return None,
                }
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Some(())
    }

    /// Validates and passes over one value of any type, without recursion: containers open
    /// inside it are kept as bits (1 = object) of `open`.
    pub(super) fn skip_value(&mut self) -> Option<()> {
        let base = self.depth;
        let mut open: u128 = 0;
        loop {
            // A value is expected here.
            self.skip_whitespace();
            match self.byte(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    self.rest_of_string()?;
                }
                b'n' => self.literal(b"null")?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'-' | b'0'..=b'9' => self.number()?,
                opening @ (b'{' | b'[') => {
                    self.pos += 1;
                    self.enter()?;
                    let object = opening == b'{';
                    open = open << 1 | u128::from(object);
                    self.skip_whitespace();
                    let closing = if object { b'}' } else { b']' };
                    if self.byte(self.pos)? != closing {
                        if object {
                            self.key_and_colon()?;
                        }
                        continue;
                    }
                    // Empty: closed below.
                }
                _ => return None,
            }
            // After a value: close what ends here, then the next element or member, if any.
            loop {
                if self.depth == base {
                    return Some(());
                }
                self.skip_whitespace();
                let object = open & 1 == 1;
                match (self.byte(self.pos)?, object) {
                    (b',', _) => {
                        self.pos += 1;
                        if object {
                            self.key_and_colon()?;
                        }
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        self.depth -= 1;
                        open >>= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member's key and its colon, in a skipped object.
    fn key_and_colon(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.rest_of_string()?;
        self.expect(b':')
    }
}

/// The next quote or backslash at or after `at`; `None` at a control character (refused in
/// strings) or the end. Keys and ids end within two words, checked eight bytes at a time; longer
/// text is searched with `memchr2` (vectorised) and the span before the hit checked for control
/// characters in a loop the compiler vectorises.
#[inline]
fn next_special(bytes: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..2 {
        let Some(chunk) = bytes.get(at..at + 8) else {
            break;
        };
        let x = u64::from_le_bytes(chunk.try_into().ok()?);
        let found = bytes_equal(x, b'"') | bytes_equal(x, b'\\') | bytes_control(x);
        if found != 0 {
            at += (found.trailing_zeros() / 8) as usize;
            return (bytes[at] >= 0x20).then_some(at);
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    let offset = memchr::memchr2(b'"', b'\\', rest)?;
    let control = rest[..offset]
        .iter()
        .fold(false, |found, &byte| found | (byte < 0x20));
    (!control).then_some(at + offset)
}

/// The four hex digits at `at`, as a number.
pub(super) fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)?
        .iter()
        .try_fold(0, |value, &b| Some(value << 4 | (b as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the scanner takes `text` as one JSON value.
    fn scans(text: &str) -> bool {
        let mut scanner = Scanner::new(text);
        scanner.skip_value().is_some() && scanner.at_end()
    }

    fn serde_takes(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text).is_ok()
    }

    #[test]
    fn takes_json_and_refuses_the_rest() {
        for good in [
            r#"{}"#,
            r#"[]"#,
            r#" { "a" : [ 1 , -2.5 , 0 , true , false , null , "x" , { } , [ ] ] } "#,
            r#""caf\u00e9 \ud83d\ude00 \" \\ \/ \b \f \n \r \t""#,
            r#"{"a":{"b":{"c":[[["d"]]]}},"e":"f"}"#,
            "\"non-ASCII as is: \u{e9}\u{1F600}\"",
            "-0",
            "123456789012345678901234567890",
        ] {
            assert!(scans(good), "{good}");
            assert!(serde_takes(good), "{good}");
        }
        for bad in [
            "",
            "{",
            "}",
            "[1,]",
            "[,1]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"{"a":1 "b":2}"#,
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[+1]",
            "[tru]",
            "[nul]",
            "[True]",
            "\"unterminated",
            "\"tab\tinside\"",
            "\"nul\u{0}inside\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\u12g4""#,
            "[1] [2]",
            "[1]x",
            "{\"a\":1}}",
            "[[1]",
            "[1]]",
            "[}",
            "{]",
        ] {
            assert!(!scans(bad), "{bad}");
            assert!(!serde_takes(bad), "{bad}");
        }
        // Taken by serde_json but left to it (declining is always safe).
        for declined in [
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            "1e5",
            "[2E-3]",
            &"[".repeat(101),
        ] {
            assert!(!scans(declined), "{declined}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(scans(&deep));
    }

    /// Random documents from a small grammar, then mutated: wherever the scanner takes one,
    /// serde_json does too; where serde_json takes one the scanner declines only for the
    /// documented reasons.
    #[test]
    fn agrees_with_serde_json_on_mutated_documents() {
        let mut seed = 11u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let pieces = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "d83d", "de00", "00e9", "0", "-", ".",
            "1", "9", "e", "true", "null", "false", " ", "\n", "\"k\"", "\"v\"", "x", "\u{e9}",
            "\t", "/", "\\/",
        ];
        let (mut taken, mut both) = (0, 0);
        for _ in 0..60_000 {
            let base =
                r#"{"a":[1,-2.5,"x\/y",{"b":null,"c":true}],"d":"\u00e9\ud83d\ude00","e":{}}"#;
            let mut text = base.to_string();
            for _ in 0..1 + next(3) {
                let mut at = next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match next(3) {
                    0 if at < text.len() => {
                        let mut end = at + 1;
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    _ => text.insert_str(at, pieces[next(pieces.len())]),
                }
            }
            let (ours, theirs) = (scans(&text), serde_takes(&text));
            if ours {
                taken += 1;
                assert!(theirs, "scanner took what serde_json refuses: {text}");
            }
            if theirs {
                both += 1;
                // An exponent is the only thing it declines in these (serde_json's `Value`
                // refuses lone surrogates too).
                let declinable = text
                    .as_bytes()
                    .windows(2)
                    .any(|w| w[0].is_ascii_digit() && matches!(w[1], b'e' | b'E'));
                assert!(ours || declinable, "scanner refused valid JSON: {text}");
            }
        }
        assert!(
            taken > 1000 && both > taken / 2,
            "{taken} taken, {both} valid"
        );
    }
}
