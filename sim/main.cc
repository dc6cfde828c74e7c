// fedcl-sim: the simulator replaying heterogeneous participation over many virtual clients (issue
// #4).
//
// Not built yet: this placeholder only says so, and exits with status 2 so that no script
// mistakes it for the real thing. Until then, the main job is fedcl-pretrain (see README).
#include <cstdio>

int main() {
  std::fprintf(stderr,
               "fedcl-sim is not implemented yet: it will be the simulator replaying heterogeneous "
               "participation over many virtual clients (issue #4).\n");
  return 2;
}
