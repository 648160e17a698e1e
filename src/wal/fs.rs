//! The file layer under the log. Every byte the log reads or writes goes through
//! [`FileSystem`], so tests can swap the real disk for [`super::SimFs`], which injects faults
//! and simulates a power cut.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The operations the log needs from a file system.
/// Requirements: PER-0018
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the files directly in `dir` (not paths).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file, as it is now (not only what is durable).
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Creates a new empty file for appending; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, deletions) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Opens a file for reads at any offset while it may still grow. The handle keeps
    /// reading the same file after it is renamed or deleted.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>>;
}

/// A file opened for reading, shared by every reader of it.
pub trait ReadAt: Send + Sync {
    /// Copies `len` bytes from offset `off`; an error if the file is shorter.
    fn read_at(&self, off: u64, len: usize) -> io::Result<Vec<u8>>;

    /// The file is complete and will never grow: a handle that can may give up its file
    /// descriptor and keep only what it needs to read the bytes there are now.
    fn seal(&self) {}
}

/// A read handle of a new log file, or, if the file cannot be opened for reads, one whose
/// reads fail: the log must go on accepting writes (it needs no read handle for them).
/// Requirements: SYS-0034
pub(crate) fn open_read_or_warn(fs: &dyn FileSystem, path: &Path) -> Arc<dyn ReadAt> {
    match fs.open_read(path) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "could not open a log file for reads; payloads in it answer 503 until restart"
            );
            Arc::new(Unopened(e.to_string()))
        }
    }
}

/// A read handle of a file that could not be opened: every read fails with the reason, so
/// a request for its bytes answers 503 while the log writes on.
pub(crate) struct Unopened(pub(crate) String);

impl ReadAt for Unopened {
    fn read_at(&self, _: u64, _: usize) -> io::Result<Vec<u8>> {
        Err(io::Error::other(format!("the file could not be opened for reads: {}", self.0)))
    }
}

/// An open file the log appends to.
pub trait WalFile: Send {
    /// Appends all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the content durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes; appends continue at `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Writes zeros from the end of what was appended up to `len` bytes, leaving the append
    /// position where it is, so later appends overwrite blocks that already exist. Then an
    /// fdatasync has no file size or block allocation to commit, only data. A layer that
    /// does not preallocate ignores it.
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
}

/// Bytes read from a file: a memory map on a real disk, a copy elsewhere.
pub struct FileBytes(Inner);

enum Inner {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl FileBytes {
    pub fn owned(bytes: Vec<u8>) -> Self {
        FileBytes(Inner::Owned(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Owned(bytes) => bytes,
            Inner::Mapped(map) => map,
        }
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// The real file system, as the log wants it.
pub fn real_fs() -> Arc<dyn FileSystem> {
    Arc::new(RealFs)
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        // Recovery reads the files before the writer starts: nothing writes them meanwhile.
        Ok(match map_unless_empty(&File::open(path)?)? {
            Some(map) => FileBytes(Inner::Mapped(map)),
            None => FileBytes::owned(Vec::new()),
        })
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile { file, pos: 0, len: 0 }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(RealFile { file, pos: len, len }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let file = File::open(path)?;
        let mapped = Mapped { file: Some(file), map: None };
        Ok(Arc::new(MappedFile {
            path: path.to_path_buf(),
            state: parking_lot::Mutex::new(mapped),
        }))
    }
}

/// A file read through a memory map of it, mapped again when a read goes past the end of
/// the current map (the active segment grows while it is read). Once sealed it keeps only
/// a map of the whole file: a map holds no file descriptor.
struct MappedFile {
    path: std::path::PathBuf,
    state: parking_lot::Mutex<Mapped>,
}

struct Mapped {
    /// Open until the file is sealed and mapped whole.
    file: Option<File>,
    map: Option<Arc<memmap2::Mmap>>,
}

/// Maps all of `file`; `None` when it is empty, as mapping an empty file fails on some
/// platforms.
fn map_unless_empty(file: &File) -> io::Result<Option<memmap2::Mmap>> {
    match file.metadata()?.len() {
        0 => Ok(None),
        _ => map_whole(file).map(Some),
    }
}

/// Maps all of `file`.
fn map_whole(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the log only ever appends to its files, and every byte a reader asks for
    // was written and acknowledged before: nothing changes or cuts it while it is mapped.
    // (A failed log cuts unacknowledged bytes only.) Deleting the file leaves the map valid.
    // Limitation: another process truncating a log file under the server would make a
    // read fault (SIGBUS); the data directory must belong to one server.
    // Limitation: reads are copies out of this map, so a disk error on a page that is not
    // in the page cache raises SIGBUS and stops the server, instead of failing the one
    // request with 503 as a failed read() would.
    unsafe { memmap2::Mmap::map(file) }
}

impl MappedFile {
    /// A map that covers `end`, the current one if it does.
    fn map_covering(&self, end: u64) -> io::Result<Arc<memmap2::Mmap>> {
        let mut state = self.state.lock();
        if let Some(m) = state.map.as_ref().filter(|m| m.len() as u64 >= end) {
            return Ok(m.clone());
        }
        let past_end = || io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file");
        // Sealed (no file left), the map is the whole file.
        let file = state.file.as_ref().ok_or_else(past_end)?;
        if file.metadata()?.len() < end {
            return Err(past_end());
        }
        let fresh = Arc::new(map_whole(file)?);
        state.map = Some(fresh.clone());
        Ok(fresh)
    }
}

impl ReadAt for MappedFile {
    fn read_at(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = off
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        let map = self.map_covering(end)?;
        // Limitation: this copy is where a disk error under the map surfaces, as SIGBUS
        // (see `map_whole`), not as an error to return.
        Ok(map[off as usize..end as usize].to_vec())
    }

    fn seal(&self) {
        let mut state = self.state.lock();
        let Some(file) = state.file.as_ref() else { return };
        match map_unless_empty(file) {
            Ok(map) => {
                state.map = map.map(Arc::new);
                state.file = None;
            }
            // Kept open: reads map it on demand, as before the seal.
            Err(e) => tracing::warn!(
                file = %self.path.display(),
                error = %e,
                "could not map a complete log file; it keeps its file descriptor"
            ),
        }
    }
}

/// Writes are positional: the end of what was appended (`pos`) may sit before the end of
/// the file (`len`) when zeros were preallocated after it.
struct RealFile {
    file: File,
    pos: u64,
    len: u64,
}

impl WalFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        (self.pos, self.len) = (len, len);
        Ok(())
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        // Real zeros, not fallocate: blocks fallocate reserves are marked unwritten, and
        // the first write into each would again be a metadata change for fdatasync.
        const CHUNK: usize = 64 * 1024;
        let zeros = [0u8; CHUNK];
        while self.len < len {
            let n = (len - self.len).min(CHUNK as u64) as usize;
            self.file.write_all_at(&zeros[..n], self.len)?;
            self.len += n as u64;
        }
        Ok(())
    }
}
