// fedcl-server: the gRPC aggregation server over the Coordinator, weighting updates with FedAU
// (issue #3).
//
// Not built yet: this placeholder only says so, and exits with status 2 so that no script
// mistakes it for the real thing. Until then, the main job is fedcl-pretrain (see README).
#include <cstdio>

int main() {
  std::fprintf(stderr,
               "fedcl-server is not implemented yet: it will be the gRPC aggregation server over "
               "the Coordinator, weighting updates with FedAU (issue #3).\n");
  return 2;
}
