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

#[cfg(test)]
mod tests;
