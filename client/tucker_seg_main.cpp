#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) {
  return tucker_seg::client::RunCli(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
}
