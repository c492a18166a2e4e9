#include <iostream>

#include "model_store/tools/models_cli.h"
#include "model_store/network/runtime.h"

int main(int argc, char** argv) {
  tucker_seg::TuneAllocatorForTensors();
  return tucker_seg::RunModelsCli(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
}
