use std::os::unix::fs::{symlink, MetadataExt};

use proptest::prelude::*;

use threadsched::{current_thread_cpus, MAX_CPU};

use super::*;

fn cpus(list: &[usize]) -> CpuSet {
    list.iter().copied().collect()
}

fn irq(number: u32, count: u64, on: &[usize]) -> DeviceInterrupt {
    DeviceInterrupt {
        number,
        count,
        cpus: cpus(on),
    }
}

#[test]
fn the_setting_reads_auto_any_or_a_cpu_list() {
    assert_eq!("auto".parse(), Ok(Placement::NearDiskInterrupts));
    assert_eq!(" any ".parse(), Ok(Placement::Anywhere));
    assert_eq!("1,3".parse(), Ok(Placement::Cpus(cpus(&[1, 3]))));
    for bad in ["", "none", "1-0", "all"] {
        let error = bad.parse::<Placement>().unwrap_err();
        assert!(error.to_string().contains("auto"), "{error}");
    }
    for text in ["auto", "any", "0-2,7"] {
        let placement: Placement = text.parse().unwrap();
        assert_eq!(placement.to_string(), text);
    }
}

proptest! {
    #[test]
    fn no_text_makes_the_parsers_panic(text in "\\PC{0,60}") {
        let _ = text.parse::<Placement>();
        let _ = parse_interrupt_counts(&text);
    }
}

/// Lines as a 2-vCPU Firecracker VM prints them.
const INTERRUPTS: &str = "           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 35:          0          1 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config
 36:          0   80328364 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 39:      11093          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
NMI:          0          0   Non-maskable interrupts
ERR:          0
";

#[test]
fn interrupt_counts_sum_the_cpu_columns_of_numbered_lines() {
    let counts = parse_interrupt_counts(INTERRUPTS);
    assert_eq!(counts.get(&35), Some(&1));
    assert_eq!(counts.get(&36), Some(&80_328_364));
    assert_eq!(counts.get(&39), Some(&11_093));
    assert_eq!(counts.len(), 4, "named lines are skipped: {counts:?}");
}

#[test]
fn a_single_queue_pins_to_its_cpu_and_ignores_the_config_vector() {
    let allowed = cpus(&[0, 1]);
    let single = [irq(35, 1, &[0]), irq(36, 80_328_364, &[1])];
    assert_eq!(choose(&single, &allowed), Some(cpus(&[1])));
}

#[test]
fn nothing_is_pinned_when_pinning_cannot_help() {
    let allowed = cpus(&[0, 1, 2, 3]);
    // A queue per CPU (NVMe): completions already land where they were
    // submitted.
    let per_cpu = [
        irq(40, 9, &[0]),
        irq(41, 5_000, &[0]),
        irq(42, 4_000, &[1]),
        irq(43, 6_000, &[2]),
        irq(44, 3_000, &[3]),
    ];
    assert_eq!(choose(&per_cpu, &allowed), None);
    // Never fired: nothing is known about where completions land.
    assert_eq!(choose(&[irq(36, 0, &[1])], &allowed), None);
    // Delivered only to CPUs this process may not use.
    assert_eq!(choose(&[irq(36, 100, &[7])], &allowed), None);
    // No interrupts at all.
    assert_eq!(choose(&[], &allowed), None);
}

#[test]
fn two_busy_queues_pin_to_both_cpus() {
    let allowed = cpus(&[0, 1, 2, 3]);
    let two = [irq(50, 700, &[0]), irq(51, 1_000, &[2]), irq(52, 3, &[1])];
    assert_eq!(choose(&two, &allowed), Some(cpus(&[0, 2])));
}

/// A sysfs and procfs tree in `root` for the device `dev` (the directory
/// under test's), shaped like the kernel's: `dev/block/MAJ:MIN` links into
/// `devices/`, a disk's `device` links to its virtio device, whose PCI
/// parent lists `msi_irqs`.
struct FakeKernel {
    _root: tempfile::TempDir,
    views: KernelViews,
}

impl FakeKernel {
    fn new() -> FakeKernel {
        let root = tempfile::tempdir().unwrap();
        let views = KernelViews {
            sys: root.path().join("sys"),
            proc: root.path().join("proc"),
        };
        std::fs::create_dir_all(views.sys.join("dev/block")).unwrap();
        std::fs::create_dir_all(&views.proc).unwrap();
        std::fs::write(views.proc.join("interrupts"), INTERRUPTS).unwrap();
        for (number, effective) in [(35, "0"), (36, "1"), (39, "0")] {
            let dir = views.proc.join(format!("irq/{number}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("smp_affinity_list"), "0-1\n").unwrap();
            std::fs::write(
                dir.join("effective_affinity_list"),
                format!("{effective}\n"),
            )
            .unwrap();
        }
        FakeKernel { _root: root, views }
    }

    /// A virtio disk `name` on PCI function `function` with `irqs`; returns
    /// its block directory.
    fn virtio_disk(&self, function: &str, name: &str, irqs: &[u32]) -> PathBuf {
        let pci = self
            .views
            .sys
            .join(format!("devices/pci0000:00/{function}"));
        let virtio = pci.join(format!("virtio-{name}"));
        let block = virtio.join(format!("block/{name}"));
        std::fs::create_dir_all(&block).unwrap();
        std::fs::create_dir_all(pci.join("msi_irqs")).unwrap();
        for number in irqs {
            std::fs::write(pci.join(format!("msi_irqs/{number}")), "msix\n").unwrap();
        }
        symlink(&virtio, block.join("device")).unwrap();
        block
    }

    /// Makes `target` the block device of the filesystem holding `dir`.
    fn mount(&self, dir: &Path, target: &Path) {
        let dev = std::fs::metadata(dir).unwrap().dev();
        let link = self.views.sys.join(format!(
            "dev/block/{}:{}",
            libc::major(dev),
            libc::minor(dev)
        ));
        symlink(target, link).unwrap();
    }
}

#[test]
fn a_partition_of_a_virtio_disk_is_served_by_its_request_queue() {
    let kernel = FakeKernel::new();
    let disk = kernel.virtio_disk("0000:00:02.0", "vda", &[35, 36]);
    let partition = disk.join("vda1");
    std::fs::create_dir_all(&partition).unwrap();
    std::fs::write(partition.join("partition"), "1\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    kernel.mount(store.path(), &partition);

    let found = interrupt_cpus(store.path(), &kernel.views).unwrap();
    assert_eq!(found.disks, ["vda"]);
    assert_eq!(
        found.interrupts,
        [irq(35, 1, &[0]), irq(36, 80_328_364, &[1])]
    );
    assert_eq!(choose(&found.interrupts, &cpus(&[0, 1])), Some(cpus(&[1])));
}

#[test]
fn a_device_mapper_volume_is_served_by_its_members_queues() {
    let kernel = FakeKernel::new();
    let member = kernel.virtio_disk("0000:00:03.0", "vdb", &[39]);
    let volume = kernel.views.sys.join("devices/virtual/block/dm-0");
    std::fs::create_dir_all(volume.join("slaves")).unwrap();
    symlink(&member, volume.join("slaves/vdb")).unwrap();
    let store = tempfile::tempdir().unwrap();
    kernel.mount(store.path(), &volume);

    let found = interrupt_cpus(store.path(), &kernel.views).unwrap();
    assert_eq!(found.disks, ["vdb"]);
    assert_eq!(found.interrupts, [irq(39, 11_093, &[0])]);
}

#[test]
fn a_directory_off_any_listed_disk_is_an_error_not_a_guess() {
    let kernel = FakeKernel::new();
    let store = tempfile::tempdir().unwrap();
    let error = interrupt_cpus(store.path(), &kernel.views).unwrap_err();
    assert!(
        matches!(error, PlacementError::NoBlockDevice { .. }),
        "{error}"
    );

    let bare = kernel.views.sys.join("devices/virtual/block/ram0");
    std::fs::create_dir_all(&bare).unwrap();
    kernel.mount(store.path(), &bare);
    let error = interrupt_cpus(store.path(), &kernel.views).unwrap_err();
    assert!(matches!(error, PlacementError::NoInterrupts(_)), "{error}");
}

/// The real system: whatever the machine's disk looks like, finding its
/// interrupts answers without panicking, and an explicit CPU pins the
/// thread to exactly that CPU.
#[test]
fn a_thread_is_pinned_to_the_cpus_it_is_given() {
    let store = tempfile::tempdir().unwrap();
    let _ = interrupt_cpus(store.path(), &KernelViews::default());
    let dir = store.path().to_owned();
    std::thread::spawn(move || {
        let allowed = current_thread_cpus().unwrap();
        let last = *allowed.iter().next_back().unwrap();
        let placed = place_streaming_thread(&Placement::Cpus(cpus(&[last, MAX_CPU])), &dir);
        assert_eq!(placed.cpus, Some(cpus(&[last])));
        assert_eq!(current_thread_cpus().unwrap(), cpus(&[last]));
        // `any` leaves the thread as it is.
        let placed = place_streaming_thread(&Placement::Anywhere, &dir);
        assert_eq!(placed.cpus, None);
        assert_eq!(current_thread_cpus().unwrap(), cpus(&[last]));
        // A thread it starts inherits the pin until it lets go of it.
        let all = allowed.clone();
        std::thread::spawn(move || {
            assert_eq!(current_thread_cpus().unwrap(), cpus(&[last]));
            unpin_current_thread();
            assert_eq!(current_thread_cpus().unwrap(), all);
        })
        .join()
        .unwrap();
        // `auto` decides from all the process's CPUs, not the pinned one,
        // and lets go of the pin when the interrupts give no reason for it.
        let placed = place_streaming_thread(&Placement::NearDiskInterrupts, &dir);
        let expected = placed.cpus.unwrap_or_else(|| allowed.clone());
        assert_eq!(
            current_thread_cpus().unwrap(),
            expected,
            "{}",
            placed.reason
        );
        assert!(expected.is_subset(&allowed));
    })
    .join()
    .unwrap();
}
