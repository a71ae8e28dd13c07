# Spack recipe for fmattn (Fast Multipole Attention with Kokkos, MPI and parallel HDF5).
#
# Use it from a repository of your own:
#   spack repo create myrepo && cp -r scripts/spack/fmattn myrepo/packages/
#   spack repo add myrepo
# then build a checkout in place (no download):
#   spack develop --path "$PWD" fmattn@=0.1.0 && spack install fmattn@=0.1.0 +openmp
#   spack install fmattn@=0.1.0 ~openmp +cuda cuda_arch=90      (one MPI rank per GPU, docs/cluster.md)
#   spack install fmattn@=0.1.0 ~openmp +rocm amdgpu_target=gfx90a
# or set `git` below to where your copy of the repository lives.
#
# GPU builds need Kokkos >= 4 (the CUDA/HIP backends of Kokkos 3.4 are not supported); CPU builds
# work with any Kokkos from 3.4. Kokkos Kernels is built on the same Kokkos (one per DAG).

from spack.package import *


class Fmattn(CMakePackage, CudaPackage, ROCmPackage):
    """Fast Multipole Attention: O(n log n) attention for long sequences on CPUs and GPUs, with
    Kokkos kernels, MPI sharding of the sequence (or of the heads), YAML input decks and HDF5 results."""

    version("0.1.0")

    variant("openmp", default=True, description="Host threads through Kokkos' OpenMP backend")
    variant("tests", default=False, description="Build the GoogleTest suite and its analysis tests")

    conflicts("+cuda", when="+rocm", msg="choose one GPU backend")

    depends_on("cmake@3.16:", type="build")
    depends_on("mpi")
    depends_on("hdf5+mpi")
    depends_on("yaml-cpp")

    depends_on("kokkos@3.4:")
    depends_on("kokkos-kernels")  # found at configure time; built on the kokkos above
    depends_on("kokkos+openmp", when="+openmp")
    for arch in CudaPackage.cuda_arch_values:
        depends_on(f"kokkos@4:+cuda+wrapper cuda_arch={arch}", when=f"+cuda cuda_arch={arch}")
    for target in ROCmPackage.amdgpu_targets:
        depends_on(f"kokkos@4:+rocm amdgpu_target={target}", when=f"+rocm amdgpu_target={target}")

    with when("+tests"):
        depends_on("googletest", type=("build", "link"))
        # tools/fmattn-analyze and its tests
        depends_on("python@3.6:", type=("build", "run", "test"))
        depends_on("py-numpy", type=("build", "run", "test"))
        depends_on("py-h5py", type=("build", "run", "test"))
        depends_on("py-matplotlib", type=("build", "run", "test"))

    def cmake_args(self):
        spec = self.spec
        args = [
            self.define_from_variant("FMATTN_ENABLE_TESTS", "tests"),
            self.define("FMATTN_ENABLE_BENCH", False),
            # Spack chooses the target architecture flags itself.
            self.define("FMATTN_HOST_ARCH", ""),
            self.define("Kokkos_ROOT", spec["kokkos"].prefix),
            self.define("KokkosKernels_ROOT", spec["kokkos-kernels"].prefix),
            self.define("MPI_C_COMPILER", spec["mpi"].mpicc),
        ]
        if spec.satisfies("+cuda"):
            # Kokkos' compiler wrapper, as Kokkos itself was built with it.
            args.append(self.define("CMAKE_CXX_COMPILER", spec["kokkos"].kokkos_cxx))
        if spec.satisfies("+rocm"):
            args.append(self.define("CMAKE_CXX_COMPILER", spec["hip"].hipcc))
        return args
