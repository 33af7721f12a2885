//! Reads a YAML stream (JSON is YAML) into [`Node`] trees, one per document.
//!
//! Aliases are expanded here under a node budget, and nesting depth is bounded, so a
//! "billion laughs" document or a 10,000-deep list is refused with a clear error instead of
//! exhausting memory or the stack.

use std::collections::HashMap;

use granit_parser::{Event, Parser, Span};

use super::node::{Node, NodeKind, Pos, ScalarStyle};

/// Limits on what one input may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most nodes a single document may hold after alias expansion.
    pub max_nodes: usize,
    /// Deepest nesting of lists and objects.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Real Istio resources are a few hundred nodes and under 20 levels deep.
        Limits {
            max_nodes: 1_000_000,
            max_depth: 64,
        }
    }
}

/// A document that could not be read as YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub pos: Pos,
    pub message: String,
}

/// One document of the stream.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where the document starts (its first content).
    pub pos: Pos,
    pub root: Node,
}

fn pos_of(span: &Span, line_offset: u32) -> Pos {
    Pos {
        line: span.start.line() as u32 + line_offset,
        col: span.start.col() as u32 + 1,
    }
}

/// Parses every document in `text`. A syntax error ends the stream: YAML can't be
/// resynchronised reliably, so the documents before the error are returned with it.
pub fn load_documents(text: &str, limits: Limits) -> (Vec<Document>, Option<LoadError>) {
    load_documents_at(text, limits, 0)
}

/// As [`load_documents`], for a piece of a larger file that starts after `line_offset` lines.
pub fn load_documents_at(
    text: &str,
    limits: Limits,
    line_offset: u32,
) -> (Vec<Document>, Option<LoadError>) {
    let options = granit_parser::options! {
        flow_nesting_limit: limits.max_depth,
        block_nesting_limit: limits.max_depth,
    };
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut docs = Vec::new();
    let mut builder = Builder::new(limits, line_offset);
    while let Some(item) = parser.next_event() {
        let (event, span) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                let pos = Pos {
                    line: m.line() as u32 + line_offset,
                    col: m.col() as u32 + 1,
                };
                let info = e.info();
                let message = if info.contains("recursion limit") {
                    format!(
                        "nesting deeper than {} levels; refusing to read it",
                        limits.max_depth
                    )
                } else {
                    format!("YAML syntax error: {info}")
                };
                return (docs, Some(LoadError { pos, message }));
            }
        };
        match builder.push(event, &span) {
            Ok(Some(doc)) => {
                if !doc.root.is_null() {
                    docs.push(doc);
                }
            }
            Ok(None) => {}
            Err(e) => return (docs, Some(e)),
        }
    }
    (docs, None)
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        flow: bool,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        merged: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    doc_pos: Option<Pos>,
    root: Option<Node>,
    line_offset: u32,
}

impl Builder {
    fn new(limits: Limits, line_offset: u32) -> Self {
        Builder {
            limits,
            line_offset,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            doc_pos: None,
            root: None,
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), LoadError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(LoadError {
                pos,
                message: format!(
                    "document expands to more than {} nodes (alias expansion bomb?); refusing to read it",
                    self.limits.max_nodes
                ),
            });
        }
        Ok(())
    }

    fn push(&mut self, event: Event<'_>, span: &Span) -> Result<Option<Document>, LoadError> {
        let pos = pos_of(span, self.line_offset);
        match event {
            Event::DocumentStart(..) => {
                self.anchors.clear();
                self.nodes = 0;
                self.doc_pos = None;
                self.root = None;
            }
            Event::DocumentEnd => {
                let root = self.root.take().unwrap_or_else(|| Node::null(pos));
                let pos = self.doc_pos.take().unwrap_or(root.pos);
                return Ok(Some(Document { pos, root }));
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                let quoted = !matches!(style, granit_parser::ScalarStyle::Plain);
                // An explicit `!!str` tag makes a plain scalar a string, as in go-yaml.
                let is_str_tag = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let kind = if !quoted
                    && !is_str_tag
                    && super::node::resolve_plain(&text) == super::node::Resolved::Null
                {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar {
                        text: text.into_owned(),
                        style: if quoted || is_str_tag {
                            ScalarStyle::Quoted
                        } else {
                            ScalarStyle::Plain
                        },
                    }
                };
                self.finish(Node { pos, kind }, anchor)?;
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| LoadError {
                    pos,
                    message: "alias refers to an unknown anchor".to_string(),
                })?;
                self.count(count_nodes(&node), pos)?;
                self.finish(node, 0)?;
            }
            Event::SequenceStart(style, anchor, _) => {
                self.count(1, pos)?;
                self.enter(pos)?;
                let flow = matches!(style, granit_parser::StructureStyle::Flow);
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    flow,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, _) => {
                self.count(1, pos)?;
                self.enter(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    merged: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    pos, anchor, items, ..
                }) = self.stack.pop()
                {
                    self.finish(
                        Node {
                            pos,
                            kind: NodeKind::Seq(items),
                        },
                        anchor,
                    )?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    pos,
                    anchor,
                    mut entries,
                    merged,
                    ..
                }) = self.stack.pop()
                {
                    for (k, v) in merged {
                        if !entries.iter().any(|(ek, _)| ek.as_str() == k.as_str()) {
                            entries.push((k, v));
                        }
                    }
                    let node = Node {
                        pos,
                        kind: NodeKind::Map(entries),
                    };
                    let in_flow_seq =
                        matches!(self.stack.last(), Some(Frame::Seq { flow: true, .. }));
                    let node = if in_flow_seq {
                        go_flow_scalar(node)
                    } else {
                        node
                    };
                    self.finish(node, anchor)?;
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn enter(&mut self, pos: Pos) -> Result<(), LoadError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(LoadError {
                pos,
                message: format!(
                    "nesting deeper than {} levels; refusing to read it",
                    self.limits.max_depth
                ),
            });
        }
        if self.doc_pos.is_none() {
            self.doc_pos = Some(pos);
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), LoadError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        if self.doc_pos.is_none() {
            self.doc_pos = Some(node.pos);
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merged,
                key,
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if k.as_str() == Some("<<")
                        && matches!(
                            k.kind,
                            NodeKind::Scalar {
                                style: ScalarStyle::Plain,
                                ..
                            }
                        )
                    {
                        merge_into(merged, node);
                    } else {
                        entries.push((k, node));
                    }
                }
            },
        }
        Ok(())
    }
}

/// In a flow sequence, go-yaml (which Kubernetes and Istio use) keeps a `:` followed by `,`
/// or `]` inside a plain scalar, so `[1.2.3.4, 2001:db8::]` is two strings; YAML 1.2 reads
/// the second as a one-pair mapping `{"2001:db8:": null}`. Undo that for the IPv6-like case.
fn go_flow_scalar(node: Node) -> Node {
    if let NodeKind::Map(entries) = &node.kind
        && let [(key, value)] = entries.as_slice()
        && value.is_null()
        && let NodeKind::Scalar {
            text,
            style: ScalarStyle::Plain,
        } = &key.kind
        && text.contains(':')
    {
        return Node {
            pos: key.pos,
            kind: NodeKind::Scalar {
                text: format!("{text}:"),
                style: ScalarStyle::Plain,
            },
        };
    }
    node
}

/// YAML merge keys (`<<: *defaults`): keys already present win.
fn merge_into(entries: &mut Vec<(Node, Node)>, value: Node) {
    let sources = match value.kind {
        NodeKind::Map(m) => vec![m],
        NodeKind::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.kind {
                NodeKind::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => return,
    };
    for source in sources {
        for (k, v) in source {
            if !entries.iter().any(|(ek, _)| ek.as_str() == k.as_str()) {
                entries.push((k, v));
            }
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multiple_documents_with_positions() {
        let text = "a: 1\n---\n# only a comment\n---\nb:\n  c: [x, y]\n";
        let (docs, err) = load_documents(text, Limits::default());
        assert!(err.is_none());
        assert_eq!(docs.len(), 2);
        let c = docs[1].root.get("b").and_then(|b| b.get("c")).expect("c");
        assert_eq!(c.pos, Pos { line: 6, col: 6 });
        assert_eq!(docs[1].pos.line, 5);
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, err) = load_documents(&text, Limits::default());
        let err = err.expect("bomb refused");
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn refuses_deep_nesting() {
        let text = "[".repeat(5000);
        let (_, err) = load_documents(&text, Limits::default());
        assert!(err.is_some());
        let text = "a:\n".to_string()
            + &(1..200)
                .map(|i| format!("{}b{i}:\n", " ".repeat(i * 2)))
                .collect::<String>();
        let (_, err) = load_documents(&text, Limits::default());
        assert!(err.expect("deep").message.contains("nesting"));
    }

    #[test]
    fn merge_keys_and_json() {
        let text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n";
        let (docs, err) = load_documents(text, Limits::default());
        assert!(err.is_none());
        let d = docs[0].root.get("d").expect("d");
        assert_eq!(d.get("x").and_then(Node::as_str), Some("1"));
        assert_eq!(d.get("y").and_then(Node::as_str), Some("3"));
        let (docs, err) = load_documents("{\"kind\": \"List\", \"items\": []}", Limits::default());
        assert!(err.is_none());
        assert_eq!(
            docs[0].root.get("kind").and_then(Node::as_str),
            Some("List")
        );
    }

    #[test]
    fn ipv6_in_flow_sequences_like_go_yaml() {
        let (docs, err) = load_documents("a: [1.2.3.4, 001:db8::, ::1, {k: v}]", Limits::default());
        assert!(err.is_none());
        let a = docs[0].root.get("a").and_then(Node::as_seq).expect("seq");
        assert_eq!(a[1].as_str(), Some("001:db8::"));
        assert_eq!(a[2].as_str(), Some("::1"));
        assert!(a[3].as_map().is_some());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (_, err) = load_documents("a: 1\nb: [1, 2\nc: 3\n", Limits::default());
        let err = err.expect("error");
        assert!(err.pos.line >= 2, "{err:?}");
    }
}
