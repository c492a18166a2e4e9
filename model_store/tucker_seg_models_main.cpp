#include <iostream>

#include "model_store/cli.h"

int main(int argc, char** argv) {
  return tucker_seg::RunModelsCli(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
}
