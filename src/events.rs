//! Opening `vigil replay` inputs: a file or standard input, gunzipped when
//! the content is gzip, read as JSON lines by
//! [`vigil_core::events::EventReader`].

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use vigil_core::events::{EventReader, ReadError};

/// Large reads keep the per-syscall overhead negligible on multi-million
/// line inputs.
const BUF_CAPACITY: usize = 64 * 1024;

/// An opened input: its display name and its decoded bytes.
pub struct Input<'a> {
    name: String,
    reader: Box<dyn BufRead + 'a>,
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Input<'a> {
    /// The input's display name: its path, or `<stdin>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Iterates over the input's events.
    pub fn events(self) -> EventReader<Box<dyn BufRead + 'a>> {
        EventReader::new(self.reader, self.name)
    }
}

/// Opens `path` for reading events, or `stdin` when `path` is `-`,
/// gunzipping (concatenated members included) when the content starts with
/// the gzip magic bytes.
///
/// Sniffing the content rather than trusting a `.gz` suffix lets a gzipped
/// pipe on stdin work too; JSON text never starts with 0x1f 0x8b.
///
/// # Errors
///
/// [`ReadError::Open`] naming the path if the file cannot be opened, and
/// [`ReadError::Read`] if its first bytes cannot be read.
pub fn open_input<'a>(path: &Path, stdin: impl Read + 'a) -> Result<Input<'a>, ReadError> {
    let (name, raw): (String, Box<dyn Read + 'a>) = if path == Path::new("-") {
        ("<stdin>".to_owned(), Box::new(stdin))
    } else {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_owned(),
            source,
        })?;
        (path.display().to_string(), Box::new(file))
    };

    let decoded = crate::input::ungzip(raw).map_err(|source| ReadError::Read {
        input: name.clone(),
        line: 1,
        source,
    })?;
    let reader: Box<dyn BufRead + 'a> = Box::new(BufReader::with_capacity(BUF_CAPACITY, decoded));
    Ok(Input { name, reader })
}

/// Decoded bytes per chunk handed from the reading thread, and chunks in
/// flight.
const CHUNK_BYTES: usize = 256 * 1024;
const CHUNKS_AHEAD: usize = 4;

/// [`open_input`], with reading and gunzipping on a thread of their own, a
/// few chunks ahead of the caller: `vigil replay` decodes events on one
/// thread and judges on another, and unpacking gzip is a tenth of the
/// decoding thread's work, which this moves to where a core has room.
///
/// The reading thread ends at the end of the input, at the first error
/// (which the returned reader then yields), or when the reader is dropped.
///
/// # Errors
///
/// [`ReadError::Open`] naming the path if the file cannot be opened; read
/// errors, the first bytes' included, come from the reader.
pub fn open_input_prefetched(
    path: &Path,
    stdin: impl Read + Send + 'static,
) -> Result<Input<'static>, ReadError> {
    // (`stdin` is read only when `path` is `-`, as for `open_input`.)
    let (name, raw): (String, Box<dyn Read + Send>) = if path == Path::new("-") {
        ("<stdin>".to_owned(), Box::new(stdin))
    } else {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_owned(),
            source,
        })?;
        (path.display().to_string(), Box::new(file))
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let decoded = match crate::input::ungzip(raw) {
            Ok(decoded) => decoded,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let mut decoded = decoded;
        loop {
            let mut chunk = back_rx.try_recv().unwrap_or_default();
            chunk.resize(CHUNK_BYTES, 0);
            // Fill most of the chunk: a gzip reader returns a few KiB at a
            // time, and each chunk costs a message.
            let mut n = 0;
            let result = loop {
                match decoded.read(&mut chunk[n..]) {
                    Ok(0) => break Ok(()),
                    Ok(k) => {
                        n += k;
                        if n >= CHUNK_BYTES / 2 {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(n);
            if n > 0 && tx.send(Ok(chunk)).is_err() {
                return;
            }
            match result {
                Ok(()) if n == 0 => return,
                Ok(()) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let reader = ChunkReader {
        rx,
        back: back_tx,
        chunk: Vec::new(),
        pos: 0,
        done: false,
    };
    Ok(Input {
        name,
        reader: Box::new(reader),
    })
}

/// The consuming end of [`open_input_prefetched`]: chunks of decoded bytes
/// from the reading thread, each sent back for reuse once read.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && !self.done {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let spent = std::mem::replace(&mut self.chunk, next);
                    self.pos = 0;
                    let _ = self.back.send(spent);
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The reading thread finished: the end of the input.
                Err(_) => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos.min(self.chunk.len())..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount;
    }
}

#[cfg(test)]
mod tests;
