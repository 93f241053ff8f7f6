use proptest::prelude::*;

use super::*;

fn cpus(list: &[usize]) -> CpuSet {
    list.iter().copied().collect()
}

/// Whether the tests run with the privileges to raise priorities.
#[allow(unsafe_code)]
fn root() -> bool {
    // SAFETY: `geteuid` has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn cpu_lists_parse_as_the_kernel_writes_them() {
    assert_eq!(parse_cpu_list("1"), Some(cpus(&[1])));
    assert_eq!(parse_cpu_list("0-3,6\n"), Some(cpus(&[0, 1, 2, 3, 6])));
    assert_eq!(parse_cpu_list(" 2 - 3 , 5 "), Some(cpus(&[2, 3, 5])));
    assert_eq!(parse_cpu_list(""), Some(CpuSet::new()));
    for bad in ["x", "3-1", "1,,2", "-1", "0-99999", "1-", "ff"] {
        assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
    }
    assert_eq!(format_cpu_list(&cpus(&[0, 1, 2, 3, 6, 8, 9])), "0-3,6,8-9");
}

proptest! {
    #[test]
    fn cpu_lists_round_trip(set in proptest::collection::btree_set(0usize..200, 0..40)) {
        prop_assert_eq!(parse_cpu_list(&format_cpu_list(&set)), Some(set));
    }

    #[test]
    fn no_text_makes_the_parser_panic(text in "\\PC{0,60}") {
        let _ = parse_cpu_list(&text);
    }
}

#[test]
fn a_pin_holds_for_the_thread_and_those_it_starts_until_let_go() {
    std::thread::spawn(|| {
        let all = process_cpus().unwrap();
        assert_eq!(current_thread_cpus().unwrap(), all);
        let last = *all.iter().next_back().unwrap();
        pin_current_thread(&cpus(&[last])).unwrap();
        assert_eq!(current_thread_cpus().unwrap(), cpus(&[last]));
        let child = std::thread::spawn(move || {
            let inherited = current_thread_cpus().unwrap();
            unpin_current_thread().unwrap();
            (inherited, current_thread_cpus().unwrap())
        });
        assert_eq!(child.join().unwrap(), (cpus(&[last]), all.clone()));
        // Only that thread: the process keeps all its CPUs.
        assert_eq!(process_cpus().unwrap(), all);
    })
    .join()
    .unwrap();
    // No CPU the machine has: refused, the thread unchanged.
    std::thread::spawn(|| {
        let before = current_thread_cpus().unwrap();
        assert!(pin_current_thread(&cpus(&[MAX_CPU + 1])).is_err());
        assert_eq!(current_thread_cpus().unwrap(), before);
    })
    .join()
    .unwrap();
}

#[test]
fn a_raised_thread_sits_steps_above_the_process_and_its_children_no_further() {
    let (before, once, child) = std::thread::spawn(|| {
        let before = current_nice().unwrap();
        let raised = raise_above_process(5);
        let once = current_nice().unwrap();
        let child = std::thread::spawn(|| {
            let _ = raise_above_process(5);
            current_nice().unwrap()
        })
        .join()
        .unwrap();
        (before, (raised.is_ok(), once), child)
    })
    .join()
    .unwrap();
    let process = process_nice().unwrap();
    let wanted = (process - 5).max(-20);
    if root() {
        assert_eq!(once, (true, wanted), "nice {before}");
    } else {
        assert!(
            once.1 == wanted || once.1 == before,
            "nice {before} -> {once:?}"
        );
    }
    assert_eq!(child, once.1);
    // Only those threads: this one keeps its value.
    assert_eq!(current_nice().unwrap(), before);
}

#[test]
fn a_lowered_thread_never_goes_back_up() {
    let (lowered, again) = std::thread::spawn(|| {
        let own = current_nice().unwrap();
        lower_to(own.max(10)).unwrap();
        let lowered = current_nice().unwrap();
        // Asking for less than it has already changes nothing.
        lower_to(lowered - 5).unwrap();
        (lowered, current_nice().unwrap())
    })
    .join()
    .unwrap();
    assert!(lowered >= 10, "{lowered}");
    assert_eq!(again, lowered);
}

#[test]
fn the_realtime_class_is_the_thread_s_alone_and_reversible() {
    std::thread::spawn(|| {
        assert_eq!(current_policy().unwrap(), libc::SCHED_OTHER);
        match set_realtime(true) {
            Ok(()) => {
                assert_eq!(current_policy().unwrap(), libc::SCHED_FIFO);
                // Threads it starts begin in the normal class.
                let child = std::thread::spawn(|| current_policy().unwrap());
                assert_eq!(child.join().unwrap(), libc::SCHED_OTHER);
                set_realtime(false).unwrap();
                assert_eq!(current_policy().unwrap(), libc::SCHED_OTHER);
            }
            Err(error) => assert!(!root(), "refused as root: {error}"),
        }
    })
    .join()
    .unwrap();
    assert_eq!(current_policy().unwrap(), libc::SCHED_OTHER);
}
