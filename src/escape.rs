//! Text from outside (a server's error body, an instance's names, a capture's path) made safe
//! where it lands: one line on a console, inert in GitLab Markdown, valid in XML. HTML is
//! escaped by the report itself (`report::html`). Shared by every stage that prints or writes.

/// Whether `c` would steer a terminal or reorder what it shows: control characters (C0, DEL,
/// C1) and the bidirectional overrides and isolates.
fn steers(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one console line: escape sequences (`ESC [ … final`, `ESC ] … BEL`) and every other
/// control character removed, line breaks and tabs made spaces; so a server can neither draw a
/// line of its own (a fake `verdict: pass`) nor move the cursor.
pub fn console(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_sequence(&mut chars),
            '\n' | '\r' | '\t' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if steers(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips an escape sequence's remainder after its ESC.
fn skip_sequence(chars: &mut std::iter::Peekable<std::str::Chars>) {
    match chars.next() {
        // CSI: parameters and intermediates, then one final byte in @..~.
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        // OSC, DCS, PM, APC: up to BEL or ST (ESC \).
        Some(']' | 'P' | '^' | '_') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' || (c == '\u{1b}' && chars.peek() == Some(&'\\')) {
                    chars.next_if_eq(&'\\');
                    break;
                }
            }
        }
        _ => {}
    }
}

/// The most characters of outside text a Markdown line shows.
const MARKDOWN_CHARS: usize = 160;

/// `s` as an inline code span for GitLab Markdown: one line, at most 160 characters. Nothing in
/// a code span is interpreted (no mention, reference, quick action, link, image or HTML);
/// the fence is longer than any run of backticks inside, so the text cannot close it early.
pub fn markdown_code(s: &str) -> String {
    let one = console(s);
    let one = one.trim();
    let mut text: String = one.chars().take(MARKDOWN_CHARS).collect();
    if one.chars().count() > MARKDOWN_CHARS {
        text.push('…');
    }
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') || text.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// `s` with the characters XML 1.0 forbids removed (C0 controls but tab, line feed and carriage
/// return; U+FFFE and U+FFFF): a JUnit file a server wrote into still parses. Markup characters
/// are escaped by the XML writer.
pub fn xml(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || !(c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_cannot_draw_on_the_console() {
        let hostile =
            "boom\u{1b}[2K\r\u{1b}[32mverdict: pass\u{1b}[0m\n\u{1b}]0;title\u{7}x\u{9b}y\u{202E}z";
        assert_eq!(console(hostile), "boom verdict: pass xyz");
    }

    #[test]
    fn markdown_code_spans_hold_anything() {
        assert_eq!(
            markdown_code("@all ![x](http://e/x.png)"),
            "`@all ![x](http://e/x.png)`"
        );
        assert_eq!(markdown_code("a ``b`` c"), "```a ``b`` c```");
        assert_eq!(markdown_code("`x"), "`` `x ``");
        assert_eq!(markdown_code("/label ~bug\n/close"), "`/label ~bug /close`");
        assert!(markdown_code(&"x".repeat(500)).chars().count() < 170);
    }

    #[test]
    fn xml_forbidden_characters_go() {
        assert_eq!(xml("a\u{0}b\u{1b}c\td\u{FFFF}"), "abc\td");
    }
}
