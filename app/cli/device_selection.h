#pragma once

#include <string>

// `--device auto|cpu|cuda`: installs the engine's active backend. auto takes CUDA device 0 when
// this build has CUDA and the machine a usable GPU, else the CPU; cuda fails with the reason when
// it cannot. Returns the backend's name.
std::string selectDevice(const std::string& device);

// Whether the active backend is a CUDA device (for benchmarks that time device kernels).
bool cudaSelected();
