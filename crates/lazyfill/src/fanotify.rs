//! The few fanotify calls the filler needs, over `libc`: a pre-content
//! group, marks on files, reading `FAN_PRE_ACCESS` events with their range,
//! and answering them. Every `unsafe` block is a single system call or a
//! bounds-checked read of a kernel record, with its `SAFETY:` argument.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `FAN_PRE_ACCESS` (kernel ≥ 6.14): before a read/write of a file range.
/// Not in the `libc` crate yet; value from `include/uapi/linux/fanotify.h`.
pub const FAN_PRE_ACCESS: u64 = 0x0010_0000;
/// `FAN_EVENT_INFO_TYPE_RANGE`: the accessed range follows the metadata.
const FAN_EVENT_INFO_TYPE_RANGE: u8 = 6;
/// `FAN_DENY_ERRNO(e)`: deny with a chosen errno (kernel ≥ 6.14).
fn deny_errno(errno: i32) -> u32 {
    libc::FAN_DENY | ((errno as u32) << 24)
}

/// One pre-access event: an fd on the file (opened by the kernel without
/// notification, so reads and writes through it raise no events), the
/// accessing process and the byte range it is about to touch.
#[derive(Debug)]
pub struct Event {
    pub fd: OwnedFd,
    pub pid: i32,
    pub mask: u64,
    /// `(offset, count)`; `None` if the kernel sent no range record.
    pub range: Option<(u64, u64)>,
}

/// A fanotify group of class `FAN_CLASS_PRE_CONTENT`.
#[derive(Debug)]
pub struct Group {
    fd: OwnedFd,
}

fn last_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Group {
    /// A new group; fails with EPERM without CAP_SYS_ADMIN, EINVAL on a
    /// kernel without pre-content events.
    pub fn new() -> std::io::Result<Group> {
        let flags = libc::FAN_CLASS_PRE_CONTENT | libc::FAN_CLOEXEC | libc::FAN_UNLIMITED_QUEUE;
        let event_flags = (libc::O_RDWR | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: plain system call with integer arguments.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(last_error("fanotify_init(FAN_CLASS_PRE_CONTENT)"));
        }
        // SAFETY: fanotify_init returned a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Group { fd })
    }

    /// Wraps an inherited group fd (the guard process).
    pub fn from_fd(fd: OwnedFd) -> Group {
        Group { fd }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn mark(&self, op: libc::c_uint, path: &Path) -> std::io::Result<()> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("path with a NUL byte"))?;
        // SAFETY: valid group fd, valid NUL-terminated path for the call.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                op,
                FAN_PRE_ACCESS,
                libc::AT_FDCWD,
                c_path.as_ptr(),
            )
        };
        if rc < 0 {
            return Err(last_error(&format!("fanotify_mark {}", path.display())));
        }
        Ok(())
    }

    /// Asks for pre-access events on `path` (files opened before this get
    /// none: mark before Postgres starts).
    pub fn add(&self, path: &Path) -> std::io::Result<()> {
        self.mark(libc::FAN_MARK_ADD, path)
    }

    /// Stops events on `path` (it is fully filled).
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.mark(libc::FAN_MARK_REMOVE, path)
    }

    /// Blocks until events arrive and returns them.
    pub fn read_events(&self, buf: &mut [u8]) -> std::io::Result<Vec<Event>> {
        let n = loop {
            // SAFETY: reading into a buffer we own, with its true length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        parse_events(&buf[..n])
    }

    /// Lets the access proceed (the range is filled).
    pub fn allow(&self, event: &Event) -> std::io::Result<()> {
        self.respond(event, libc::FAN_ALLOW)
    }

    /// Fails the access with EIO: a read must never see a hole as a page.
    pub fn deny(&self, event: &Event) -> std::io::Result<()> {
        self.respond(event, deny_errno(libc::EIO))
    }

    fn respond(&self, event: &Event, response: u32) -> std::io::Result<()> {
        let answer = libc::fanotify_response {
            fd: event.fd.as_raw_fd(),
            response,
        };
        let size = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: writing a properly initialised fanotify_response.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&answer as *const libc::fanotify_response).cast::<libc::c_void>(),
                size,
            )
        };
        if n != size as isize {
            return Err(last_error("fanotify response"));
        }
        Ok(())
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Splits a read of the group fd into events; every length is checked.
/// Layout (native endian): `event_len u32, vers u8, reserved u8,
/// metadata_len u16, mask u64, fd i32, pid i32`, then info records
/// `info_type u8, pad u8, len u16, ...`; the range record is
/// `hdr(4), pad u32, offset u64, count u64`.
fn parse_events(mut bytes: &[u8]) -> std::io::Result<Vec<Event>> {
    let bad = |what: &str| std::io::Error::other(format!("fanotify event: {what}"));
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let event_len = u32_at(bytes, 0).ok_or_else(|| bad("short"))? as usize;
        if event_len < 24 || event_len > bytes.len() {
            return Err(bad("bad length"));
        }
        let record = &bytes[..event_len];
        if record[4] != libc::FANOTIFY_METADATA_VERSION {
            return Err(bad("unknown metadata version"));
        }
        let metadata_len = usize::from(u16::from_ne_bytes([record[6], record[7]]));
        let mask = u64_at(record, 8).ok_or_else(|| bad("short"))?;
        let fd = u32_at(record, 16).ok_or_else(|| bad("short"))? as i32;
        let pid = u32_at(record, 20).ok_or_else(|| bad("short"))? as i32;
        let mut range = None;
        let mut info = record.get(metadata_len..).unwrap_or_default();
        while info.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([info[2], info[3]]));
            if len < 4 || len > info.len() {
                break;
            }
            if info[0] == FAN_EVENT_INFO_TYPE_RANGE {
                if let (Some(offset), Some(count)) = (u64_at(info, 8), u64_at(info, 16)) {
                    range = Some((offset, count));
                }
            }
            info = &info[len..];
        }
        if fd >= 0 {
            // SAFETY: the kernel opened this fd for us in the event; we
            // are its only owner.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            events.push(Event {
                fd,
                pid,
                mask,
                range,
            });
        }
        bytes = &bytes[event_len..];
    }
    Ok(events)
}
