//! Remote markdown to Matrix HTML. Every piece of remote text is escaped before it reaches the
//! HTML; only the tags this module writes are ever unescaped.
//!
//! The rules follow what the networks render: a marker opens a span when it is at the start of
//! the text or after a space or punctuation and is followed by a non-space, and closes it when a
//! non-space precedes it and no letter or digit follows; spans stay on one line. Inline code and
//! ```` ``` ```` blocks take their content literally. Bare `http(s)://` URLs become links and
//! `@name` a mention when the bridge knows the name; Discord's `[text](url)` a link.

use super::{Mention, Style, escape_html};

/// Renders `text` as HTML; the mentions found, in order.
pub(super) fn to_html(
    text: &str,
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
) -> (String, Vec<Mention>) {
    let mut out = String::new();
    let mut mentions = Vec::new();
    let mut rest = text;
    // Code blocks first: their content is never formatted and may span lines.
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("```") else { break };
        inline(&rest[..start], style, resolve, &mut out, &mut mentions);
        let code = after[..end].strip_prefix('\n').unwrap_or(&after[..end]);
        out.push_str("<pre><code>");
        out.push_str(&escape_html(code));
        out.push_str("</code></pre>");
        rest = &after[end + 3..];
    }
    inline(rest, style, resolve, &mut out, &mut mentions);
    (out, mentions)
}

/// Renders text outside code blocks, line by line.
fn inline(
    text: &str,
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
    out: &mut String,
    mentions: &mut Vec<Mention>,
) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        let chars: Vec<char> = line.chars().collect();
        spans(&chars, style, resolve, out, mentions);
    }
}

/// The markers of a style, longest first so `**` is tried before `*`.
fn markers(style: Style) -> &'static [(&'static str, &'static str)] {
    match style {
        Style::WhatsApp => &[("*", "strong"), ("_", "em"), ("~", "del")],
        Style::Discord => &[
            ("**", "strong"),
            ("__", "u"),
            ("~~", "del"),
            ("||", "span data-mx-spoiler"),
            ("*", "em"),
            ("_", "em"),
        ],
    }
}

fn spans(
    chars: &[char],
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
    out: &mut String,
    mentions: &mut Vec<Mention>,
) {
    let mut i = 0;
    while i < chars.len() {
        let before = if i == 0 { None } else { Some(chars[i - 1]) };
        let at_word_start = before.is_none_or(|c| !c.is_alphanumeric());
        // Inline code: literal up to the next backtick.
        if chars[i] == '`'
            && let Some(len) = chars[i + 1..].iter().position(|&c| c == '`')
            && len > 0
        {
            let code: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str("<code>");
            out.push_str(&escape_html(&code));
            out.push_str("</code>");
            i += len + 2;
            continue;
        }
        if style == Style::Discord
            && chars[i] == '['
            && let Some(used) = masked_link(&chars[i..], style, resolve, out, mentions)
        {
            i += used;
            continue;
        }
        if at_word_start && let Some(used) = link(&chars[i..], out) {
            i += used;
            continue;
        }
        if at_word_start
            && chars[i] == '@'
            && let Some(used) = mention(&chars[i..], resolve, out, mentions)
        {
            i += used;
            continue;
        }
        if at_word_start && let Some(used) = span(chars, i, style, resolve, out, mentions) {
            i += used;
            continue;
        }
        out.push_str(&escape_html(chars[i].encode_utf8(&mut [0; 4])));
        i += 1;
    }
}

/// A formatting span starting at `chars[start]`; answers how many characters it used.
fn span(
    chars: &[char],
    start: usize,
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
    out: &mut String,
    mentions: &mut Vec<Mention>,
) -> Option<usize> {
    for &(marker, tag) in markers(style) {
        let marker: Vec<char> = marker.chars().collect();
        let m = marker.len();
        if !chars[start..].starts_with(&marker) {
            continue;
        }
        let inner_start = start + m;
        if chars.get(inner_start).is_none_or(|c| c.is_whitespace()) {
            continue;
        }
        // The nearest closing marker: a non-space before it, no letter or digit after it, and
        // the last of a run of marker characters (`***both***` closes bold after italic).
        let close = (inner_start + 1..=chars.len().saturating_sub(m)).find(|&j| {
            chars[j..].starts_with(&marker)
                && !chars[j - 1].is_whitespace()
                && chars
                    .get(j + m)
                    .is_none_or(|c| !c.is_alphanumeric() && *c != marker[0])
        });
        let Some(close) = close else { continue };
        let (open_tag, close_tag) = match tag.split_once(' ') {
            Some((name, attribute)) => (format!("<{name} {attribute}>"), format!("</{name}>")),
            None => (format!("<{tag}>"), format!("</{tag}>")),
        };
        out.push_str(&open_tag);
        spans(&chars[inner_start..close], style, resolve, out, mentions);
        out.push_str(&close_tag);
        return Some(close + m - start);
    }
    None
}

/// A bare URL; answers how many characters it used.
fn link(chars: &[char], out: &mut String) -> Option<usize> {
    let text: String = chars.iter().take(8).collect();
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return None;
    }
    let mut end = chars
        .iter()
        .position(|c| c.is_whitespace())
        .unwrap_or(chars.len());
    // Sentence punctuation after a URL is not part of it.
    while end > 0 && ".,;:!?)]'\"".contains(chars[end - 1]) {
        end -= 1;
    }
    let url: String = chars[..end].iter().collect();
    if url.len() <= "https://".len() {
        return None;
    }
    let url = escape_html(&url);
    out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
    Some(end)
}

/// Discord's `[text](https://url)`; answers how many characters it used.
fn masked_link(
    chars: &[char],
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
    out: &mut String,
    mentions: &mut Vec<Mention>,
) -> Option<usize> {
    let close = chars.iter().position(|&c| c == ']')?;
    if chars.get(close + 1) != Some(&'(') || close < 2 {
        return None;
    }
    let url_len = chars[close + 2..].iter().position(|&c| c == ')')?;
    let url: String = chars[close + 2..close + 2 + url_len].iter().collect();
    let url = url.trim_start_matches('<').trim_end_matches('>');
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        return None;
    }
    out.push_str(&format!("<a href=\"{}\">", escape_html(url)));
    spans(&chars[1..close], style, resolve, out, mentions);
    out.push_str("</a>");
    Some(close + 3 + url_len)
}

/// `@name` of a known remote user; answers how many characters it used.
fn mention(
    chars: &[char],
    resolve: &dyn Fn(&str) -> Option<Mention>,
    out: &mut String,
    mentions: &mut Vec<Mention>,
) -> Option<usize> {
    let len = chars[1..]
        .iter()
        .position(|c| !(c.is_alphanumeric() || "_.+-".contains(*c)))
        .unwrap_or(chars.len() - 1);
    let name: String = chars[1..1 + len].iter().collect();
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return None;
    }
    let found = resolve(name)?;
    out.push_str(&format!(
        "<a href=\"https://matrix.to/#/{}\">{}</a>",
        escape_html(found.user_id.as_str()),
        escape_html(&found.name)
    ));
    let used = 1 + name.chars().count();
    mentions.push(found);
    Some(used)
}
