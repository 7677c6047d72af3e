//! A small `multipart/form-data` parser (RFC 7578 / RFC 2046) for the media upload route.
//!
//! It works on the whole body as one [`Bytes`] and hands out each part's content as a
//! zero-copy slice of it, so an uploaded file is held in memory exactly once. Content is
//! binary-safe: a part ends only at CRLF + `--boundary` followed by `--` (the close delimiter)
//! or by optional blanks and a line break, so CR, LF and even `--` sequences inside the file
//! survive untouched.

use bytes::Bytes;

/// One form field.
#[derive(Debug)]
pub struct Part {
    /// `name` of the part's `Content-Disposition: form-data`.
    pub name: String,
    /// `filename` (or a decoded `filename*`), present on file fields.
    pub filename: Option<String>,
    /// The part's own `Content-Type`, as sent.
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Part {
    /// The content as text with surrounding whitespace removed (for plain form fields).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type; `None` when the type is
/// something else or the boundary is missing or empty.
pub fn form_data_boundary(content_type: &str) -> Option<String> {
    let (essence, rest) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parameters(rest)
        .into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .filter(|boundary| !boundary.is_empty() && boundary.len() <= 200)
}

/// Splits a body into its parts. Errors name what is malformed.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let dash_boundary = format!("--{boundary}").into_bytes();
    let line_then_boundary = [b"\r\n".as_slice(), &dash_boundary].concat();
    // The first boundary may sit at the very start (the usual case) or after a preamble.
    let mut position = if body.starts_with(&dash_boundary) {
        0
    } else {
        find_delimiter(body, &line_then_boundary, 0)
            .map(|at| at + 2)
            .ok_or("no opening boundary line")?
    };
    let mut parts = Vec::new();
    loop {
        position += dash_boundary.len();
        let rest = body.get(position..).unwrap_or_default();
        if rest.starts_with(b"--") {
            // The close delimiter; anything after it is an epilogue and ignored.
            return Ok(parts);
        }
        position += line_break_after_blanks(rest).ok_or("boundary line not followed by CRLF")?;

        let rest = body.get(position..).unwrap_or_default();
        let (header_text, content_start) = if rest.starts_with(b"\r\n") {
            // A part with no headers at all.
            (String::new(), position + 2)
        } else {
            let end = find(rest, b"\r\n\r\n").ok_or("part headers not ended by a blank line")?;
            (
                String::from_utf8_lossy(&rest[..end]).into_owned(),
                position + end + 4,
            )
        };
        let content_end = find_delimiter(body, &line_then_boundary, content_start)
            .ok_or("part not followed by a boundary (missing close delimiter?)")?;
        parts.push(part_from(
            &header_text,
            body.slice(content_start..content_end),
        )?);
        // Continue at the `--boundary` after the CRLF that belongs to the delimiter.
        position = content_end + 2;
    }
}

fn part_from(header_text: &str, body: Bytes) -> Result<Part, String> {
    let mut disposition = None;
    let mut content_type = None;
    for line in header_text.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed part header line '{line}'"))?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_string());
        }
    }
    let disposition = disposition.ok_or("part without Content-Disposition")?;
    let (kind, rest) = disposition
        .split_once(';')
        .unwrap_or((disposition.as_str(), ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(format!(
            "part Content-Disposition must be form-data, got '{}'",
            kind.trim()
        ));
    }
    let parameters = parameters(rest);
    let lookup = |wanted: &str| {
        parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.clone())
    };
    let name = lookup("name").ok_or("part Content-Disposition without a name")?;
    // RFC 5987 `filename*=UTF-8''...` wins over a plain `filename` when both are sent.
    let filename = lookup("filename*")
        .and_then(|encoded| decode_extended_value(&encoded))
        .or_else(|| lookup("filename"));
    Ok(Part {
        name,
        filename,
        content_type,
        body,
    })
}

/// Parses `; key=value; key="quoted \"value\""` (the text after a header's first value).
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut result = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        // Skip separators and blanks before a key.
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return result;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        c => value.push(c),
                    }
                }
                // Ignore anything between the closing quote and the next `;`.
                while chars.peek().is_some_and(|c| *c != ';') {
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim_end().to_string();
            }
        }
        let key = key.trim().to_string();
        if !key.is_empty() {
            result.push((key, value));
        }
    }
}

/// Decodes an RFC 5987 value `charset'language'percent-encoded` (UTF-8 or ASCII only).
fn decode_extended_value(encoded: &str) -> Option<String> {
    let mut pieces = encoded.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let text = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let byte = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Length of optional blanks plus CRLF at the start of `rest`; `None` when there is no CRLF
/// there. A bare LF is not accepted: binary content may well hold `CRLF--boundary LF`.
fn line_break_after_blanks(rest: &[u8]) -> Option<usize> {
    let blanks = rest
        .iter()
        .take_while(|byte| **byte == b' ' || **byte == b'\t')
        .count();
    let after = rest.get(blanks..)?;
    after.starts_with(b"\r\n").then_some(blanks + 2)
}

/// Position of the next real delimiter `CRLF--boundary` at or after `from`: one followed by `--`
/// or by a line break. A look-alike inside binary content (followed by anything else) is skipped.
fn find_delimiter(body: &[u8], line_then_boundary: &[u8], from: usize) -> Option<usize> {
    let mut start = from;
    loop {
        let found = start + find(body.get(start..)?, line_then_boundary)?;
        let after = body
            .get(found + line_then_boundary.len()..)
            .unwrap_or_default();
        if after.starts_with(b"--") || line_break_after_blanks(after).is_some() {
            return Some(found);
        }
        start = found + 1;
    }
}

/// First occurrence of `needle` in `haystack`. Jumps between occurrences of the needle's first
/// byte (a CR for every needle used here, rare in most content), so a 100 MB file is one pass.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut start = 0;
    while start + needle.len() <= haystack.len() {
        let offset = haystack[start..].iter().position(|byte| *byte == first)?;
        let candidate = start + offset;
        if haystack.get(candidate..candidate + needle.len()) == Some(needle) {
            return Some(candidate);
        }
        start = candidate + 1;
    }
    None
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_fields_and_binary_content_with_crlf_and_dashes() {
        // Look-alikes of the delimiter: followed by other bytes, by a bare LF, or not after CRLF.
        let file: &[u8] = b"\r\n--Bz\r\nx\r\n\r\n--B\n\x00\xff--B\r\n\r\n";
        let body = [
            b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n".as_slice(),
            b"--B  \r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".png\"\r\nContent-Type: image/png\r\n\r\n",
            file,
            b"\r\n--B\r\nContent-Disposition: form-data; name=type\r\n\r\nimage/png\r\n--B--\r\nepilogue",
        ]
        .concat();
        let parts = parse(&Bytes::from(body), "B").expect("parses");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "messaging_product");
        assert_eq!(parts[0].text(), "whatsapp");
        assert_eq!(parts[1].filename.as_deref(), Some("a \"b\".png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(&parts[1].body[..], file);
        assert_eq!(parts[2].name, "type");
        assert_eq!(parts[2].text(), "image/png");
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            form_data_boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            form_data_boundary("Multipart/Form-Data;boundary=xyz").as_deref(),
            Some("xyz")
        );
        assert_eq!(form_data_boundary("application/json; boundary=x"), None);
        assert_eq!(form_data_boundary("multipart/form-data"), None);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"--B",
            b"--B\r\n",
            b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\nno end",
            b"--B\r\nno-colon\r\n\r\nx\r\n--B--",
            b"--B\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--B--",
            b"--Bx",
        ] {
            assert!(
                parse(&Bytes::copy_from_slice(body), "B").is_err(),
                "{body:?}"
            );
        }
        let extended = "--B\r\nContent-Disposition: form-data; name=f; filename*=UTF-8''%C3%A9.txt\r\n\r\nx\r\n--B--";
        let parts = parse(&Bytes::from(extended), "B").expect("parses");
        assert_eq!(parts[0].filename.as_deref(), Some("é.txt"));
    }
}
