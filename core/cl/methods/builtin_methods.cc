// Every continual method fedcl ships, registered into the process's registry at first use. A new
// method adds its registration function here (one declaration, one call).
#include "core/cl/method.h"

namespace fedcl::cl {

void RegisterLinearHeadMethod(MethodRegistry& registry);
void RegisterSimpleCilMethod(MethodRegistry& registry);
void RegisterSequentialAdapterMethod(MethodRegistry& registry);
void RegisterLaeMethod(MethodRegistry& registry);
void RegisterSemaMethods(MethodRegistry& registry);
void RegisterFedInsMethod(MethodRegistry& registry);
void RegisterRecipeMethod(MethodRegistry& registry);

void RegisterBuiltinMethods(MethodRegistry& registry) {
  RegisterLinearHeadMethod(registry);
  RegisterSimpleCilMethod(registry);
  RegisterSequentialAdapterMethod(registry);
  RegisterLaeMethod(registry);
  RegisterSemaMethods(registry);
  RegisterFedInsMethod(registry);
  RegisterRecipeMethod(registry);
}

}  // namespace fedcl::cl
