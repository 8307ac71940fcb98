//! A streaming reader of `multipart/…` bodies (RFC 2046), which is how other servers answer
//! federation media requests: a JSON part, then the file (or a `Location` to fetch it from).
//!
//! A part's headers are read whole (bounded); its content is handed on in chunks as they
//! arrive, holding back only the bytes that could be the start of the next delimiter, so a file
//! of any size passes through a buffer of one incoming chunk plus the delimiter's length. A body
//! that ends before the delimiter closing a part is an error, never a shorter file. Pure: it reads
//! a stream of chunks and does no IO of its own.

use futures_util::{Stream, StreamExt};

/// The most bytes of one part's header lines.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most bytes between a delimiter and the end of its line (transport padding).
const MAX_PADDING_BYTES: usize = 1024;

/// Why a multipart body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    #[error("a part is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Body(String),
}

/// The headers of one part, names in lower case.
#[derive(Debug, Default)]
pub struct PartHeaders(Vec<(String, String)>);

impl PartHeaders {
    /// The value of the first header called `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the content of the current part (or the preamble, before the first part).
    Content,
    /// A delimiter was read; the rest of its line and the next part's headers follow.
    Boundary,
    /// The closing delimiter was read, or reading failed.
    Done,
}

/// Reads the parts of a multipart body one after the other: `next_part` for the headers, then
/// `next_chunk`, `read_to_end` or `into_content` for the content.
pub struct MultipartReader<S> {
    body: S,
    /// `CRLF--boundary`. The body is read as if it began with a CRLF, so the first boundary
    /// (which may open the body) is found like every other.
    delimiter: Vec<u8>,
    /// Bytes read but not handed on yet: at most one incoming chunk plus a delimiter's length.
    buf: Vec<u8>,
    state: State,
}

impl<S, B, E> MultipartReader<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    pub fn new(body: S, boundary: &str) -> MultipartReader<S> {
        MultipartReader {
            body,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: b"\r\n".to_vec(),
            state: State::Content,
        }
    }

    /// Skips what is left of the current part and reads the next part's headers; `None` after
    /// the closing delimiter.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        while self.next_chunk().await?.is_some() {}
        if self.state == State::Done {
            return Ok(None);
        }
        let outcome = self.read_headers().await;
        self.state = match &outcome {
            Ok(Some(_)) => State::Content,
            Ok(None) | Err(_) => State::Done,
        };
        outcome
    }

    async fn read_headers(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(MultipartError::Malformed("the body ended after a boundary"));
            }
        }
        if self.buf.starts_with(b"--") {
            // The closing delimiter; the epilogue, if any, is of no interest.
            return Ok(None);
        }
        let padding = self.read_line(MAX_PADDING_BYTES).await?;
        if padding.iter().any(|b| !matches!(b, b' ' | b'\t')) {
            return Err(MultipartError::Malformed("text after a boundary"));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut left = MAX_HEADER_BYTES;
        loop {
            let line = self.read_line(left).await?;
            left -= line.len();
            if line.is_empty() {
                return Ok(Some(PartHeaders(headers)));
            }
            let line = String::from_utf8_lossy(&line);
            if line.starts_with([' ', '\t']) {
                // A folded line continues the header before it.
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(MultipartError::Malformed("a header line without a colon"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }

    /// The next chunk of the current part's content; `None` once the delimiter ending it is read.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, MultipartError> {
        while self.state == State::Content {
            if let Some(at) = find(&self.buf, &self.delimiter) {
                let rest = self.buf.split_off(at + self.delimiter.len());
                let mut content = std::mem::replace(&mut self.buf, rest);
                content.truncate(at);
                self.state = State::Boundary;
                return Ok((!content.is_empty()).then_some(content));
            }
            // Only the last bytes could be the start of a delimiter; the rest is content.
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let rest = self.buf.split_off(self.buf.len() - keep);
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            if !self.fill().await? {
                self.state = State::Done;
                return Err(MultipartError::Malformed("the body ended inside a part"));
            }
        }
        Ok(None)
    }

    /// The rest of the current part's content, refusing more than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, MultipartError> {
        let mut content = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if content.len() + chunk.len() > limit {
                self.state = State::Done;
                return Err(MultipartError::TooLarge(limit));
            }
            content.extend_from_slice(&chunk);
        }
        Ok(content)
    }

    /// The rest of the current part's content as a stream, which ends with an error if the body
    /// does.
    pub fn into_content(self) -> impl Stream<Item = Result<Vec<u8>, MultipartError>> {
        futures_util::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// A line without its CRLF, of at most `limit` bytes.
    async fn read_line(&mut self, limit: usize) -> Result<Vec<u8>, MultipartError> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                if at > limit {
                    break;
                }
                let mut line: Vec<u8> = self.buf.drain(..at + 2).collect();
                line.truncate(at);
                return Ok(line);
            }
            if self.buf.len() > limit + 1 {
                break;
            }
            if !self.fill().await? {
                return Err(MultipartError::Malformed(
                    "the body ended inside a part's headers",
                ));
            }
        }
        Err(MultipartError::Malformed("a part's headers are too long"))
    }

    /// Appends the next non-empty chunk of the body; `false` at its end.
    async fn fill(&mut self) -> Result<bool, MultipartError> {
        while let Some(chunk) = self.body.next().await {
            let chunk = chunk.map_err(|e| MultipartError::Body(e.to_string()))?;
            if !chunk.as_ref().is_empty() {
                self.buf.extend_from_slice(chunk.as_ref());
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The `boundary` parameter of a `multipart/…` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim().to_ascii_lowercase();
    if !essence.starts_with("multipart/") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        (name.trim().eq_ignore_ascii_case("boundary"))
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, String>>>;

    fn split_at(body: &[u8], cuts: &[usize]) -> Chunks {
        let mut chunks = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            chunks.push(Ok(body[from..cut].to_vec()));
            from = cut;
        }
        futures_util::stream::iter(chunks)
    }

    /// Every part's headers and content, or the first error.
    async fn read_all(body: Chunks) -> Result<Vec<(PartHeaders, Vec<u8>)>, MultipartError> {
        let mut reader = MultipartReader::new(body, "xyz");
        let mut parts = Vec::new();
        while let Some(headers) = reader.next_part().await? {
            let mut content = Vec::new();
            while let Some(chunk) = reader.next_chunk().await? {
                assert!(!chunk.is_empty());
                content.extend_from_slice(&chunk);
                assert!(
                    reader.buf.len() < reader.delimiter.len() || reader.state != State::Content
                );
            }
            parts.push((headers, content));
        }
        Ok(parts)
    }

    const ANSWER: &[u8] = b"preamble\r\n--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n\
--xyz  \r\nContent-Type: text/plain\r\nContent-Disposition: attachment;\r\n filename=a.txt\r\n\r\n\
line one\r\n--not the boundary\r\n-\r\n--xy\r\n\r\n--xyz--\r\nepilogue";

    fn check_answer(parts: &[(PartHeaders, Vec<u8>)]) {
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.get("content-type"), Some("application/json"));
        assert_eq!(parts[0].1, b"{}");
        assert_eq!(parts[1].0.get("content-type"), Some("text/plain"));
        assert_eq!(
            parts[1].0.get("content-disposition"),
            Some("attachment; filename=a.txt")
        );
        assert_eq!(
            parts[1].1,
            b"line one\r\n--not the boundary\r\n-\r\n--xy\r\n".as_slice()
        );
    }

    #[tokio::test]
    async fn parts_read_the_same_wherever_the_chunks_break() {
        for first in 0..=ANSWER.len() {
            for second in first..=ANSWER.len() {
                let parts = read_all(split_at(ANSWER, &[first, second])).await.unwrap();
                check_answer(&parts);
            }
        }
        let bytes: Vec<usize> = (1..ANSWER.len()).collect();
        check_answer(&read_all(split_at(ANSWER, &bytes)).await.unwrap());
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_not_a_shorter_file() {
        let end = ANSWER.len() - b"\r\n--xyz--\r\nepilogue".len();
        for cut in 0..end {
            let mut cuts: Vec<usize> = (1..cut).collect();
            cuts.push(cut);
            let mut reader = MultipartReader::new(split_at(&ANSWER[..cut], &cuts), "xyz");
            let outcome = async {
                while reader.next_part().await?.is_some() {
                    while reader.next_chunk().await?.is_some() {}
                }
                Ok::<_, MultipartError>(())
            }
            .await;
            assert!(outcome.is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn content_streams_before_the_body_ends() {
        let head = b"--xyz\r\n\r\n{}\r\n--xyz\r\nContent-Type: application/octet-stream\r\n\r\n";
        let mut chunks: Vec<Result<Vec<u8>, String>> = vec![Ok(head.to_vec())];
        chunks.extend((0..100).map(|i| Ok(vec![i as u8; 1000])));
        chunks.push(Err("connection reset".into()));
        let mut reader = MultipartReader::new(futures_util::stream::iter(chunks), "xyz");
        reader.next_part().await.unwrap().unwrap();
        assert_eq!(reader.read_to_end(64).await.unwrap(), b"{}");
        let headers = reader.next_part().await.unwrap().unwrap();
        assert_eq!(
            headers.get("content-type"),
            Some("application/octet-stream")
        );
        let mut content = Box::pin(reader.into_content());
        let mut received = 0;
        while let Some(chunk) = content.next().await {
            match chunk {
                Ok(chunk) => received += chunk.len(),
                Err(e) => {
                    assert!(matches!(e, MultipartError::Body(_)), "{e}");
                    break;
                }
            }
        }
        // All but the held-back tail arrived before the body failed.
        assert!(received >= 100 * 1000 - "\r\n--xyz".len(), "{received}");
        assert!(content.next().await.is_none());
    }

    #[tokio::test]
    async fn limits_hold() {
        let big = [b"--xyz\r\n\r\n".as_slice(), &[b'a'; 100], b"\r\n--xyz--"].concat();
        let mut reader = MultipartReader::new(split_at(&big, &[20, 50]), "xyz");
        reader.next_part().await.unwrap().unwrap();
        assert!(matches!(
            reader.read_to_end(99).await,
            Err(MultipartError::TooLarge(99))
        ));

        let long_header = format!("--xyz\r\nX: {}\r\n\r\n\r\n--xyz--", "h".repeat(20_000));
        let mut reader = MultipartReader::new(split_at(long_header.as_bytes(), &[]), "xyz");
        assert!(matches!(
            reader.next_part().await,
            Err(MultipartError::Malformed(_))
        ));
        assert!(reader.next_part().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn odd_but_valid_shapes_are_read() {
        // No preamble, a part without headers, a closing delimiter without a line end.
        let body = b"--xyz\r\n\r\n\r\n--xyz\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--xyz--";
        let parts = read_all(split_at(body, &[3])).await.unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].1.is_empty());
        assert_eq!(parts[1].0.get("location"), Some("https://cdn.example/x"));
        assert!(parts[1].1.is_empty());

        for bad in [
            b"no boundary at all".as_slice(),
            b"--xyz junk\r\n\r\n\r\n--xyz--",
            b"--xyz\r\nno colon\r\n\r\n\r\n--xyz--",
        ] {
            assert!(read_all(split_at(bad, &[])).await.is_err());
        }
    }

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=\"xyz\"").as_deref(),
            Some("xyz")
        );
        assert_eq!(
            boundary_of("Multipart/Mixed;charset=x; Boundary=abc").as_deref(),
            Some("abc")
        );
        assert!(boundary_of("application/json").is_none());
        assert!(boundary_of("multipart/mixed").is_none());
    }
}
