#include "experiments/commands/cli.h"

int main(int argc, char** argv) { return mtalab::mtalab_main(argc, argv); }
