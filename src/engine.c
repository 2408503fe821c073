/* placeholder */
#include "engine.h"
