//! Which CPUs the streaming thread runs on: by default the ones that take
//! the completion interrupts of the disk holding its WAL store.
//!
//! Every commit of an endpoint waits for one fsync of the store, issued by
//! the streaming thread, which then sleeps until the disk's completion
//! interrupt wakes it. When that interrupt lands on another CPU, the wake-up
//! goes through an inter-processor interrupt, and if the thread's CPU was
//! idle (halted, on a VM an exit to the host) it first has to be woken. On a
//! single-queue virtio disk of a 2-vCPU VM (`fdatasync` of a 512-byte append,
//! one thread, 0.3 ms apart, the pattern a commit stream makes) that was
//! 670 µs on the other CPU against 210 µs on the interrupt's own CPU, 40 vs
//! 22 µs back to back; pinning the streaming thread there raised an
//! endpoint's pgbench -c 4 by 14–16% (#16). Disks with a queue per CPU
//! (NVMe) complete on the submitting CPU already: their interrupts cover
//! every CPU and the thread is left unpinned.
//!
//! [`Placement`] is the setting (`auto`, `any`, or a CPU list);
//! [`interrupt_cpus`] finds the disk behind a directory
//! (`/sys/dev/block/MAJ:MIN`, through partitions and device-mapper/md
//! layers), the interrupts of the device that serves it (`msi_irqs` or `irq`
//! of its nearest ancestor that has them), keeps those that carry its
//! traffic (at least 1/16 of the busiest one's count in `/proc/interrupts`,
//! which drops configuration and admin vectors) and returns their effective
//! affinity. The thread is placed again at the start of every connection,
//! so an interrupt moved since (by irqbalance, say) is followed at the next
//! reconnect. The parsing and the decision ([`choose`]) are pure functions;
//! [`interrupt_cpus`] reads the system, [`place_streaming_thread`] changes
//! it (through `threadsched`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use threadsched::CpuSet;
use threadsched::{format_cpu_list, parse_cpu_list};

/// Interrupts below this fraction of the device's busiest one are not its
/// completion queues (virtio `config`, NVMe admin queue).
const QUIET_INTERRUPT_DIVISOR: u64 = 16;
/// Device-mapper/md stacks deeper than this are not followed.
const MAX_STACK_DEPTH: usize = 8;

/// Where the streaming thread may run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// Near the completion interrupts of the store's disk, when those land
    /// on fewer CPUs than the process may use; else anywhere.
    #[default]
    NearDiskInterrupts,
    /// Wherever the scheduler puts it.
    Anywhere,
    /// On these CPUs (those the process may not use are ignored).
    Cpus(CpuSet),
}

/// A `wal_stream_cpus` value that is neither `auto`, `any` nor a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CPU placement: expected \"auto\", \"any\" or a CPU list such as \"1\" or \"0-3,6\"")]
pub struct PlacementParseError(pub String);

impl FromStr for Placement {
    type Err = PlacementParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "auto" => Ok(Placement::NearDiskInterrupts),
            "any" => Ok(Placement::Anywhere),
            list => parse_cpu_list(list)
                .filter(|cpus| !cpus.is_empty())
                .map(Placement::Cpus)
                .ok_or_else(|| PlacementParseError(text.to_owned())),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::NearDiskInterrupts => f.write_str("auto"),
            Placement::Anywhere => f.write_str("any"),
            Placement::Cpus(cpus) => f.write_str(&format_cpu_list(cpus)),
        }
    }
}

/// Total count per interrupt number from `/proc/interrupts` text (named
/// lines such as `NMI:` are skipped; so is anything unparsable).
pub fn parse_interrupt_counts(text: &str) -> BTreeMap<u32, u64> {
    let mut lines = text.lines();
    let cpu_columns = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    let mut counts = BTreeMap::new();
    for line in lines {
        let Some((number, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(number) = number.trim().parse::<u32>() else {
            continue;
        };
        let total = rest
            .split_whitespace()
            .take(cpu_columns)
            .map_while(|count| count.parse::<u64>().ok())
            .sum();
        counts.insert(number, total);
    }
    counts
}

/// One interrupt of the disk's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInterrupt {
    /// Interrupt number.
    pub number: u32,
    /// How often it fired since boot.
    pub count: u64,
    /// CPUs it is delivered to.
    pub cpus: CpuSet,
}

/// The CPUs to pin to, given the device's interrupts and the CPUs the
/// process may use: those that take the interrupts carrying the device's
/// traffic, if that is a strict, non-empty subset of `allowed`. `None` means
/// pinning would gain nothing (the interrupts reach every allowed CPU, never
/// fired, or land only on CPUs the process may not use).
pub fn choose(interrupts: &[DeviceInterrupt], allowed: &CpuSet) -> Option<CpuSet> {
    let busiest = interrupts.iter().map(|irq| irq.count).max()?;
    if busiest == 0 {
        return None;
    }
    let threshold = busiest.div_ceil(QUIET_INTERRUPT_DIVISOR);
    let near: CpuSet = interrupts
        .iter()
        .filter(|irq| irq.count >= threshold)
        .flat_map(|irq| irq.cpus.iter().copied())
        .filter(|cpu| allowed.contains(cpu))
        .collect();
    (!near.is_empty() && near.len() < allowed.len()).then_some(near)
}

/// What [`interrupt_cpus`] found out about a directory's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInterrupts {
    /// The disks (after partitions and device-mapper/md layers), by name.
    pub disks: Vec<String>,
    /// Their devices' interrupts.
    pub interrupts: Vec<DeviceInterrupt>,
}

/// Why a directory's disk interrupts could not be found: the thread then
/// runs anywhere.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The directory could not be examined.
    #[error("cannot stat {path}: {source}")]
    Stat {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The filesystem is not on a block device the kernel lists (tmpfs,
    /// overlay, a network filesystem).
    #[error("{path} is not on a block device listed in {sys}")]
    NoBlockDevice {
        /// The directory.
        path: PathBuf,
        /// Where it was looked up.
        sys: PathBuf,
    },
    /// No interrupt of the disk's device was found.
    #[error("no interrupts found for disk {0}")]
    NoInterrupts(String),
    /// `/proc/interrupts` could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the kernel's views are mounted (`/sys`, `/proc`; tests use a tree of
/// their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelViews {
    /// sysfs.
    pub sys: PathBuf,
    /// procfs.
    pub proc: PathBuf,
}

impl Default for KernelViews {
    fn default() -> Self {
        KernelViews {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// The disks under `dir` and their devices' interrupts.
pub fn interrupt_cpus(dir: &Path, views: &KernelViews) -> Result<DiskInterrupts, PlacementError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(dir).map_err(|source| PlacementError::Stat {
        path: dir.to_owned(),
        source,
    })?;
    let dev = metadata.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let block = std::fs::canonicalize(views.sys.join(format!("dev/block/{major}:{minor}")))
        .map_err(|_| PlacementError::NoBlockDevice {
            path: dir.to_owned(),
            sys: views.sys.clone(),
        })?;
    let mut disks = Vec::new();
    collect_disks(&block, 0, &mut disks);
    let mut numbers = BTreeSet::new();
    for disk in &disks {
        numbers.extend(device_interrupt_numbers(disk, &views.sys));
    }
    let names: Vec<String> = disks
        .iter()
        .map(|disk| file_name(disk).to_owned())
        .collect();
    if numbers.is_empty() {
        return Err(PlacementError::NoInterrupts(names.join(",")));
    }
    let proc_interrupts = views.proc.join("interrupts");
    let counts = std::fs::read_to_string(&proc_interrupts)
        .map(|text| parse_interrupt_counts(&text))
        .map_err(|source| PlacementError::Proc {
            path: proc_interrupts,
            source,
        })?;
    let interrupts = numbers
        .into_iter()
        .map(|number| DeviceInterrupt {
            number,
            count: counts.get(&number).copied().unwrap_or(0),
            cpus: interrupt_affinity(&views.proc, number),
        })
        .collect();
    Ok(DiskInterrupts {
        disks: names,
        interrupts,
    })
}

/// The whole disks under a block device: a partition's parent; the members
/// of a device-mapper or md device (its `slaves`), recursively.
fn collect_disks(block: &Path, depth: usize, disks: &mut Vec<PathBuf>) {
    let disk = match block.parent() {
        Some(parent) if block.join("partition").exists() => parent.to_owned(),
        _ => block.to_owned(),
    };
    let members: Vec<PathBuf> = std::fs::read_dir(disk.join("slaves"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::canonicalize(entry.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if members.is_empty() || depth >= MAX_STACK_DEPTH {
        if !disks.contains(&disk) {
            disks.push(disk);
        }
        return;
    }
    for member in members {
        collect_disks(&member, depth + 1, disks);
    }
}

/// The interrupts of the device serving `disk`: those of the nearest
/// ancestor of its `device` that lists any (a PCI function's `msi_irqs`, or
/// a legacy `irq`), below `sys/devices`.
fn device_interrupt_numbers(disk: &Path, sys: &Path) -> Vec<u32> {
    let Ok(device) = std::fs::canonicalize(disk.join("device")) else {
        return Vec::new();
    };
    let top = std::fs::canonicalize(sys.join("devices")).unwrap_or_else(|_| sys.join("devices"));
    let mut current = Some(device.as_path());
    while let Some(dir) = current.filter(|dir| dir.starts_with(&top) && *dir != top) {
        let msi: Vec<u32> = std::fs::read_dir(dir.join("msi_irqs"))
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if !msi.is_empty() {
            return msi;
        }
        let legacy = std::fs::read_to_string(dir.join("irq"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|&irq| irq != 0);
        if let Some(irq) = legacy {
            return vec![irq];
        }
        current = dir.parent();
    }
    Vec::new()
}

/// The CPUs an interrupt is delivered to: its effective affinity where the
/// kernel reports one, else the allowed one; empty if neither is readable.
fn interrupt_affinity(proc: &Path, number: u32) -> CpuSet {
    let dir = proc.join(format!("irq/{number}"));
    ["effective_affinity_list", "smp_affinity_list"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        .filter_map(|text| parse_cpu_list(&text))
        .find(|cpus| !cpus.is_empty())
        .unwrap_or_default()
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("?")
}

/// Lets the calling thread run wherever the process may: threads started by
/// the pinned streaming thread (the sink, the trim thread, the blocking
/// pool of its runtime) inherit its CPUs, and their work belongs on all of
/// them, not on the one the commits wait for.
pub(crate) fn unpin_current_thread() {
    if let Err(error) = threadsched::unpin_current_thread() {
        tracing::warn!(%error, "cannot let a WAL thread run on every CPU");
    }
}

/// Where [`place_streaming_thread`] put the calling thread, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The CPUs it may run on now; `None`: every CPU the process may use.
    pub(crate) cpus: Option<CpuSet>,
    /// Why, for the log.
    pub(crate) reason: String,
}

/// Places the calling thread (the streaming thread of the store in
/// `store_dir`) as `placement` says. Called at the start of every
/// connection, so an interrupt moved since (by irqbalance, say) is followed
/// at the next reconnect. Never fails: a thread that cannot be placed runs
/// where it ran.
pub(crate) fn place_streaming_thread(placement: &Placement, store_dir: &Path) -> Placed {
    let anywhere = |reason: String| Placed { cpus: None, reason };
    if *placement == Placement::Anywhere {
        return anywhere("wal_stream_cpus = any".to_owned());
    }
    let allowed = match threadsched::process_cpus() {
        Ok(allowed) => allowed,
        Err(error) => return anywhere(format!("cannot read the process's CPUs: {error}")),
    };
    let (target, reason) = match placement {
        Placement::Cpus(cpus) => {
            let usable: CpuSet = cpus.intersection(&allowed).copied().collect();
            let reason = format!("wal_stream_cpus = {}", format_cpu_list(cpus));
            ((!usable.is_empty()).then_some(usable), reason)
        }
        _ => match interrupt_cpus(store_dir, &KernelViews::default()) {
            Ok(found) => {
                let near = choose(&found.interrupts, &allowed);
                let irqs: Vec<String> = found
                    .interrupts
                    .iter()
                    .map(|irq| {
                        let cpus = format_cpu_list(&irq.cpus);
                        format!("IRQ {} on CPU {cpus}, {} times", irq.number, irq.count)
                    })
                    .collect();
                let reason = format!(
                    "completion interrupts of disk {}: {}",
                    found.disks.join(","),
                    irqs.join("; ")
                );
                (near, reason)
            }
            Err(error) => (None, error.to_string()),
        },
    };
    if let Err(error) = threadsched::pin_current_thread(target.as_ref().unwrap_or(&allowed)) {
        return anywhere(format!("cannot set the thread's CPUs: {error}"));
    }
    // A pinned thread cannot move to an idle CPU when its own is busy; in
    // the real-time class it preempts what runs there instead of waiting
    // for its turn (on the 2-vCPU VM, pinned without it, the slowest 0.1%
    // of pgbench transactions took 9–12 ms against 5–9 ms unpinned; with
    // it, 5–9 ms). It blocks on the socket and on fsync between short
    // appends, so it never holds a CPU for long. Refused (no
    // `CAP_SYS_NICE`), the thread keeps its raised nice value.
    let realtime = threadsched::set_realtime(target.is_some());
    let reason = match (&target, realtime) {
        (Some(_), Ok(())) => format!("{reason}; SCHED_FIFO"),
        (Some(_), Err(error)) => format!("{reason}; not SCHED_FIFO: {error}"),
        (None, _) => reason,
    };
    Placed {
        cpus: target,
        reason,
    }
}

#[cfg(test)]
mod tests;
