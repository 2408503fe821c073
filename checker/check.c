/* placeholder */
#include "check.h"
