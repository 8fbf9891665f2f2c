/* Placeholder: filled in by the edge-security work (issue 4). */
#include "shield/module.h"

const sh_module sh_module_sigv4 = {
    .name = "sigv4",
};
