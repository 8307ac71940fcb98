//! Message formats: Matrix's `org.matrix.custom.html` and plain text to and from the
//! markdown-like formats of remote networks. Pure functions, no IO.
//!
//! | Matrix HTML | [`Style::WhatsApp`] | [`Style::Discord`] |
//! |---|---|---|
//! | `<strong>` | `*bold*` | `**bold**` |
//! | `<em>` | `_italic_` | `*italic*` (reads `_italic_` too) |
//! | `<del>` | `~strike~` | `~~strike~~` |
//! | `<u>` | (text) | `__underline__` |
//! | `<span data-mx-spoiler>` | (text) | `\|\|spoiler\|\|` |
//! | `<code>` | `` `code` `` | `` `code` `` |
//! | `<pre><code>` | ```` ``` ```` block | ```` ``` ```` block |
//! | `<a href>` | `text (url)`, or the URL | `[text](url)`, or the URL |
//! | a `matrix.to` user link | `@name` | `@name` |
//!
//! Remote text never reaches HTML unescaped: [`remote_to_matrix`] escapes every character of it
//! and adds only the tags it writes itself; a message without formatting is sent as plain text
//! only. Matrix → remote drops reply fallbacks (`<mx-reply>`, and the `> ` lines that open a
//! plain-text reply).

mod html;
mod markdown;

use ruma::OwnedUserId;
use ruma::UserId;
use ruma::events::Mentions;
use ruma::events::room::message::{MessageFormat, MessageType, RoomMessageEventContent};

/// A remote network's markdown dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    WhatsApp,
    Discord,
}

/// A remote user mentioned in a remote message, as known on Matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mention {
    pub user_id: OwnedUserId,
    /// The name the pill shows.
    pub name: String,
}

/// Remote text as a Matrix message: `body` is the remote text as written, `formatted_body` its
/// HTML when it has any formatting. `resolve` answers the Matrix user for an `@name` (without
/// the `@`), or `None` to leave it as text; mentioned users go into `m.mentions`.
pub fn remote_to_matrix(
    text: &str,
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
) -> RoomMessageEventContent {
    let (html, mentions) = markdown::to_html(text, style, resolve);
    let plain = escape_html(text).replace('\n', "<br>");
    let mut content = if html == plain {
        RoomMessageEventContent::text_plain(text)
    } else {
        RoomMessageEventContent::text_html(text, html)
    };
    if !mentions.is_empty() {
        content.mentions = Some(Mentions::with_user_ids(
            mentions.into_iter().map(|m| m.user_id),
        ));
    }
    content
}

/// The HTML for remote text (what [`remote_to_matrix`] puts in `formatted_body`).
pub fn markdown_to_html(
    text: &str,
    style: Style,
    resolve: &dyn Fn(&str) -> Option<Mention>,
) -> String {
    markdown::to_html(text, style, resolve).0
}

/// Matrix HTML as remote markdown; `name_of` names a mentioned Matrix user for the remote side
/// (`None`: the link's text).
pub fn html_to_markdown(
    html: &str,
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
) -> String {
    html::to_markdown(html, style, name_of)
}

/// The text of a Matrix message for the remote network: its HTML converted when it has some,
/// else its plain body without a reply fallback. Media messages give their caption or file
/// name; emotes are prefixed with `/me `.
pub fn matrix_to_remote(
    content: &RoomMessageEventContent,
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
) -> String {
    let (body, formatted, emote) = match &content.msgtype {
        MessageType::Text(m) => (&m.body, &m.formatted, false),
        MessageType::Notice(m) => (&m.body, &m.formatted, false),
        MessageType::Emote(m) => (&m.body, &m.formatted, true),
        other => return other.body().to_owned(),
    };
    let text = match formatted {
        Some(f) if f.format == MessageFormat::Html => html_to_markdown(&f.body, style, name_of),
        _ => strip_reply_fallback(body).to_owned(),
    };
    if emote { format!("/me {text}") } else { text }
}

/// A plain body without the `> ` quote of the message it replies to.
fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> <") {
        return body;
    }
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        if !rest.starts_with('>') {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    if rest.starts_with('>') {
        return body;
    }
    rest.trim_start_matches('\n')
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` escapes (of `matrix.to` links); invalid escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::user_id;

    fn no_mentions(_: &str) -> Option<Mention> {
        None
    }

    fn known(name: &str) -> Option<Mention> {
        (name == "ann").then(|| Mention {
            user_id: user_id!("@wa_4477:hs").to_owned(),
            name: "Ann".into(),
        })
    }

    fn names(user: &UserId) -> Option<String> {
        (user.localpart() == "staff").then(|| "Staff Nurse".to_owned())
    }

    #[test]
    fn whatsapp_markdown_to_html() {
        let cases = [
            ("plain text", "plain text"),
            ("*bold*", "<strong>bold</strong>"),
            ("_italic_ and ~gone~", "<em>italic</em> and <del>gone</del>"),
            ("*bold _both_*", "<strong>bold <em>both</em></strong>"),
            ("2 * 3 * 4", "2 * 3 * 4"),
            ("snake_case_name", "snake_case_name"),
            ("`a *b*`", "<code>a *b*</code>"),
            ("```\nfn x() {}\n```", "<pre><code>fn x() {}\n</code></pre>"),
            ("line\nnext", "line<br>next"),
            (
                "<b>not html</b> & co",
                "&lt;b&gt;not html&lt;/b&gt; &amp; co",
            ),
            (
                "see https://example.org/a?b=1&c.",
                "see <a href=\"https://example.org/a?b=1&amp;c\">https://example.org/a?b=1&amp;c</a>.",
            ),
            ("*<script>*", "<strong>&lt;script&gt;</strong>"),
            ("*open only", "*open only"),
            (
                "hi @ann!",
                "hi <a href=\"https://matrix.to/#/@wa_4477:hs\">Ann</a>!",
            ),
            ("hi @bob", "hi @bob"),
        ];
        for (text, html) in cases {
            assert_eq!(
                markdown_to_html(text, Style::WhatsApp, &known),
                html,
                "{text:?}"
            );
        }
    }

    #[test]
    fn discord_markdown_to_html() {
        let cases = [
            (
                "**bold** *it* _it_",
                "<strong>bold</strong> <em>it</em> <em>it</em>",
            ),
            ("~~gone~~ __under__", "<del>gone</del> <u>under</u>"),
            ("||secret||", "<span data-mx-spoiler>secret</span>"),
            ("***both***", "<strong><em>both</em></strong>"),
            (
                "[the **site**](https://x.org/a)",
                "<a href=\"https://x.org/a\">the <strong>site</strong></a>",
            ),
            ("[not](javascript:alert(1))", "[not](javascript:alert(1))"),
            ("[x](<https://x.org>)", "<a href=\"https://x.org\">x</a>"),
        ];
        for (text, html) in cases {
            assert_eq!(
                markdown_to_html(text, Style::Discord, &no_mentions),
                html,
                "{text:?}"
            );
        }
    }

    #[test]
    fn html_to_remote_markdown() {
        let cases = [
            (
                Style::WhatsApp,
                "<strong>bold</strong> <em>it</em> <del>x</del>",
                "*bold* _it_ ~x~",
            ),
            (
                Style::Discord,
                "<b>bold</b> <i>it</i> <s>x</s> <u>u</u>",
                "**bold** *it* ~~x~~ __u__",
            ),
            (Style::WhatsApp, "<b> spaced </b>word", " *spaced* word"),
            (Style::WhatsApp, "<code>a &lt; b</code>", "`a < b`"),
            (
                Style::WhatsApp,
                "<pre><code>x\ny\n</code></pre>",
                "```\nx\ny\n```",
            ),
            (Style::WhatsApp, "a<br>b<br/>c", "a\nb\nc"),
            (Style::WhatsApp, "<p>one</p><p>two</p>", "one\n\ntwo"),
            (
                Style::WhatsApp,
                "<a href=\"https://x.org\">site</a>",
                "site (https://x.org)",
            ),
            (
                Style::Discord,
                "<a href=\"https://x.org\">site</a>",
                "[site](https://x.org)",
            ),
            (
                Style::WhatsApp,
                "<a href=\"https://x.org\">https://x.org</a>",
                "https://x.org",
            ),
            (
                Style::WhatsApp,
                "hi <a href=\"https://matrix.to/#/%40staff%3Ahs\">Nurse</a>",
                "hi @Staff Nurse",
            ),
            (
                Style::WhatsApp,
                "hi <a href=\"https://matrix.to/#/@other:hs\">Other</a>",
                "hi @Other",
            ),
            (
                Style::WhatsApp,
                "<mx-reply><blockquote>old</blockquote></mx-reply>answer",
                "answer",
            ),
            (
                Style::WhatsApp,
                "<blockquote>quoted<br>two</blockquote>after",
                "> quoted\n> two\nafter",
            ),
            (Style::WhatsApp, "<ul><li>a</li><li>b</li></ul>", "- a\n- b"),
            (
                Style::WhatsApp,
                "<ol start=\"3\"><li>a</li><li>b</li></ol>",
                "3. a\n4. b",
            ),
            (
                Style::WhatsApp,
                "<font color=\"red\">red</font> &amp; &#x263A;",
                "red & ☺",
            ),
            (Style::WhatsApp, "unclosed <b>bold", "unclosed *bold*"),
            (Style::WhatsApp, "stray </b>close", "stray close"),
            (Style::Discord, "<span data-mx-spoiler>s</span>", "||s||"),
        ];
        for (style, html, text) in cases {
            assert_eq!(html_to_markdown(html, style, &names), text, "{html:?}");
        }
    }

    #[test]
    fn remote_text_becomes_plain_or_html_content() {
        let plain = remote_to_matrix("just <text>", Style::WhatsApp, &no_mentions);
        let MessageType::Text(text) = &plain.msgtype else {
            panic!("not text")
        };
        assert_eq!(text.body, "just <text>");
        assert!(text.formatted.is_none());

        let formatted = remote_to_matrix("*hi* @ann", Style::WhatsApp, &known);
        let MessageType::Text(text) = &formatted.msgtype else {
            panic!("not text")
        };
        assert_eq!(text.body, "*hi* @ann");
        assert_eq!(
            text.formatted.as_ref().unwrap().body,
            "<strong>hi</strong> <a href=\"https://matrix.to/#/@wa_4477:hs\">Ann</a>"
        );
        assert!(
            formatted
                .mentions
                .unwrap()
                .user_ids
                .contains(user_id!("@wa_4477:hs"))
        );
    }

    #[test]
    fn matrix_messages_become_remote_text() {
        let cases = [
            (
                RoomMessageEventContent::text_plain("hello *there*"),
                "hello *there*",
            ),
            (
                RoomMessageEventContent::text_plain("> <@a:hs> earlier\n> more\n\nmy answer"),
                "my answer",
            ),
            (
                RoomMessageEventContent::text_html("bold", "<b>bold</b>"),
                "*bold*",
            ),
            (RoomMessageEventContent::emote_plain("waves"), "/me waves"),
        ];
        for (content, text) in cases {
            assert_eq!(matrix_to_remote(&content, Style::WhatsApp, &names), text);
        }
    }

    #[test]
    fn escapes_everything_html_could_misread() {
        assert_eq!(
            escape_html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(percent_decode("%40a%3Ahs%zz"), "@a:hs%zz");
    }
}
