#!/usr/bin/env bash
# The whole test suite: set up, build, then every ctest test (unit, MPI at 1–4 ranks, CLI).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FMATTN_BUILD_DIR:-$root/build}
bash "$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"

# The unit tests once more under AddressSanitizer and UndefinedBehaviorSanitizer (in their own
# build folder; FMATTN_SANITIZE_TESTS=0 skips this, as do extra ctest arguments). The default
# backend's copies only: the other backends run the same kernel code.
if [[ ${FMATTN_SANITIZE_TESTS:-1} != 0 && $# == 0 ]]; then
  FMATTN_BUILD_DIR=$build-sanitize bash "$root/scripts/build.sh" -DFMATTN_SANITIZE=address,undefined \
    -DFMATTN_ENABLE_BENCH=OFF -DFMATTN_CHECK_HEADERS=OFF -DFMATTN_TEST_OTHER_BACKENDS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cd "$build-sanitize"
  # Undefined behaviour must fail the test (leak checking is off in tests/test_main.cpp).
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j "$(nproc)" -L unit
fi

# The kernel tests with the GPU tile shape built for the host (split-Q teams of 2 and 4 threads,
# tests/CMakeLists.txt); FMATTN_DEVICE_TILES_TESTS=0 skips this, as do extra ctest arguments.
if [[ ${FMATTN_DEVICE_TILES_TESTS:-1} != 0 && $# == 0 ]]; then
  FMATTN_BUILD_DIR=$build-device-tiles bash "$root/scripts/build.sh" -DFMATTN_DEVICE_TILES_ON_HOST=ON \
    -DFMATTN_ENABLE_BENCH=OFF -DFMATTN_TEST_OTHER_BACKENDS=OFF
  cd "$build-device-tiles"
  ctest --output-on-failure -j "$(nproc)"
fi

# clang-tidy with the checks of .clang-tidy (FMATTN_LINT=0 skips it, as do extra ctest arguments).
if [[ ${FMATTN_LINT:-1} != 0 && $# == 0 ]]; then
  FMATTN_BUILD_DIR=$build bash "$root/scripts/lint.sh"
fi
