/* placeholder */
#include "snapshot.h"
