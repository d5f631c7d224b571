use super::*;

const INFORMATION: &str = "Model: \t\t NVIDIA H100 80GB HBM3\n\
IRQ:   \t\t 185\n\
GPU UUID: \t GPU-5c2d8c5e-1b3f-7a4e-9e21-0c6b1d2f3a4b\n\
Video BIOS: \t 96.00.99.00.01\n\
Bus Type: \t PCIe\n\
DMA Size: \t 52 bits\n\
DMA Mask: \t 0xfffffffffffff\n\
Bus Location: \t 0000:3b:00.0\n\
Device Minor: \t 0\n\
GPU Firmware: \t 535.104.05\n\
GPU Excluded:\t No\n";

const VERSION: &str =
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n\
GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04)\n";

const OPEN_VERSION: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 22:52:32 UTC 2025\n\
GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n";

const SMI_Q: &str = "\n==============NVSMI LOG==============\n\n\
Timestamp                                 : Mon Dec  7 16:55:38 2026\n\
Driver Version                            : 535.104.05\n\
CUDA Version                              : 12.2\n\n\
Attached GPUs                             : 1\n\
GPU 00000000:3B:00.0\n\
    Compute Mode                          : Default\n";

const SMI_HEADER: &str =
    "| NVIDIA-SMI 550.127.05             Driver Version: 550.127.05     CUDA Version: 12.4     |\n";

#[test]
fn information_file_fields() {
    let i = parse_information(INFORMATION);
    assert_eq!(i.model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(i.uuid.as_deref(), Some("GPU-5c2d8c5e-1b3f-7a4e-9e21-0c6b1d2f3a4b"));
    assert_eq!(i.bus.as_deref(), Some("0000:3b:00.0"));
    assert_eq!(i.minor, Some(0));
    // Some drivers write `?` for a GPU without a node.
    assert_eq!(parse_information("Device Minor: \t ?\n").minor, None);
    assert_eq!(parse_information(""), Information::default());
}

#[test]
fn driver_version_of_both_modules() {
    assert_eq!(parse_driver_version(VERSION).as_deref(), Some("535.104.05"));
    assert_eq!(parse_driver_version(OPEN_VERSION).as_deref(), Some("570.86.15"));
    assert_eq!(parse_driver_version("GCC version: 12.3.0\n"), None);
}

#[test]
fn cuda_version_from_query_and_header() {
    assert_eq!(parse_cuda_version(SMI_Q).as_deref(), Some("12.2"));
    assert_eq!(parse_cuda_version(SMI_HEADER).as_deref(), Some("12.4"));
    assert_eq!(parse_cuda_version("CUDA Version : N/A\n"), None);
}

#[test]
fn smi_csv_rows_and_bus_ids() {
    let rows = parse_smi_csv(
        "00000000:3B:00.0, GPU-5c2d8c5e-1b3f-7a4e-9e21-0c6b1d2f3a4b, NVIDIA H100 80GB HBM3, 535.104.05\n\
         00000000:86:00.0, GPU-0000, NVIDIA A100-SXM4-40GB, [N/A]\n",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].bus_id.as_deref(), Some("0000:3b:00.0"));
    assert_eq!(rows[0].name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(rows[0].driver_version.as_deref(), Some("535.104.05"));
    assert_eq!(rows[1].driver_version, None);
    assert_eq!(normalise_bus_id("0000:3b:00.0").as_deref(), Some("0000:3b:00.0"));
    assert_eq!(normalise_bus_id("00000000:3B:00.0").as_deref(), Some("0000:3b:00.0"));
    assert_eq!(normalise_bus_id("garbage"), None);
}

fn tree(dir: &Path, information: &str, version: &str) -> Sources {
    let gpus = dir.join("nvidia/gpus/0000:3b:00.0");
    std::fs::create_dir_all(&gpus).unwrap();
    std::fs::write(gpus.join("information"), information).unwrap();
    std::fs::write(dir.join("nvidia/version"), version).unwrap();
    Sources {
        proc_nvidia: dir.join("nvidia"),
        sys_dev_char: dir.join("sys"),
        smi: None,
        smi_timeout: Duration::from_secs(2),
    }
}

#[test]
fn nvidia_node_by_minor_with_smi() {
    let d = tempfile::tempdir().unwrap();
    let mut src = tree(d.path(), INFORMATION, VERSION);
    let smi = d.path().join("nvidia-smi");
    std::fs::write(
        &smi,
        format!("#!/bin/sh\ncase \"$1\" in -q) printf '%s' '{SMI_Q}';; *) echo '00000000:3B:00.0, GPU-x, NVIDIA H100 80GB HBM3, 535.104.05';; esac\n"),
    )
    .unwrap();
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    src.smi = Some(smi);
    let nodes = [
        (Path::new("/dev/nvidia0"), 195, 0),
        (Path::new("/dev/nvidia1"), 195, 1),
        (Path::new("/dev/nvidiactl"), 195, 255),
        (Path::new("/dev/null"), 1, 3),
    ];
    let g = facts_from(&nodes, &src);
    assert_eq!(g.len(), 2, "{g:#?}");
    assert_eq!(g[0].model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(g[0].pci_bus_id.as_deref(), Some("0000:3b:00.0"));
    assert_eq!(g[0].driver_version.as_deref(), Some("535.104.05"));
    assert_eq!(g[0].cuda_version.as_deref(), Some("12.2"));
    assert!(g[0].notes.is_empty(), "{:?}", g[0].notes);
    // GPU 1 is not in the driver's list: a note, and the host-wide facts.
    assert_eq!(g[1].model, None);
    assert!(g[1].notes.iter().any(|n| n.contains("Device Minor 1")), "{:?}", g[1].notes);
    assert_eq!(g[1].driver_version.as_deref(), Some("535.104.05"));
}

#[test]
fn hanging_smi_is_a_note() {
    let d = tempfile::tempdir().unwrap();
    let mut src = tree(d.path(), INFORMATION, VERSION);
    src.smi = Some(PathBuf::from("/bin/sleep"));
    src.smi_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    // `sleep --query-gpu=...` fails at once: a failure, not a hang.
    let g = facts_from(&[(Path::new("/dev/nvidia0"), 195, 0)], &src);
    assert!(g[0].notes.iter().any(|n| n.contains("/bin/sleep")), "{:?}", g[0].notes);
    let hang = d.path().join("hang");
    std::fs::write(&hang, "#!/bin/sh\nsleep 30\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    src.smi = Some(hang);
    let g = facts_from(&[(Path::new("/dev/nvidia0"), 195, 0)], &src);
    assert!(g[0].notes.iter().any(|n| n.contains("no answer within")), "{:?}", g[0].notes);
    assert_eq!(g[0].model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn dri_node_from_sysfs() {
    let d = tempfile::tempdir().unwrap();
    let src = tree(d.path(), INFORMATION, VERSION);
    let dev = d.path().join("sys/226:128/device");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("uevent"), "DRIVER=amdgpu\nPCI_ID=1002:740F\nPCI_SLOT_NAME=0000:c1:00.0\n")
        .unwrap();
    std::fs::write(dev.join("vendor"), "0x1002\n").unwrap();
    std::fs::write(dev.join("device"), "0x740f\n").unwrap();
    let g = facts_from(&[(Path::new("/dev/dri/renderD128"), 226, 128)], &src);
    assert_eq!(g[0].vendor, "dri");
    assert_eq!(g[0].pci_bus_id.as_deref(), Some("0000:c1:00.0"));
    assert_eq!(g[0].pci_id.as_deref(), Some("1002:740f"));
    assert_eq!(g[0].kernel_driver.as_deref(), Some("amdgpu"));
    let missing = facts_from(&[(Path::new("/dev/dri/card1"), 226, 1)], &src);
    assert!(!missing[0].notes.is_empty());
}

#[test]
fn no_gpu_node_reads_nothing() {
    let node = |path: &str, major, minor| DeviceNode::char(path, major, minor);
    assert!(facts(&[node("/dev/fuse", 10, 229), node("/dev/nvidiactl", 195, 255)]).is_empty());
    assert!(facts(&[]).is_empty());
}

#[test]
fn differences_name_the_node_and_fact() {
    let g = |model: &str, driver: &str| GpuRecord {
        path: "/dev/nvidia0".into(),
        vendor: "nvidia".into(),
        major: 195,
        model: Some(model.into()),
        driver_version: Some(driver.into()),
        ..GpuRecord::default()
    };
    assert!(differences(&[g("H100", "535")], &[g("H100", "535")]).is_empty());
    let d = differences(&[g("H100", "535")], &[g("A100", "550")]);
    assert_eq!(
        d,
        [
            ("gpu /dev/nvidia0 model".to_string(), "H100".to_string(), "A100".to_string()),
            ("gpu /dev/nvidia0 driver".to_string(), "535".to_string(), "550".to_string()),
        ]
    );
    let gone = differences(&[g("H100", "535")], &[]);
    assert_eq!(gone[0].2, "not attached");
    assert!(gone[0].1.starts_with("H100"), "{gone:?}");
}
