//! How the calling thread is scheduled: its nice value relative to the
//! process ([`raise_above_process`], [`lower_to`]), the CPUs it may run on
//! ([`pin_current_thread`], [`unpin_current_thread`]) and its scheduling
//! class ([`set_realtime`]); and kernel CPU lists ([`parse_cpu_list`],
//! [`format_cpu_list`]). The one place the workspace makes these system
//! calls: the WAL receiver raises and places its threads with it, the
//! pageserver lowers its background pool.
//!
//! Linux applies each of these calls to a single thread when given a thread
//! id (0: the caller), not to the whole process. Every call may be refused
//! (no `CAP_SYS_NICE`, a seccomp filter, a cgroup's CPU set); callers log
//! that and carry on, since only speed is at stake.

use std::collections::BTreeSet;
use std::io;

/// A set of CPU numbers.
pub type CpuSet = BTreeSet<usize>;

/// CPU numbers above this are refused (a typo, not a machine).
pub const MAX_CPU: usize = 4095;

/// Parses a kernel CPU list (`0-3,6`, as in `effective_affinity_list`).
/// `None` on anything else; an empty (or all-blank) list is the empty set.
pub fn parse_cpu_list(text: &str) -> Option<CpuSet> {
    let mut cpus = CpuSet::new();
    let text = text.trim();
    if text.is_empty() {
        return Some(cpus);
    }
    for part in text.split(',') {
        let (first, last): (usize, usize) = match part.trim().split_once('-') {
            Some((first, last)) => (first.trim().parse().ok()?, last.trim().parse().ok()?),
            None => {
                let cpu: usize = part.trim().parse().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last > MAX_CPU {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// Writes `cpus` as a kernel CPU list, ranges folded (`0-3,6`).
pub fn format_cpu_list(cpus: &CpuSet) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => runs.push((cpu, cpu)),
        }
    }
    runs.iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs the calling thread may run on.
pub fn current_thread_cpus() -> io::Result<CpuSet> {
    thread_cpus(0)
}

/// The CPUs the process's main thread may run on: what every thread may
/// use unless pinned.
pub fn process_cpus() -> io::Result<CpuSet> {
    thread_cpus(process_id()?)
}

/// The CPUs thread `tid` (0: the calling one) may run on.
#[allow(unsafe_code)]
fn thread_cpus(tid: libc::pid_t) -> io::Result<CpuSet> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size passed is that of `set`, which the call fills.
    let failed =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            != 0;
    if failed {
        return Err(io::Error::last_os_error());
    }
    let slots = 8 * std::mem::size_of::<libc::cpu_set_t>();
    let mut cpus = CpuSet::new();
    for cpu in 0..slots {
        // SAFETY: `cpu` is below the set's capacity in bits.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            cpus.insert(cpu);
        }
    }
    Ok(cpus)
}

/// Restricts the calling thread to `cpus`.
#[allow(unsafe_code)]
pub fn pin_current_thread(cpus: &CpuSet) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let slots = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus.iter().filter(|&&cpu| cpu < slots) {
        // SAFETY: `cpu` is below the set's capacity in bits.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the size passed is that of `set`; pid 0 is the calling thread.
    let failed =
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0;
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the calling thread run wherever the process may (a thread inherits
/// the CPUs of the thread that started it).
pub fn unpin_current_thread() -> io::Result<()> {
    pin_current_thread(&process_cpus()?)
}

/// Puts the calling thread in `SCHED_FIFO` at the lowest real-time
/// priority, with `SCHED_RESET_ON_FORK` (threads it starts begin in the
/// normal class), or back in the normal class. The kernel's real-time
/// throttling bounds what such a thread can take from the others. Needs
/// `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO`).
#[allow(unsafe_code)]
pub fn set_realtime(on: bool) -> io::Result<()> {
    let (policy, priority) = if on {
        (libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a plain system call on the calling thread (pid 0) with a
    // parameter that lives across the call.
    let failed = unsafe { libc::sched_setscheduler(0, policy, &param) } != 0;
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's scheduling policy (`libc::SCHED_*`, without the
/// reset-on-fork flag).
#[allow(unsafe_code)]
pub fn current_policy() -> io::Result<i32> {
    // SAFETY: a plain system call on the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(policy & !libc::SCHED_RESET_ON_FORK)
}

/// The calling thread's nice value.
pub fn current_nice() -> io::Result<i32> {
    nice_of(0)
}

/// The process's nice value (its main thread's): where every thread starts
/// unless the thread that started it was changed.
pub fn process_nice() -> io::Result<i32> {
    nice_of(u32::try_from(process_id()?).map_err(io::Error::other)?)
}

/// Sets the calling thread's nice value `steps` below the process's (a
/// higher priority), at most to -20; a thread started by an already raised
/// thread ends at the same level, not further up. Needs `CAP_SYS_NICE`.
pub fn raise_above_process(steps: i32) -> io::Result<()> {
    set_nice((process_nice()? - steps).max(-20))
}

/// Sets the calling thread's nice value to `nice` (a lower priority), or
/// leaves it where it is if it runs nicer already (as when the whole
/// process was started under `nice`).
pub fn lower_to(nice: i32) -> io::Result<()> {
    let own = current_nice()?;
    if own >= nice {
        return Ok(());
    }
    set_nice(nice)
}

#[allow(unsafe_code)]
fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: a plain system call; with PRIO_PROCESS and 0 Linux applies it
    // to the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0;
    if failed {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The nice value of thread `tid` (0: the calling one).
#[allow(unsafe_code)]
fn nice_of(tid: libc::id_t) -> io::Result<i32> {
    // getpriority returns -1 both for nice -1 and for an error: errno,
    // cleared first, tells them apart.
    // SAFETY: `__errno_location` points at this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: a plain system call.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if nice == -1 {
        let error = io::Error::last_os_error();
        if error.raw_os_error().unwrap_or(0) != 0 {
            return Err(error);
        }
    }
    Ok(nice)
}

fn process_id() -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)
}

#[cfg(test)]
mod tests;
