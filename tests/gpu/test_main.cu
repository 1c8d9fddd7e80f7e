// doctest's main for the GPU suite: `build/test_gpu` runs every kernel test.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
