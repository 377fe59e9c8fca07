//! A process that asks only for the CPU never loads libtorch's CUDA
//! library (about 340 MB of resident memory it has no use for). Its own
//! test binary, so that no other test has loaded it first.

use dreamfarm_common::device::{DeviceSpec, Devices};
use dreamfarm_worker::cuda_library::{CudaLibrary, cuda_library};
use dreamfarm_worker::models::{torch_device, torch_devices};
use tch::{Device, Kind, Tensor};

fn cuda_library_mapped() -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("the process's mappings")
        .contains("libtorch_cuda.so")
}

#[test]
fn asking_for_the_cpu_leaves_the_cuda_library_unloaded() {
    assert_eq!(torch_device(DeviceSpec::Cpu).expect("the CPU"), Device::Cpu);
    let devices =
        torch_devices(&Devices::Each(vec![DeviceSpec::Cpu, DeviceSpec::Cpu])).expect("CPUs");
    assert_eq!(devices, [Device::Cpu, Device::Cpu]);
    let sum = Tensor::ones([4], (Kind::Float, Device::Cpu)).sum(Kind::Float);
    assert_eq!(f64::try_from(sum).expect("a number"), 4.0);
    assert!(
        !cuda_library_mapped(),
        "a CPU-only process mapped libtorch_cuda.so"
    );
    // Any request that may use a GPU loads it (where this libtorch has one).
    let _ = torch_device(DeviceSpec::Auto);
    match cuda_library() {
        CudaLibrary::Loaded(path) => {
            assert!(
                path.exists() && cuda_library_mapped(),
                "{path:?} not mapped"
            );
        }
        CudaLibrary::Absent { folder } => {
            assert!(!folder.join("libtorch_cuda.so").exists() && !cuda_library_mapped());
        }
        other => panic!("libtorch's CUDA library: {other:?}"),
    }
}
