#include "client/cli.h"

int main(int argc, char** argv) { return tucker_seg::client::RunCli(argc, argv); }
