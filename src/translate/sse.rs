//! Server-sent events in and out, incrementally.
//!
//! [`SseParser`] reads an event stream fed in pieces split at any byte, as the WHATWG
//! HTML standard's "event stream interpretation" says: lines end in `\n`, `\r\n` or a
//! lone `\r` (a `\r` at the end of one piece and a `\n` at the start of the next are one
//! line end); a line starting with `:` is a comment; `field: value` loses one space after
//! the colon; `data` lines join with `\n`; an empty line dispatches the event; an event
//! without data is not dispatched; a leading byte order mark is dropped; at the end of
//! the stream an event without its empty line is discarded. It holds only the current
//! line and the current event, never the stream.

/// One dispatched event: its `event:` name (empty when the stream gave none) and its
/// joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The incremental parser (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    event: String,
    /// The previous piece ended in `\r`: a `\n` first in this one ends nothing.
    after_cr: bool,
    /// Past the first line (the byte order mark can only start the stream).
    started: bool,
}

impl SseParser {
    /// Feeds a piece of the stream; `on_event` gets each event it completes, in order.
    pub fn push(&mut self, mut input: &[u8], mut on_event: impl FnMut(SseEvent)) {
        while !input.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if input[0] == b'\n' {
                    input = &input[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', input) {
                None => {
                    self.line.extend_from_slice(input);
                    return;
                }
                Some(at) => {
                    self.line.extend_from_slice(&input[..at]);
                    self.after_cr = input[at] == b'\r';
                    input = &input[at + 1..];
                    self.end_line(&mut on_event);
                }
            }
        }
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        let mut line = std::mem::take(&mut self.line);
        if !self.started {
            self.started = true;
            if line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
            }
        }
        if line.is_empty() {
            self.dispatch(on_event);
        } else if line[0] != b':' {
            let (field, value) = match memchr::memchr(b':', &line) {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
                b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
                // `id` and `retry` matter to a reconnecting browser, not to a relay.
                _ => {}
            }
        }
        // Keep the allocation for the next line.
        line.clear();
        self.line = line;
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = String::from_utf8_lossy(&self.data).into_owned();
        self.data.clear();
        on_event(SseEvent { event, data });
    }
}

/// Appends `data: <json>` and the empty line that ends the event.
pub(crate) fn write_data(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    out.extend_from_slice(b"data: ");
    // Serializing our own types to a Vec cannot fail (no map with non-string keys).
    serde_json::to_writer(&mut *out, value).expect("serializing a chat chunk");
    out.extend_from_slice(b"\n\n");
}

/// The Chat Completions stream's last event.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn events(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for piece in pieces {
            parser.push(piece, |e| out.push(e));
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn line_ends_of_every_kind_and_pieces_split_anywhere() {
        let text = b"event: a\ndata: 1\n\nevent: b\r\ndata: 2\r\n\r\nevent: c\rdata: 3\r\r";
        let want = vec![ev("a", "1"), ev("b", "2"), ev("c", "3")];
        assert_eq!(events(&[text]), want);
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events(&bytes), want);
        for split in 0..text.len() {
            assert_eq!(
                events(&[&text[..split], &text[split..]]),
                want,
                "split at {split}"
            );
        }
    }

    #[test]
    fn fields_comments_multiline_data_and_bom() {
        let text =
            b"\xEF\xBB\xBF: keep-alive\nevent:x\ndata:no space\ndata:  two\nid: 7\nretry: 10\n\n";
        assert_eq!(events(&[text]), vec![ev("x", "no space\n two")]);
        // "data" without a colon is an empty data line.
        assert_eq!(events(&[b"data\n\n"]), vec![ev("", "")]);
    }

    #[test]
    fn events_without_data_or_without_their_end_are_not_dispatched() {
        assert_eq!(events(&[b"event: ping\n\n"]), vec![]);
        assert_eq!(
            events(&[b"data: 1\n\ndata: unfinished\n"]),
            vec![ev("", "1")]
        );
        // The name does not leak into the next event.
        assert_eq!(events(&[b"event: a\n\ndata: 2\n\n"]), vec![ev("", "2")]);
    }

    #[test]
    fn multibyte_text_split_inside_a_character() {
        let text = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events(&bytes), vec![ev("", "{\"t\":\"héllo ✓\"}")]);
    }
}
