/* check_result: the result classes' names; see check_result.h. */
#include "check_result.h"

const char *chk_result_name(enum chk_result r)
{
	switch (r) {
	case CHK_OK:
		return "ok";
	case CHK_TIMEOUT:
		return "timeout";
	case CHK_REFUSED:
		return "refused";
	case CHK_RESET:
		return "reset";
	case CHK_PROTO_ERR:
		return "protocol_error";
	case CHK_BAD_ANSWER:
		return "wrong_answer";
	case CHK_AUTH:
		return "auth";
	case CHK_LOCAL_ERR:
		return "local_error";
	case CHK_TLS_ERR:
		return "tls_error";
	case CHK_UNREACHABLE:
		return "unreachable";
	default:
		return "unknown";
	}
}
