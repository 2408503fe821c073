/* placeholder */
#include "proxy.h"
