//! A simulated, in-memory file system for tests and the crash fuzzer.
//!
//! It keeps, for every file, what a reader sees now and what is durable (made so by
//! `sync_data`), and for every directory which entries are durable (made so by `sync_dir`).
//! [`SimFs::crash`] throws away everything that is not durable, as a power cut would.
//! Faults (a failed write, a failed fsync, a full disk) fire at the Nth call of a kind, and
//! [`SimFs::halt_after`] freezes the file system after N more mutations, to crash at every
//! step of a sequence. All randomness comes from the seed, so a run can be replayed.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::fs::{FileBytes, FileSystem, ReadAt, WalFile};

/// A kind of call that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A file append fails with EIO and writes nothing.
    Write,
    /// A file append writes half its bytes, then fails with "no space left".
    NoSpace,
    /// A file `sync_data` fails; the bytes stay as they were, not durable.
    Sync,
    /// A directory sync fails.
    SyncDir,
    /// Creating a file fails.
    Create,
    /// A read through a handle of [`FileSystem::open_read`] fails with EIO. This is the
    /// failure the file seam can report; on a real disk the reads are copies out of a
    /// memory map, and a disk error under one raises SIGBUS instead (see `fs::map_whole`).
    Read,
    /// [`FileSystem::open_read`] fails.
    OpenRead,
}

/// What survives a simulated power cut besides the durable bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what was synced.
    Durable,
    /// Also a prefix, of seeded random length, of the last unsynced append if it directly
    /// followed the durable bytes: the torn write of a real disk.
    TornWrite,
    /// Every file keeps its current length but its unsynced bytes read as zeros: the size
    /// reached the disk, the data did not.
    ZeroFilled,
}

/// How many calls of each kind the file system has served (failed ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounts {
    pub appends: u64,
    pub syncs: u64,
    pub dir_syncs: u64,
    pub creates: u64,
    pub removes: u64,
    pub renames: u64,
}

/// The simulated file system. Cloning shares the same state.
/// Requirements: PER-0018
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync: everything below it is durable already.
    dirty_from: usize,
}

#[derive(Default)]
struct Dir {
    live: BTreeMap<String, usize>,
    durable: BTreeMap<String, usize>,
}

struct State {
    inodes: Vec<Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    rng: u64,
    /// Bumped by every crash; handles opened before it are dead.
    generation: u64,
    counts: SimCounts,
    /// Per fault kind, calls left before it fires (1 = the next call).
    faults: BTreeMap<Fault, u64>,
    /// Mutations left before the file system freezes.
    halt_in: Option<u64>,
    /// The last append not yet synced: inode, offset, bytes.
    last_append: Option<(usize, usize, Vec<u8>)>,
    /// How long a file sync takes, to make group commit observable.
    sync_delay: Duration,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimFs")
            .field("files", &state.inodes.len())
            .field("counts", &state.counts)
            .finish()
    }
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("simulated: {what}"))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().ok_or_else(|| err(io::ErrorKind::InvalidInput, "no parent"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| err(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok((parent.to_path_buf(), name.to_string()))
}

impl State {
    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, seedable, good enough to pick torn lengths.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Counts one mutation against `halt_after`; errors once the file system is frozen.
    fn mutate(&mut self) -> io::Result<()> {
        match self.halt_in {
            Some(0) => Err(err(io::ErrorKind::Other, "file system halted (power cut pending)")),
            Some(ref mut left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// True when the armed fault of this kind fires on this call.
    fn fires(&mut self, fault: Fault) -> bool {
        match self.faults.get_mut(&fault) {
            Some(left) if *left <= 1 => {
                self.faults.remove(&fault);
                true
            }
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<usize> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.live.get(&name))
            .copied()
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file"))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory"))
    }
}

impl SimFs {
    /// An empty file system whose random choices follow `seed`.
    pub fn new(seed: u64) -> SimFs {
        let state = State {
            inodes: Vec::new(),
            dirs: BTreeMap::new(),
            rng: seed,
            generation: 0,
            counts: SimCounts::default(),
            faults: BTreeMap::new(),
            halt_in: None,
            last_append: None,
            sync_delay: Duration::ZERO,
        };
        SimFs { state: Arc::new(Mutex::new(state)) }
    }

    /// Makes the `nth` call of kind `fault` from now fail (1 = the very next one). The fault
    /// fires once; calls after it succeed again.
    pub fn inject(&self, fault: Fault, nth: u64) {
        self.state.lock().faults.insert(fault, nth.max(1));
    }

    /// Lets `n` more mutations (append, sync, create, remove, rename, set_len, dir sync)
    /// through, then fails every later one until [`SimFs::crash`].
    pub fn halt_after(&self, n: u64) {
        self.state.lock().halt_in = Some(n);
    }

    /// Makes every file sync take `delay` (slept outside the lock), like a real disk.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.state.lock().sync_delay = delay;
    }

    pub fn counts(&self) -> SimCounts {
        self.state.lock().counts
    }

    /// A power cut: every file and directory entry falls back to what is durable (plus what
    /// `mode` keeps). Open handles die; faults and the halt are cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = self.state.lock();
        let state = &mut *state;

        let torn = match (mode, state.last_append.take()) {
            (CrashMode::TornWrite, Some((inode, offset, bytes))) => {
                let keep = (state.next_random() % (bytes.len() as u64 + 1)) as usize;
                Some((inode, offset, bytes[..keep].to_vec()))
            }
            _ => None,
        };

        for (index, inode) in state.inodes.iter_mut().enumerate() {
            let len = inode.data.len();
            inode.data = inode.durable.clone();
            if mode == CrashMode::ZeroFilled && len > inode.data.len() {
                inode.data.resize(len, 0);
            }
            if let Some((torn_inode, offset, bytes)) = &torn {
                if *torn_inode == index && *offset == inode.data.len() {
                    inode.data.extend_from_slice(bytes);
                }
            }
            inode.durable = inode.data.clone();
            inode.dirty_from = inode.data.len();
        }
        for dir in state.dirs.values_mut() {
            dir.live = dir.durable.clone();
        }

        state.generation += 1;
        state.faults.clear();
        state.halt_in = None;
    }

    /// Replaces a file's content, durably, creating it if needed: for tests that damage
    /// a log on purpose.
    pub fn put(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state.lock();
        let (dir, name) = split(path).expect("a file path");
        let index = match state.lookup(path) {
            Ok(index) => index,
            Err(_) => {
                state.inodes.push(Inode::default());
                state.inodes.len() - 1
            }
        };
        let entry = state.dirs.entry(dir).or_default();
        entry.live.insert(name.clone(), index);
        entry.durable.insert(name, index);
        let inode = &mut state.inodes[index];
        inode.data = bytes.to_vec();
        inode.durable = bytes.to_vec();
        inode.dirty_from = bytes.len();
    }

    /// The bytes of `path` that would survive a crash right now, if its entry does.
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let (dir, name) = split(path).ok()?;
        let index = *state.dirs.get(&dir)?.durable.get(&name)?;
        Some(state.inodes[index].durable.clone())
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Limitation: directories themselves are always durable; only their entries are not.
        self.state.lock().dirs.entry(dir.to_path_buf()).or_default();
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        let dir = state.dirs.get(dir).ok_or_else(|| err(io::ErrorKind::NotFound, "no dir"))?;
        Ok(dir.live.keys().cloned().collect())
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let state = self.state.lock();
        let index = state.lookup(path)?;
        Ok(FileBytes::owned(state.inodes[index].data.clone()))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut state = self.state.lock();
        state.counts.creates += 1;
        state.mutate()?;
        if state.fires(Fault::Create) {
            return Err(err(io::ErrorKind::Other, "injected create failure"));
        }
        if state.lookup(path).is_ok() {
            return Err(err(io::ErrorKind::AlreadyExists, "file exists"));
        }

        let (dir, name) = split(path)?;
        let index = state.inodes.len();
        state.dir_mut(&dir)?.live.insert(name, index);
        state.inodes.push(Inode::default());
        let generation = state.generation;
        Ok(Box::new(SimFile { state: self.state.clone(), inode: index, generation }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let state = self.state.lock();
        let inode = state.lookup(path)?;
        let generation = state.generation;
        Ok(Box::new(SimFile { state: self.state.clone(), inode, generation }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.counts.renames += 1;
        state.mutate()?;
        let index = state.lookup(from)?;

        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        state.dir_mut(&to_dir)?;
        state.dir_mut(&from_dir)?.live.remove(&from_name);
        state.dir_mut(&to_dir)?.live.insert(to_name, index);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.counts.removes += 1;
        state.mutate()?;
        state.lookup(path)?;
        let (dir, name) = split(path)?;
        state.dir_mut(&dir)?.live.remove(&name);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.counts.dir_syncs += 1;
        state.mutate()?;
        if state.fires(Fault::SyncDir) {
            return Err(err(io::ErrorKind::Other, "injected directory sync failure"));
        }
        let dir = state.dir_mut(dir)?;
        dir.durable = dir.live.clone();
        Ok(())
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadAt>> {
        let mut state = self.state.lock();
        if state.fires(Fault::OpenRead) {
            return Err(err(io::ErrorKind::Other, "injected open failure"));
        }
        let inode = state.lookup(path)?;
        let generation = state.generation;
        Ok(Arc::new(SimFile { state: self.state.clone(), inode, generation }))
    }
}

impl ReadAt for SimFile {
    fn read_at(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        self.check_alive(&state)?;
        if state.fires(Fault::Read) {
            return Err(err(io::ErrorKind::Other, "injected read failure (EIO)"));
        }
        let data = &state.inodes[self.inode].data;
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        match data.get(start..start.saturating_add(len)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(err(io::ErrorKind::UnexpectedEof, "read past end of file")),
        }
    }
}

/// An open simulated file.
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: usize,
    generation: u64,
}

impl SimFile {
    fn check_alive(&self, state: &State) -> io::Result<()> {
        if state.generation != self.generation {
            return Err(err(io::ErrorKind::Other, "handle opened before a crash"));
        }
        Ok(())
    }
}

impl WalFile for SimFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check_alive(&state)?;
        state.counts.appends += 1;
        state.mutate()?;
        if state.fires(Fault::Write) {
            return Err(err(io::ErrorKind::Other, "injected write failure (EIO)"));
        }

        let (written, result) = if state.fires(Fault::NoSpace) {
            let half = buf.len() / 2;
            (half, Err(err(io::ErrorKind::StorageFull, "no space left on device")))
        } else {
            (buf.len(), Ok(()))
        };
        let inode = &mut state.inodes[self.inode];
        let offset = inode.data.len();
        inode.data.extend_from_slice(&buf[..written]);
        inode.dirty_from = inode.dirty_from.min(offset);
        state.last_append = Some((self.inode, offset, buf[..written].to_vec()));
        result
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let delay = self.state.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut state = self.state.lock();
        self.check_alive(&state)?;
        state.counts.syncs += 1;
        state.mutate()?;
        if state.fires(Fault::Sync) {
            return Err(err(io::ErrorKind::Other, "injected fsync failure"));
        }

        let inode = &mut state.inodes[self.inode];
        let from = inode.dirty_from.min(inode.durable.len());
        inode.durable.truncate(from);
        inode.durable.extend_from_slice(&inode.data[from..]);
        inode.dirty_from = inode.data.len();
        if matches!(state.last_append, Some((i, _, _)) if i == self.inode) {
            state.last_append = None;
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check_alive(&state)?;
        state.mutate()?;
        let inode = &mut state.inodes[self.inode];
        let len = len as usize;
        inode.data.resize(len, 0);
        inode.dirty_from = inode.dirty_from.min(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fs: &SimFs, name: &str) -> (PathBuf, Box<dyn WalFile>) {
        let path = PathBuf::from("/d").join(name);
        let handle = fs.create_new(&path).unwrap();
        (path, handle)
    }

    fn setup(seed: u64) -> SimFs {
        let fs = SimFs::new(seed);
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs
    }

    // Verifies: PER-0018
    #[test]
    fn a_crash_keeps_synced_bytes_and_synced_entries_only() {
        let fs = setup(1);
        let (synced, mut a) = file(&fs, "a");
        a.append(b"durable").unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        a.append(b" lost").unwrap();
        let (unlisted, mut b) = file(&fs, "b");
        b.append(b"x").unwrap();
        b.sync_data().unwrap();

        fs.crash(CrashMode::Durable);
        assert_eq!(&*fs.read(&synced).unwrap(), b"durable");
        assert!(fs.read(&unlisted).is_err(), "entry never made durable");
        assert!(a.append(b"more").is_err(), "handles die with the crash");
    }

    // Verifies: PER-0018
    #[test]
    fn renames_and_removals_need_a_directory_sync() {
        let fs = setup(2);
        let (from, mut a) = file(&fs, "a");
        a.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        let to = PathBuf::from("/d/b");
        fs.rename(&from, &to).unwrap();
        assert_eq!(fs.list(Path::new("/d")).unwrap(), ["b"]);

        fs.crash(CrashMode::Durable);
        assert_eq!(fs.list(Path::new("/d")).unwrap(), ["a"]);
        fs.remove(&from).unwrap();
        fs.crash(CrashMode::Durable);
        assert_eq!(fs.list(Path::new("/d")).unwrap(), ["a"]);
    }

    // Verifies: PER-0018
    #[test]
    fn torn_and_zero_filled_crashes_are_deterministic_per_seed() {
        let run = |seed: u64, mode: CrashMode| {
            let fs = setup(seed);
            let (path, mut a) = file(&fs, "a");
            fs.sync_dir(Path::new("/d")).unwrap();
            a.append(b"head").unwrap();
            a.sync_data().unwrap();
            a.append(b"0123456789abcdef").unwrap();
            fs.crash(mode);
            fs.read(&path).unwrap().to_vec()
        };
        let torn: Vec<_> = (0..16).map(|seed| run(seed, CrashMode::TornWrite)).collect();
        for (seed, content) in torn.iter().enumerate() {
            assert_eq!(content, &run(seed as u64, CrashMode::TornWrite));
            assert!(b"head0123456789abcdef".starts_with(content) && content.len() >= 4);
        }
        assert!(torn.iter().any(|c| c.len() != torn[0].len()), "lengths vary with the seed");
        let mut zeros = b"head".to_vec();
        zeros.resize(20, 0);
        assert_eq!(run(0, CrashMode::ZeroFilled), zeros);
    }

    // Verifies: PER-0018
    #[test]
    fn faults_fire_at_the_nth_call_and_halt_freezes_every_mutation() {
        let fs = setup(3);
        let (path, mut a) = file(&fs, "a");
        fs.inject(Fault::Sync, 2);
        a.sync_data().unwrap();
        assert!(a.sync_data().is_err());
        a.sync_data().unwrap();

        fs.inject(Fault::NoSpace, 1);
        let err = a.append(b"abcd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(&*fs.read(&path).unwrap(), b"ab", "a short write");

        fs.halt_after(1);
        a.append(b"x").unwrap();
        assert!(a.append(b"y").is_err());
        assert!(fs.remove(&path).is_err());
        assert_eq!(fs.counts().appends, 3);
    }
}
