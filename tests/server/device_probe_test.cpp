// --devices: what the server accepts and refuses on this machine (CPU-only builds and machines
// refuse CUDA with a clear reason; the CPU is always there).
#include <gtest/gtest.h>

#include "model_store/network/device.h"
#include "server/serving/device_probe.h"

namespace tucker_seg::server {
namespace {

TEST(DeviceProbe, AutoIsEveryCudaDeviceThenTheCpu) {
  auto devices = ProbeDevices("auto", 2);
  ASSERT_TRUE(devices.ok()) << devices.status().message();
  ASSERT_EQ(devices.value().size(), static_cast<size_t>(CudaDeviceCount()) + 1);
  const DeviceProfile& cpu = devices.value().back();
  EXPECT_EQ(cpu.kind, "cpu");
  EXPECT_EQ(cpu.cores, 2);
  EXPECT_EQ(cpu.Label().rfind("cpu:", 0), 0u);
  for (int i = 0; i < CudaDeviceCount(); ++i) EXPECT_EQ(devices.value()[i].spec, "cuda:" + std::to_string(i));
}

TEST(DeviceProbe, UnknownMissingAndRepeatedDevicesAreRefusedByName) {
  auto unknown = ProbeDevices("cpu,tpu", 1);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("devices: device 'tpu'"), std::string::npos) << unknown.status().message();

  auto twice = ProbeDevices("cpu,cpu", 1);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("'cpu' is listed twice"), std::string::npos) << twice.status().message();

  const std::string beyond = "cuda:" + std::to_string(CudaDeviceCount());
  auto missing = ProbeDevices(beyond, 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find(beyond + "' is not available"), std::string::npos) << missing.status().message();
}

}  // namespace
}  // namespace tucker_seg::server
