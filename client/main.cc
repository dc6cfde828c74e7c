// fedcl-client: the edge client process and embeddable SDK over the Learner (issues #3 and #6).
//
// Not built yet: this placeholder only says so, and exits with status 2 so that no script
// mistakes it for the real thing. Until then, the main job is fedcl-pretrain (see README).
#include <cstdio>

int main() {
  std::fprintf(stderr,
               "fedcl-client is not implemented yet: it will be the edge client process and "
               "embeddable SDK over the Learner (issues #3 and #6).\n");
  return 2;
}
