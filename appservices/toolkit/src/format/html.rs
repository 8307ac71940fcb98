//! Matrix HTML to remote markdown: a tolerant parser of the HTML subset Matrix clients send into
//! a small tree, rendered with the markers of a style. Unknown tags keep their text; replies'
//! `<mx-reply>` fallbacks are dropped; entities are decoded.

use ruma::UserId;

use super::Style;

#[derive(Debug)]
enum Node {
    Text(String),
    Element {
        name: String,
        attributes: Vec<(String, String)>,
        children: Vec<Node>,
    },
}

const VOID: &[&str] = &["br", "hr", "img"];

/// An element still open while parsing.
struct Open {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Open {
    fn new(name: String, attributes: Vec<(String, String)>) -> Open {
        Open {
            name,
            attributes,
            children: Vec::new(),
        }
    }
}

/// Parses `html` into a list of top-level nodes. Closing tags without an open one are ignored;
/// open tags left at the end are closed.
fn parse(html: &str) -> Vec<Node> {
    // The stack of open elements; index 0 is the root.
    let mut stack = vec![Open::new(String::new(), Vec::new())];
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut stack, rest);
            break;
        };
        push_text(&mut stack, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            push_text(&mut stack, rest);
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            if let Some(depth) = stack.iter().rposition(|open| open.name == name)
                && depth > 0
            {
                while stack.len() > depth {
                    close(&mut stack);
                }
            }
            continue;
        }
        let (name, attributes) = parse_tag(tag.trim_end_matches('/'));
        if name.is_empty() {
            continue;
        }
        if VOID.contains(&name.as_str()) || tag.ends_with('/') {
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Element {
                    name,
                    attributes,
                    children: Vec::new(),
                });
            }
        } else {
            stack.push(Open::new(name, attributes));
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

fn push_text(stack: &mut [Open], text: &str) {
    if !text.is_empty()
        && let Some(top) = stack.last_mut()
    {
        top.children.push(Node::Text(decode_entities(text)));
    }
}

fn close(stack: &mut Vec<Open>) {
    if let Some(open) = stack.pop()
        && let Some(parent) = stack.last_mut()
    {
        parent.children.push(Node::Element {
            name: open.name,
            attributes: open.attributes,
            children: open.children,
        });
    }
}

/// The name and attributes of a tag's inside (`a href="x"`).
fn parse_tag(tag: &str) -> (String, Vec<(String, String)>) {
    let tag = tag.trim();
    let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
    let name = tag[..name_end].to_ascii_lowercase();
    let mut attributes = Vec::new();
    let mut rest = tag[name_end..].trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = rest[..key_end].to_ascii_lowercase();
        rest = rest[key_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (value, remaining) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let end = inner.find(quote).unwrap_or(inner.len());
                    (&inner[..end], inner.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            rest = remaining.trim_start();
            decode_entities(value)
        } else {
            String::new()
        };
        if !key.is_empty() {
            attributes.push((key, value));
        }
    }
    (name, attributes)
}

/// Decodes the named entities HTML-escaping produces and numeric ones.
pub(super) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders Matrix HTML as the markdown of `style`; `name_of` names a mentioned Matrix user the
/// way the remote network should see it.
pub(super) fn to_markdown(
    html: &str,
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
) -> String {
    let nodes = parse(html);
    let mut out = String::new();
    render(&nodes, style, name_of, &mut out);
    tidy(&out)
}

fn render(
    nodes: &[Node],
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
    out: &mut String,
) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Element {
                name,
                attributes,
                children,
            } => element(name, attributes, children, style, name_of, out),
        }
    }
}

fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn text_of(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Element { name, children, .. } if name == "br" => {
                out.push('\n');
                out.push_str(&text_of(children));
            }
            Node::Element { children, .. } => out.push_str(&text_of(children)),
        }
    }
    out
}

fn element(
    name: &str,
    attributes: &[(String, String)],
    children: &[Node],
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
    out: &mut String,
) {
    let discord = style == Style::Discord;
    let wrap = |marker: &str, out: &mut String| {
        let mut inner = String::new();
        render(children, style, name_of, &mut inner);
        // Markers around surrounding spaces would not render: keep the spaces outside.
        let trimmed = inner.trim();
        if trimmed.is_empty() {
            out.push_str(&inner);
            return;
        }
        let leading = &inner[..inner.len() - inner.trim_start().len()];
        let trailing = &inner[inner.trim_end().len()..];
        out.push_str(&format!("{leading}{marker}{trimmed}{marker}{trailing}"));
    };
    match name {
        "mx-reply" => {}
        "b" | "strong" => wrap(if discord { "**" } else { "*" }, out),
        "i" | "em" => wrap(if discord { "*" } else { "_" }, out),
        "s" | "del" | "strike" => wrap(if discord { "~~" } else { "~" }, out),
        "u" if discord => wrap("__", out),
        "span" if discord && attribute(attributes, "data-mx-spoiler").is_some() => wrap("||", out),
        "code" => out.push_str(&format!("`{}`", text_of(children))),
        "pre" => {
            let code = text_of(children);
            out.push_str(&format!("\n```\n{}\n```\n", code.trim_end_matches('\n')));
        }
        "br" => out.push('\n'),
        "hr" => out.push_str("\n---\n"),
        "p" | "div" => {
            out.push('\n');
            render(children, style, name_of, out);
            out.push('\n');
        }
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
            out.push('\n');
            wrap(if discord { "**" } else { "*" }, out);
            out.push('\n');
        }
        "blockquote" => {
            let mut inner = String::new();
            render(children, style, name_of, &mut inner);
            out.push('\n');
            for line in tidy(&inner).lines() {
                out.push_str(&format!("> {line}\n"));
            }
        }
        "ul" | "ol" => {
            out.push('\n');
            let mut number = attribute(attributes, "start")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1);
            for child in children {
                if let Node::Element {
                    name: item,
                    children,
                    ..
                } = child
                    && item == "li"
                {
                    let mut text = String::new();
                    render(children, style, name_of, &mut text);
                    if name == "ol" {
                        out.push_str(&format!("{number}. {}\n", tidy(&text)));
                        number += 1;
                    } else {
                        out.push_str(&format!("- {}\n", tidy(&text)));
                    }
                }
            }
        }
        "a" => link(attributes, children, style, name_of, out),
        "img" => {
            let text = attribute(attributes, "alt")
                .or_else(|| attribute(attributes, "title"))
                .unwrap_or("");
            out.push_str(text);
        }
        _ => render(children, style, name_of, out),
    }
}

fn link(
    attributes: &[(String, String)],
    children: &[Node],
    style: Style,
    name_of: &dyn Fn(&UserId) -> Option<String>,
    out: &mut String,
) {
    let href = attribute(attributes, "href").unwrap_or("");
    let mut text = String::new();
    render(children, style, name_of, &mut text);
    if let Some(target) = href.strip_prefix("https://matrix.to/#/") {
        let target = target.split('?').next().unwrap_or(target);
        let target = super::percent_decode(target);
        if let Ok(user) = <&UserId>::try_from(target.as_str()) {
            let name = name_of(user).unwrap_or_else(|| text.trim_start_matches('@').to_owned());
            out.push_str(&format!("@{name}"));
            return;
        }
        out.push_str(if text.is_empty() { &target } else { &text });
        return;
    }
    if href.is_empty() || text == href || text.is_empty() {
        out.push_str(if href.is_empty() { &text } else { href });
    } else if style == Style::Discord {
        out.push_str(&format!("[{text}]({href})"));
    } else {
        out.push_str(&format!("{text} ({href})"));
    }
}

/// Joins lines, trims each line's end, and keeps at most one empty line between paragraphs.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut empty_lines = 0;
    for line in text.trim_matches('\n').lines() {
        let line = line.trim_end();
        if line.is_empty() {
            empty_lines += 1;
            if empty_lines > 1 {
                continue;
            }
        } else {
            empty_lines = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_owned()
}
